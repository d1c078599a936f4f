//! The HTTP surface (issue 12) on arbitrary requests: a method, a request target, headers and a
//! body, split from the input at NUL bytes, through `http::decide` under the example policy.
//! No panic; a path that cannot be canonicalised is never admitted; an admitted path is its own
//! canonical form (canonicalisation is idempotent), so no decision is taken on one path and
//! another forwarded.
#![no_main]

use clawguard_filters::access::{Guard, InMemory};
use clawguard_filters::codec::url_path::canonical_path;
use clawguard_filters::http::{decide, HttpRequest};
use clawguard_filters::peer::Peer;
use clawguard_policies::LoadedPolicy;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const METHODS: &[&str] = &["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"];

fn world() -> &'static (Guard, InMemory) {
    static WORLD: OnceLock<(Guard, InMemory)> = OnceLock::new();
    WORLD.get_or_init(|| {
        let text = include_str!("../../../policy.example.toml");
        let mut policy = LoadedPolicy::parse("policy.example.toml", text).expect("the example policy parses").policy;
        policy.limits.http_tools_invoke_per_minute = 4_000_000_000;
        policy.limits.http_inference_per_minute = 4_000_000_000;
        policy.limits.http_hooks_per_minute = 4_000_000_000;
        (Guard::new(&policy), InMemory::default())
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let mut parts = text.split('\0');
    let target = parts.next().unwrap_or("/");
    // Missing parts of the input are an empty header block and an empty body.
    let headers: Vec<(String, String)> = parts
        .next()
        .unwrap_or("")
        .split('\n')
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = parts.next().unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let (guard, state) = world();
    let env = state.env(guard, 1_795_264_737_000);
    let peer = Peer { ip: if pick & 0x80 == 0 { "127.0.0.1" } else { "203.0.113.9" }.parse().unwrap(), tls: pick & 0x40 != 0, client_cert: None };
    let req = HttpRequest { method: METHODS[pick as usize % METHODS.len()], path, query, headers: &headers, upgrade: pick & 0x20 != 0 };
    let d = decide(&env, &peer, &req, body.as_bytes());
    match canonical_path(path) {
        Err(_) => assert_eq!(d.decision, "deny", "an unreadable path {path:?} was admitted"),
        Ok(canonical) => {
            assert_eq!(canonical_path(&canonical).as_deref(), Ok(canonical.as_str()), "canonicalisation of {path:?} is not idempotent");
            if d.decision != "deny" {
                assert_eq!(d.path.as_deref(), Some(canonical.as_str()));
            }
        }
    }
});
