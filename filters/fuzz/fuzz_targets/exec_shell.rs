//! The shell parser and the whole exec check on arbitrary scripts: no panic, no hang; the
//! subset reader and brush-parser's tokenizer agree on every script the reader accepts; and
//! anything allowed is made of segments each allowed on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod example_policy;
use example_policy::policy;

fuzz_target!(|data: &[u8]| {
    let Ok(script) = std::str::from_utf8(data) else { return };
    let ops = ["&&".to_string(), "||".to_string(), ";".to_string(), "|".to_string()];
    let _ = clawguard_filters::exec::shell::parse(script, &ops);
    if let Ok(tokens) = clawguard_filters::exec::shell::lex(script) {
        // A disagreement is refused in production (fail closed), but it means one of the two
        // readers misreads shell: the fuzzer reports it so it can be understood and fixed.
        if let Err(e) = clawguard_filters::exec::shell::agree_with_shell_tokenizer(script, &tokens) {
            panic!("{script:?}: {e}");
        }
    }
    let verdict = policy().check_shell(script);
    if verdict.decision == "allow" {
        assert!(!verdict.segments.is_empty(), "an allowed script has segments");
        assert!(verdict.segments.iter().all(|s| s.decision == "allow"), "every segment of an allowed script is allowed");
        assert!(clawguard_filters::exec::hygiene::check(script).is_ok(), "an allowed script passes hygiene");
    }
});
