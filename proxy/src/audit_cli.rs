//! `clawguard audit`: verify, search, export and tail the audit log; print the public key and
//! the keyed hash of a value.

use crate::audit::{keys_of, log_files, read_secret};
use anyhow::{bail, Context};
use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use clawguard_filters::audit::encrypt::{is_sealed, FieldCipher};
use clawguard_filters::audit::verify::{verify_files, Incomplete};
use serde_json::Value;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `clawguard audit …`
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify the chain, the checkpoints and the seal; exit 0 clean, 1 tampered, 2 incomplete.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The public key (hex) the checkpoints must verify against.
        #[arg(long)]
        key: Option<String>,
        /// Log files or directories (oldest first; a directory: its audit-*.jsonl files).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the records that match every filter given.
    Search(SearchArgs),
    /// Print every record as JSON lines or CSV.
    Export {
        /// `jsonl` or `csv`.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// Decrypt encrypted fields with the key in --key-file.
        #[arg(long, requires = "key_file")]
        decrypt: bool,
        /// The AES-256 key (64 hex digits) of encrypted fields.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Log files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the last records, and with -f the new ones as they are written.
    Tail {
        /// Follow the file.
        #[arg(short, long)]
        follow: bool,
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// A log file or directory (its newest file).
        path: PathBuf,
    },
    /// Print the public key and key id of a policy's audit log.
    Key {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
    },
    /// Print the keyed hash that stands for VALUE in a policy's audit log.
    Hash {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
        /// The value (a token, a device id, …).
        value: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Jsonl,
    Csv,
}

#[derive(ClapArgs)]
struct SearchArgs {
    /// Records at or after this time (RFC 3339, compared as text: `2026-12-01T10:00`).
    #[arg(long)]
    from: Option<String>,
    /// Records before this time.
    #[arg(long)]
    to: Option<String>,
    /// The identity (`actor.id`).
    #[arg(long)]
    identity: Option<String>,
    /// `success`, `denied`, `failure`, `error`.
    #[arg(long)]
    outcome: Option<String>,
    /// `auth`, `config`, `exec`, `limit`, `node`, `http`, …
    #[arg(long)]
    category: Option<String>,
    /// The rule (`scope`, `exec`, `rate-limit:…`; a prefix matches).
    #[arg(long)]
    rule: Option<String>,
    /// Text anywhere in the record.
    #[arg(long)]
    text: Option<String>,
    /// Records that hold the keyed hash of this value (needs --policy for the key).
    #[arg(long, requires = "policy")]
    hash_of: Option<String>,
    /// The policy whose key --hash-of uses.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Log files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Runs `clawguard audit`.
pub fn run(args: Args) -> ExitCode {
    match args.command {
        Command::Verify { json, key, paths } => match verify(json, key.as_deref(), &paths) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("clawguard audit verify: {e:#}");
                ExitCode::from(2)
            }
        },
        other => match run_other(other) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("clawguard audit: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run_other(command: Command) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Verify { .. } => unreachable!("handled in run"),
        Command::Search(s) => {
            let hash = match (&s.hash_of, &s.policy) {
                (Some(v), Some(p)) => Some(policy_keys(p)?.hmac(v)),
                _ => None,
            };
            for (_, text) in read_all(&s.paths)? {
                for line in text.lines() {
                    let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
                    if matches(&s, &v, line, hash.as_deref()) {
                        writeln!(out, "{line}")?;
                    }
                }
            }
        }
        Command::Export { format, decrypt, key_file, paths } => {
            let cipher = match (decrypt, key_file) {
                (true, Some(f)) => Some(FieldCipher::new(read_secret(&format!("file:{}", f.display()), Path::new(""), false)?)),
                _ => None,
            };
            if matches!(format, Format::Csv) {
                writeln!(out, "seq,ts,type,category,action,outcome,severity,identity,target,rule,decision,enforced,peer,conn,reason")?;
            }
            for (_, text) in read_all(&paths)? {
                for line in text.lines() {
                    let mut v: Value = serde_json::from_str(line).with_context(|| format!("a line does not read as JSON: {line:.80}"))?;
                    if let Some(c) = &cipher {
                        for (outer, inner) in [("target", "command"), ("target", "session"), ("details", "excerpt")] {
                            if let Some(slot) = v.get_mut(outer).and_then(|o| o.get_mut(inner)).filter(|s| is_sealed(s)) {
                                *slot = Value::from(c.open(&format!("{outer}.{inner}"), slot)?);
                            }
                        }
                    }
                    match format {
                        Format::Jsonl => writeln!(out, "{}", clawguard_filters::audit::chain::canonical(&v))?,
                        Format::Csv => writeln!(out, "{}", csv_row(&v))?,
                    }
                }
            }
        }
        Command::Tail { follow, lines, path } => tail(&mut out, &path, lines, follow)?,
        Command::Key { policy } => {
            let keys = policy_keys(&policy)?;
            writeln!(out, "key_id {}\npublic_key {}", keys.key_id(), keys.public_hex())?;
        }
        Command::Hash { policy, value } => writeln!(out, "{}", policy_keys(&policy)?.hmac(&value))?,
    }
    Ok(())
}

fn policy_keys(policy: &Path) -> anyhow::Result<clawguard_filters::audit::keys::AuditKeys> {
    let cfg = crate::config::load(Some(policy)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = policy.parent().map(Path::to_path_buf).unwrap_or_default();
    keys_of(&cfg.policy.policy.audit, &base, false)
}

/// The files a list of paths names, oldest first.
fn files_of(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let found = log_files(p).with_context(|| format!("cannot list {}", p.display()))?;
            if found.is_empty() {
                bail!("{} holds no audit-*.jsonl files", p.display());
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    files_of(paths)?
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?;
            // A byte that is not UTF-8 is tampering; read it lossily so verify can say where.
            Ok((f.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()))
        })
        .collect()
}

/// Verifies the log in `dir` for `clawguard doctor`: the exit code `audit verify` would give
/// (0 clean, 1 tampered, 2 incomplete) and a one-line summary.
pub fn verify_dir(dir: &std::path::Path) -> anyhow::Result<(u8, String)> {
    let files = read_all(&[dir.to_path_buf()])?;
    let report = verify_files(&files, None);
    let code = report.exit_code();
    let verdict = ["clean", "TAMPERED", "incomplete (no seal yet: the writer is running, or stopped without one)"][usize::from(code)];
    let mut summary = format!("{verdict}: {} records in {} files", report.records, report.files.len());
    if let Some(p) = &report.problem {
        summary.push_str(&format!("; first problem: {} at {} line {}: {}", p.problem.name(), p.file, p.line, p.detail));
    }
    Ok((code, summary))
}

fn verify(json: bool, key: Option<&str>, paths: &[PathBuf]) -> anyhow::Result<u8> {
    let files = read_all(paths)?;
    let report = verify_files(&files, key);
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report.to_json())?)?;
        return Ok(report.exit_code());
    }
    let verdict = ["clean", "TAMPERED", "incomplete"][usize::from(report.exit_code())];
    writeln!(out, "{verdict}: {} records in {} files", report.records, report.files.len())?;
    for f in &report.files {
        let seqs = f.seqs.map(|(a, b)| format!("seq {a}..{b}")).unwrap_or_else(|| "no records".into());
        writeln!(out, "  {}: {} records, {seqs}", f.name, f.records)?;
    }
    if let Some((a, b)) = &report.span {
        writeln!(out, "time span: {a} .. {b}")?;
    }
    writeln!(out, "policy versions: {}", report.policy_versions.iter().cloned().collect::<Vec<_>>().join(", "))?;
    match &report.key {
        Some((k, true)) => writeln!(out, "key: {k} (pinned with --key)")?,
        Some((k, false)) => writeln!(out, "key: {k} (as the log names it; pass --key to pin it)")?,
        None => writeln!(out, "key: none seen")?,
    }
    match &report.last_checkpoint {
        Some(c) => writeln!(out, "last verified {}: seq {} (signs seq {}) at {}, key id {}", c.kind, c.seq, c.signed_seq, c.ts, c.key_id)?,
        None => writeln!(out, "no verified checkpoint")?,
    }
    if let Some(s) = report.starts_at {
        writeln!(out, "starts at seq {s}: the files before it were not given (or were removed by retention)")?;
    }
    for (seq, why) in &report.crashes {
        writeln!(out, "crash marker at seq {seq}: {why}")?;
    }
    if let Some(p) = &report.problem {
        writeln!(out, "first problem: {} at {} line {} (seq {}): {}", p.problem.name(), p.file, p.line, p.seq.map_or("?".into(), |s| s.to_string()), p.detail)?;
    }
    match &report.incomplete {
        Some(Incomplete::Empty) => writeln!(out, "incomplete: no records")?,
        Some(Incomplete::TruncatedTail { bytes }) => writeln!(out, "incomplete: the last line is partial ({bytes} bytes): the writer is running or stopped mid-record")?,
        Some(Incomplete::NoSeal { after_checkpoint }) => {
            writeln!(out, "incomplete: no seal at the end, {after_checkpoint} records after the last checkpoint: possibly truncated or still running")?
        }
        None => {}
    }
    Ok(report.exit_code())
}

fn matches(s: &SearchArgs, v: &Value, line: &str, hash: Option<&str>) -> bool {
    let field = |path: &[&str]| path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str);
    let ts = field(&["ts"]).unwrap_or("");
    s.from.as_deref().is_none_or(|f| ts >= f)
        && s.to.as_deref().is_none_or(|t| ts < t)
        && s.identity.as_deref().is_none_or(|i| field(&["actor", "id"]) == Some(i))
        && s.outcome.as_deref().is_none_or(|o| field(&["outcome"]) == Some(o))
        && s.category.as_deref().is_none_or(|c| field(&["category"]) == Some(c))
        && s.rule.as_deref().is_none_or(|r| field(&["rule"]).is_some_and(|x| x.starts_with(r)))
        && s.text.as_deref().is_none_or(|t| line.contains(t))
        && hash.is_none_or(|h| line.contains(h))
}

fn csv_row(v: &Value) -> String {
    let get = |path: &[&str]| -> String {
        match path.iter().try_fold(v, |v, k| v.get(*k)) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    };
    let cells = [
        get(&["seq"]), get(&["ts"]), get(&["type"]), get(&["category"]), get(&["action"]), get(&["outcome"]), get(&["severity"]), get(&["actor", "id"]),
        get(&["target", "name"]), get(&["rule"]), get(&["policy", "decision"]), get(&["enforced"]), get(&["peer"]), get(&["conn"]), get(&["reason"]),
    ];
    cells.iter().map(|c| if c.contains([',', '"', '\n', '\r']) { format!("\"{}\"", c.replace('"', "\"\"")) } else { c.clone() }).collect::<Vec<_>>().join(",")
}

fn tail(out: &mut impl Write, path: &Path, n: usize, follow: bool) -> anyhow::Result<()> {
    let file_path = if path.is_dir() { log_files(path)?.pop().with_context(|| format!("{} holds no audit-*.jsonl files", path.display()))? } else { path.to_path_buf() };
    let mut f = std::fs::File::open(&file_path).with_context(|| format!("cannot open {}", file_path.display()))?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[lines.len().saturating_sub(n)..] {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut at = text.len() as u64;
    let mut reader = std::io::BufReader::new(f);
    loop {
        reader.seek(SeekFrom::Start(at))?;
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n > 0 && line.ends_with('\n') {
            at += n as u64;
            write!(out, "{line}")?;
            out.flush()?;
            continue;
        }
        if dir_has_newer(path, &file_path) {
            return tail(out, path, 0, true);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Whether a directory has a newer file than the one being followed (rotation).
fn dir_has_newer(path: &Path, current: &Path) -> bool {
    path.is_dir() && log_files(path).ok().and_then(|f| f.last().cloned()).is_some_and(|last| last != current)
}
