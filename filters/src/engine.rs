//! One WebSocket connection between a client and the gateway, as a state machine.
//!
//! The transport hands the engine whatever bytes arrive from either side, in any
//! chunking; the engine returns the bytes to send each way. Whole messages are
//! judged; a forwarded message is its original frames, byte for byte. The engine
//! only ever releases whole frames, so a frame it injects (a refusal, a close)
//! never lands inside another.
//!
//! Handshake tracking (`openclaw-protocol.md` §1.3): the first client `req` named
//! `connect` starts the handshake; the gateway's `res` to it with a `hello-ok`
//! payload ends it and raises the client message cap from the pre-auth size to
//! the full size.

use crate::gateway::{error_response, is_hello_ok, parse_frame, GatewayFrame};
use crate::rules::{Decision, Rules};
use crate::ws::{close_payload, encode_frame, parse_close_payload, Assembler, FrameParser, Item, Message, OpCode, Sender, WsError};
use bytes::{Bytes, BytesMut};
use clawguard_policies::RuleAction;

/// Message size caps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest client message before `hello-ok`.
    pub handshake_message: usize,
    /// Largest message after `hello-ok`, and from the gateway at any time.
    pub message: usize,
}

/// Where the connection is in the gateway handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// No `connect` seen yet.
    AwaitingConnect,
    /// `connect` sent; waiting for the gateway's answer to this request id.
    Connecting {
        /// The id of the `connect` request.
        connect_id: String,
    },
    /// `hello-ok` received.
    Established,
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → gateway.
    ClientToGateway,
    /// Gateway → client.
    GatewayToClient,
}

impl Direction {
    /// A short label (`c2s` / `s2c`) for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Direction::ClientToGateway => "c2s",
            Direction::GatewayToClient => "s2c",
        }
    }
}

/// The verdict on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Sent on unchanged.
    Forward,
    /// Not sent, nothing said.
    Drop,
    /// Not sent; the client got a synthetic answer.
    Reply,
    /// The connection was closed.
    Close,
}

impl Verdict {
    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Forward => "forward",
            Verdict::Drop => "drop",
            Verdict::Reply => "reply",
            Verdict::Close => "close",
        }
    }
}

/// A verdict other than a plain forward, with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// Which way the message was going.
    pub direction: Direction,
    /// What happened to it.
    pub verdict: Verdict,
    /// The rule (or protocol check) responsible.
    pub rule: String,
    /// Why, in words.
    pub reason: String,
}

/// What one call into the engine wants written.
#[derive(Debug, Default)]
pub struct Output {
    /// Whole frames for the gateway, in order.
    pub to_gateway: Vec<Bytes>,
    /// Whole frames for the client, in order.
    pub to_client: Vec<Bytes>,
    /// Messages forwarded unchanged: `[client→gateway, gateway→client]`.
    pub forwarded: [u32; 2],
    /// Every other verdict, explained.
    pub decided: Vec<Decided>,
}

impl Output {
    fn forward(&mut self, dir: Direction, frames: Vec<Bytes>) {
        let (dest, i) = match dir {
            Direction::ClientToGateway => (&mut self.to_gateway, 0),
            Direction::GatewayToClient => (&mut self.to_client, 1),
        };
        dest.extend(frames);
        self.forwarded[i] += 1;
    }
}

/// Joins frames into one buffer for a single write (no copy for a single frame).
pub fn join(mut frames: Vec<Bytes>) -> Option<Bytes> {
    match frames.len() {
        0 => None,
        1 => frames.pop(),
        _ => {
            let mut out = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
            frames.iter().for_each(|f| out.extend_from_slice(f));
            Some(out.freeze())
        }
    }
}

/// The state of one proxied WebSocket connection.
#[derive(Debug)]
pub struct WsEngine {
    limits: Limits,
    c2s: FrameParser,
    c2s_messages: Assembler,
    s2c: FrameParser,
    s2c_messages: Assembler,
    phase: Phase,
    /// clawguard has sent close frames both ways; input is now ignored.
    closing: bool,
    /// The client answered clawguard's close (or broke the protocol while closing).
    done: bool,
    mask_state: u64,
}

impl WsEngine {
    /// A new connection, just after the 101. `seed` seeds the masking keys of
    /// frames clawguard itself sends to the gateway.
    pub fn new(limits: Limits, seed: u64) -> Self {
        WsEngine {
            limits,
            c2s: FrameParser::new(Sender::Client, limits.handshake_message),
            c2s_messages: Assembler::new(limits.handshake_message),
            s2c: FrameParser::new(Sender::Server, limits.message),
            s2c_messages: Assembler::new(limits.message),
            phase: Phase::AwaitingConnect,
            closing: false,
            done: false,
            mask_state: seed,
        }
    }

    /// The handshake phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Whether clawguard has closed the connection and is waiting for the client's close.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether the connection is finished and can be dropped.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Closes the connection from clawguard's side (shutdown, idle timeout, revocation):
    /// a close frame with `code` and `reason` to both peers.
    pub fn close(&mut self, code: u16, reason: &str) -> Output {
        let mut out = Output::default();
        self.start_close(&mut out, (code, reason), (code, reason));
        out
    }

    /// Bytes from the client.
    pub fn on_client_bytes(&mut self, rules: &Rules, data: &[u8]) -> Output {
        let mut out = Output::default();
        if self.done {
            return out;
        }
        self.c2s.push(data);
        while !self.done {
            match next_item(&mut self.c2s, &mut self.c2s_messages) {
                Ok(None) => break,
                // Waiting for the client's answer to our close; everything else is discarded,
                // and a protocol error while closing just ends the connection.
                Ok(Some(item)) if self.closing => self.done = matches!(item, Item::Control(f) if f.opcode == OpCode::Close),
                Err(_) if self.closing => self.done = true,
                Ok(Some(Item::Control(f))) => out.to_gateway.push(f.raw),
                Ok(Some(Item::Message(m))) => self.client_message(rules, m, &mut out),
                Err(e) => {
                    let reason = e.to_string();
                    self.start_close(&mut out, (e.close_code(), &reason), (e.close_code(), &reason));
                    out.decided.push(Decided { direction: Direction::ClientToGateway, verdict: Verdict::Close, rule: "websocket-protocol".into(), reason });
                }
            }
        }
        out
    }

    /// Bytes from the gateway.
    pub fn on_gateway_bytes(&mut self, rules: &Rules, data: &[u8]) -> Output {
        let mut out = Output::default();
        if self.closing || self.done {
            return out;
        }
        self.s2c.push(data);
        while !self.closing {
            match next_item(&mut self.s2c, &mut self.s2c_messages) {
                Ok(None) => break,
                Ok(Some(Item::Control(f))) => out.to_client.push(f.raw),
                Ok(Some(Item::Message(m))) => self.gateway_message(rules, m, &mut out),
                Err(e) => {
                    let reason = format!("upstream protocol error: {e}");
                    self.start_close(&mut out, (1011, &reason), (e.close_code(), &e.to_string()));
                    out.decided.push(Decided { direction: Direction::GatewayToClient, verdict: Verdict::Close, rule: "websocket-protocol".into(), reason });
                }
            }
        }
        out
    }

    fn client_message(&mut self, rules: &Rules, m: Message, out: &mut Output) {
        let dir = Direction::ClientToGateway;
        if self.phase == Phase::Established && !rules.inspects_client() {
            return out.forward(dir, m.frames);
        }
        let frame = match m.opcode {
            OpCode::Text => parse_frame(&m.payload).map_err(|e| e.to_string()),
            _ => Err("binary message: the gateway protocol is JSON text".to_string()),
        };
        let (id, method) = match frame {
            Ok(GatewayFrame::Req { id, method, .. }) => (id, method),
            Ok(_) => return out.forward(dir, m.frames),
            Err(why) if rules.inspects_client() => {
                // Rules are in force and this message cannot be judged: refuse it.
                let reason = format!("clawguard cannot evaluate this frame: {why}");
                let details = serde_json::json!({ "code": "UNPARSEABLE_FRAME", "source": "clawguard", "rule": "frame-syntax" });
                out.to_client.push(text_frame(&error_response("invalid", "INVALID_REQUEST", &reason, details)));
                out.decided.push(Decided { direction: dir, verdict: Verdict::Reply, rule: "frame-syntax".into(), reason });
                return;
            }
            // The gateway answers malformed frames itself.
            Err(_) => return out.forward(dir, m.frames),
        };
        let is_connect = method == "connect";
        if self.phase == Phase::AwaitingConnect && is_connect {
            self.phase = Phase::Connecting { connect_id: id.to_string() };
        }
        match rules.for_request(&method) {
            Decision::Forward => out.forward(dir, m.frames),
            Decision::Act { action: RuleAction::Drop, rule, reason } => {
                out.decided.push(Decided { direction: dir, verdict: Verdict::Drop, rule, reason });
            }
            Decision::Act { action: RuleAction::Deny, rule, reason } => {
                let details = serde_json::json!({ "code": "POLICY_DENIED", "source": "clawguard", "rule": rule });
                out.to_client.push(text_frame(&error_response(&id, "FORBIDDEN", &reason, details)));
                out.decided.push(Decided { direction: dir, verdict: Verdict::Reply, rule, reason: reason.clone() });
                if is_connect {
                    // A refused connect ends the connection, as the gateway's own refusals do.
                    self.start_close(out, (1008, &reason), (1008, &reason));
                }
            }
            Decision::Act { action: RuleAction::Close, rule, reason } => {
                self.start_close(out, (1008, &reason), (1008, &reason));
                out.decided.push(Decided { direction: dir, verdict: Verdict::Close, rule, reason });
            }
        }
    }

    fn gateway_message(&mut self, rules: &Rules, m: Message, out: &mut Output) {
        let dir = Direction::GatewayToClient;
        let connecting = matches!(self.phase, Phase::Connecting { .. });
        if !connecting && !rules.inspects_gateway() {
            return out.forward(dir, m.frames);
        }
        let parsed = if m.opcode == OpCode::Text { parse_frame(&m.payload).ok() } else { None };
        match parsed {
            Some(GatewayFrame::Res { id, ok, payload }) => {
                if let Phase::Connecting { connect_id } = &self.phase {
                    if *connect_id == id && ok && is_hello_ok(payload) {
                        self.phase = Phase::Established;
                        self.c2s.set_max_payload(self.limits.message);
                        self.c2s_messages.set_max_message(self.limits.message);
                    }
                }
                out.forward(dir, m.frames)
            }
            Some(GatewayFrame::Event { event, .. }) => match rules.for_event(&event) {
                Decision::Forward => out.forward(dir, m.frames),
                Decision::Act { action: RuleAction::Close, rule, reason } => {
                    self.start_close(out, (1008, &reason), (1008, &reason));
                    out.decided.push(Decided { direction: dir, verdict: Verdict::Close, rule, reason });
                }
                // Deny is refused for gateway rules when the policy is loaded; drop either way.
                Decision::Act { rule, reason, .. } => out.decided.push(Decided { direction: dir, verdict: Verdict::Drop, rule, reason }),
            },
            Some(GatewayFrame::Req { .. }) => out.forward(dir, m.frames),
            None if rules.inspects_gateway() => out.decided.push(Decided {
                direction: dir,
                verdict: Verdict::Drop,
                rule: "frame-syntax".into(),
                reason: "gateway message is not a gateway frame and cannot be evaluated".into(),
            }),
            None => out.forward(dir, m.frames),
        }
    }

    fn start_close(&mut self, out: &mut Output, client: (u16, &str), gateway: (u16, &str)) {
        if self.closing || self.done {
            return;
        }
        self.closing = true;
        out.to_client.push(encode_frame(true, OpCode::Close, &close_payload(client.0, client.1), None));
        let mask = self.next_mask();
        out.to_gateway.push(encode_frame(true, OpCode::Close, &close_payload(gateway.0, gateway.1), Some(mask)));
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // splitmix64
        self.mask_state = self.mask_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.mask_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let z = z ^ (z >> 31);
        (z as u32).to_le_bytes()
    }
}

/// The next complete item from one direction (`Ok(None)`: more bytes needed). Close frames
/// have their payload checked.
fn next_item(parser: &mut FrameParser, messages: &mut Assembler) -> Result<Option<Item>, WsError> {
    while let Some(frame) = parser.next_frame()? {
        if let Some(item) = messages.push(frame)? {
            if let Item::Control(f) = &item {
                if f.opcode == OpCode::Close {
                    parse_close_payload(&f.payload)?;
                }
            }
            return Ok(Some(item));
        }
    }
    Ok(None)
}

fn text_frame(payload: &[u8]) -> Bytes {
    encode_frame(true, OpCode::Text, payload, None)
}

#[cfg(test)]
mod tests;
