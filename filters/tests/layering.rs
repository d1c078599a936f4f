//! The engine's layers (issue 12): each module's `use crate::…` and `crate::…::` paths are read
//! from the source; every path names its layer, no layer imports one above it, and no two
//! modules import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers of `filters/src/`, from the bottom (docs/architecture.md).
const LAYERS: [&str; 5] = ["codec", "protocol", "state", "checks", "surfaces"];

/// The module a source file is (`codec/ws/frame.rs` → `codec::ws::frame`, `codec/ws/mod.rs` → `codec::ws`).
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
/// modules that exist (`crate::protocol::routes::X` → `protocol::routes`).
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
    // A module and its own submodules (`checks::exec` and `checks::exec::shell`) are one unit.
    let unit = |m: &str| m.split("::").take(2).collect::<Vec<_>>().join("::");
    let same_unit = |a: &str, b: &str| unit(a) == unit(b);
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

#[test]
fn every_module_sits_in_a_layer_and_imports_only_its_own_or_lower_layers() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&base, &base, &mut files);
    let rank = |m: &str| LAYERS.iter().position(|l| m.split("::").next() == Some(*l));
    let mut outside = Vec::new();
    let mut upward = Vec::new();
    for (module, text) in &files {
        if module == "lib" || LAYERS.contains(&module.as_str()) {
            continue;
        }
        let Some(own) = rank(module) else {
            outside.push(module.clone());
            continue;
        };
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let head: String = code[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                match LAYERS.iter().position(|l| *l == head) {
                    // The crate root's re-exports are for other crates; inside, a path names its layer.
                    None if head.is_empty() || head == "{" => {}
                    None => outside.push(format!("{module}: crate::{head}")),
                    Some(target) if target > own => upward.push(format!("{module} -> {head}")),
                    Some(_) => {}
                }
            }
            if code.contains("use crate::{") {
                outside.push(format!("{module}: a grouped `use crate::{{…}}` (name each layer's path)"));
            }
        }
    }
    assert!(outside.is_empty(), "not under a layer of {LAYERS:?}: {outside:?}");
    assert!(upward.is_empty(), "imports from a higher layer: {upward:?}");
}
