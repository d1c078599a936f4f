//! The case corpora's shared parts: where the cases live, and the policies they name.

use clawguard_policies::LoadedPolicy;
use std::path::PathBuf;

/// `tests/cases/`.
pub fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cases")
}

/// The policy a case names: `embedded`, or a file in `tests/cases/policies/`.
pub fn load_policy(name: &str) -> Result<LoadedPolicy, String> {
    if name == "embedded" {
        return Ok(LoadedPolicy::embedded());
    }
    let path = cases_dir().join("policies").join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    LoadedPolicy::parse(&path.display().to_string(), &text).map_err(|e| e.to_string())
}
