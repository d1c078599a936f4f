//! Policy errors are reported where they are (issue 13): each file of
//! `tests/cases/policy-errors/` is a policy that must be refused, its first line
//! `# expect LINE:COLUMN TEXT` giving the position reported and a part of the message.

use clawguard_policies::{LoadedPolicy, PolicyError};
use std::path::Path;

#[test]
fn every_invalid_policy_is_refused_at_its_key() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases/policy-errors");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    files.sort();
    assert!(files.len() >= 10, "the cases were read from {}", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let expect = text.lines().next().and_then(|l| l.strip_prefix("# expect ")).unwrap_or_else(|| panic!("{name}: the first line must be `# expect LINE:COLUMN TEXT`"));
        let (position, fragment) = expect.split_once(' ').unwrap_or((expect, ""));
        let (line, column) = position.split_once(':').map(|(l, c)| (l.parse::<usize>().unwrap(), c.parse::<usize>().unwrap())).unwrap_or_else(|| panic!("{name}: bad position {position:?}"));
        match LoadedPolicy::parse(&name, &text) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(PolicyError::Invalid { location, message }) => {
                if (location.line, location.column) != (line, column) || !message.contains(fragment) {
                    failures.push(format!("{name}: got {}:{} {message:?}, expected {line}:{column} containing {fragment:?}", location.line, location.column));
                }
            }
            Err(other) => failures.push(format!("{name}: {other}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
