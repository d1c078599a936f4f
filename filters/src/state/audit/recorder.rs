//! The writer's core without the file: events in, lines out. It redacts and encrypts each
//! record, chains it, adds signed checkpoints (every N records or T seconds), a seal on clean
//! shutdown, a genesis for a new log, a file record at rotation, and a crash marker when the
//! log it resumes ended without a seal. The proxy writes the lines it returns, in order.

use crate::state::audit::chain::{canonical, Chain};
use crate::state::audit::encrypt::FieldCipher;
use crate::state::audit::keys::{signed_message, AuditKeys};
use crate::state::audit::line::{write_event, LineContext};
use crate::state::audit::record::{rfc3339, Clock, Event};
use crate::state::audit::redact::Redactor;
use clawguard_policies::EncryptedField;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The format name in genesis records.
pub const FORMAT: &str = "clawguard-audit/1";

/// The end of an existing log, as the writer finds it at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The last complete record's `seq`, `hash` and `type` (`None`: the log is empty).
    pub last: Option<(u64, String, String)>,
    /// Bytes after the last newline (a record the previous run did not finish).
    pub partial: Vec<u8>,
}

/// A log end that does not read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the audit log's last complete line does not read as a record ({0}): verify it with `clawguard audit verify` and move it aside")]
pub struct TailError(pub String);

/// Reads the end of a log from its last bytes (`window`, which must hold the last complete line
/// whole unless `whole` is the entire file).
pub fn read_tail(window: &[u8], whole: bool) -> Result<Tail, TailError> {
    let cut = window.iter().rposition(|b| *b == b'\n');
    let (complete, partial) = match cut {
        Some(i) => (&window[..i], window[i + 1..].to_vec()),
        None if whole => (&window[..0], window.to_vec()),
        None => return Err(TailError("no line ends in the last bytes read".into())),
    };
    if complete.is_empty() {
        return Ok(Tail { last: None, partial });
    }
    let start = complete.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if start == 0 && !whole {
        return Err(TailError("the last line is longer than the bytes read".into()));
    }
    let line = std::str::from_utf8(&complete[start..]).map_err(|_| TailError("not UTF-8".into()))?;
    let v: Value = serde_json::from_str(line).map_err(|e| TailError(e.to_string()))?;
    let seq = v.get("seq").and_then(Value::as_u64).ok_or_else(|| TailError("no seq".into()))?;
    let hash = v.get("hash").and_then(Value::as_str).filter(|h| h.len() == 64).ok_or_else(|| TailError("no hash".into()))?;
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("event");
    Ok(Tail { last: Some((seq, hash.to_string(), kind.to_string())), partial })
}

/// Where and what wrote the log, for its genesis record.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The host name.
    pub host: String,
    /// clawguard's version.
    pub version: String,
}

/// The recorder.
pub struct Recorder {
    chain: Chain,
    keys: AuditKeys,
    redactor: Redactor,
    cipher: Option<(FieldCipher, Vec<EncryptedField>)>,
    nonce: Box<dyn FnMut() -> [u8; 12] + Send>,
    every: u64,
    interval_ns: u128,
    since_checkpoint: u64,
    last_checkpoint_ns: u128,
    policy_version: String,
    policy_version_json: Vec<u8>,
    clock: Clock,
}

impl Recorder {
    /// A recorder; `nonce` gives a fresh random 96-bit nonce for each encrypted field.
    pub fn new(keys: AuditKeys, redactor: Redactor, cipher: Option<(FieldCipher, Vec<EncryptedField>)>, nonce: Box<dyn FnMut() -> [u8; 12] + Send>) -> Self {
        Recorder { chain: Chain::default(), keys, redactor, cipher, nonce, every: 1000, interval_ns: 60_000_000_000, since_checkpoint: 0, last_checkpoint_ns: 0, policy_version: String::new(), policy_version_json: b"\"\"".to_vec(), clock: Clock::default() }
    }

    /// A checkpoint after `every` records or `interval_seconds` with records since the last.
    pub fn with_checkpoints(mut self, every: u64, interval_seconds: u64) -> Self {
        self.every = every.max(1);
        self.interval_ns = u128::from(interval_seconds.max(1)) * 1_000_000_000;
        self
    }

    /// The policy version recorded from now on.
    pub fn set_policy_version(&mut self, version: &str) {
        self.policy_version = version.to_string();
        self.policy_version_json = serde_json::to_vec(version).unwrap_or_else(|_| b"\"\"".to_vec());
    }

    /// The keys.
    pub fn keys(&self) -> &AuditKeys {
        &self.keys
    }

    /// The `seq` and hash of the last record.
    pub fn head(&self) -> (Option<u64>, &str) {
        (self.chain.next_seq().checked_sub(1), self.chain.head())
    }

    /// The first lines of a run over an existing log's `tail`: a genesis for an empty log, a
    /// crash marker when the last run did not end with a seal (its partial record, if any, is
    /// named by length and hash; the caller removes those bytes from the file before writing).
    pub fn start(&mut self, tail: &Tail, origin: &Origin, now_ns: u128) -> Vec<String> {
        self.last_checkpoint_ns = now_ns;
        let ts = rfc3339(now_ns);
        let Some((seq, hash, kind)) = &tail.last else {
            let mut r = base("genesis", &ts);
            r.insert("format".into(), Value::from(FORMAT));
            r.insert("key_id".into(), Value::from(self.keys.key_id()));
            r.insert("public_key".into(), Value::from(self.keys.public_hex()));
            r.insert("policy_version".into(), Value::from(self.policy_version.clone()));
            r.insert("host".into(), Value::from(origin.host.clone()));
            r.insert("clawguard".into(), Value::from(origin.version.clone()));
            if !tail.partial.is_empty() {
                r.insert("partial_bytes".into(), Value::from(tail.partial.len()));
            }
            return vec![self.chain.append(r)];
        };
        self.chain = Chain::resume(*seq, hash);
        if kind == "seal" && tail.partial.is_empty() {
            return Vec::new();
        }
        let mut r = base("crash", &ts);
        r.insert("after_seq".into(), Value::from(*seq));
        r.insert("partial_bytes".into(), Value::from(tail.partial.len()));
        if !tail.partial.is_empty() {
            r.insert("partial_sha256".into(), Value::from(hex::encode(Sha256::digest(&tail.partial))));
        }
        let why = if tail.partial.is_empty() { "the previous run ended without a seal".to_string() } else { format!("the previous run stopped in the middle of a record ({} bytes removed)", tail.partial.len()) };
        r.insert("reason".into(), Value::from(why));
        r.insert("policy_version".into(), Value::from(self.policy_version.clone()));
        vec![self.chain.append(r)]
    }

    /// Appends the lines for one event to `out` (each ending in a newline): the record, and a
    /// checkpoint when one is due by count. Returns how many lines it wrote.
    pub fn event(&mut self, event: &Event, now_ns: u128, out: &mut Vec<u8>) -> usize {
        let ts = self.clock.format(now_ns);
        let mut ctx = LineContext {
            redactor: &self.redactor,
            keys: &self.keys,
            cipher: self.cipher.as_ref().map(|(c, which)| (c, which.as_slice())),
            nonce: &mut *self.nonce,
            policy_version_json: &self.policy_version_json,
        };
        write_event(out, &mut self.chain, event, ts, &mut ctx);
        self.since_checkpoint += 1;
        if self.since_checkpoint < self.every {
            return 1;
        }
        let line = self.signed("checkpoint", now_ns);
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        2
    }

    /// The lines of one event as strings (for tests).
    #[cfg(test)]
    pub(crate) fn event_lines(&mut self, event: &Event, now_ns: u128) -> Vec<String> {
        let mut out = Vec::new();
        let n = self.event(event, now_ns, &mut out);
        let lines: Vec<String> = String::from_utf8(out).unwrap_or_default().lines().map(str::to_string).collect();
        assert_eq!(lines.len(), n);
        lines
    }

    /// Whether a checkpoint is due by time.
    pub fn checkpoint_due(&self, now_ns: u128) -> bool {
        self.since_checkpoint > 0 && now_ns.saturating_sub(self.last_checkpoint_ns) >= self.interval_ns
    }

    /// A checkpoint now.
    pub fn checkpoint(&mut self, now_ns: u128) -> String {
        self.signed("checkpoint", now_ns)
    }

    /// The seal of a clean shutdown: the last line of a run.
    pub fn seal(&mut self, now_ns: u128) -> String {
        self.signed("seal", now_ns)
    }

    /// The first record of a new file at rotation (the chain continues from the last file).
    pub fn file_start(&mut self, previous_file: &str, now_ns: u128) -> String {
        let mut r = base("file", &rfc3339(now_ns));
        r.insert("previous_file".into(), Value::from(previous_file));
        r.insert("key_id".into(), Value::from(self.keys.key_id()));
        r.insert("public_key".into(), Value::from(self.keys.public_hex()));
        r.insert("policy_version".into(), Value::from(self.policy_version.clone()));
        self.chain.append(r)
    }

    fn signed(&mut self, kind: &str, now_ns: u128) -> String {
        let ts = rfc3339(now_ns);
        let (seq, head) = self.head();
        let seq = seq.unwrap_or(0);
        let head = head.to_string();
        let signature = self.keys.sign(&signed_message(kind, seq, &head, &ts, self.keys.key_id()));
        let mut r = base(kind, &ts);
        r.insert("signed_seq".into(), Value::from(seq));
        r.insert("signed_head".into(), Value::from(head));
        r.insert("key_id".into(), Value::from(self.keys.key_id()));
        r.insert("public_key".into(), Value::from(self.keys.public_hex()));
        r.insert("signature".into(), Value::from(signature));
        self.since_checkpoint = 0;
        self.last_checkpoint_ns = now_ns;
        self.chain.append(r)
    }
}

fn base(kind: &str, ts: &str) -> Map<String, Value> {
    let Value::Object(m) = json!({ "type": kind, "ts": ts }) else { unreachable!() };
    m
}

/// The canonical text of a value (for the CLI's exports).
pub fn line_of(value: &Value) -> String {
    canonical(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::audit::record::{Category, Outcome, Target};

    fn recorder() -> Recorder {
        let mut n = 0u8;
        Recorder::new(AuditKeys::from_seed([5; 32]), Redactor::new(&[]).unwrap(), Some((FieldCipher::new([6; 32]), vec![EncryptedField::Command])), Box::new(move || {
            n += 1;
            [n; 12]
        }))
        .with_checkpoints(3, 60)
    }

    fn origin() -> Origin {
        Origin { host: "h".into(), version: "0.0.0".into() }
    }

    #[test]
    fn issue14_a_new_log_starts_with_genesis_and_checkpoints_by_count_and_time() {
        let mut r = recorder();
        let first = r.start(&Tail { last: None, partial: Vec::new() }, &origin(), 1);
        assert_eq!(first.len(), 1);
        assert!(first[0].contains("\"type\":\"genesis\""));
        let e = Event::new(Category::Method, "ws.request", Outcome::Denied, Target::new("method", "config.apply"));
        assert_eq!(r.event_lines(&e, 2).len(), 1);
        assert_eq!(r.event_lines(&e, 3).len(), 1);
        let third = r.event_lines(&e, 4);
        assert_eq!(third.len(), 2);
        assert!(third[1].contains("\"type\":\"checkpoint\""));
        assert!(!r.checkpoint_due(5));
        r.event_lines(&e, 5);
        assert!(!r.checkpoint_due(6));
        assert!(r.checkpoint_due(4 + 60_000_000_000));
    }

    #[test]
    fn issue14_records_are_redacted_and_chosen_fields_encrypted_before_chaining() {
        let mut r = recorder();
        r.start(&Tail { last: None, partial: Vec::new() }, &origin(), 1);
        let mut e = Event::new(Category::Exec, "ws.request", Outcome::Denied, Target::new("method", "node.invoke"));
        e.target.command = Some("curl -H 'Authorization: Bearer abcdefghijklmnop1234' x".into());
        e.reason = Some("key sk-abcdefghijklmnopqrstuvwxyz in the reason".into());
        let line = &r.event_lines(&e, 2)[0];
        assert!(!line.contains("abcdefghijklmnop1234"), "{line}");
        assert!(!line.contains("sk-abcdefghijklmnopqrstuvwxyz"), "{line}");
        assert!(!line.contains("curl"), "the command is encrypted: {line}");
        let v: Value = serde_json::from_str(line).unwrap();
        let plain = FieldCipher::new([6; 32]).open("target.command", &v["target"]["command"]).unwrap();
        assert!(plain.starts_with("curl -H 'Authorization: hmac-sha256:"), "{plain}");
    }

    #[test]
    fn issue14_a_resumed_log_gets_a_crash_marker_unless_it_was_sealed() {
        let mut r = recorder();
        let lines = r.start(&Tail { last: None, partial: Vec::new() }, &origin(), 1);
        let seal = r.seal(2);
        let text = format!("{}\n{seal}\n", lines[0]);
        let tail = read_tail(text.as_bytes(), true).unwrap();
        assert_eq!(tail.last.as_ref().map(|l| l.2.as_str()), Some("seal"));
        let mut again = recorder();
        assert!(again.start(&tail, &origin(), 3).is_empty());
        assert_eq!(again.head().0, Some(1));
        let crashed = format!("{text}{{\"seq\":2,\"half");
        let tail = read_tail(crashed.as_bytes(), true).unwrap();
        assert_eq!(tail.partial, b"{\"seq\":2,\"half");
        let marker = recorder().start(&tail, &origin(), 4);
        assert!(marker[0].contains("\"type\":\"crash\"") && marker[0].contains("\"partial_bytes\":14"), "{}", marker[0]);
        let unsealed = format!("{}\n", lines[0]);
        let marker = recorder().start(&read_tail(unsealed.as_bytes(), true).unwrap(), &origin(), 4);
        assert!(marker[0].contains("ended without a seal"));
        assert!(read_tail(b"garbage\n", true).is_err());
        assert!(read_tail(b"no newline at all", false).is_err());
    }
}
