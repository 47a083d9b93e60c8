//! Comparing what a scenario expected with what a block did: a subset match for bags, and a
//! line diff of the two, pretty-printed, for people to read.

use serde_json::Value;

use crate::defaults::TEST_DIFF_CELLS;

/// Whether `got` has everything `want` lists: every key of an object with a matching value
/// (recursively), arrays element by element and of the same length, anything else equal.
pub fn subset(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w.iter().all(|(k, v)| g.get(k).is_some_and(|gv| subset(v, gv))),
        (Value::Array(w), Value::Array(g)) => w.len() == g.len() && w.iter().zip(g).all(|(w, g)| subset(w, g)),
        // Integers compare exactly; an integer and a float (TOML's 1 and JSON's 1.0) by value.
        (Value::Number(w), Value::Number(g)) => w == g || ((w.is_f64() || g.is_f64()) && w.as_f64() == g.as_f64()),
        _ => want == got,
    }
}

/// `got` cut down to what `want` lists (the keys of its objects, recursively), so that a diff of
/// a subset match shows only what differs.
pub fn pruned(want: &Value, got: &Value) -> Value {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            Value::Object(g.iter().filter_map(|(k, gv)| w.get(k).map(|wv| (k.clone(), pruned(wv, gv)))).collect())
        }
        (Value::Array(w), Value::Array(g)) => Value::Array(
            g.iter().enumerate().map(|(i, gv)| w.get(i).map_or_else(|| gv.clone(), |wv| pruned(wv, gv))).collect(),
        ),
        _ => got.clone(),
    }
}

/// `expected` and `got`, pretty-printed, as a line diff: `-` lines expected only, `+` lines got
/// only, the rest shared.
pub fn diff(expected: &Value, got: &Value) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let (a, b) = (pretty(expected), pretty(got));
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    if a.len().saturating_mul(b.len()) > TEST_DIFF_CELLS {
        // Too long to line up: both, whole.
        let side = |sign: &str, lines: &[&str]| lines.iter().map(|l| format!("  {sign} {l}\n")).collect::<String>();
        return format!("  --- expected\n  +++ got\n{}{}", side("-", &a), side("+", &b));
    }
    // Longest common subsequence, then walk it.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut out = String::from("  --- expected\n  +++ got\n");
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("    {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("  + {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("  - {}\n", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_subset_lists_some_keys_at_any_depth() {
        assert!(subset(&json!({"a": 1}), &json!({"a": 1.0, "b": 2})));
        assert!(!subset(&json!(9007199254740992_u64), &json!(9007199254740993_u64)), "integers exactly");
        assert!(subset(&json!({"a": {"x": [1, {"y": true}]}}), &json!({"a": {"x": [1, {"y": true, "z": 0}], "w": 1}})));
        assert!(!subset(&json!({"a": 1}), &json!({"a": 2})));
        assert!(!subset(&json!({"a": [1]}), &json!({"a": [1, 2]})), "arrays keep their length");
        assert!(!subset(&json!({"missing": null}), &json!({})));
    }

    #[test]
    fn pruning_keeps_only_what_the_expectation_lists() {
        let got = json!([{"text": "HI", "n": 1, "__from": "x"}, {"extra": 1}]);
        assert_eq!(pruned(&json!([{"text": "hi"}]), &got), json!([{"text": "HI"}, {"extra": 1}]));
    }

    #[test]
    fn a_diff_marks_what_differs() {
        let d = diff(&json!({"text": "HI", "n": 1}), &json!({"text": "hi", "n": 1}));
        assert!(d.contains("  - ") && d.contains("\"HI\"") && d.contains("  + ") && d.contains("\"hi\""), "{d}");
        assert!(d.contains("    \"n\": 1"), "shared lines unmarked: {d}");
    }
}
