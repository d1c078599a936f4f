//! The hash chain: records become lines whose hashes chain them.
//!
//! A line is one JSON object with sorted keys and no white space (the canonical form), holding
//! the record's fields plus `seq` (from 0, the genesis record), `prev` (the previous record's
//! `hash`, 64 zeros for the genesis) and `hash`:
//! `hash = hex(SHA-256(0x00 ‖ canonical(record without "hash") ‖ prev))`, where `prev` is the
//! 64 hex digits as ASCII. Sorting keys recursively and escaping as `serde_json` does makes the
//! canonical form reproducible by an independent verifier.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev` of the genesis record.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical text of a JSON value: object keys sorted at every depth, no white space.
pub fn canonical(value: &Value) -> String {
    let mut out = Vec::with_capacity(512);
    write_canonical(&mut out, value);
    // Only UTF-8 text is written (keys and strings as serde_json escapes them).
    String::from_utf8(out).unwrap_or_default()
}

/// Writes the canonical form of `value` without copying it.
pub(crate) fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => write_object(out, map, None),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, v);
            }
            out.push(b']');
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// The hash of a record (its fields without `hash`) chained to `prev`.
pub fn record_hash(record: &Map<String, Value>, prev: &str) -> String {
    let mut text = Vec::with_capacity(512);
    // A borrowed view of the record as a value, without its hash.
    write_object(&mut text, record, Some("hash"));
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(&text);
    h.update(prev.as_bytes());
    hex::encode(h.finalize())
}

fn write_object(out: &mut Vec<u8>, record: &Map<String, Value>, skip: Option<&str>) {
    // Entries sorted by key, so no key is looked up again.
    let mut entries: Vec<(&String, &Value)> = record.iter().filter(|(k, _)| Some(k.as_str()) != skip).collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        write_canonical(out, v);
    }
    out.push(b'}');
}

/// The byte offset just after the `n`th top-level entry of a canonical object's text: the
/// `n`th comma at depth 1 outside strings.
fn entry_end(text: &[u8], n: usize) -> usize {
    let (mut depth, mut in_string, mut escaped, mut seen) = (0usize, false, false, 0usize);
    for (i, &b) in text.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            b',' if depth == 1 => {
                seen += 1;
                if seen == n {
                    return i;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// The writer's side: the next sequence number and the head hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    next_seq: u64,
    head: String,
}

impl Default for Chain {
    fn default() -> Self {
        Chain { next_seq: 0, head: GENESIS_PREV.to_string() }
    }
}

impl Chain {
    /// Continues a chain whose last record had `seq` and `hash` (from the last line on disk).
    pub fn resume(seq: u64, hash: &str) -> Self {
        Chain { next_seq: seq + 1, head: hash.to_string() }
    }

    /// The hash of the last record appended.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Adds `seq`, `prev` and `hash` to `record` and returns its line (without a newline).
    pub fn append(&mut self, mut record: Map<String, Value>) -> String {
        record.insert("seq".into(), Value::from(self.next_seq));
        record.insert("prev".into(), Value::from(self.head.clone()));
        record.remove("hash");
        // Serialised once: the canonical text without `hash` is hashed, then `hash` goes in at
        // its sorted place (after the last key that sorts before it; `prev` and `seq` follow).
        let mut text = Vec::with_capacity(640);
        write_object(&mut text, &record, None);
        let before = record.keys().filter(|k| k.as_str() < "hash").count();
        let at = if before == 0 { 0 } else { entry_end(&text, before) };
        self.link(&mut text, 0, at);
        // Only UTF-8 is written (serde_json's escaping of UTF-8 keys and strings, ASCII hex).
        String::from_utf8(text).unwrap_or_default()
    }

    /// Chains the record whose canonical text without `hash` (with this chain's next `seq` and
    /// its head as `prev`) is `out[start..]`: hashes it, writes the `hash` entry at its sorted
    /// place, and moves the head. `at` is the index of the separator that ends the entry
    /// before that place (a comma, or the closing brace), or of the opening brace when `hash`
    /// sorts first.
    pub fn link(&mut self, out: &mut Vec<u8>, start: usize, at: usize) {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(&out[start..]);
        h.update(self.head.as_bytes());
        let mut hex_hash = [0u8; 64];
        // 32 bytes are 64 hex digits: the slice always fits.
        let _ = hex::encode_to_slice(h.finalize(), &mut hex_hash);
        // `"hash":"…",` after the opening brace, or `,"hash":"…"` before the separator.
        let (at, lead, trail) = if out[at] == b'{' { (at + 1, &b""[..], &b","[..]) } else { (at, &b","[..], &b""[..]) };
        let field_len = lead.len() + 8 + 64 + 1 + trail.len();
        let end = out.len();
        out.resize(end + field_len, 0);
        out.copy_within(at..end, at + field_len);
        let mut w = at;
        for part in [lead, b"\"hash\":\"", &hex_hash, b"\"", trail] {
            out[w..w + part.len()].copy_from_slice(part);
            w += part.len();
        }
        self.head.clear();
        // Hex digits are ASCII.
        self.head.push_str(std::str::from_utf8(&hex_hash).unwrap_or_default());
        self.next_seq += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn issue14_the_canonical_form_sorts_keys_at_every_depth() {
        assert_eq!(canonical(&json!({"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": "é\u{2028}"}})), r#"{"a":{"c":"é\u2028","z":[{"x":2,"y":1}]},"b":1}"#.replace("\\u2028", "\u{2028}"));
    }

    #[test]
    fn issue14_a_record_hashes_over_its_fields_and_the_previous_hash() {
        let mut chain = Chain::default();
        let Value::Object(r) = json!({"type": "event", "n": 1}) else { unreachable!() };
        let line = chain.append(r);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["seq"], 0);
        assert_eq!(v["prev"], GENESIS_PREV);
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(br#"{"n":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000","seq":0,"type":"event"}"#);
        h.update(GENESIS_PREV.as_bytes());
        assert_eq!(v["hash"], hex::encode(h.finalize()));
        assert_eq!(chain.head(), v["hash"]);
        assert_eq!(chain.next_seq(), 1);
        // The spliced line is exactly the canonical form, whatever sorts before "hash".
        for fields in [json!({"a": {"x": "},\"hash\"", "y": [1, {"z": ","}]}, "b": "\\\"", "type": "event"}), json!({"type": "seal"}), json!({"aaa": 1, "hz": 2})] {
            let Value::Object(r) = fields else { unreachable!() };
            let line = chain.append(r);
            let parsed: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(line, canonical(&parsed));
            let Value::Object(m) = &parsed else { unreachable!() };
            assert_eq!(record_hash(m, m["prev"].as_str().unwrap()), m["hash"]);
        }
    }
}
