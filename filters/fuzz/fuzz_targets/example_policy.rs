//! The example policy, compiled once per fuzz process (shared by the exec targets).

use clawguard_filters::exec::ExecPolicy;
use clawguard_policies::LoadedPolicy;
use std::sync::OnceLock;

/// The exec policy of `policy.example.toml`.
pub fn policy() -> &'static ExecPolicy {
    static POLICY: OnceLock<ExecPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let text = include_str!("../../../policy.example.toml");
        ExecPolicy::new(&LoadedPolicy::parse("policy.example.toml", text).expect("the example policy parses").policy).expect("its examples hold")
    })
}
