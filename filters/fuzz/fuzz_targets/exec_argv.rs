//! The exec check on arbitrary argvs (NUL-separated): no panic, no hang, and wrappers never
//! hide a segment.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod example_policy;
use example_policy::policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let argv: Vec<String> = text.split('\0').map(str::to_string).collect();
    let verdict = policy().check_argv(&argv);
    if verdict.decision == "allow" {
        assert!(verdict.segments.iter().all(|s| s.decision == "allow"));
    }
});
