//! Start and finish order from dependencies (bandmaster style). Pure: indices in, indices out.
//!
//! A block starts once every block it is `after` has started; blocks with nothing between them
//! start in parallel. Finishing runs the other way: a block finishes once every block that is
//! after it has finished.

/// Why a set of dependencies cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepError {
    /// A block is after a responsibility no block has.
    Missing {
        /// The block (index) naming it.
        block: usize,
        /// The unknown responsibility.
        missing: String,
    },
    /// Blocks wait for each other in a circle; the responsibilities, first repeated at the end.
    Cycle(Vec<String>),
}

/// The dependency graph of a manifest's blocks, by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// `after[i]`: the blocks `i` waits for.
    pub after: Vec<Vec<usize>>,
}

impl Graph {
    /// Builds the graph from each block's responsibility and its `after` list (`None`: after the
    /// block before it in the manifest, which keeps a manifest without `after` in order).
    pub fn new(blocks: &[(&str, Option<&[String]>)]) -> Result<Self, DepError> {
        let index = |name: &str| blocks.iter().position(|(r, _)| *r == name);
        let mut after = Vec::with_capacity(blocks.len());
        for (i, (_, deps)) in blocks.iter().enumerate() {
            let list = match deps {
                None => i.checked_sub(1).into_iter().collect(),
                Some(deps) => {
                    let mut list = Vec::with_capacity(deps.len());
                    for d in deps.iter() {
                        let j = index(d).ok_or_else(|| DepError::Missing { block: i, missing: d.clone() })?;
                        if !list.contains(&j) {
                            list.push(j);
                        }
                    }
                    list
                }
            };
            after.push(list);
        }
        let graph = Self { after };
        if let Some(cycle) = graph.cycle() {
            return Err(DepError::Cycle(cycle.into_iter().map(|i| blocks[i].0.to_owned()).collect()));
        }
        Ok(graph)
    }

    /// The blocks that may start now: not started, and everything they wait for is `ready`.
    pub fn startable(&self, started: &[bool], ready: &[bool]) -> Vec<usize> {
        (0..self.after.len()).filter(|&i| !started[i] && self.after[i].iter().all(|&d| ready[d])).collect()
    }

    /// The blocks that may finish now: not finished, and every block after them is `finished`.
    pub fn finishable(&self, finished: &[bool]) -> Vec<usize> {
        (0..self.after.len())
            .filter(|&i| !finished[i])
            .filter(|&i| (0..self.after.len()).all(|j| finished[j] || !self.after[j].contains(&i)))
            .collect()
    }

    /// A start order that respects every dependency (manifest order where there is a choice).
    pub fn order(&self) -> Vec<usize> {
        let n = self.after.len();
        let mut done = vec![false; n];
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let next = self.startable(&done, &done);
            if next.is_empty() {
                break; // unreachable for a graph `new` accepted
            }
            for i in next {
                done[i] = true;
                out.push(i);
            }
        }
        out
    }

    fn cycle(&self) -> Option<Vec<usize>> {
        // 0 unvisited, 1 on the path, 2 done
        let mut color = vec![0u8; self.after.len()];
        let mut path = Vec::new();
        for start in 0..self.after.len() {
            if color[start] == 0
                && let Some(c) = self.visit(start, &mut color, &mut path)
            {
                return Some(c);
            }
        }
        None
    }

    fn visit(&self, i: usize, color: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
        color[i] = 1;
        path.push(i);
        for &d in &self.after[i] {
            if color[d] == 1 {
                let from = path.iter().position(|&p| p == d).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(d);
                return Some(cycle);
            }
            if color[d] == 0
                && let Some(c) = self.visit(d, color, path)
            {
                return Some(c);
            }
        }
        path.pop();
        color[i] = 2;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(blocks: &[(&str, Option<&[&str]>)]) -> Result<Graph, DepError> {
        let owned: Vec<(String, Option<Vec<String>>)> =
            blocks.iter().map(|(r, a)| (r.to_string(), a.map(|a| a.iter().map(|s| s.to_string()).collect()))).collect();
        let refs: Vec<(&str, Option<&[String]>)> = owned.iter().map(|(r, a)| (r.as_str(), a.as_deref())).collect();
        Graph::new(&refs)
    }

    #[test]
    fn without_after_blocks_go_in_manifest_order() {
        let g = graph(&[("a", None), ("b", None), ("c", None)]).unwrap();
        assert_eq!(g.after, [vec![], vec![0], vec![1]]);
        assert_eq!(g.startable(&[false; 3], &[false; 3]), [0]);
        assert_eq!(g.finishable(&[false; 3]), [2]);
    }

    #[test]
    fn independent_blocks_start_and_finish_together() {
        let g = graph(&[("db", Some(&[])), ("cache", Some(&[])), ("api", Some(&["db", "cache"]))]).unwrap();
        assert_eq!(g.startable(&[false; 3], &[false; 3]), [0, 1]);
        assert_eq!(g.startable(&[true, true, false], &[true, false, false]), Vec::<usize>::new());
        assert_eq!(g.startable(&[true, true, false], &[true, true, false]), [2]);
        assert_eq!(g.finishable(&[false; 3]), [2]);
        assert_eq!(g.finishable(&[false, false, true]), [0, 1]);
        assert_eq!(g.order(), [0, 1, 2]);
    }

    #[test]
    fn dependencies_can_reorder_the_manifest() {
        let g = graph(&[("api", Some(&["db"])), ("db", Some(&[]))]).unwrap();
        assert_eq!(g.order(), [1, 0]);
    }

    #[test]
    fn missing_and_circular_dependencies_are_named() {
        assert_eq!(graph(&[("a", Some(&["ghost"]))]), Err(DepError::Missing { block: 0, missing: "ghost".into() }));
        assert_eq!(
            graph(&[("a", Some(&["c"])), ("b", Some(&["a"])), ("c", Some(&["b"]))]),
            Err(DepError::Cycle(vec!["a".into(), "c".into(), "b".into(), "a".into()]))
        );
        assert_eq!(graph(&[("a", Some(&["a"]))]), Err(DepError::Cycle(vec!["a".into(), "a".into()])));
    }
}
