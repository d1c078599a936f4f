//! Verification of audit log files: every link of the chain, every checkpoint's signature,
//! the seal at the end. The first problem is classified and located (file, line, seq); a log
//! that is intact but not sealed is reported as incomplete, not as tampered.

use crate::state::audit::chain::{record_hash, GENESIS_PREV};
use crate::state::audit::keys::{key_id, parse_public, signed_message, verify_signature};
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};

/// Evidence of tampering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A line that is not a record (JSON object with `seq`, `prev`, `hash`), or a partial line
    /// before the end of the log.
    Unreadable,
    /// The record's fields do not hash to its `hash`: a field was edited.
    HashMismatch,
    /// `prev` is not the previous record's hash: a record was removed, inserted or forged.
    BrokenLink,
    /// A record chained to an earlier record than the one before it: two successors of one hash.
    Fork,
    /// The same record again.
    Duplicate,
    /// Records out of order (the missing `seq` comes later).
    Reorder,
    /// Records missing (the missing `seq` never comes).
    Gap,
    /// A checkpoint or seal whose signed head is not the record before it.
    SignedHeadMismatch,
    /// A checkpoint or seal whose signature does not verify.
    BadSignature,
    /// Signed with another key than the pinned (or first) one.
    KeyMismatch,
}

impl Problem {
    /// The class name used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Problem::Unreadable => "unreadable",
            Problem::HashMismatch => "hash-mismatch",
            Problem::BrokenLink => "broken-link",
            Problem::Fork => "fork",
            Problem::Duplicate => "duplicate",
            Problem::Reorder => "reorder",
            Problem::Gap => "gap",
            Problem::SignedHeadMismatch => "signed-head-mismatch",
            Problem::BadSignature => "bad-signature",
            Problem::KeyMismatch => "key-mismatch",
        }
    }
}

/// Where the first problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The file's name as given.
    pub file: String,
    /// The 1-based line.
    pub line: usize,
    /// The `seq` the line claims, if it reads.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: Problem,
    /// In words.
    pub detail: String,
}

/// Why an intact log does not verify as complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incomplete {
    /// No records at all.
    Empty,
    /// The last line has no newline: a writer stopped (or is) in the middle of a record.
    TruncatedTail {
        /// Bytes of the partial line.
        bytes: usize,
    },
    /// The last record is not a seal: the writer is still running, crashed, or records after
    /// the last checkpoint were cut off.
    NoSeal {
        /// Records after the last verified checkpoint.
        after_checkpoint: u64,
    },
}

/// One file's share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpan {
    /// The name as given.
    pub name: String,
    /// Records verified in it.
    pub records: u64,
    /// First and last `seq`.
    pub seqs: Option<(u64, u64)>,
}

/// A signed checkpoint or seal that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `checkpoint` or `seal`.
    pub kind: String,
    /// The seq of the record itself.
    pub seq: u64,
    /// The head it signs.
    pub signed_seq: u64,
    /// When.
    pub ts: String,
    /// The key id.
    pub key_id: String,
}

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Records verified (before the first problem).
    pub records: u64,
    /// Per file.
    pub files: Vec<FileSpan>,
    /// The first and last `ts`.
    pub span: Option<(String, String)>,
    /// Policy versions recorded.
    pub policy_versions: BTreeSet<String>,
    /// The key the checkpoints verified against, and whether it was pinned (`--key`).
    pub key: Option<(String, bool)>,
    /// The last checkpoint or seal that verified.
    pub last_checkpoint: Option<Checkpoint>,
    /// Crash markers: (seq, reason).
    pub crashes: Vec<(u64, String)>,
    /// The log starts after the genesis (earlier files not given or removed by retention).
    pub starts_at: Option<u64>,
    /// The first sign of tampering.
    pub problem: Option<Found>,
    /// Why an intact log is not complete.
    pub incomplete: Option<Incomplete>,
}

impl Report {
    /// 0 clean, 1 tampered, 2 incomplete.
    pub fn exit_code(&self) -> u8 {
        if self.problem.is_some() {
            1
        } else if self.incomplete.is_some() {
            2
        } else {
            0
        }
    }

    /// The report as JSON (`audit verify --json`).
    pub fn to_json(&self) -> Value {
        let verdict = match self.exit_code() {
            0 => "clean",
            1 => "tampered",
            _ => "incomplete",
        };
        let mut out = Map::new();
        out.insert("verdict".into(), Value::from(verdict));
        out.insert("records".into(), Value::from(self.records));
        out.insert("files".into(), Value::Array(self.files.iter().map(|f| json!({ "name": f.name, "records": f.records, "first_seq": f.seqs.map(|s| s.0), "last_seq": f.seqs.map(|s| s.1) })).collect()));
        out.insert("first_ts".into(), json!(self.span.as_ref().map(|s| &s.0)));
        out.insert("last_ts".into(), json!(self.span.as_ref().map(|s| &s.1)));
        out.insert("policy_versions".into(), json!(self.policy_versions));
        out.insert("key_id".into(), json!(self.key.as_ref().map(|k| &k.0)));
        out.insert("key_pinned".into(), json!(self.key.as_ref().is_some_and(|k| k.1)));
        out.insert("last_checkpoint".into(), json!(self.last_checkpoint.as_ref().map(|c| json!({ "kind": c.kind, "seq": c.seq, "signed_seq": c.signed_seq, "ts": c.ts, "key_id": c.key_id }))));
        out.insert("crashes".into(), Value::Array(self.crashes.iter().map(|(s, r)| json!({ "seq": s, "reason": r })).collect()));
        out.insert("starts_at".into(), json!(self.starts_at));
        out.insert("problem".into(), json!(self.problem.as_ref().map(|p| json!({ "class": p.problem.name(), "file": p.file, "line": p.line, "seq": p.seq, "detail": p.detail }))));
        out.insert(
            "incomplete".into(),
            json!(self.incomplete.as_ref().map(|i| match i {
                Incomplete::Empty => json!({ "class": "empty" }),
                Incomplete::TruncatedTail { bytes } => json!({ "class": "truncated-tail", "bytes": bytes }),
                Incomplete::NoSeal { after_checkpoint } => json!({ "class": "missing-seal", "records_after_checkpoint": after_checkpoint }),
            })),
        );
        Value::Object(out)
    }
}

struct Line<'a> {
    file: usize,
    line: usize,
    text: &'a str,
}

/// Verifies `files` (name and text, oldest first) as one chain. `pinned`: the public key
/// (hex) checkpoints must verify against; without it, the first key the log names.
pub fn verify_files(files: &[(String, String)], pinned: Option<&str>) -> Report {
    let mut report = Report { files: files.iter().map(|(n, _)| FileSpan { name: n.clone(), records: 0, seqs: None }).collect(), ..Report::default() };
    let mut lines = Vec::new();
    for (fi, (_, text)) in files.iter().enumerate() {
        let last_file = fi + 1 == files.len();
        let complete = text.is_empty() || text.ends_with('\n');
        let parts: Vec<&str> = text.split_terminator('\n').collect();
        for (li, part) in parts.iter().enumerate() {
            if !complete && li + 1 == parts.len() {
                if last_file {
                    report.incomplete = Some(Incomplete::TruncatedTail { bytes: part.len() });
                    break;
                }
                let found = Found { file: files[fi].0.clone(), line: li + 1, seq: None, problem: Problem::Unreadable, detail: "a partial line before the end of the log".into() };
                report.problem = Some(found);
                return report;
            }
            lines.push(Line { file: fi, line: li + 1, text: part });
        }
    }
    let parsed: Vec<Option<Map<String, Value>>> = lines.iter().map(|l| match serde_json::from_str::<Value>(l.text) {
        Ok(Value::Object(m)) if m.get("seq").and_then(Value::as_u64).is_some() && m.get("prev").and_then(Value::as_str).is_some() && m.get("hash").and_then(Value::as_str).is_some() => Some(m),
        _ => None,
    }).collect();
    let seq_of = |i: usize| parsed[i].as_ref().and_then(|m| m.get("seq")).and_then(Value::as_u64);
    let mut key: Option<String> = pinned.map(|k| k.trim().to_ascii_lowercase());
    report.key = key.clone().map(|k| (k, true));
    let mut known: HashMap<String, u64> = HashMap::new();
    let mut last: Option<(u64, String)> = None;
    let mut after_checkpoint = 0u64;
    let mut last_kind = String::new();
    for (i, l) in lines.iter().enumerate() {
        let fail = |problem: Problem, seq: Option<u64>, detail: String| Found { file: files[l.file].0.clone(), line: l.line, seq, problem, detail };
        let Some(r) = &parsed[i] else {
            report.problem = Some(fail(Problem::Unreadable, None, "not a JSON object with seq, prev and hash".into()));
            return report;
        };
        let seq = r["seq"].as_u64().unwrap_or(0);
        // `parsed` kept only records whose seq, prev and hash read; these defaults never apply.
        let prev = r["prev"].as_str().unwrap_or("");
        let hash = r["hash"].as_str().unwrap_or("");
        let kind = r.get("type").and_then(Value::as_str).unwrap_or("event");
        if record_hash(r, prev) != hash {
            report.problem = Some(fail(Problem::HashMismatch, Some(seq), format!("record {seq} does not hash to its hash: a field was changed")));
            return report;
        }
        match &last {
            None => {
                if kind == "genesis" {
                    if seq != 0 || prev != GENESIS_PREV {
                        report.problem = Some(fail(Problem::BrokenLink, Some(seq), "the genesis record is not seq 0 with the zero prev".into()));
                        return report;
                    }
                } else {
                    report.starts_at = Some(seq);
                }
            }
            Some((last_seq, last_hash)) => {
                let expect = last_seq + 1;
                let problem = if seq == *last_seq && hash == last_hash {
                    Some((Problem::Duplicate, format!("record {seq} appears twice")))
                } else if prev != last_hash && known.get(prev).is_some_and(|s| s < last_seq) {
                    Some((Problem::Fork, format!("record {seq} follows record {}, which already has a successor", known[prev])))
                } else if seq < expect {
                    Some((Problem::Reorder, format!("record {seq} comes after record {last_seq}")))
                } else if seq > expect {
                    if (i + 1..lines.len()).any(|j| seq_of(j) == Some(expect)) {
                        Some((Problem::Reorder, format!("record {seq} comes before record {expect}")))
                    } else {
                        Some((Problem::Gap, format!("records {expect} to {} are missing", seq - 1)))
                    }
                } else if prev != last_hash {
                    Some((Problem::BrokenLink, format!("record {seq} does not chain to record {last_seq}: a record was replaced or forged")))
                } else {
                    None
                };
                if let Some((p, detail)) = problem {
                    report.problem = Some(fail(p, Some(seq), detail));
                    return report;
                }
            }
        }
        if let Some(public) = r.get("public_key").and_then(Value::as_str) {
            match &key {
                Some(k) if k != public => {
                    report.problem = Some(fail(Problem::KeyMismatch, Some(seq), format!("record {seq} names key {public}, not {k}")));
                    return report;
                }
                Some(_) => {}
                None => {
                    key = Some(public.to_string());
                    report.key = Some((public.to_string(), false));
                }
            }
        }
        if kind == "checkpoint" || kind == "seal" {
            if let Err((p, detail)) = check_signed(r, kind, seq, prev, key.as_deref()) {
                report.problem = Some(fail(p, Some(seq), detail));
                return report;
            }
            // Shown in the report only, after the signature verified over these very fields.
            report.last_checkpoint = Some(Checkpoint {
                kind: kind.to_string(),
                seq,
                signed_seq: r["signed_seq"].as_u64().unwrap_or(0),
                ts: r.get("ts").and_then(Value::as_str).unwrap_or("").to_string(),
                key_id: r.get("key_id").and_then(Value::as_str).unwrap_or("").to_string(),
            });
            after_checkpoint = 0;
        } else {
            after_checkpoint += 1;
        }
        if kind == "crash" {
            // The reason is informational (the marker is hashed and chained like any record).
            report.crashes.push((seq, r.get("reason").and_then(Value::as_str).unwrap_or("").to_string()));
        }
        if let Some(v) = r.get("policy_version").and_then(Value::as_str).filter(|v| !v.is_empty()) {
            report.policy_versions.insert(v.to_string());
        }
        if let Some(ts) = r.get("ts").and_then(Value::as_str) {
            report.span = Some(match report.span.take() {
                None => (ts.to_string(), ts.to_string()),
                Some((first, _)) => (first, ts.to_string()),
            });
        }
        let span = &mut report.files[l.file];
        span.records += 1;
        span.seqs = Some((span.seqs.map_or(seq, |s| s.0), seq));
        report.records += 1;
        known.insert(hash.to_string(), seq);
        last = Some((seq, hash.to_string()));
        last_kind = kind.to_string();
    }
    if report.incomplete.is_none() {
        if report.records == 0 {
            report.incomplete = Some(Incomplete::Empty);
        } else if last_kind != "seal" {
            report.incomplete = Some(Incomplete::NoSeal { after_checkpoint });
        }
    }
    report
}

fn check_signed(r: &Map<String, Value>, kind: &str, seq: u64, prev: &str, key: Option<&str>) -> Result<(), (Problem, String)> {
    let signed_seq = r.get("signed_seq").and_then(Value::as_u64);
    let signed_head = r.get("signed_head").and_then(Value::as_str);
    if signed_seq != seq.checked_sub(1) || signed_head != Some(prev) {
        return Err((Problem::SignedHeadMismatch, format!("the {kind} at {seq} signs another head than the record before it")));
    }
    let Some(public) = key else {
        return Err((Problem::BadSignature, format!("the {kind} at {seq} names no public key")));
    };
    // A missing key id or ts reads as empty: the id then fails to match the key and the
    // signature fails to verify, so a missing field is refused (key-mismatch / bad-signature).
    let claimed_id = r.get("key_id").and_then(Value::as_str).unwrap_or("");
    let public_key = parse_public(public).map_err(|e| (Problem::KeyMismatch, e.to_string()))?;
    if key_id(&public_key) != claimed_id {
        return Err((Problem::KeyMismatch, format!("the {kind} at {seq} names key id {claimed_id:?}, not the id of its key")));
    }
    let ts = r.get("ts").and_then(Value::as_str).unwrap_or("");
    let msg = signed_message(kind, signed_seq.unwrap_or(0), prev, ts, claimed_id);
    let signature = r.get("signature").and_then(Value::as_str).unwrap_or("");
    verify_signature(public, &msg, signature).map_err(|e| (Problem::BadSignature, format!("the {kind} at {seq}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::audit::chain::Chain;
    use crate::state::audit::keys::AuditKeys;
    use crate::state::audit::record::{Category, Event, Outcome, Target};
    use crate::state::audit::recorder::{Origin, Recorder, Tail};
    use crate::state::audit::redact::Redactor;

    fn recorder(seed: u8) -> Recorder {
        Recorder::new(AuditKeys::from_seed([seed; 32]), Redactor::new(&[]).unwrap(), None, Box::new(|| [0; 12])).with_checkpoints(4, 60)
    }

    /// A sealed log: genesis, 10 events with checkpoints every 4, the seal.
    fn sealed_log() -> Vec<String> {
        let mut r = recorder(1);
        let mut lines = r.start(&Tail { last: None, partial: Vec::new() }, &Origin { host: "h".into(), version: "t".into() }, 1);
        for n in 0..10u64 {
            let mut e = Event::new(Category::Method, "ws.request", Outcome::Denied, Target::new("method", "config.apply"));
            e.details.insert("n".into(), Value::from(n));
            lines.extend(r.event_lines(&e, 2 + u128::from(n)));
        }
        lines.push(r.seal(100));
        lines
    }

    fn check(lines: &[String]) -> Report {
        verify_files(&[("audit.jsonl".into(), lines.iter().map(|l| format!("{l}\n")).collect())], None)
    }

    fn class(lines: &[String]) -> Option<(usize, Option<u64>, Problem)> {
        check(lines).problem.map(|f| (f.line, f.seq, f.problem))
    }

    fn reseal(lines: &mut [String], i: usize, edit: impl Fn(&mut Map<String, Value>)) {
        let Value::Object(mut r) = serde_json::from_str(&lines[i]).unwrap() else { unreachable!() };
        edit(&mut r);
        lines[i] = crate::state::audit::chain::canonical(&Value::Object(r));
    }

    #[test]
    fn issue14_a_sealed_log_verifies_clean() {
        let lines = sealed_log();
        let report = check(&lines);
        assert_eq!(report.exit_code(), 0, "{report:?}");
        assert_eq!(report.records, lines.len() as u64);
        assert_eq!(report.last_checkpoint.as_ref().map(|c| c.kind.as_str()), Some("seal"));
        assert_eq!(report.key.as_ref().map(|k| k.1), Some(false));
        assert_eq!(report.to_json()["verdict"], "clean");
    }

    #[test]
    fn issue14_every_kind_of_tampering_is_detected_with_its_seq_and_class() {
        let lines = sealed_log();
        // lines: 0 genesis, 1-4 events, 5 checkpoint, 6-9 events, 10 checkpoint, 11-12 events, 13 seal.
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"denied\"", "\"success\"");
        assert_eq!(class(&edited), Some((3, Some(2), Problem::HashMismatch)));
        let mut deleted = lines.clone();
        deleted.remove(3);
        assert_eq!(class(&deleted), Some((4, Some(4), Problem::Gap)));
        let mut swapped = lines.clone();
        swapped.swap(7, 8);
        assert_eq!(class(&swapped), Some((8, Some(8), Problem::Reorder)));
        let mut duplicated = lines.clone();
        duplicated.insert(4, lines[3].clone());
        assert_eq!(class(&duplicated), Some((5, Some(3), Problem::Duplicate)));
        // A forged line chained onto record 2 after record 3: two successors of record 2.
        let mut forked = lines.clone();
        let prev: Value = serde_json::from_str(&lines[2]).unwrap();
        let mut chain = Chain::resume(2, prev["hash"].as_str().unwrap());
        let Value::Object(forged) = json!({"type": "event", "outcome": "success"}) else { unreachable!() };
        forked.insert(4, chain.append(forged.clone()));
        assert_eq!(class(&forked), Some((5, Some(3), Problem::Fork)));
        // A forged line in place of record 3 breaks the link of record 4.
        let mut inserted = lines.clone();
        inserted[3] = Chain::resume(2, prev["hash"].as_str().unwrap()).append(forged);
        assert_eq!(class(&inserted), Some((5, Some(4), Problem::BrokenLink)));
        // Truncation: the seal and two records cut off is incomplete, not clean.
        let cut = &lines[..lines.len() - 3];
        let report = check(cut);
        assert_eq!((report.exit_code(), report.incomplete.clone()), (2, Some(Incomplete::NoSeal { after_checkpoint: 0 })));
        assert_eq!(report.last_checkpoint.as_ref().map(|c| c.seq), Some(10));
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let half = verify_files(&[("a".into(), text[..text.len() - 20].to_string())], None);
        assert_eq!((half.exit_code(), half.to_json()["incomplete"]["class"].clone()), (2, json!("truncated-tail")));
        assert_eq!(class(&["not json".to_string()]), Some((1, None, Problem::Unreadable)));
    }

    #[test]
    fn issue14_rechaining_the_whole_file_without_the_key_fails_at_the_first_checkpoint() {
        let lines = sealed_log();
        // Edit record 2 and recompute every later hash: the chain holds, the checkpoint does not.
        let mut rechained = Vec::new();
        let mut chain = Chain::default();
        for (i, line) in lines.iter().enumerate() {
            let Value::Object(mut r) = serde_json::from_str(line).unwrap() else { unreachable!() };
            if i == 2 {
                r.insert("outcome".into(), Value::from("success"));
            }
            r.remove("seq");
            r.remove("prev");
            r.remove("hash");
            rechained.push(chain.append(r));
        }
        assert_eq!(class(&rechained), Some((6, Some(5), Problem::SignedHeadMismatch)));
        // …and with the signed head updated too, the signature fails.
        let mut forged = rechained.clone();
        let head: Value = serde_json::from_str(&forged[4]).unwrap();
        reseal(&mut forged, 5, |r| {
            r.insert("signed_head".into(), head["hash"].clone());
        });
        let mut chain = Chain::resume(4, head["hash"].as_str().unwrap());
        let Value::Object(mut r) = serde_json::from_str(&forged[5]).unwrap() else { unreachable!() };
        r.remove("seq");
        r.remove("prev");
        r.remove("hash");
        forged[5] = chain.append(r);
        assert_eq!(class(&forged[..6]), Some((6, Some(5), Problem::BadSignature)));
        // A whole log re-signed with another key fails against the pinned key.
        let report = verify_files(&[("a".into(), lines.iter().map(|l| format!("{l}\n")).collect())], Some(&AuditKeys::from_seed([2; 32]).public_hex()));
        assert_eq!(report.problem.map(|p| p.problem), Some(Problem::KeyMismatch));
    }

    #[test]
    fn issue14_a_crash_marker_is_reported_and_rotated_files_verify_as_one_chain() {
        let lines = sealed_log();
        // A second run that crashed: resume, two events, no seal; a third run starts with a
        // crash marker and ends sealed.
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let tail = crate::state::audit::recorder::read_tail(text.as_bytes(), true).unwrap();
        let mut second = recorder(1);
        assert!(second.start(&tail, &Origin { host: "h".into(), version: "t".into() }, 200).is_empty());
        let e = Event::new(Category::Method, "ws.request", Outcome::Success, Target::new("method", "health"));
        let mut more: Vec<String> = second.event_lines(&e, 201);
        more.extend(second.event_lines(&e, 202));
        let mut file2: String = more.iter().map(|l| format!("{l}\n")).collect();
        file2.push_str("{\"half\":");
        let tail = crate::state::audit::recorder::read_tail(file2.as_bytes(), true).unwrap();
        file2.truncate(file2.len() - tail.partial.len());
        let mut third = recorder(1);
        let marker = third.start(&tail, &Origin { host: "h".into(), version: "t".into() }, 300);
        for l in marker.iter().chain([&third.seal(301)]) {
            file2.push_str(l);
            file2.push('\n');
        }
        let report = verify_files(&[("a".into(), text), ("b".into(), file2.clone())], None);
        assert_eq!(report.exit_code(), 0, "{report:?}");
        assert_eq!(report.crashes.len(), 1);
        assert!(report.crashes[0].1.contains("8 bytes removed"), "{:?}", report.crashes);
        assert_eq!(report.files[1].records, 4);
        // The second file alone starts mid-chain, which is said, not an error.
        let alone = verify_files(&[("b".into(), file2)], None);
        assert_eq!((alone.exit_code(), alone.starts_at), (0, Some(14)));
    }
}
