//! The exec check on arbitrary argvs (NUL-separated): no panic, no hang, and wrappers never
//! hide a segment.
#![no_main]

use clawguard_filters::exec::ExecPolicy;
use clawguard_policies::LoadedPolicy;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn policy() -> &'static ExecPolicy {
    static POLICY: OnceLock<ExecPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let text = include_str!("../../../policy.example.toml");
        ExecPolicy::new(&LoadedPolicy::parse("policy.example.toml", text).expect("the example policy parses").policy).expect("its examples hold")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let argv: Vec<String> = text.split('\0').map(str::to_string).collect();
    let verdict = policy().check_argv(&argv);
    if verdict.decision == "allow" {
        assert!(verdict.segments.iter().all(|s| s.decision == "allow"));
    }
});
