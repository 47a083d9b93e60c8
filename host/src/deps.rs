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
        let positions: std::collections::HashMap<&str, usize> =
            blocks.iter().enumerate().rev().map(|(i, (r, _))| (*r, i)).collect();
        let index = |name: &str| positions.get(name).copied();
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

    /// The blocks each block is before: `before[i]` are the blocks that are `after` it.
    fn before(&self) -> Vec<Vec<usize>> {
        let mut before = vec![Vec::new(); self.after.len()];
        for (j, deps) in self.after.iter().enumerate() {
            for &d in deps {
                before[d].push(j);
            }
        }
        before
    }

    /// Starting, as blocks become ready: a block may start once every block it is after is
    /// ready. `ready[i]`: block `i` counts as started and ready already (it is not handed out).
    pub fn starting(&self, ready: &[bool]) -> Frontier {
        Frontier::new(self.after.iter().map(Vec::len).collect(), self.before(), ready, &self.after)
    }

    /// Finishing, as blocks finish: a block may finish once every block after it has finished.
    /// `finished[i]`: block `i` counts as finished already; a block past the end of `finished`
    /// does too (a start-up that failed while adding blocks stops only the ones it added).
    pub fn finishing(&self, finished: &[bool]) -> Frontier {
        let before = self.before();
        let waits = before.iter().map(Vec::len).collect();
        let done: Vec<bool> = (0..self.after.len()).map(|i| finished.get(i).copied().unwrap_or(true)).collect();
        Frontier::new(waits, self.after.clone(), &done, &before)
    }

    /// A start order that respects every dependency (manifest order where there is a choice).
    pub fn order(&self) -> Vec<usize> {
        let mut starting = self.starting(&[]);
        let mut out = Vec::with_capacity(self.after.len());
        loop {
            let next = starting.take();
            if next.is_empty() {
                break; // everything, for a graph `new` accepted
            }
            for i in next {
                starting.done(i);
                out.push(i);
            }
        }
        out
    }

    /// A cycle, if there is one: the blocks on it, the first one repeated at the end. Iterative
    /// (a manifest of thousands of blocks without `after` is one long chain).
    fn cycle(&self) -> Option<Vec<usize>> {
        // 0 unvisited, 1 on the path, 2 done
        let mut color = vec![0u8; self.after.len()];
        for start in 0..self.after.len() {
            if color[start] != 0 {
                continue;
            }
            // The path, each block with how many of its dependencies were looked at.
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            color[start] = 1;
            while let Some(&mut (i, ref mut next)) = path.last_mut() {
                let Some(&d) = self.after[i].get(*next) else {
                    color[i] = 2;
                    path.pop();
                    continue;
                };
                *next += 1;
                match color[d] {
                    0 => {
                        color[d] = 1;
                        path.push((d, 0));
                    }
                    1 => {
                        let from = path.iter().position(|&(p, _)| p == d).unwrap_or(0);
                        let mut cycle: Vec<usize> = path[from..].iter().map(|&(p, _)| p).collect();
                        cycle.push(d);
                        return Some(cycle);
                    }
                    _ => {}
                }
            }
        }
        None
    }
}

/// Blocks handed out as the blocks they wait for are done (starting or finishing): linear in the
/// number of blocks and dependencies over a whole start or stop, however many blocks there are.
#[derive(Debug)]
pub struct Frontier {
    /// How many blocks each block still waits for.
    waits: Vec<usize>,
    /// `unblocks[i]`: the blocks waiting for block `i`.
    unblocks: Vec<Vec<usize>>,
    /// Blocks already handed out (or that counted as done from the start).
    handed: Vec<bool>,
    /// Blocks done, so a block is not counted done twice.
    done: Vec<bool>,
    /// Blocks that may go now, in index order once taken.
    ready: Vec<usize>,
}

impl Frontier {
    fn new(mut waits: Vec<usize>, unblocks: Vec<Vec<usize>>, done_already: &[bool], waits_on: &[Vec<usize>]) -> Self {
        let n = waits.len();
        let done: Vec<bool> = (0..n).map(|i| done_already.get(i).copied().unwrap_or(false)).collect();
        // What is done already does not hold anyone up.
        for (i, on) in waits_on.iter().enumerate() {
            waits[i] -= on.iter().filter(|&&d| done[d]).count();
        }
        let ready = (0..n).filter(|&i| !done[i] && waits[i] == 0).collect();
        Self { waits, unblocks, handed: done.clone(), done, ready }
    }

    /// The blocks that may go now and were not handed out before, in index order.
    pub fn take(&mut self) -> Vec<usize> {
        let mut out = std::mem::take(&mut self.ready);
        out.retain(|&i| !std::mem::replace(&mut self.handed[i], true));
        out.sort_unstable();
        out
    }

    /// Notes that block `i` is done (started and ready, or finished).
    pub fn done(&mut self, i: usize) {
        if i >= self.done.len() || std::mem::replace(&mut self.done[i], true) {
            return;
        }
        for &j in &self.unblocks[i] {
            self.waits[j] = self.waits[j].saturating_sub(1);
            if self.waits[j] == 0 && !self.handed[j] {
                self.ready.push(j);
            }
        }
    }

    /// Whether a block is waiting to be taken.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
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

    /// Drives a frontier to the end, each round's blocks done together; returns the rounds.
    fn rounds(mut f: Frontier) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        loop {
            let next = f.take();
            if next.is_empty() {
                return out;
            }
            for &i in &next {
                f.done(i);
            }
            out.push(next);
        }
    }

    #[test]
    fn without_after_blocks_go_in_manifest_order() {
        let g = graph(&[("a", None), ("b", None), ("c", None)]).unwrap();
        assert_eq!(g.after, [vec![], vec![0], vec![1]]);
        assert_eq!(rounds(g.starting(&[false; 3])), [[0], [1], [2]]);
        assert_eq!(rounds(g.finishing(&[false; 3])), [[2], [1], [0]]);
        // Only the first two were added (start-up failed at the third): they finish in order.
        assert_eq!(rounds(g.finishing(&[false; 2])), [[1], [0]]);
        assert!(rounds(g.finishing(&[])).is_empty());
    }

    #[test]
    fn independent_blocks_start_and_finish_together() {
        let g = graph(&[("db", Some(&[])), ("cache", Some(&[])), ("api", Some(&["db", "cache"]))]).unwrap();
        let mut starting = g.starting(&[false; 3]);
        assert_eq!(starting.take(), [0, 1]);
        starting.done(0);
        assert!(starting.take().is_empty(), "api waits for cache too");
        starting.done(0);
        assert!(starting.take().is_empty(), "a block done twice counts once");
        starting.done(1);
        assert_eq!(starting.take(), [2]);
        assert!(starting.take().is_empty(), "handed out once");
        assert_eq!(rounds(g.finishing(&[false; 3])), vec![vec![2], vec![0, 1]]);
        assert_eq!(rounds(g.finishing(&[false, false, true])), vec![vec![0, 1]]);
        // Blocks not among those to start count as ready already.
        assert_eq!(rounds(g.starting(&[true, true, false])), [[2]]);
        assert_eq!(g.order(), [0, 1, 2]);
    }

    #[test]
    fn ten_thousand_blocks_in_a_chain_order_in_linear_time() {
        // Without `after`, every block is after the one before it: one long chain. Ordering,
        // starting, finishing and finding cycles must not be quadratic (or recursive) in it.
        let names: Vec<String> = (0..10_000).map(|i| format!("b{i}")).collect();
        let blocks: Vec<(&str, Option<&[String]>)> = names.iter().map(|n| (n.as_str(), None)).collect();
        let g = Graph::new(&blocks).unwrap();
        assert_eq!(g.order(), (0..10_000).collect::<Vec<_>>());
        let finished: Vec<usize> = rounds(g.finishing(&vec![false; 10_000])).into_iter().flatten().collect();
        assert_eq!(finished, (0..10_000).rev().collect::<Vec<_>>());
        let mut looped: Vec<(&str, Option<&[String]>)> = blocks.clone();
        let last = [names[9_999].clone()];
        looped[0].1 = Some(&last);
        assert!(matches!(Graph::new(&looped), Err(DepError::Cycle(c)) if c.len() == 10_001));
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
