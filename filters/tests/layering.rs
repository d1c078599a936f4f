//! No two modules of the engine import each other (issue 12): each module's `use crate::…` and
//! `crate::…::` paths are read from the source, and for every pair the dependency goes one way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The module a source file is (`http/routes.rs` → `http::routes`, `http/mod.rs` → `http`).
fn module_of(rel: &str) -> String {
    rel.trim_end_matches(".rs").trim_end_matches("/mod").replace('/', "::")
}

fn sources(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                sources(&path, base, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/");
            out.push((module_of(&rel), std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// The modules a source refers to by `crate::` paths in code (comments skipped), reduced to the
/// modules that exist (`crate::http::routes::X` → `http::routes`).
fn imports(text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            let path: String = code[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            // The longest prefix that is a module.
            if let Some(m) = (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| known.contains(m)) {
                out.insert(m);
            }
        }
    }
    out
}

#[test]
fn no_two_modules_import_each_other() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&base, &base, &mut files);
    let known: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let graph: BTreeMap<String, BTreeSet<String>> = files.iter().map(|(m, text)| (m.clone(), imports(text, &known))).collect();
    // A module and its own submodules (`http` and `http::routes`) are one unit.
    let same_unit = |a: &str, b: &str| a.split("::").next() == b.split("::").next();
    let mut mutual = Vec::new();
    for (a, deps) in &graph {
        for b in deps {
            if a < b && !same_unit(a, b) && graph.get(b).is_some_and(|d| d.contains(a)) {
                mutual.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(graph.len() > 20, "the source tree was read ({} modules)", graph.len());
    assert!(mutual.is_empty(), "modules that import each other: {mutual:?}");
}
