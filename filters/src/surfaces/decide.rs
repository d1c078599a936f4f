//! One decision, explained: what clawguard does with a frame on a connection that has
//! already seen some frames. The connection is simulated by the same [`WsEngine`] the proxy
//! runs, frame by frame; this is what `clawguard decide` prints and what the case corpus checks.

use crate::surfaces::access::{Env, Guard};
use crate::surfaces::engine::{Direction, Limits, Verdict, WsEngine};
use crate::checks::identity::{Evidence, Resolution};
use crate::protocol::scopes::ScopeSet;
use crate::protocol::peer::Peer;
use crate::codec::ws::{encode_frame, FrameParser, OpCode, Sender};
use serde::Serialize;
use serde_json::{json, Value};

/// Who sends a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The client.
    Client,
    /// The gateway.
    Gateway,
}

/// A connection to simulate: who the peer is, what came before, and the frame to judge.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The client's transport identity.
    pub peer: Peer,
    /// An identity to pin instead of resolving one.
    pub identity: Option<String>,
    /// Frames before the one judged, in order.
    pub after: Vec<(Origin, String)>,
    /// A node whose pin an operator revokes after `after`, before `frame`.
    pub revoke: Option<String>,
    /// Who sends the frame to judge.
    pub from: Origin,
    /// The frame to judge (none: judge only the revocation's effect).
    pub frame: Option<String>,
}

impl Scenario {
    /// A scenario for `frame` from `peer` (or as the pinned `identity`). Without `after`, the
    /// connection is assumed to have completed a handshake granting the identity's whole
    /// ceiling; for a `connect` frame, only the gateway's challenge is assumed, carrying the
    /// connect's own device nonce.
    pub fn new(guard: &Guard, peer: Peer, identity: Option<String>, after: Option<Vec<(Origin, String)>>, frame: String) -> Result<Self, DecideError> {
        let after = match after {
            Some(after) => after,
            None => {
                let ceiling = match &identity {
                    Some(name) => guard.identities.by_name(name).ok_or_else(|| DecideError::UnknownIdentity(name.clone()))?.ceiling,
                    None => guard.identities.resolve(Evidence { peer: &peer, device_id: None, token_sha256: None }).identity.ceiling,
                };
                let value: Value = serde_json::from_str(&frame).unwrap_or(Value::Null);
                assumed_handshake(&value, ceiling)
            }
        };
        Ok(Scenario { peer, identity, after, revoke: None, from: Origin::Client, frame: Some(frame) })
    }
}

/// The frames of a completed handshake granting `scopes` (for a `connect`: the challenge only).
fn assumed_handshake(frame: &Value, scopes: ScopeSet) -> Vec<(Origin, String)> {
    let nonce = frame.pointer("/params/device/nonce").and_then(Value::as_str).unwrap_or("clawguard-decide");
    let challenge = json!({"type":"event","event":"connect.challenge","payload":{"nonce":nonce,"ts":0}});
    let mut after = vec![(Origin::Gateway, challenge.to_string())];
    if frame["method"] != "connect" {
        let scopes = scopes.names();
        let connect = json!({"type":"req","id":"decide-connect","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"role":"operator","scopes":scopes}});
        let hello = json!({"type":"res","id":"decide-connect","ok":true,"payload":{"type":"hello-ok","auth":{"role":"operator","scopes":scopes}}});
        after.push((Origin::Client, connect.to_string()));
        after.push((Origin::Gateway, hello.to_string()));
    }
    after
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// `allow`, `rewrite`, `would-deny` (dry-run), `deny`, `drop`, `close`, or `answer`
    /// (a gateway message not delivered, answered by clawguard in the recipient's name).
    pub decision: &'static str,
    /// The rule responsible, if any.
    pub rule: Option<String>,
    /// Why, in words.
    pub reason: Option<String>,
    /// The identity the client was judged as, and how it was chosen.
    pub identity: String,
    /// How the identity was chosen.
    pub identity_reason: String,
    /// The synthetic answer sent to the client, if any.
    pub reply: Option<Value>,
    /// The close sent to the client, if any: `{"code","reason"}`.
    pub close: Option<Value>,
    /// The frame as forwarded, when clawguard rewrote it.
    pub forwarded: Option<Value>,
    /// Frames clawguard itself sent the gateway (answers in a node's name).
    pub to_gateway: Vec<Value>,
}

impl Decision {
    /// Whether the frame reaches its destination (allow, rewrite, would-deny).
    pub fn allowed(&self) -> bool {
        matches!(self.decision, "allow" | "rewrite" | "would-deny")
    }
}

/// Why a scenario cannot be decided.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// `--identity` names no identity of the policy.
    #[error("identity {0:?} is not defined by the policy")]
    UnknownIdentity(String),
    /// A frame before the judged one already ended the connection.
    #[error("frame {index} of the preceding frames already ended the connection ({why}); nothing after it is judged")]
    EndedEarly {
        /// 1-based position.
        index: usize,
        /// What ended it.
        why: String,
    },
}

fn frames_text(frames: &[bytes::Bytes]) -> (Vec<Value>, Option<Value>) {
    let mut texts = Vec::new();
    let mut close = None;
    // One parser over the whole output: a large frame may come as its header and its payload.
    let mut p = FrameParser::new(Sender::Server, usize::MAX >> 1);
    for chunk in frames {
        p.push(chunk);
        while let Ok(Some(f)) = p.next_frame() {
            match f.opcode {
                OpCode::Text => texts.push(serde_json::from_slice(&f.payload).unwrap_or(Value::Null)),
                OpCode::Close if f.payload.len() >= 2 => {
                    let code = u16::from_be_bytes([f.payload[0], f.payload[1]]);
                    close = Some(json!({ "code": code, "reason": String::from_utf8_lossy(&f.payload[2..]) }));
                }
                _ => {}
            }
        }
    }
    (texts, close)
}

fn parse_masked(frames: &[bytes::Bytes]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut p = FrameParser::new(Sender::Client, usize::MAX >> 1);
    for chunk in frames {
        p.push(chunk);
        while let Ok(Some(f)) = p.next_frame() {
            if f.opcode == OpCode::Text {
                out.push(serde_json::from_slice(&f.payload).unwrap_or(Value::Null));
            }
        }
    }
    out
}

/// Judges `scenario.frame` after `scenario.after` (and the revocation, if any), with the
/// policy and shared state in `env`.
pub fn decide(env: &Env<'_>, scenario: &Scenario) -> Result<Decision, DecideError> {
    let guard = env.guard;
    let limits = Limits { handshake_message: 64 * 1024, message: 25 * 1024 * 1024, fragments: 4096 };
    let mut engine = WsEngine::new(env, scenario.peer.clone(), limits, 0x5eed);
    if let Some(name) = &scenario.identity {
        let identity = guard.identities.by_name(name).ok_or_else(|| DecideError::UnknownIdentity(name.clone()))?;
        let why = format!("identity {name:?} (given)");
        engine.access_mut().pin_identity(Resolution { identity, why: why.into() });
    }
    for (i, (from, text)) in scenario.after.iter().enumerate() {
        let out = match from {
            Origin::Client => engine.on_client_bytes(env, &encode_frame(true, OpCode::Text, text.as_bytes(), Some([1, 2, 3, 4]))),
            Origin::Gateway => engine.on_gateway_bytes(env, &encode_frame(true, OpCode::Text, text.as_bytes(), None)),
        };
        if engine.is_closing() {
            let why = out.decided.last().map(|d| d.reason.clone()).unwrap_or_else(|| "closed".into());
            return Err(DecideError::EndedEarly { index: i + 1, why });
        }
    }
    let mut out = Default::default();
    if let Some(node) = &scenario.revoke {
        env.pins.apply(crate::state::nodes::PinOp::Revoke { device_id: node.clone(), at_ms: env.now_ms }, &guard.nodes);
        out = engine.recheck(env);
    }
    let judged = match (&scenario.frame, engine.is_closing()) {
        (Some(frame), false) => Some(match scenario.from {
            Origin::Client => engine.on_client_bytes(env, &encode_frame(true, OpCode::Text, frame.as_bytes(), Some([1, 2, 3, 4]))),
            Origin::Gateway => engine.on_gateway_bytes(env, &encode_frame(true, OpCode::Text, frame.as_bytes(), None)),
        }),
        _ => None,
    };
    if let Some(judged) = judged {
        out = judged;
    }
    let direction = match (&scenario.frame, scenario.from) {
        (Some(_), Origin::Client) => Direction::ClientToGateway,
        _ => Direction::GatewayToClient,
    };
    let resolution = engine.access().resolution();
    let (replies, close) = frames_text(&out.to_client);
    let sent_up = parse_masked(&out.to_gateway);
    let mine = out.decided.iter().find(|d| d.direction == direction);
    let decision = match mine.map(|d| d.verdict) {
        None | Some(Verdict::Forward) => "allow",
        Some(Verdict::Rewrite) => "rewrite",
        Some(Verdict::WouldDeny) => "would-deny",
        Some(Verdict::Abort) => "abort",
        Some(Verdict::Reply) if direction == Direction::GatewayToClient => "answer",
        Some(Verdict::Reply) => "deny",
        Some(Verdict::Drop) => "drop",
        Some(Verdict::Close) if replies.is_empty() => "close",
        Some(Verdict::Close) => "deny",
    };
    let forwarded = match (mine.map(|d| d.verdict), direction) {
        (Some(Verdict::Rewrite), Direction::ClientToGateway) => sent_up.first().cloned(),
        (Some(Verdict::Rewrite), Direction::GatewayToClient) => replies.first().cloned(),
        _ => None,
    };
    let to_gateway = if direction == Direction::GatewayToClient { sent_up } else { Vec::new() };
    let reply = if direction == Direction::ClientToGateway { replies.into_iter().next() } else { None };
    Ok(Decision {
        decision,
        rule: mine.map(|d| d.rule.clone()),
        reason: mine.map(|d| d.reason.clone()),
        identity: resolution.identity.name.clone(),
        identity_reason: resolution.why.to_string(),
        reply,
        close,
        forwarded,
        to_gateway,
    })
}
