//! The shell parser and the whole exec check on arbitrary scripts: no panic, no hang, and
//! anything allowed is made of segments each allowed on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod example_policy;
use example_policy::policy;

fuzz_target!(|data: &[u8]| {
    let Ok(script) = std::str::from_utf8(data) else { return };
    let ops = ["&&".to_string(), "||".to_string(), ";".to_string(), "|".to_string()];
    let _ = clawguard_filters::exec::shell::parse(script, &ops);
    let verdict = policy().check_shell(script);
    if verdict.decision == "allow" {
        assert!(!verdict.segments.is_empty(), "an allowed script has segments");
        assert!(verdict.segments.iter().all(|s| s.decision == "allow"), "every segment of an allowed script is allowed");
        assert!(clawguard_filters::exec::hygiene::check(script).is_ok(), "an allowed script passes hygiene");
    }
});
