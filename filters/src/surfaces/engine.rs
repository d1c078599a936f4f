//! One WebSocket connection between a client and the gateway, as a state machine.
//!
//! The transport hands the engine whatever bytes arrive from either side, in any
//! chunking; the engine returns the bytes to send each way. Whole messages are
//! judged; a forwarded message is its original frame, byte for byte (a fragmented one is
//! forwarded as one frame encoded from its payload: the fragments are not kept). The engine
//! only ever releases whole frames, so a frame it injects (a refusal, a close)
//! never lands inside another.
//!
//! Handshake tracking (`openclaw-protocol.md` §1.3): the first client `req` named
//! `connect` starts the handshake; the gateway's `res` to it with a `hello-ok`
//! payload ends it and raises the client message cap from the pre-auth size to
//! the full size.

use crate::surfaces::access::{Access, Action, Env, Judgement, Notice};
use crate::state::limits::Flow;
use crate::protocol::peer::Peer;
use crate::codec::ws::{close_payload, encode_frame, parse_close_payload, Assembler, FrameParser, Item, Message, OpCode, Sender, Wire, WsError};
use bytes::{Bytes, BytesMut};

/// Message size caps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest client message before `hello-ok`.
    pub handshake_message: usize,
    /// Largest message after `hello-ok`, and from the gateway at any time.
    pub message: usize,
    /// Most fragments of one message, either way.
    pub fragments: u32,
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
    /// Forwarded with changes (a narrowed `connect`).
    Rewrite,
    /// Forwarded, but would have been refused (dry-run).
    WouldDeny,
    /// A run in flight was stopped: clawguard sent `chat.abort` in the connection's name.
    Abort,
}

impl Verdict {
    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Forward => "forward",
            Verdict::Drop => "drop",
            Verdict::Reply => "reply",
            Verdict::Close => "close",
            Verdict::Rewrite => "rewrite",
            Verdict::WouldDeny => "would_deny",
            Verdict::Abort => "abort",
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
    /// The method of the request (or the event's name) the verdict was on, when it reads.
    pub target: Option<String>,
}

/// The method of a request or the name of an event in a text message (for the audit log).
fn message_target(m: &Message) -> Option<String> {
    if m.opcode != OpCode::Text {
        return None;
    }
    match crate::protocol::gateway::parse_frame(&m.payload).ok()? {
        crate::protocol::gateway::GatewayFrame::Req { method, .. } => Some(method.to_string()),
        crate::protocol::gateway::GatewayFrame::Event { event, .. } => Some(event.to_string()),
        _ => None,
    }
}

/// What one call into the engine wants written.
#[derive(Debug, Default)]
pub struct Output {
    /// Frames for the gateway, in order; together always whole frames (a large frame may
    /// come as its header and its payload, so the payload is not copied).
    pub to_gateway: Vec<Bytes>,
    /// Frames for the client, in order, likewise.
    pub to_client: Vec<Bytes>,
    /// Messages forwarded unchanged: `[client→gateway, gateway→client]`.
    pub forwarded: [u32; 2],
    /// Every other verdict, explained.
    pub decided: Vec<Decided>,
    /// Things worth logging about the connection (handshake done, version mismatch).
    pub notices: Vec<Notice>,
    /// Client requests forwarded that the audit log records as allowed, by method.
    pub allowed: Vec<String>,
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

/// Frames under this size are joined for one write; larger ones are written as they are.
const JOIN_BELOW: usize = 16 * 1024;

/// The writes for `frames`: runs of small frames joined into one buffer, a large frame (a big
/// message's payload) passed on without a copy.
pub fn coalesce(frames: Vec<Bytes>) -> Vec<Bytes> {
    if frames.len() <= 1 {
        return frames;
    }
    let mut out = Vec::new();
    let mut run = BytesMut::new();
    for frame in frames {
        if frame.len() >= JOIN_BELOW {
            if !run.is_empty() {
                out.push(run.split().freeze());
            }
            out.push(frame);
        } else {
            run.extend_from_slice(&frame);
        }
    }
    if !run.is_empty() {
        out.push(run.freeze());
    }
    out
}

/// The state of one proxied WebSocket connection.
#[derive(Debug)]
pub struct WsEngine {
    limits: Limits,
    c2s: FrameParser,
    c2s_messages: Assembler,
    s2c: FrameParser,
    s2c_messages: Assembler,
    access: Access,
    /// clawguard has sent close frames both ways; input is now ignored.
    closing: bool,
    /// The client broke the protocol: its bytes can no longer be framed and are discarded
    /// while the close grace runs (so the client still gets the close frame).
    client_unreadable: bool,
    /// The client answered clawguard's close (or broke the protocol while closing).
    done: bool,
    mask_state: u64,
    /// This connection's message and byte limits.
    flow: crate::state::limits::ConnectionLimits<governor::clock::DefaultClock>,
    /// Messages over a per-connection limit in a row, per direction (client, gateway).
    strikes: [u32; 2],
}

impl WsEngine {
    /// The name of the connection's identity.
    pub fn identity_name(&self) -> &str {
        &self.access.resolution().identity.name
    }

    /// A new connection from `peer`, just after the 101. `seed` seeds the masking keys of
    /// frames clawguard itself sends to the gateway.
    pub fn new(env: &Env<'_>, peer: Peer, limits: Limits, seed: u64) -> Self {
        WsEngine {
            limits,
            c2s: FrameParser::new(Sender::Client, limits.handshake_message),
            c2s_messages: Assembler::new(limits.handshake_message, limits.fragments),
            s2c: FrameParser::new(Sender::Server, limits.message),
            s2c_messages: Assembler::new(limits.message, limits.fragments),
            access: Access::new(env, peer),
            closing: false,
            client_unreadable: false,
            done: false,
            mask_state: seed,
            flow: env.guard.clients.connection(),
            strikes: [0, 0],
        }
    }

    /// The connection's access state (identity, handshake, scopes).
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The access state, to pin an identity before any frame (`decide --identity`).
    pub fn access_mut(&mut self) -> &mut Access {
        &mut self.access
    }

    /// Whether clawguard has closed the connection and is waiting for the client's close.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether the connection is finished and can be dropped.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Stops reading the client (its bytes cannot be framed any more) and frees what it sent.
    fn discard_client(&mut self) {
        self.client_unreadable = true;
        self.c2s = FrameParser::new(Sender::Client, 0);
        self.c2s_messages = Assembler::new(0, 1);
    }

    /// Closes the connection from clawguard's side (shutdown, idle timeout, revocation):
    /// a close frame with `code` and `reason` to both peers.
    pub fn close(&mut self, code: u16, reason: &str) -> Output {
        let mut out = Output::default();
        self.start_close(&mut out, (code, reason), (code, reason));
        out
    }

    /// Re-judges the connection after shared state changed (the node pin store): a node whose
    /// pin was revoked is closed with 1008.
    pub fn recheck(&mut self, env: &Env<'_>) -> Output {
        let mut out = Output::default();
        if self.closing || self.done {
            return out;
        }
        if let Some(judgement) = self.access.recheck(env) {
            self.apply(Direction::GatewayToClient, judgement, None, &mut out);
        }
        out
    }

    /// Re-judges the connection under a new policy version ([`Access::rebind`]): closed with
    /// 1008 when its identity, role or granted scopes no longer hold.
    pub fn rebind(&mut self, env: &Env<'_>) -> Output {
        let mut out = Output::default();
        if self.closing || self.done {
            return out;
        }
        if let Some(judgement) = self.access.rebind(env) {
            self.apply(Direction::GatewayToClient, judgement, None, &mut out);
        }
        out
    }

    /// Stops the runs in flight this connection started when its identity is past an enforced
    /// spend budget (`spend.abort_running`): one `chat.abort` per run, in the connection's
    /// name; in dry-run or past a shadow budget, each is recorded as would-abort instead.
    pub fn abort_runs(&mut self, env: &Env<'_>) -> Output {
        let mut out = Output::default();
        self.abort_if_over_budget(env, &mut out);
        out
    }

    fn abort_if_over_budget(&mut self, env: &Env<'_>, out: &mut Output) {
        if self.closing || self.done || !env.guard.abort_running || !self.access.runs_mut().has_runs() {
            return;
        }
        let check = env.guard.spend().check(self.identity_name(), env.now_ms);
        let (exceeded, enforce) = match (check.refused, check.shadowed.into_iter().next()) {
            (Some(e), _) => (e, self.access.enforces(env)),
            (None, Some(e)) => (e, false),
            (None, None) => return,
        };
        let rule = format!("spend:{}", exceeded.budget);
        let target = Some("chat.abort".to_string());
        if !enforce {
            for run in self.access.runs_mut().runs() {
                let reason = format!("would stop run {:?} on session {:?}: {}", run.run_id, run.session_key, exceeded.reason());
                out.decided.push(Decided { direction: Direction::ClientToGateway, verdict: Verdict::WouldDeny, rule: rule.clone(), reason, target: target.clone() });
            }
            return;
        }
        let tag = self.next_mask();
        for (frame, run) in self.access.runs_mut().abort_all(u32::from_le_bytes(tag)) {
            let mask = self.next_mask();
            out.to_gateway.push(encode_frame(true, OpCode::Text, &frame, Some(mask)));
            let reason = format!("stopped run {:?} on session {:?}: {}", run.run_id, run.session_key, exceeded.reason());
            out.decided.push(Decided { direction: Direction::ClientToGateway, verdict: Verdict::Abort, rule: rule.clone(), reason, target: target.clone() });
        }
    }

    /// Bytes from the client.
    pub fn on_client_bytes(&mut self, env: &Env<'_>, data: &[u8]) -> Output {
        let mut out = Output::default();
        if self.done || self.client_unreadable {
            return out;
        }
        self.c2s.push(data);
        while !self.done {
            match next_item(&mut self.c2s, &mut self.c2s_messages) {
                Ok(None) => break,
                // Waiting for the client's answer to our close; everything else is discarded.
                Ok(Some(item)) if self.closing => self.done = matches!(item, Item::Control(f) if f.opcode == OpCode::Close),
                Err(_) if self.closing => {
                    self.discard_client();
                    break;
                }
                Ok(Some(Item::Control(f))) => out.to_gateway.push(f.raw),
                Ok(Some(Item::Message(m))) => self.client_message(env, m, &mut out),
                Err(e) => {
                    let reason = e.to_string();
                    // The close goes out; the connection stays open for the close grace so a
                    // client still sending receives it, but nothing more it sends is read.
                    self.discard_client();
                    self.start_close(&mut out, (e.close_code(), &reason), (e.close_code(), &reason));
                    out.decided.push(Decided { direction: Direction::ClientToGateway, verdict: Verdict::Close, rule: "websocket-protocol".into(), reason, target: None });
                }
            }
        }
        out
    }

    /// Bytes from the gateway.
    pub fn on_gateway_bytes(&mut self, env: &Env<'_>, data: &[u8]) -> Output {
        let mut out = Output::default();
        if self.closing || self.done {
            return out;
        }
        self.s2c.push(data);
        while !self.closing {
            match next_item(&mut self.s2c, &mut self.s2c_messages) {
                Ok(None) => break,
                Ok(Some(Item::Control(f))) => out.to_client.push(f.raw),
                Ok(Some(Item::Message(m))) => self.gateway_message(env, m, &mut out),
                Err(e) => {
                    let reason = format!("upstream protocol error: {e}");
                    self.start_close(&mut out, (1011, &reason), (e.close_code(), &e.to_string()));
                    out.decided.push(Decided { direction: Direction::GatewayToClient, verdict: Verdict::Close, rule: "websocket-protocol".into(), reason, target: None });
                }
            }
        }
        // A run the gateway accepted after its identity's budget tripped is stopped too.
        if self.access.runs_mut().take_fresh() {
            self.abort_if_over_budget(env, &mut out);
        }
        out
    }

    fn client_message(&mut self, env: &Env<'_>, m: Message, out: &mut Output) {
        if let Some(judgement) = self.flow_limit(env, Flow::Client, &m) {
            return self.apply(Direction::ClientToGateway, judgement, Some(m), out);
        }
        let judgement = match m.opcode {
            OpCode::Text => self.access.client_text(env, &m.payload),
            _ => self.access.client_binary(env),
        };
        if let Some(method) = self.access.take_unknown_method() {
            out.notices.push(Notice::UnknownMethod { method });
        }
        self.apply(Direction::ClientToGateway, judgement, Some(m), out);
    }

    /// The per-connection message and byte limits: a message over them is refused (a request
    /// gets a `RATE_LIMITED` answer, anything else is dropped) and, past the grace count of
    /// such messages in a row, the connection is closed with 1008 "rate limit". The gateway's
    /// direction is never cut short message by message (the client would lose state): past
    /// the grace count it closes the connection the same way.
    fn flow_limit(&mut self, env: &Env<'_>, flow: Flow, m: &Message) -> Option<Judgement> {
        let clients = &env.guard.clients;
        let i = if flow == Flow::Client { 0 } else { 1 };
        let limited = match self.flow.message(flow, m.payload.len()) {
            Ok(()) => {
                self.strikes[i] = 0;
                return None;
            }
            Err(l) => l,
        };
        let enforce = !limited.shadow;
        if enforce {
            self.strikes[i] += 1;
        }
        let rule = format!("rate-limit:{}", limited.limit);
        let retry_ms = u64::try_from(limited.retry_after.as_millis()).unwrap_or(u64::MAX).max(1);
        if self.strikes[i] > clients.grace || (!enforce && flow == Flow::Gateway) {
            // The close reason is what the client sees; the rule names the limit.
            return Some(Judgement { enforce, action: Action::Close { code: 1008, rule, reason: "rate limit".into() } });
        }
        if flow == Flow::Gateway {
            return None;
        }
        let reason = format!("rate limit {} exceeded on this connection: retry in {retry_ms} ms", limited.limit);
        let action = match (m.opcode, crate::protocol::gateway::parse_frame(&m.payload)) {
            (OpCode::Text, Ok(crate::protocol::gateway::GatewayFrame::Req { id, .. })) => {
                let reply = crate::protocol::gateway::rate_limited_response(&id, limited.limit, retry_ms, &format!("clawguard: {reason}"));
                Action::Refuse { reply, close: None, rule, reason }
            }
            _ => Action::Drop { rule, reason },
        };
        Some(Judgement { enforce, action })
    }

    fn gateway_message(&mut self, env: &Env<'_>, m: Message, out: &mut Output) {
        if let Some(judgement) = self.flow_limit(env, Flow::Gateway, &m) {
            return self.apply(Direction::GatewayToClient, judgement, Some(m), out);
        }
        let was_established = self.access.is_established();
        let judgement = match m.opcode {
            OpCode::Text => {
                let (judgement, notice) = self.access.gateway_text(env, &m.payload);
                out.notices.extend(notice);
                judgement
            }
            _ => Judgement { action: Action::Forward, enforce: true },
        };
        if !was_established && self.access.is_established() {
            self.c2s.set_max_payload(self.limits.message);
            self.c2s_messages.set_max_message(self.limits.message);
        }
        self.apply(Direction::GatewayToClient, judgement, Some(m), out);
    }

    /// The frames that forward `m` toward `dir` (a fragmented message as one frame, masked
    /// toward the gateway); none without a message.
    fn frames_of(&mut self, dir: Direction, m: Option<Message>) -> Vec<Bytes> {
        let Some(m) = m else { return Vec::new() };
        let mask = (dir == Direction::ClientToGateway && matches!(m.wire, Wire::Fragments(_))).then(|| self.next_mask());
        m.into_frames(mask)
    }

    /// Carries out a judgement on one message (`None`: a judgement of the connection).
    fn apply(&mut self, dir: Direction, judgement: Judgement, m: Option<Message>, out: &mut Output) {
        let Judgement { action, enforce } = judgement;
        let (rule, reason) = match &action {
            Action::Forward => {
                if dir == Direction::ClientToGateway {
                    out.allowed.extend(self.access.take_audit_method());
                }
                let frames = self.frames_of(dir, m);
                return out.forward(dir, frames);
            }
            Action::Rewrite { rule, reason, .. }
            | Action::Answer { rule, reason, .. }
            | Action::Refuse { rule, reason, .. }
            | Action::Drop { rule, reason }
            | Action::Close { rule, reason, .. } => (rule.clone(), reason.clone()),
        };
        let target = m.as_ref().and_then(message_target);
        if !enforce {
            let frames = self.frames_of(dir, m);
            out.forward(dir, frames);
            out.decided.push(Decided { direction: dir, verdict: Verdict::WouldDeny, rule, reason, target });
            return;
        }
        let verdict = match action {
            Action::Forward => unreachable!("returned above"),
            Action::Rewrite { text, .. } => {
                let mask = self.next_mask();
                let frame = encode_frame(true, OpCode::Text, &text, Some(mask));
                match dir {
                    Direction::ClientToGateway => out.to_gateway.push(frame),
                    Direction::GatewayToClient => out.to_client.push(encode_frame(true, OpCode::Text, &text, None)),
                }
                Verdict::Rewrite
            }
            Action::Refuse { reply, close, .. } => {
                out.to_client.push(text_frame(&reply));
                match close {
                    Some((code, why)) => {
                        self.start_close(out, (code, &why), (code, &why));
                        Verdict::Close
                    }
                    None => Verdict::Reply,
                }
            }
            Action::Answer { reply, .. } => {
                // Not delivered; the gateway gets clawguard's answer in the recipient's name.
                let mask = self.next_mask();
                out.to_gateway.push(encode_frame(true, OpCode::Text, &reply, Some(mask)));
                Verdict::Reply
            }
            Action::Drop { .. } => Verdict::Drop,
            Action::Close { code, reason, .. } => {
                self.start_close(out, (code, &reason), (code, &reason));
                Verdict::Close
            }
        };
        out.decided.push(Decided { direction: dir, verdict, rule, reason, target });
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
