//! The host's layering, checked: every `crate::` import goes down the layers listed in `lib.rs`
//! (or stays within one top-level module), so there is no import cycle among host modules.
//! Reads the sources, so it also fails when a new top-level module is not given a layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bottom up. The shared vocabulary may import each other; everything else imports only from
/// layers below its own.
const LAYERS: &[&[&str]] = &[
    &["bindings", "defaults", "error", "stats", "restart", "deps"],
    &["manifest"],
    &["runtime"],
    &["routing"],
    &["io"],
    &["block"],
    &["supervision"],
    &["ops", "testkit"],
    &["host"],
];

fn layer(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

/// Every source file of the library, as (module path, file).
fn modules(dir: &Path, prefix: &[String], out: &mut Vec<(Vec<String>, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            // The binary's own modules (`cli/`) are not the library's.
            if prefix.is_empty() && name == "cli" {
                continue;
            }
            let mut sub = prefix.to_vec();
            sub.push(name);
            modules(&path, &sub, out);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            // The crate root, the binary, and this checker (whose examples name imports).
            if prefix.is_empty() && matches!(stem, "lib" | "main" | "cli" | "layers") {
                continue;
            }
            let mut module = prefix.to_vec();
            if stem != "mod" {
                module.push(stem.to_owned());
            }
            out.push((module, path));
        }
    }
}

/// The `crate::` paths a source file names, comments and unit tests left out.
fn imports(text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .split("#[cfg(test)]\nmod tests {")
        .next()
        .unwrap_or_default()
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let path: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
        let mut parts: Vec<String> = path.split("::").filter(|p| !p.is_empty()).map(str::to_owned).collect();
        if rest[path.len()..].starts_with('{') {
            // `crate::a::{b, c}`: the group's members are under `a`.
            let group = &rest[path.len() + 1..rest.find('}').unwrap_or(rest.len())];
            for member in group.split(',') {
                let member = member.trim().split(&[' ', ':'][..]).next().unwrap_or_default();
                if !member.is_empty() {
                    let mut p = parts.clone();
                    p.push(member.to_owned());
                    out.push(p);
                }
            }
            continue;
        }
        parts.retain(|p| p.chars().next().is_some_and(|c| c.is_lowercase()));
        out.push(parts);
    }
    out
}

#[test]
fn every_import_goes_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    modules(&src, &[], &mut files);
    assert!(files.len() > 40, "read the sources in {}", src.display());
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let Some(top) = module.first() else { continue };
        let Some(mine) = layer(top) else { panic!("`{top}` has no layer: add it to LAYERS and lib.rs") };
        for import in imports(&text) {
            let Some(theirs) = import.first() else { continue };
            if theirs == top {
                continue;
            }
            let Some(their_layer) = layer(theirs) else { continue };
            if their_layer >= mine && !(mine == 0 && their_layer == 0) {
                upward.entry(module.join("::")).or_default().push(import.join("::"));
            }
        }
    }
    assert!(upward.is_empty(), "imports that go up (or across) the layers: {upward:#?}");
}

#[test]
fn the_checker_sees_imports() {
    let found =
        imports("use crate::routing::{queue::Envelope, router};\n// crate::ops\nfn f() { crate::io::net::x(); }");
    assert_eq!(found, [vec!["routing", "queue"], vec!["routing", "router"], vec!["io", "net", "x"]]);
}
