//! The request model (issue 11) on arbitrary params: a request of a method clawguard must read
//! (`node.invoke`, approvals, tools, chat commands, sessions, grants), on an established
//! connection of the example policy's `local` identity. No panic, and a request whose params
//! cannot be read as `JSON.parse` reads them is never forwarded.
#![no_main]

use clawguard_filters::access::{Guard, InMemory};
use clawguard_filters::engine::{Limits, WsEngine};
use clawguard_filters::nodes::{PinOp, Pins, Surface};
use clawguard_filters::peer::Peer;
use clawguard_filters::ws::{encode_frame, OpCode};
use clawguard_policies::LoadedPolicy;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const METHODS: &[&str] = &["node.invoke", "exec.approval.request", "exec.approval.resolve", "tools.invoke", "chat.send", "agent", "sessions.get", "device.token.rotate", "node.pair.approve", "sessions.patch"];
const SCOPES: &str = r#"["operator.read","operator.write","operator.approvals","operator.pairing","operator.sessions.read","operator.sessions.write"]"#;

fn world() -> &'static (Guard, InMemory) {
    static WORLD: OnceLock<(Guard, InMemory)> = OnceLock::new();
    WORLD.get_or_init(|| {
        let text = include_str!("../../../policy.example.toml");
        let guard = Guard::new(&LoadedPolicy::parse("policy.example.toml", text).expect("the example policy parses").policy);
        let state = InMemory::default();
        let surface = Surface { commands: ["system.run", "system.which"].iter().map(|s| s.to_string()).collect(), ..Surface::default() };
        state.pins.apply(PinOp::Approve { device_id: "n".into(), surface, by: "fuzz".into(), at_ms: 0 }, &guard.nodes);
        (guard, state)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(params) = std::str::from_utf8(rest) else { return };
    let method = METHODS[pick as usize % METHODS.len()];
    let text = format!(r#"{{"type":"req","id":"9","method":"{method}","params":{params}}}"#);
    // Only messages that are gateway requests with these params (the envelope parses).
    match clawguard_filters::gateway::parse_frame(text.as_bytes()) {
        Ok(clawguard_filters::gateway::GatewayFrame::Req { params: Some(p), .. }) if p.get() == params.trim() => {}
        _ => return,
    }
    let (guard, state) = world();
    let env = state.env(guard, 1_795_264_737_000);
    let peer = Peer { ip: "127.0.0.1".parse().unwrap(), tls: false, client_cert: None };
    let mut engine = WsEngine::new(&env, peer, Limits { handshake_message: 64 * 1024, message: 1024 * 1024, fragments: 4096 }, 1);
    let mask = Some([1, 2, 3, 4]);
    engine.on_gateway_bytes(&env, &encode_frame(true, OpCode::Text, br#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}}"#, None));
    engine.on_client_bytes(&env, &encode_frame(true, OpCode::Text, format!(r#"{{"type":"req","id":"1","method":"connect","params":{{"scopes":{SCOPES}}}}}"#).as_bytes(), mask));
    engine.on_gateway_bytes(&env, &encode_frame(true, OpCode::Text, format!(r#"{{"type":"res","id":"1","ok":true,"payload":{{"type":"hello-ok","auth":{{"role":"operator","scopes":{SCOPES}}}}}}}"#).as_bytes(), None));
    let out = engine.on_client_bytes(&env, &encode_frame(true, OpCode::Text, text.as_bytes(), mask));
    if clawguard_filters::js::read_json(method, params).is_err() {
        assert_eq!(out.forwarded[0], 0, "an unreadable {method} request was forwarded: {params}");
    }
});
