//! Engine tests: bytes in, bytes and verdicts out.

use super::*;
use crate::surfaces::access::Guard;
use crate::codec::ws::{encode_frame, FrameParser, OpCode, Sender};
use clawguard_policies::LoadedPolicy;
use proptest::prelude::*;

/// Loopback clients are `root` (every scope), so transport tests see plain forwarding.
const ROOT: &str = "[[identity]]\nname = \"root\"\nscopes = [\"operator.admin\"]\n[identity.match]\ncidr = [\"127.0.0.0/8\"]\n[[identity]]\nname = \"default\"\nscopes = []\n";

/// A policy and the outside world (clock, replay memory) for one test.
struct World {
    guard: Guard,
    state: crate::surfaces::access::InMemory,
}

impl World {
    fn env(&self) -> Env<'_> {
        self.state.env(&self.guard, 1_795_000_000_000)
    }
}

fn rules(toml: &str) -> World {
    let policy = LoadedPolicy::parse("t.toml", &format!("{ROOT}{toml}")).unwrap().policy;
    World { guard: Guard::new(&policy), state: Default::default() }
}

fn peer() -> Peer {
    Peer { ip: "127.0.0.1".parse().unwrap(), tls: false, client_cert: None }
}

fn engine(w: &World) -> WsEngine {
    WsEngine::new(&w.env(), peer(), LIMITS, 7)
}

const LIMITS: Limits = Limits { handshake_message: 1024, message: 64 * 1024, fragments: 64 };
const MASK: [u8; 4] = [1, 2, 3, 4];

fn client(text: &str) -> Bytes {
    encode_frame(true, OpCode::Text, text.as_bytes(), Some(MASK))
}

fn gateway(text: &str) -> Bytes {
    encode_frame(true, OpCode::Text, text.as_bytes(), None)
}


/// Decodes the whole frames of one output; panics if it ends inside a frame (the engine must
/// never release part of one; a large frame may come as its header and its payload).
fn frames(sender: Sender, chunks: &[Bytes]) -> Vec<(OpCode, Vec<u8>)> {
    let mut out = Vec::new();
    let mut p = FrameParser::new(sender, usize::MAX >> 1);
    for chunk in chunks {
        p.push(chunk);
        while let Some(f) = p.next_frame().unwrap() {
            out.push((f.opcode, f.payload.to_vec()));
        }
    }
    assert_eq!(p.buffered(), 0, "a partial frame was emitted");
    out
}

const CHALLENGE: &str = r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}}"#;
const CONNECT: &str = r#"{"type":"req","id":"1:c","method":"connect","params":{"scopes":["operator.admin"]}}"#;
const HELLO: &str = r#"{"type":"res","id":"1:c","ok":true,"payload":{"type":"hello-ok","auth":{"role":"operator","scopes":["operator.admin"]}}}"#;

fn established(w: &World) -> WsEngine {
    let mut e = engine(w);
    let env = w.env();
    e.on_gateway_bytes(&env, &gateway(CHALLENGE));
    assert_eq!(e.on_client_bytes(&env, &client(CONNECT)).forwarded, [1, 0]);
    assert!(!e.access().is_established());
    e.on_gateway_bytes(&env, &gateway(HELLO));
    assert!(e.access().is_established());
    assert_eq!(e.access().role(), crate::protocol::scopes::Role::Operator);
    e
}

#[test]
fn connect_details_are_recorded() {
    let r = rules("");
    let mut e = engine(&r);
    e.on_gateway_bytes(&r.env(), &gateway(CHALLENGE));
    e.on_client_bytes(&r.env(), &client(r#"{"type":"req","id":"1","method":"connect","params":{"role":"node","client":{"id":"node-host","mode":"node"},"device":{"id":"dev1","signature":"s","signedAt":1795000000000,"nonce":"n"}}}"#));
    assert_eq!(e.access().device_id(), Some("dev1"));
    assert_eq!(e.access().client(), Some(("node-host", "node")));
    // `root` may not be a node: recorded, then refused.
    assert!(e.is_closing());
    assert_eq!(e.access().role(), crate::protocol::scopes::Role::Operator);
}

#[test]
fn default_policy_forwards_the_original_bytes() {
    let r = rules("");
    let mut e = established(&r);
    let wire = client(r#"{"type":"req","id":"2","method":"secrets.reload","params":{}}"#);
    let out = e.on_client_bytes(&r.env(), &wire);
    assert_eq!(out.to_gateway, vec![wire]);
    assert!(out.to_client.is_empty() && out.decided.is_empty());
    assert_eq!(out.forwarded, [1, 0]);
}

#[test]
fn hello_ok_for_another_id_does_not_end_the_handshake() {
    let r = rules("");
    let mut e = engine(&r);
    e.on_gateway_bytes(&r.env(), &gateway(CHALLENGE));
    e.on_client_bytes(&r.env(), &client(r#"{"type":"req","id":"1","method":"connect"}"#));
    e.on_gateway_bytes(&r.env(), &gateway(r#"{"type":"res","id":"2","ok":true,"payload":{"type":"hello-ok"}}"#));
    assert!(!e.access().is_established());
    e.on_gateway_bytes(&r.env(), &gateway(r#"{"type":"res","id":"1","ok":false,"error":{"code":"X","message":"m"}}"#));
    assert!(!e.access().is_established());
}

#[test]
fn handshake_cap_applies_before_hello_ok_and_full_cap_after() {
    let r = rules("");
    let big = format!(r#"{{"type":"req","id":"1","method":"connect","params":{{"pad":"{}"}}}}"#, "x".repeat(2000));
    let mut e = engine(&r);
    let out = e.on_client_bytes(&r.env(), &client(&big));
    let sent = frames(Sender::Server, &out.to_client);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, OpCode::Close);
    assert_eq!(u16::from_be_bytes([sent[0].1[0], sent[0].1[1]]), 1009);
    assert!(e.is_closing());
    let mut e = established(&r);
    let after = format!(r#"{{"type":"req","id":"2","method":"chat.send","params":{{"pad":"{}"}}}}"#, "x".repeat(2000));
    let out = e.on_client_bytes(&r.env(), &client(&after));
    assert_eq!(out.forwarded, [1, 0]);
}

#[test]
fn deny_rule_answers_in_the_gateway_shape_and_keeps_the_connection() {
    let r = rules("[[frame_rule]]\nname = \"no-cron\"\ndirection = \"client\"\nmatch = [\"cron.*\"]\naction = \"deny\"\n");
    let mut e = established(&r);
    let out = e.on_client_bytes(&r.env(), &client(r#"{"type":"req","id":"9:x","method":"cron.add"}"#));
    assert!(out.to_gateway.is_empty(), "the gateway never sees a denied request");
    let sent = frames(Sender::Server, &out.to_client);
    let v: serde_json::Value = serde_json::from_slice(&sent[0].1).unwrap();
    assert_eq!(v["id"], "9:x");
    assert_eq!(v["error"]["code"], "FORBIDDEN");
    assert_eq!(v["error"]["details"]["rule"], "no-cron");
    assert_eq!(v["error"]["details"]["source"], "clawguard");
    assert!(!e.is_closing());
    let out = e.on_client_bytes(&r.env(), &client(r#"{"type":"req","id":"10","method":"health"}"#));
    assert_eq!(out.forwarded, [1, 0]);
}

#[test]
fn drop_and_close_rules() {
    let r = rules(concat!(
        "[[frame_rule]]\nname = \"quiet\"\ndirection = \"gateway\"\nmatch = [\"node.hostStats\"]\naction = \"drop\"\n",
        "[[frame_rule]]\nname = \"kill\"\ndirection = \"client\"\nmatch = [\"wizard.*\"]\naction = \"close\"\nreason = \"no wizards\"\n",
    ));
    let mut e = established(&r);
    let out = e.on_gateway_bytes(&r.env(), &gateway(r#"{"type":"event","event":"node.hostStats","payload":{}}"#));
    assert!(out.to_client.is_empty());
    assert_eq!(out.decided[0].verdict, Verdict::Drop);
    let out = e.on_client_bytes(&r.env(), &client(r#"{"type":"req","id":"3","method":"wizard.start"}"#));
    let to_client = frames(Sender::Server, &out.to_client);
    assert_eq!(to_client[0].0, OpCode::Close);
    assert_eq!(&to_client[0].1[..2], &1008u16.to_be_bytes());
    assert_eq!(&to_client[0].1[2..], b"no wizards");
    let to_gw = frames(Sender::Client, &out.to_gateway);
    assert_eq!(to_gw[0].0, OpCode::Close);
    // Later traffic is discarded; the client's close ends the connection.
    assert!(e.on_gateway_bytes(&r.env(), &gateway(r#"{"type":"event","event":"tick"}"#)).to_client.is_empty());
    assert!(e.on_client_bytes(&r.env(), &client(r#"{"type":"req","id":"4","method":"health"}"#)).to_gateway.is_empty());
    assert!(!e.is_done());
    e.on_client_bytes(&r.env(), &encode_frame(true, OpCode::Close, &close_payload(1008, ""), Some(MASK)));
    assert!(e.is_done());
}

#[test]
fn denied_connect_is_answered_then_closed() {
    let r = rules("[[frame_rule]]\nname = \"nobody\"\ndirection = \"client\"\nmatch = [\"connect\"]\naction = \"deny\"\n");
    let mut e = engine(&r);
    let out = e.on_client_bytes(&r.env(), &client(r#"{"type":"req","id":"1","method":"connect"}"#));
    let sent = frames(Sender::Server, &out.to_client);
    assert_eq!(sent.iter().map(|f| f.0).collect::<Vec<_>>(), vec![OpCode::Text, OpCode::Close]);
    assert!(e.is_closing());
}

#[test]
fn unparseable_frames_cannot_be_judged_and_are_refused() {
    let r = rules("");
    let mut e = established(&r);
    for bad in ["{not json", r#"{"type":"req","id":"1","method":"health","method":"config.apply"}"#] {
        let out = e.on_client_bytes(&r.env(), &client(bad));
        assert!(out.to_gateway.is_empty(), "{bad}");
        assert_eq!(out.decided[0].rule, "frame-syntax");
    }
    let out = e.on_client_bytes(&r.env(), &encode_frame(true, OpCode::Binary, b"\x00", Some(MASK)));
    assert!(out.to_gateway.is_empty());
}

#[test]
fn client_protocol_error_closes_both_sides() {
    let r = rules("");
    let mut e = established(&r);
    let unmasked = encode_frame(true, OpCode::Text, b"{}", None);
    let out = e.on_client_bytes(&r.env(), &unmasked);
    let sent = frames(Sender::Server, &out.to_client);
    assert_eq!(&sent[0].1[..2], &1002u16.to_be_bytes());
    assert_eq!(frames(Sender::Client, &out.to_gateway)[0].0, OpCode::Close);
}

#[test]
fn gateway_protocol_error_is_1011_to_the_client() {
    let r = rules("");
    let mut e = established(&r);
    let out = e.on_gateway_bytes(&r.env(), &encode_frame(true, OpCode::Text, b"{}", Some(MASK)));
    let sent = frames(Sender::Server, &out.to_client);
    assert_eq!(&sent[0].1[..2], &1011u16.to_be_bytes());
}

#[test]
fn server_initiated_close_reaches_both_peers() {
    let r = rules("");
    let mut e = established(&r);
    let out = e.close(1001, "clawguard shutting down");
    assert_eq!(&frames(Sender::Server, &out.to_client)[0].1[..2], &1001u16.to_be_bytes());
    assert_eq!(&frames(Sender::Client, &out.to_gateway)[0].1[..2], &1001u16.to_be_bytes());
    assert!(e.close(1001, "again").to_client.is_empty(), "close is sent once");
}

#[test]
fn control_frames_inside_a_fragmented_message_are_forwarded_at_once() {
    let r = rules("");
    let mut e = established(&r);
    let first = encode_frame(false, OpCode::Text, br#"{"type":"event","#, None);
    let ping = encode_frame(true, OpCode::Ping, b"p", None);
    let last = encode_frame(true, OpCode::Continuation, br#""event":"tick"}"#, None);
    assert!(e.on_gateway_bytes(&r.env(), &first).to_client.is_empty());
    assert_eq!(e.on_gateway_bytes(&r.env(), &ping).to_client, vec![ping.clone()]);
    // The fragments are not kept: the message goes on as one frame of the whole payload.
    let out = e.on_gateway_bytes(&r.env(), &last);
    assert_eq!(frames(Sender::Server, &out.to_client), vec![(OpCode::Text, br#"{"type":"event","event":"tick"}"#.to_vec())]);
    assert_eq!(out.forwarded, [0, 1]);
}

#[test]
fn issue13_a_fragmented_client_message_is_forwarded_as_one_masked_frame() {
    let r = rules("");
    let mut e = established(&r);
    let text = r#"{"type":"req","id":"9","method":"health","params":{}}"#;
    let mut out = Output::default();
    for (i, byte) in text.as_bytes().iter().enumerate() {
        let op = if i == 0 { OpCode::Text } else { OpCode::Continuation };
        let o = e.on_client_bytes(&r.env(), &encode_frame(i + 1 == text.len(), op, &[*byte], Some(MASK)));
        out.to_gateway.extend(o.to_gateway);
        out.forwarded[0] += o.forwarded[0];
        out.decided.extend(o.decided);
    }
    assert!(out.decided.is_empty(), "{:?}", out.decided);
    assert_eq!(out.forwarded, [1, 0]);
    // The gateway requires masked client frames: one, with the whole payload.
    assert_eq!(frames(Sender::Client, &out.to_gateway), vec![(OpCode::Text, text.as_bytes().to_vec())]);
}

#[test]
fn issue13_too_many_fragments_close_with_1008() {
    let r = rules("");
    let mut e = established(&r);
    let mut closed = None;
    for i in 0..(LIMITS.fragments + 1) {
        let op = if i == 0 { OpCode::Text } else { OpCode::Continuation };
        let out = e.on_client_bytes(&r.env(), &encode_frame(false, op, b" ", Some(MASK)));
        if let Some(d) = out.decided.first() {
            closed = Some((i, d.verdict, frames(Sender::Server, &out.to_client)));
            break;
        }
    }
    let (at, verdict, to_client) = closed.expect("the connection is closed");
    assert_eq!(at, LIMITS.fragments, "closed at the first fragment over the cap");
    assert_eq!(verdict, Verdict::Close);
    assert_eq!(&to_client[0].1[..2], &1008u16.to_be_bytes());
}

proptest! {
    /// Any chunking of gateway traffic comes out as the same bytes, in whole frames only.
    #[test]
    fn gateway_stream_is_reproduced_in_whole_frames(
        sizes in proptest::collection::vec(0usize..3000, 1..12),
        cuts in proptest::collection::vec(1usize..700, 1..30),
    ) {
        let r = rules("");
        let mut e = established(&r);
        let mut wire = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            wire.extend_from_slice(&gateway(&format!(r#"{{"type":"event","event":"e{i}","payload":"{}"}}"#, "y".repeat(*n))));
        }
        let (mut at, mut i, mut got) = (0, 0, Vec::new());
        while at < wire.len() {
            let n = cuts[i % cuts.len()].min(wire.len() - at);
            let out = e.on_gateway_bytes(&r.env(), &wire[at..at + n]);
            frames(Sender::Server, &out.to_client);
            out.to_client.iter().for_each(|b| got.extend_from_slice(b));
            at += n;
            i += 1;
        }
        prop_assert_eq!(got, wire);
    }

    /// No byte sequence from either side panics the engine.
    #[test]
    fn arbitrary_input_never_panics(
        chunks in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200)), 0..20),
    ) {
        let r = rules("[[frame_rule]]\nname = \"r\"\ndirection = \"client\"\nmatch = [\"config.*\"]\naction = \"deny\"\n");
        let mut e = engine(&r);
        for (from_client, data) in chunks {
            if from_client { e.on_client_bytes(&r.env(), &data); } else { e.on_gateway_bytes(&r.env(), &data); }
        }
    }
}

/// Regression (issue 3, found by the real CLI): a ceiling of `operator.admin` allows every
/// scope it implies; it must not strip `operator.read` from a connect.
#[test]
fn admin_ceiling_keeps_implied_scopes() {
    let r = rules("");
    let mut e = engine(&r);
    e.on_gateway_bytes(&r.env(), &gateway(CHALLENGE));
    let out = e.on_client_bytes(&r.env(), &client(r#"{"type":"req","id":"1","method":"connect","params":{"scopes":["operator.read","operator.pairing"]}}"#));
    assert_eq!(out.forwarded, [1, 0], "{:?}", out.decided);
    e.on_gateway_bytes(&r.env(), &gateway(r#"{"type":"res","id":"1","ok":true,"payload":{"type":"hello-ok","auth":{"role":"operator","scopes":["operator.read","operator.pairing"]}}}"#));
    let out = e.on_client_bytes(&r.env(), &client(r#"{"type":"req","id":"2","method":"status"}"#));
    assert_eq!(out.forwarded, [1, 0], "{:?}", out.decided);
}

proptest! {
    /// Whatever the identity's ceiling and the method, a request is either forwarded byte for
    /// byte or refused, and a refused request never reaches the gateway.
    #[test]
    fn a_denied_request_never_reaches_the_gateway(
        bits in 0u16..1024,
        method in proptest::sample::select(vec![
            "health", "status", "chat.send", "config.get", "config.apply", "config.patch", "node.invoke",
            "node.invoke.result", "agent", "sessions.patch", "device.pair.approve", "exec.approval.resolve",
            "talk.config", "question.list", "no.such.method", "connect", "wizard.start", "sessions.list",
        ]),
        params in proptest::sample::select(vec![
            "{}", r#"{"command":"system.run"}"#, r#"{"command":"browser.proxy"}"#, r#"{"message":"/new"}"#,
            r#"{"raw":"{gateway:{bind:'lan'}}"}"#, r#"{"key":"k","label":"x"}"#, r#"{"includeSecrets":true}"#, "null",
        ]),
    ) {
        let scopes: Vec<String> = crate::protocol::scopes::Scope::ALL.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, s)| format!("{:?}", s.name())).collect();
        let policy = format!("[[identity]]\nname = \"x\"\nscopes = [{}]\n[identity.match]\ncidr = [\"127.0.0.0/8\"]\n[[identity]]\nname = \"default\"\nscopes = []\n", scopes.join(","));
        let w = World { guard: Guard::new(&LoadedPolicy::parse("t.toml", &policy).unwrap().policy), state: Default::default() };
        let mut e = engine(&w);
        e.on_gateway_bytes(&w.env(), &gateway(CHALLENGE));
        e.on_client_bytes(&w.env(), &client(r#"{"type":"req","id":"1","method":"connect","params":{"scopes":["operator.admin","operator.read","operator.write","operator.pairing","operator.approvals","operator.questions","operator.talk.secrets"]}}"#));
        e.on_gateway_bytes(&w.env(), &gateway(r#"{"type":"res","id":"1","ok":true,"payload":{"type":"hello-ok","auth":{"role":"operator","scopes":["operator.admin"]}}}"#));
        let text = format!(r#"{{"type":"req","id":"9","method":"{method}","params":{params}}}"#);
        let wire = client(&text);
        let out = e.on_client_bytes(&w.env(), &wire);
        let sent: Vec<Vec<u8>> = frames(Sender::Client, &out.to_gateway).into_iter().filter(|(op, _)| *op == OpCode::Text).map(|(_, p)| p).collect();
        if out.forwarded[0] == 1 {
            prop_assert!(out.decided.is_empty());
            prop_assert_eq!(&out.to_gateway, &vec![wire]);
        } else {
            prop_assert!(!out.decided.is_empty(), "neither forwarded nor decided");
            prop_assert!(sent.iter().all(|p| p != text.as_bytes()), "a refused request reached the gateway");
        }
    }
}

#[test]
fn json_depth_skips_strings() {
    use crate::surfaces::access::json_depth;
    assert_eq!(json_depth(br#"{"a":[1,{"b":2}]}"#), 3);
    assert_eq!(json_depth(br#"{"a":"[[[[{{{{"}"#), 1);
    assert_eq!(json_depth(br#"{"a":"\"[[["}"#), 1, "escaped quotes do not end the string");
    assert_eq!(json_depth(b"[]"), 1);
    assert_eq!(json_depth(b"42"), 0);
}

#[test]
fn hello_ok_from_another_gateway_version_is_noticed() {
    let r = rules("");
    for (version, mismatch) in [("2026.9.6", false), ("2026.10.1", true)] {
        let mut e = engine(&r);
        e.on_gateway_bytes(&r.env(), &gateway(CHALLENGE));
        e.on_client_bytes(&r.env(), &client(CONNECT));
        let hello = format!(r#"{{"type":"res","id":"1:c","ok":true,"payload":{{"type":"hello-ok","server":{{"version":"{version}"}},"auth":{{"role":"operator","scopes":[]}}}}}}"#);
        let out = e.on_gateway_bytes(&r.env(), &gateway(&hello));
        let noticed = out.notices.iter().any(|n| matches!(n, Notice::VersionMismatch { gateway, expected } if gateway == version && expected == "2026.9.6"));
        assert_eq!(noticed, mismatch, "{version}");
        assert!(e.access().is_established(), "a version mismatch is logged, not refused");
    }
}

/// The embedded policy's `local` identity on an established connection, with node `n` pinned
/// to `system.run` and `system.which`.
fn local_world() -> World {
    let guard = Guard::new(&LoadedPolicy::embedded().policy);
    let state = crate::surfaces::access::InMemory::default();
    let surface = crate::state::nodes::Surface { commands: ["system.run", "system.which"].iter().map(|s| s.to_string()).collect(), ..Default::default() };
    use crate::state::nodes::Pins;
    state.pins.apply(crate::state::nodes::PinOp::Approve { device_id: "n".into(), surface, by: "test".into(), at_ms: 0 }, &guard.nodes);
    World { guard, state }
}

/// Requests that clawguard must read to judge (every class of issue 11), all valid.
const READ_REQUESTS: &[&str] = &[
    r#"{"nodeId":"n","command":"system.run","params":{"command":["echo","hi"]},"idempotencyKey":"i"}"#,
    r#"{"nodeId":"n","command":"system.run","params":{"command":["rm","-rf","/"]},"idempotencyKey":"i"}"#,
    r#"{"id":"ap1","decision":"allow-once"}"#,
    r#"{"name":"exec","sessionKey":"agent:main:local","args":{"command":"ls -la"}}"#,
    r#"{"sessionKey":"agent:main:local","message":"/pair approve r1","idempotencyKey":"i"}"#,
    r#"{"key":"agent:main:local"}"#,
    r#"{"deviceId":"d","role":"operator","scopes":["operator.read"]}"#,
    r#"{"id":"ap2","command":"git status","host":"gateway"}"#,
];
const READ_METHODS: &[&str] = &["node.invoke", "node.invoke", "exec.approval.resolve", "tools.invoke", "chat.send", "sessions.get", "device.token.rotate", "exec.approval.request"];

fn judge_request(method: &str, params: &str) -> (bool, Vec<u8>) {
    let w = local_world();
    let mut e = engine(&w);
    let scopes = r#"["operator.read","operator.write","operator.approvals","operator.pairing","operator.sessions.read","operator.sessions.write"]"#;
    e.on_gateway_bytes(&w.env(), &gateway(CHALLENGE));
    e.on_client_bytes(&w.env(), &client(&format!(r#"{{"type":"req","id":"1","method":"connect","params":{{"scopes":{scopes}}}}}"#)));
    e.on_gateway_bytes(&w.env(), &gateway(&format!(r#"{{"type":"res","id":"1","ok":true,"payload":{{"type":"hello-ok","auth":{{"role":"operator","scopes":{scopes}}}}}}}"#)));
    let text = format!(r#"{{"type":"req","id":"9","method":"{method}","params":{params}}}"#);
    let out = e.on_client_bytes(&w.env(), &client(&text));
    let reply = frames(Sender::Server, &out.to_client).into_iter().map(|(_, p)| p).next().unwrap_or_default();
    (out.forwarded[0] == 1, reply)
}

/// The byte offsets just inside each string literal of a JSON text.
fn string_starts(text: &str) -> Vec<usize> {
    let (mut out, mut in_string, mut escaped) = (Vec::new(), false, false);
    for (i, b) in text.bytes().enumerate() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (false, _, b'"') => {
                in_string = true;
                out.push(i + 1);
            }
            _ => {}
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Issue 11: a lone surrogate anywhere in a request clawguard must read makes it
    /// unreadable, and an unreadable request is never forwarded.
    #[test]
    fn issue11_an_unreadable_request_is_never_forwarded(which in 0..READ_REQUESTS.len(), pick in any::<prop::sample::Index>(), unit in 0xD800u32..0xE000) {
        let params = READ_REQUESTS[which];
        let starts = string_starts(params);
        let at = starts[pick.index(starts.len())];
        let mutated = format!("{}\\u{:04x}{}", &params[..at], unit, &params[at..]);
        prop_assert!(serde_json::from_str::<serde_json::Value>(&mutated).is_err(), "the mutation is unreadable: {}", mutated);
        let (forwarded, reply) = judge_request(READ_METHODS[which], &mutated);
        prop_assert!(!forwarded, "{} {} was forwarded", READ_METHODS[which], mutated);
        let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        prop_assert_eq!(&reply["error"]["details"]["code"], "UNREADABLE_PARAMS");
    }

    /// Issue 11: a duplicated key is read as JSON.parse reads it (the last one wins), so
    /// prefixing any top-level field with a decoy copy never changes the decision.
    #[test]
    fn issue11_a_decoy_duplicate_key_never_changes_the_decision(which in 0..READ_REQUESTS.len(), pick in any::<prop::sample::Index>(), decoy in prop::sample::select(vec![r#""system.which""#, "null", r#"["echo","hi"]"#, r#""agent:main:local""#, "true", r#""allow-once""#])) {
        let params = READ_REQUESTS[which];
        let value: serde_json::Value = serde_json::from_str(params).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        let key = keys[pick.index(keys.len())];
        let mutated = format!("{{\"{key}\":{decoy},{}", &params[1..]);
        let (plain, plain_reply) = judge_request(READ_METHODS[which], params);
        let (dup, dup_reply) = judge_request(READ_METHODS[which], &mutated);
        prop_assert_eq!(plain, dup, "{} {}", READ_METHODS[which], mutated);
        let code = |r: &[u8]| serde_json::from_slice::<serde_json::Value>(r).map(|v| v["error"]["details"]["code"].clone()).unwrap_or_default();
        prop_assert_eq!(code(&plain_reply), code(&dup_reply));
    }
}

/// A store shared by replicas, in memory, for the core's side of `[state] backend = "redis"`
/// (the Redis implementation is the proxy's, tested against a real Redis in e2e). `down`
/// makes every call fail, as an unreachable Redis does.
#[derive(Default)]
struct FakeStore {
    claimed: std::sync::Mutex<std::collections::HashSet<String>>,
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    locked: std::sync::Mutex<std::collections::HashSet<String>>,
    events: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    down: std::sync::atomic::AtomicBool,
}

impl FakeStore {
    fn up(&self) -> Result<(), crate::state::shared::Unavailable> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(crate::state::shared::Unavailable("connection refused".into()));
        }
        Ok(())
    }
}

impl crate::state::shared::SharedStore for FakeStore {
    fn claim_once(&self, key: &str, _ttl_ms: u64) -> Result<bool, crate::state::shared::Unavailable> {
        self.up()?;
        Ok(self.claimed.lock().unwrap().insert(key.to_string()))
    }
    fn lockout_left_ms(&self, keys: &[String]) -> Result<Option<u64>, crate::state::shared::Unavailable> {
        self.up()?;
        Ok(keys.iter().any(|k| self.locked.lock().unwrap().contains(k)).then_some(300_000))
    }
    fn auth_failure(&self, keys: &[String], limit: u32, _window_ms: u64, _lockout_ms: u64) -> Result<bool, crate::state::shared::Unavailable> {
        self.up()?;
        let mut locked = false;
        for k in keys {
            let mut failures = self.failures.lock().unwrap();
            let n = failures.entry(k.clone()).or_default();
            *n += 1;
            if *n >= limit {
                self.locked.lock().unwrap().insert(k.clone());
                locked = true;
            }
        }
        Ok(locked)
    }
    fn rate(&self, key: &str, _interval_ms: u64, burst: u32) -> Result<Option<u64>, crate::state::shared::Unavailable> {
        self.up()?;
        let mut events = self.events.lock().unwrap();
        let n = events.entry(key.to_string()).or_default();
        *n += 1;
        Ok((*n > burst).then_some(2_000))
    }
    fn note_runner(&self, _key: &str, _identity: &str) -> Result<(), crate::state::shared::Unavailable> {
        self.up()
    }
    fn spend(&self, _: &str, _: &crate::protocol::usage::UsageReport, _: &dyn Fn(&str) -> Option<String>, _: u64) -> Result<crate::state::spend::WindowTotals, crate::state::shared::Unavailable> {
        self.up()?;
        Ok(Default::default())
    }
}

/// A signed operator connect from device `dev`, answering challenge nonce `n`.
fn signed_connect(dev: &str, signature: &str) -> String {
    format!(r#"{{"type":"req","id":"1:c","method":"connect","params":{{"role":"operator","scopes":["operator.read"],"client":{{"id":"cli","mode":"cli"}},"device":{{"id":"{dev}","signature":"{signature}","signedAt":1795000000000,"nonce":"n"}}}}}}"#)
}

/// The first frame clawguard answered the client with, as JSON (none: nothing answered).
fn answered(out: &Output) -> Option<serde_json::Value> {
    let (_, payload) = frames(Sender::Server, &out.to_client).into_iter().find(|(op, _)| *op == OpCode::Text)?;
    serde_json::from_slice(&payload).ok()
}

/// One connect on a replica of `w` sharing `store`: what was forwarded and answered.
fn connect_on(w: &World, store: &FakeStore, frame: &str) -> (u32, Option<serde_json::Value>) {
    let env = Env { shared: Some(store), ..w.env() };
    let mut e = engine(w);
    e.on_gateway_bytes(&env, &gateway(CHALLENGE));
    let out = e.on_client_bytes(&env, &client(frame));
    (out.forwarded[0], answered(&out))
}

#[test]
fn issue19_a_signature_used_through_one_replica_is_refused_by_the_other() {
    let (a, b, store) = (rules(""), rules(""), FakeStore::default());
    let (forwarded, _) = connect_on(&a, &store, &signed_connect("dev1", "sig-1"));
    assert_eq!(forwarded, 1, "the first use passes");
    let (forwarded, answer) = connect_on(&b, &store, &signed_connect("dev1", "sig-1"));
    assert_eq!(forwarded, 0, "the replay through the other replica is not forwarded");
    let answer = answer.expect("refused in the gateway's shape");
    assert_eq!(answer["error"]["details"]["code"], "DEVICE_AUTH_REPLAYED", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("another replica"), "{answer}");
    assert_eq!(connect_on(&b, &store, &signed_connect("dev1", "sig-2")).0, 1, "a new signature passes");
}

#[test]
fn issue19_failures_spread_over_replicas_lock_out_on_both() {
    let (a, b, store) = (rules("[limits]\nauth_failures = 4\n"), rules("[limits]\nauth_failures = 4\n"), FakeStore::default());
    let mismatch = r#"{"type":"res","id":"1:c","ok":false,"error":{"code":"INVALID_REQUEST","message":"unauthorized","details":{"code":"AUTH_TOKEN_MISMATCH"}}}"#;
    for w in [&a, &b, &a, &b] {
        let env = Env { shared: Some(&store), ..w.env() };
        let mut e = engine(w);
        e.on_gateway_bytes(&env, &gateway(CHALLENGE));
        assert_eq!(e.on_client_bytes(&env, &client(CONNECT)).forwarded[0], 1);
        e.on_gateway_bytes(&env, &gateway(mismatch));
    }
    // Two failures through each replica: neither reached its own limit of 4, the store did.
    for w in [&a, &b] {
        let (forwarded, answer) = connect_on(w, &store, CONNECT);
        assert_eq!(forwarded, 0, "locked out through the shared count");
        assert_eq!(answer.unwrap()["error"]["details"]["limit"], "auth-lockout");
    }
}

#[test]
fn issue19_replay_and_lockout_refuse_when_the_store_is_down_and_recover() {
    let (w, store) = (rules(""), FakeStore::default());
    store.down.store(true, std::sync::atomic::Ordering::Relaxed);
    for frame in [signed_connect("dev1", "sig-1"), CONNECT.to_string()] {
        let (forwarded, answer) = connect_on(&w, &store, &frame);
        assert_eq!(forwarded, 0, "a connect the store cannot check is refused (fail closed)");
        let answer = answer.unwrap();
        assert_eq!(answer["error"]["details"]["code"], "STATE_UNAVAILABLE", "{answer}");
        assert_eq!(answer["error"]["retryable"], true, "{answer}");
    }
    store.down.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(connect_on(&w, &store, &signed_connect("dev1", "sig-1")).0, 1, "the store is back: the connect passes");
}

#[test]
fn issue19_shared_rate_limits_count_every_replica_and_fall_back_to_the_local_limit() {
    // Sends are not serialised, so only the limit can refuse the third.
    let policy = "[limits]\nsession_inference_per_minute = 2\n[sessions]\nserialize_sends = false\n";
    let (a, b, store) = (rules(policy), rules(policy), FakeStore::default());
    let send = |w: &World, n: usize| {
        let env = Env { shared: Some(&store), ..w.env() };
        let mut e = established(w);
        let frame = format!(r#"{{"type":"req","id":"s{n}","method":"chat.send","params":{{"sessionKey":"main","message":"hi","idempotencyKey":"k{n}"}}}}"#);
        e.on_client_bytes(&env, &client(&frame)).forwarded[0]
    };
    assert_eq!((send(&a, 1), send(&b, 2)), (1, 1), "two sends, one per replica, within the shared budget of 2");
    assert_eq!(send(&a, 3), 0, "the third is refused although replica a saw only one");
    store.down.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!((send(&b, 4), send(&b, 5)), (1, 1), "store down: replica b's own limit applies (it has two left)");
    assert_eq!(send(&b, 6), 0, "and holds");
}

/// The text messages of frames toward `sender`'s peer, as JSON.
fn texts(sender: Sender, chunks: &[Bytes]) -> Vec<serde_json::Value> {
    frames(sender, chunks).into_iter().filter(|(op, _)| *op == OpCode::Text).map(|(_, p)| serde_json::from_slice(&p).unwrap()).collect()
}

const ABORTING: &str = "[spend]\npoll = true\npoll_token = \"env:T\"\nabort_running = true\n[[spend.budget]]\nname = \"day\"\nperiod = \"day\"\nusd = 1.0\n";

/// A `chat.send` on `main` forwarded (`id`), and the gateway's answer that its run started.
fn run_started(e: &mut WsEngine, env: &Env<'_>, id: &str, run: &str) -> Output {
    fresh_report(env);
    let send = format!(r#"{{"type":"req","id":"{id}","method":"chat.send","params":{{"sessionKey":"main","message":"hi","idempotencyKey":"{run}"}}}}"#);
    assert_eq!(e.on_client_bytes(env, &client(&send)).forwarded[0], 1);
    e.on_gateway_bytes(env, &gateway(&format!(r#"{{"type":"res","id":"{id}","ok":true,"payload":{{"runId":"{run}","status":"started"}}}}"#)))
}

/// A poll report of today that adds nothing: spend counts as measured.
fn fresh_report(env: &Env<'_>) {
    let day = crate::state::spend::reset_time(env.now_ms)[..10].to_string();
    let report = crate::protocol::usage::UsageReport { day, usd: 0.0, tokens: 0, sessions: vec![], partial: false };
    env.guard.spend().observe(&report, &|_| None, env.now_ms);
}

/// Spend that exhausts the `day` budget.
fn trip(w: &World) {
    let events = w.guard.spend().charge("root", crate::state::spend::Cost { usd: 1.0, tokens: 0 }, w.env().now_ms);
    assert!(matches!(&events[..], [crate::state::spend::SpendEvent::Tripped(_)]), "{events:?}");
}

#[test]
fn issue19_abort_running_stops_the_runs_in_flight_when_a_budget_trips() {
    let w = rules(ABORTING);
    let env = w.env();
    let mut e = established(&w);
    let started = run_started(&mut e, &env, "s1", "run-1");
    assert_eq!((started.forwarded[1], started.to_gateway.len()), (1, 0), "the answer is delivered; within budget nothing is stopped");
    assert!(e.abort_runs(&env).to_gateway.is_empty(), "no budget is exhausted");
    trip(&w);
    let out = e.abort_runs(&env);
    let sent = texts(Sender::Client, &out.to_gateway);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0]["method"].as_str(), &sent[0]["params"]), (Some("chat.abort"), &serde_json::json!({"sessionKey": "main", "runId": "run-1"})));
    let d = &out.decided[0];
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Abort, "spend:day"));
    assert!(d.reason.contains("stopped run \"run-1\" on session \"main\": spend budget \"day\""), "{}", d.reason);
    // The gateway's answer to clawguard's own request is not the client's.
    let answer = format!(r#"{{"type":"res","id":"{}","ok":true,"payload":{{"ok":true,"aborted":true,"runIds":["run-1"]}}}}"#, sent[0]["id"].as_str().unwrap());
    let out = e.on_gateway_bytes(&env, &gateway(&answer));
    assert!(out.to_client.is_empty() && out.forwarded == [0, 0], "{out:?}");
    assert!(out.decided[0].reason.contains("the run was stopped"), "{:?}", out.decided);
    assert!(e.abort_runs(&env).to_gateway.is_empty(), "each run is stopped once");
    // The client's own requests still pass (chat.abort, history); new runs are refused.
    let refused = e.on_client_bytes(&env, &client(r#"{"type":"req","id":"s2","method":"chat.send","params":{"sessionKey":"main","message":"hi","idempotencyKey":"k2"}}"#));
    assert_eq!(answered(&refused).unwrap()["error"]["details"]["code"], "BUDGET_EXCEEDED");
}

#[test]
fn issue19_a_run_the_gateway_accepts_after_the_trip_is_stopped_on_its_answer_and_ended_runs_are_not() {
    let w = rules(ABORTING);
    let env = w.env();
    let mut e = established(&w);
    run_started(&mut e, &env, "s1", "run-1");
    e.on_gateway_bytes(&env, &gateway(r#"{"type":"event","event":"chat","payload":{"runId":"run-1","sessionKey":"agent:main:main","state":"final","seq":3}}"#));
    let send = r#"{"type":"req","id":"s2","method":"chat.send","params":{"sessionKey":"main","message":"hi","idempotencyKey":"run-2"}}"#;
    assert_eq!(e.on_client_bytes(&env, &client(send)).forwarded[0], 1);
    trip(&w);
    assert!(e.abort_runs(&env).to_gateway.is_empty(), "run-1 ended, run-2 is not accepted yet");
    let out = e.on_gateway_bytes(&env, &gateway(r#"{"type":"res","id":"s2","ok":true,"payload":{"runId":"run-2","status":"started"}}"#));
    assert_eq!(out.forwarded[1], 1, "the client gets its answer");
    let sent = texts(Sender::Client, &out.to_gateway);
    assert_eq!(sent.iter().map(|f| f["params"]["runId"].as_str().unwrap()).collect::<Vec<_>>(), ["run-2"]);
}

#[test]
fn issue19_without_abort_running_or_in_dry_run_runs_are_not_stopped() {
    let w = rules("[spend]\npoll = true\npoll_token = \"env:T\"\n[[spend.budget]]\nname = \"day\"\nperiod = \"day\"\nusd = 1.0\n");
    let env = w.env();
    let mut e = established(&w);
    run_started(&mut e, &env, "s1", "run-1");
    trip(&w);
    assert!(e.abort_runs(&env).decided.is_empty(), "abort_running is off: runs go on");
    let policy = LoadedPolicy::parse("t.toml", &format!("mode = \"dry-run\"\n{ROOT}{ABORTING}")).unwrap().policy;
    let w = World { guard: Guard::new(&policy), state: Default::default() };
    let env = w.env();
    let mut e = established(&w);
    run_started(&mut e, &env, "s1", "run-1");
    trip(&w);
    let out = e.abort_runs(&env);
    assert!(out.to_gateway.is_empty());
    assert_eq!(out.decided.iter().map(|d| (d.verdict, d.rule.as_str())).collect::<Vec<_>>(), [(Verdict::WouldDeny, "spend:day")]);
}

#[test]
fn issue19_a_clients_sessions_usage_answer_for_today_charges_its_sessions() {
    let w = rules("[spend]\npoll = true\npoll_token = \"env:T\"\n[[spend.budget]]\nname = \"day\"\nperiod = \"day\"\nusd = 1.0\n");
    let env = w.env();
    let today = &crate::state::spend::reset_time(env.now_ms)[..10];
    let mut e = established(&w);
    run_started(&mut e, &env, "s1", "run-1");
    let ask = |id: &str, day: &str| format!(r#"{{"type":"req","id":"{id}","method":"sessions.usage","params":{{"startDate":"{day}","endDate":"{day}","mode":"utc"}}}}"#);
    let answer = |id: &str, day: &str| format!(r#"{{"type":"res","id":"{id}","ok":true,"payload":{{"startDate":"{day}","endDate":"{day}","sessions":[{{"key":"agent:main:main","usage":{{"totalCost":1.5,"totalTokens":900}}}}],"totals":{{"totalCost":9.0,"totalTokens":9000}}}}}}"#);
    // Yesterday's figures are not today's spend.
    e.on_client_bytes(&env, &client(&ask("u0", "2026-01-01")));
    assert!(e.on_gateway_bytes(&env, &gateway(&answer("u0", "2026-01-01"))).notices.is_empty());
    assert_eq!(w.guard.spend().status(env.now_ms)[0].usd, 0.0);
    assert_eq!(e.on_client_bytes(&env, &client(&ask("u1", today))).forwarded[0], 1);
    let out = e.on_gateway_bytes(&env, &gateway(&answer("u1", today)));
    assert_eq!(out.forwarded[1], 1, "the answer is delivered as it is");
    assert!(matches!(&out.notices[..], [Notice::Spend(crate::state::spend::SpendEvent::Tripped(t))] if t.budget == "day"), "{:?}", out.notices);
    assert_eq!(w.guard.spend().status(env.now_ms)[0].usd, 1.5, "its sessions count, not its totals (a client sees only some sessions)");
    // The same answer again adds nothing; an answer that cannot be read says so.
    e.on_client_bytes(&env, &client(&ask("u2", today)));
    assert!(e.on_gateway_bytes(&env, &gateway(&answer("u2", today))).notices.is_empty());
    e.on_client_bytes(&env, &client(&ask("u3", today)));
    let out = e.on_gateway_bytes(&env, &gateway(r#"{"type":"res","id":"u3","ok":true,"payload":{"startDate":"x"}}"#));
    assert!(matches!(&out.notices[..], [Notice::SpendUnread { reason }] if reason.contains("cannot be read for spend")), "{:?}", out.notices);
}
