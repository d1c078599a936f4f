//! Issue 15: an open connection under a new policy version. The identity of the same name takes
//! over (its lists apply to the next message); a connection whose identity is gone, whose role is
//! no longer allowed or whose granted scopes exceed the new ceiling is closed with 1008.

use clawguard_filters::access::{Guard, InMemory};
use clawguard_filters::engine::{Limits, Verdict, WsEngine};
use clawguard_filters::peer::Peer;
use clawguard_filters::ws::{encode_frame, OpCode};
use clawguard_policies::LoadedPolicy;

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];
const NOW: u64 = 1_795_264_737_000;

fn guard(ops: &str) -> Guard {
    let text = format!("[[identity]]\nname = \"ops\"\n{ops}\n[identity.match]\ncidr = [\"127.0.0.0/8\"]\n\n[[identity]]\nname = \"default\"\nscopes = []\n");
    let text = if ops == "(gone)" { "[[identity]]\nname = \"default\"\nscopes = []\n".to_string() } else { text };
    Guard::new(&LoadedPolicy::parse("reload.toml", &text).unwrap_or_else(|e| panic!("{e}")).policy)
}

const OPS: &str = "roles = [\"operator\"]\nscopes = [\"operator.read\", \"operator.write\"]\nsessions = [\"**\"]";

/// A connection of "ops" established under `g`, holding operator.read and operator.write.
fn established(g: &Guard, state: &InMemory) -> WsEngine {
    let env = state.env(g, NOW);
    let peer = Peer { ip: "127.0.0.1".parse().unwrap(), tls: false, client_cert: None };
    let mut engine = WsEngine::new(&env, peer, Limits { handshake_message: 64 * 1024, message: 1 << 20, fragments: 64 }, 1);
    engine.on_gateway_bytes(&env, &encode_frame(true, OpCode::Text, br#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}}"#, None));
    engine.on_client_bytes(&env, &encode_frame(true, OpCode::Text, br#"{"type":"req","id":"1","method":"connect","params":{"role":"operator","scopes":["operator.read","operator.write"]}}"#, Some(MASK)));
    engine.on_gateway_bytes(&env, &encode_frame(true, OpCode::Text, br#"{"type":"res","id":"1","ok":true,"payload":{"type":"hello-ok","auth":{"role":"operator","scopes":["operator.read","operator.write"]}}}"#, None));
    assert!(engine.access().is_established());
    assert_eq!(engine.access().resolution().identity.name, "ops");
    engine
}

fn chat_send(engine: &mut WsEngine, g: &Guard, state: &InMemory) -> Verdict {
    let out = engine.on_client_bytes(&state.env(g, NOW), &encode_frame(true, OpCode::Text, br#"{"type":"req","id":"2","method":"chat.send","params":{"sessionKey":"agent:main:main","message":"hi","idempotencyKey":"k1"}}"#, Some(MASK)));
    if out.to_gateway.is_empty() { out.decided.first().map(|d| d.verdict).unwrap_or(Verdict::Drop) } else { Verdict::Forward }
}

#[test]
fn issue15_a_reload_applies_to_the_next_message_of_an_open_connection() {
    let state = InMemory::default();
    let before = guard(OPS);
    let mut engine = established(&before, &state);
    assert_eq!(chat_send(&mut engine, &before, &state), Verdict::Forward);
    let after = guard(&format!("{OPS}\ndeny_methods = [\"chat.send\"]"));
    let out = engine.rebind(&after_env(&after, &state));
    assert!(out.decided.is_empty() && out.to_client.is_empty(), "still allowed: the connection goes on untouched");
    assert_eq!(chat_send(&mut engine, &after, &state), Verdict::Reply, "the new identity's deny_methods applies to the next message");
}

fn after_env<'a>(g: &'a Guard, state: &'a InMemory) -> clawguard_filters::access::Env<'a> {
    state.env(g, NOW)
}

#[test]
fn issue15_a_reload_closes_connections_the_new_policy_no_longer_allows() {
    for (why, ops) in [
        ("the identity is gone", "(gone)".to_string()),
        ("the role is no longer allowed", "roles = [\"node\"]\nscopes = [\"operator.read\", \"operator.write\"]".to_string()),
        ("the granted scopes exceed the new ceiling", "roles = [\"operator\"]\nscopes = [\"operator.read\"]".to_string()),
    ] {
        let state = InMemory::default();
        let before = guard(OPS);
        let mut engine = established(&before, &state);
        let after = guard(&ops);
        let out = engine.rebind(&after_env(&after, &state));
        let closed = out.decided.iter().find(|d| d.verdict == Verdict::Close);
        let closed = closed.unwrap_or_else(|| panic!("{why}: not closed ({:?})", out.decided));
        assert_eq!(closed.rule, "policy-reload", "{why}");
        assert!(closed.reason.starts_with("policy changed"), "{why}: {}", closed.reason);
        // A close frame with 1008 goes to the client.
        let frame = out.to_client.iter().flat_map(|b| b.iter().copied()).collect::<Vec<u8>>();
        assert!(frame.windows(2).any(|w| w == [0x03, 0xF0]), "{why}: no 1008 close frame to the client");
    }
}
