//! The audit log's hash chain (issue 14, first part): records become lines whose hashes chain
//! them, and a reader classifies the first problem of a sequence of lines. No I/O: the proxy
//! writes the lines and `clawguard audit verify` reads them.
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
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&map[k]));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // Serialising a `Value` cannot fail (its keys are strings).
    serde_json::to_string(&sorted(value)).unwrap_or_default()
}

/// The hash of a record (its fields without `hash`) chained to `prev`.
pub fn record_hash(record: &Map<String, Value>, prev: &str) -> String {
    let mut without = record.clone();
    without.remove("hash");
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(canonical(&Value::Object(without)).as_bytes());
    h.update(prev.as_bytes());
    hex::encode(h.finalize())
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
        let hash = record_hash(&record, &self.head);
        record.insert("hash".into(), Value::from(hash.clone()));
        self.next_seq += 1;
        self.head = hash;
        canonical(&Value::Object(record))
    }
}

/// The first problem a sequence of lines shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A line that is not a JSON object with `seq`, `prev` and `hash`.
    Unreadable,
    /// The record's fields do not hash to its `hash` (a field was edited).
    HashMismatch,
    /// `prev` is not the previous record's hash (a record was removed, inserted or forged).
    BrokenLink,
    /// The same `seq` again with the same content.
    Duplicate,
    /// A `seq` lower than the previous one (records swapped).
    Reorder,
    /// A `seq` more than one past the previous one (records removed).
    Gap,
    /// The last line has no newline: the writer stopped mid-record (a crash, not tampering).
    TruncatedTail,
}

/// What a verification of lines found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Records read and verified before the first problem.
    pub records: u64,
    /// The first problem, with the 1-based line and the `seq` it claimed (if readable).
    pub problem: Option<(usize, Option<u64>, Problem)>,
}

/// Verifies `text` (a log's bytes as text), starting from the genesis or from `start` (the
/// `seq` and `hash` before the first line, for a rotated file).
pub fn verify(text: &str, start: Option<(u64, &str)>) -> Report {
    let mut expect_seq = start.map_or(0, |(s, _)| s + 1);
    let mut prev = start.map_or(GENESIS_PREV.to_string(), |(_, h)| h.to_string());
    let mut last: Option<(u64, String)> = None;
    let mut records = 0;
    let complete = text.is_empty() || text.ends_with('\n');
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let at = i + 1;
        if !complete && at == lines.len() {
            return Report { records, problem: Some((at, None, Problem::TruncatedTail)) };
        }
        let Ok(Value::Object(record)) = serde_json::from_str::<Value>(line) else {
            return Report { records, problem: Some((at, None, Problem::Unreadable)) };
        };
        let (Some(seq), Some(claimed_prev), Some(hash)) = (record.get("seq").and_then(Value::as_u64), record.get("prev").and_then(Value::as_str), record.get("hash").and_then(Value::as_str)) else {
            return Report { records, problem: Some((at, None, Problem::Unreadable)) };
        };
        if record_hash(&record, claimed_prev) != hash {
            return Report { records, problem: Some((at, Some(seq), Problem::HashMismatch)) };
        }
        if let Some((last_seq, last_hash)) = &last {
            if seq == *last_seq && hash == last_hash {
                return Report { records, problem: Some((at, Some(seq), Problem::Duplicate)) };
            }
        }
        if seq < expect_seq {
            return Report { records, problem: Some((at, Some(seq), Problem::Reorder)) };
        }
        if seq > expect_seq {
            return Report { records, problem: Some((at, Some(seq), Problem::Gap)) };
        }
        if claimed_prev != prev {
            return Report { records, problem: Some((at, Some(seq), Problem::BrokenLink)) };
        }
        records += 1;
        expect_seq = seq + 1;
        prev = hash.to_string();
        last = Some((seq, hash.to_string()));
    }
    Report { records, problem: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log(n: u64) -> Vec<String> {
        let mut chain = Chain::default();
        (0..n)
            .map(|i| {
                let Value::Object(r) = json!({"category": "authorization", "outcome": "deny", "rule": "scope", "n": i}) else { unreachable!() };
                chain.append(r)
            })
            .collect()
    }

    fn text(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn issue14_a_clean_chain_verifies_and_resumes() {
        let lines = log(5);
        assert_eq!(verify(&text(&lines), None), Report { records: 5, problem: None });
        // A rotated file continues from the last record of the previous one.
        let last: Value = serde_json::from_str(&lines[4]).unwrap();
        let mut chain = Chain::resume(4, last["hash"].as_str().unwrap());
        let Value::Object(r) = json!({"category": "policy"}) else { unreachable!() };
        let next = chain.append(r);
        assert_eq!(verify(&format!("{next}\n"), Some((4, last["hash"].as_str().unwrap()))).problem, None);
    }

    #[test]
    fn issue14_every_kind_of_tampering_is_classified_at_its_line() {
        let lines = log(6);
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"deny\"", "\"allow\"");
        assert_eq!(verify(&text(&edited), None).problem, Some((3, Some(2), Problem::HashMismatch)));
        let mut removed = lines.clone();
        removed.remove(3);
        assert_eq!(verify(&text(&removed), None).problem, Some((4, Some(4), Problem::Gap)));
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert_eq!(verify(&text(&swapped), None).problem, Some((2, Some(2), Problem::Gap)));
        let mut duplicated = lines.clone();
        duplicated.insert(3, lines[2].clone());
        assert_eq!(verify(&text(&duplicated), None).problem, Some((4, Some(2), Problem::Duplicate)));
        // A forged record re-chained from the previous one breaks the link of the next.
        let mut forged = lines.clone();
        let prev: Value = serde_json::from_str(&lines[1]).unwrap();
        let mut chain = Chain::resume(1, prev["hash"].as_str().unwrap());
        let Value::Object(r) = json!({"category": "authorization", "outcome": "allow"}) else { unreachable!() };
        forged[2] = chain.append(r);
        assert_eq!(verify(&text(&forged), None).problem, Some((4, Some(3), Problem::BrokenLink)));
        let mut back = lines.clone();
        back.swap(3, 4);
        back.truncate(5);
        let report = verify(&text(&back), None);
        assert_eq!(report.problem.map(|p| p.2), Some(Problem::Gap));
        let cut = text(&lines);
        assert_eq!(verify(&cut[..cut.len() - 10], None).problem, Some((6, None, Problem::TruncatedTail)));
        assert_eq!(verify("not json\n", None).problem, Some((1, None, Problem::Unreadable)));
    }

    #[test]
    fn issue14_the_canonical_form_sorts_keys_at_every_depth() {
        assert_eq!(canonical(&json!({"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": "é\u{2028}"}})), r#"{"a":{"c":"é\u2028","z":[{"x":2,"y":1}]},"b":1}"#.replace("\\u2028", "\u{2028}"));
    }
}
