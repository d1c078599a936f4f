//! The audit log's file side: a bounded queue to one writer thread that turns events into lines
//! with `filters::audit::recorder`, writes them in batches, flushes them to disk as
//! `audit.fsync` says, rotates and prunes files, and seals the log on clean shutdown. At start
//! it resumes the newest file, removing a partial last line (a crash) and recording a crash
//! marker. The format is in docs/audit.md.

use crate::metrics;
use anyhow::{bail, Context};
use clawguard_filters::audit::encrypt::FieldCipher;
use clawguard_filters::audit::keys::AuditKeys;
use clawguard_filters::audit::record::Event;
use clawguard_filters::audit::recorder::{read_tail, Origin, Recorder, Tail};
use clawguard_filters::audit::redact::Redactor;
use clawguard_policies::{Audit, Fsync, OnFailure, SecretRef};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// How often the writer drains the queue when no request waits for its record.
const BATCH_INTERVAL: Duration = Duration::from_millis(10);

enum Msg {
    Event(Box<Event>, u128, Option<tokio::sync::oneshot::Sender<bool>>),
    Close(std::sync::mpsc::Sender<()>),
}

/// The running audit log.
pub struct AuditLog {
    tx: SyncSender<Msg>,
    healthy: Arc<AtomicBool>,
    on_failure: OnFailure,
    fsync: Fsync,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The directory of the files.
    pub dir: PathBuf,
}

/// Reads a key reference; `create` makes a missing key file (mode 0600) with a fresh key.
pub fn read_secret(reference: &str, base: &Path, create: bool) -> anyhow::Result<[u8; 32]> {
    if let Some(key) = crate::secrets::read_key(reference, base).map_err(anyhow::Error::msg)? {
        return Ok(key);
    }
    let path = match SecretRef::parse(reference).map_err(anyhow::Error::msg)? {
        SecretRef::File(path) => crate::secrets::path_of(&path, base),
        SecretRef::Env(_) => bail!("{reference}: the audit key could not be read"),
    };
    if !create {
        bail!("{reference}: the audit key {} does not exist", path.display());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let seed: [u8; 32] = rand::random();
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).with_context(|| format!("cannot create the audit key {}", path.display()))?;
    writeln!(f, "{}", hex::encode(seed))?;
    f.sync_all()?;
    tracing::info!(key = %path.display(), "created the audit signing key");
    Ok(seed)
}

/// The signing keys of a policy's audit log.
pub fn keys_of(audit: &Audit, base: &Path, create: bool) -> anyhow::Result<AuditKeys> {
    Ok(AuditKeys::from_seed(read_secret(&audit.signing_key, base, create)?))
}

/// The log files in `dir`, oldest first (`audit-<first seq>.jsonl`).
pub fn log_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let seq = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?.parse::<u64>().ok()?;
            Some((seq, e.path()))
        })
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// The UTC day of a time: days since the epoch.
fn day_of(ns: u128) -> u128 {
    ns / 86_400_000_000_000
}

fn file_name(first_seq: u64) -> String {
    format!("audit-{first_seq:020}.jsonl")
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// The last bytes of a file: enough to hold its last complete line.
fn tail_of(file: &mut File) -> anyhow::Result<Tail> {
    let len = file.metadata()?.len();
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        file.read_to_end(&mut buf)?;
        match read_tail(&buf, start == 0) {
            Ok(t) => return Ok(t),
            Err(_) if start > 0 => window *= 4,
            Err(e) => return Err(e.into()),
        }
    }
}

struct Sink {
    dir: PathBuf,
    file: File,
    name: String,
    size: u64,
    /// The UTC day (days since the epoch) the file was started on.
    day: u128,
    pending: Vec<u8>,
    synced: bool,
}

impl Sink {
    fn write_pending(&mut self) -> std::io::Result<()> {
        while !self.pending.is_empty() {
            match self.file.write(&self.pending) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pending.drain(..n);
                    self.size += n as u64;
                    self.synced = false;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn push(&mut self, lines: Vec<String>) {
        for l in lines {
            self.pending.extend_from_slice(l.as_bytes());
            self.pending.push(b'\n');
        }
    }
}

struct Writer {
    recorder: Recorder,
    sink: Sink,
    audit: Audit,
    healthy: Arc<AtomicBool>,
}

impl AuditLog {
    /// Opens (or starts) the log of a policy whose file is in `base`; `None` when the policy
    /// turns it off. Any problem with the directory, the keys or the last file is an error:
    /// clawguard does not run without the log it was told to keep.
    pub fn open(audit: &Audit, base: &Path, policy_version: &str) -> anyhow::Result<Option<Arc<AuditLog>>> {
        if !audit.enabled {
            return Ok(None);
        }
        let dir = if audit.dir.is_absolute() { audit.dir.clone() } else { base.join(&audit.dir) };
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the audit directory {}", dir.display()))?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let keys = keys_of(audit, base, true)?;
        let redactor = Redactor::new(&audit.redact_patterns)?;
        let cipher = match &audit.encryption_key {
            Some(r) if !audit.encrypt_fields.is_empty() => Some((FieldCipher::new(read_secret(r, base, false)?), audit.encrypt_fields.clone())),
            _ => None,
        };
        let nonce = Box::new(rand::random::<[u8; 12]>);
        let mut recorder = Recorder::new(keys, redactor, cipher, nonce).with_checkpoints(audit.checkpoint_every, audit.checkpoint_interval_seconds);
        recorder.set_policy_version(policy_version);
        let now = now_ns();
        let mut files = log_files(&dir)?;
        // A crash right after a rotation can leave the new file empty: the chain goes on in the
        // file before it.
        while files.len() > 1 && files.last().and_then(|f| std::fs::metadata(f).ok()).is_some_and(|m| m.len() == 0) {
            if let Some(empty) = files.pop() {
                std::fs::remove_file(&empty).with_context(|| format!("cannot remove the empty audit file {}", empty.display()))?;
            }
        }
        let (path, name) = match files.last() {
            Some(p) => (p.clone(), p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
            None => (dir.join(file_name(0)), file_name(0)),
        };
        if let Some(newest) = files.last() {
            // The newest file as the last run left it: clean (sealed), or incomplete (a crash).
            let text = String::from_utf8_lossy(&std::fs::read(newest)?).into_owned();
            let report = clawguard_filters::audit::verify::verify_files(&[(newest.display().to_string(), text)], Some(&recorder.keys().public_hex()));
            metrics::AUDIT_VERIFY.set(i64::from(report.exit_code()));
            if let Some(p) = &report.problem {
                tracing::error!(file = %newest.display(), line = p.line, seq = ?p.seq, class = p.problem.name(), detail = %p.detail, "the audit log does not verify: appending on; run clawguard audit verify");
            }
        }
        let mut file = OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(&path).with_context(|| format!("cannot open the audit log {}", path.display()))?;
        let tail = tail_of(&mut file).with_context(|| format!("the audit log {}", path.display()))?;
        if !tail.partial.is_empty() {
            // The previous run stopped in the middle of a line: those bytes were never a record
            // anyone was told about. The crash marker names them by length and hash.
            let keep = file.metadata()?.len() - tail.partial.len() as u64;
            file.set_len(keep)?;
            tracing::warn!(file = %path.display(), bytes = tail.partial.len(), "the audit log ended in a partial record (a crash): removed, and recorded as a crash marker");
        }
        let size = file.metadata()?.len();
        let first = recorder.start(&tail, &Origin { host: host_name(), version: env!("CARGO_PKG_VERSION").to_string() }, now);
        let day = day_of(now);
        let mut sink = Sink { dir: dir.clone(), file, name, size, day, pending: Vec::new(), synced: true };
        let crashed = first.iter().any(|l| l.contains("\"type\":\"crash\""));
        sink.push(first);
        sink.write_pending().with_context(|| format!("cannot write the audit log {}", path.display()))?;
        sink.file.sync_data()?;
        sink.synced = true;
        if crashed {
            metrics::AUDIT_CRASH_MARKERS.inc();
        }
        let healthy = Arc::new(AtomicBool::new(true));
        metrics::AUDIT_HEALTHY.set(1);
        let (tx, rx) = sync_channel(audit.queue);
        let mut writer = Writer { recorder, sink, audit: audit.clone(), healthy: healthy.clone() };
        let thread = std::thread::Builder::new().name("clawguard-audit".into()).spawn(move || writer.run(rx))?;
        tracing::info!(dir = %dir.display(), file = %path.display(), "audit log open");
        Ok(Some(Arc::new(AuditLog { tx, healthy, on_failure: audit.on_failure, fsync: audit.fsync, thread: Mutex::new(Some(thread)), dir })))
    }

    /// Whether a request whose record was not taken must be refused (`on_failure = "block"`).
    pub fn blocks(&self) -> bool {
        self.on_failure == OnFailure::Block
    }

    /// Whether requests that must be recorded are to be refused now (`on_failure = "block"`
    /// and the log cannot write).
    pub fn down(&self) -> bool {
        self.on_failure == OnFailure::Block && !self.healthy.load(Ordering::Relaxed)
    }

    /// Queues an event; with `fsync = "always"`, waits until it is on disk. `false`: it was not
    /// recorded (queue full, or the log cannot write); the loss is counted.
    pub async fn record(&self, event: Event) -> bool {
        let category = event.category.name();
        if self.fsync != Fsync::Always {
            return self.record_now(event);
        }
        let (ack, done) = tokio::sync::oneshot::channel();
        if !self.send(Msg::Event(Box::new(event), now_ns(), Some(ack)), category) {
            return false;
        }
        done.await.unwrap_or(false)
    }

    /// Queues an event without waiting.
    pub fn record_now(&self, event: Event) -> bool {
        let category = event.category.name();
        self.send(Msg::Event(Box::new(event), now_ns(), None), category)
    }

    fn send(&self, msg: Msg, category: &str) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => {
                metrics::AUDIT_QUEUE.inc();
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                metrics::AUDIT_DROPPED.with_label_values(&[category, "queue_full"]).inc();
                false
            }
        }
    }

    /// Seals the log and stops the writer (clean shutdown); later events are not recorded.
    pub fn close(&self) {
        let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) else { return };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // A blocking send: the seal must come after everything queued.
        if self.tx.send(Msg::Close(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
        }
        let _ = thread.join();
    }
}

impl Writer {
    fn run(&mut self, rx: Receiver<Msg>) {
        let mut acks: Vec<tokio::sync::oneshot::Sender<bool>> = Vec::new();
        let mut recorded: Vec<(&'static str, u64)> = Vec::new();
        // With `fsync = "always"` a request waits for its record: the writer wakes for each
        // one. Otherwise it drains the queue every 10 ms, so that recording costs a request a
        // queue push and no wake-up of this thread (on two cores, a wake-up per record halved
        // WebSocket throughput; docs/benchmarks.md).
        let wait_each = self.audit.fsync == Fsync::Always;
        loop {
            let msg = if wait_each {
                rx.recv_timeout(Duration::from_millis(250))
            } else {
                std::thread::sleep(BATCH_INTERVAL);
                match rx.try_recv() {
                    Ok(m) => Ok(m),
                    Err(std::sync::mpsc::TryRecvError::Empty) => Err(RecvTimeoutError::Timeout),
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                }
            };
            let mut batch = Vec::new();
            let mut close = None;
            match msg {
                Ok(Msg::Event(e, ts, ack)) => batch.push((e, ts, ack)),
                Ok(Msg::Close(done)) => close = Some(done),
                Err(RecvTimeoutError::Timeout) => {}
                // Every sender is gone: seal and stop.
                Err(RecvTimeoutError::Disconnected) => close = Some(std::sync::mpsc::channel().0),
            }
            while close.is_none() && batch.len() < 65_536 {
                match rx.try_recv() {
                    Ok(Msg::Event(e, ts, ack)) => batch.push((e, ts, ack)),
                    Ok(Msg::Close(done)) => close = Some(done),
                    Err(_) => break,
                }
            }
            metrics::AUDIT_QUEUE.sub(batch.len() as i64);
            let mut checkpointed = false;
            // While the file cannot take what a failed write left pending, nothing new is
            // chained: the chain on disk stays whole, and the loss is counted.
            let blocked = !self.sink.pending.is_empty();
            for (event, ts, ack) in batch {
                let category = event.category.name();
                if blocked {
                    metrics::AUDIT_DROPPED.with_label_values(&[category, "write_failed"]).inc();
                    if let Some(a) = ack {
                        let _ = a.send(false);
                    }
                    continue;
                }
                self.rotate_if_due(ts);
                checkpointed |= self.recorder.event(&event, ts, &mut self.sink.pending) > 1;
                match recorded.iter_mut().find(|(c, _)| *c == category) {
                    Some((_, n)) => *n += 1,
                    None => recorded.push((category, 1)),
                }
                acks.extend(ack);
            }
            // Counted per batch: one labelled lookup per category, not per record.
            for (category, n) in recorded.drain(..) {
                metrics::AUDIT_RECORDS.with_label_values(&[category]).inc_by(n);
            }
            let now = now_ns();
            if !blocked && self.recorder.checkpoint_due(now) {
                let line = self.recorder.checkpoint(now);
                self.sink.push(vec![line]);
                checkpointed = true;
            }
            if close.is_some() {
                if !blocked {
                    let seal = self.recorder.seal(now_ns());
                    self.sink.push(vec![seal]);
                }
                checkpointed = true;
            }
            let wants_sync = match self.audit.fsync {
                Fsync::Always => true,
                Fsync::Checkpoint => checkpointed,
                Fsync::Never => false,
            };
            let result = self.sink.write_pending().and_then(|()| if wants_sync && !self.sink.synced { self.sink.file.sync_data() } else { Ok(()) });
            match result {
                Ok(()) => {
                    if wants_sync {
                        self.sink.synced = true;
                    }
                    if checkpointed {
                        metrics::AUDIT_LAST_CHECKPOINT.set(i64::try_from(now / 1_000_000_000).unwrap_or(i64::MAX));
                    }
                    if !self.healthy.swap(true, Ordering::Relaxed) {
                        tracing::info!(file = %self.sink.name, "the audit log writes again");
                        metrics::AUDIT_HEALTHY.set(1);
                    }
                    for a in acks.drain(..) {
                        let _ = a.send(true);
                    }
                }
                Err(e) => {
                    metrics::AUDIT_WRITE_ERRORS.inc();
                    if self.healthy.swap(false, Ordering::Relaxed) {
                        tracing::error!(file = %self.sink.name, error = %e, pending = self.sink.pending.len(), on_failure = ?self.audit.on_failure, "the audit log cannot write");
                        metrics::AUDIT_HEALTHY.set(0);
                    }
                    for a in acks.drain(..) {
                        let _ = a.send(false);
                    }
                }
            }
            if let Some(done) = close {
                if blocked && self.sink.pending.is_empty() {
                    // What was pending went out at last: the seal follows it.
                    let seal = self.recorder.seal(now_ns());
                    self.sink.push(vec![seal]);
                    let _ = self.sink.write_pending().and_then(|()| self.sink.file.sync_data());
                }
                if !self.sink.pending.is_empty() {
                    tracing::error!(bytes = self.sink.pending.len(), "the audit log could not be sealed: records not written");
                }
                let _ = done.send(());
                return;
            }
        }
    }

    /// A new file when the current one is full or the day changed: the old file ends with a
    /// checkpoint, the new one starts with a file record naming it.
    fn rotate_if_due(&mut self, ts: u128) {
        let day = day_of(ts);
        let full = self.sink.size + self.sink.pending.len() as u64 >= self.audit.rotate_bytes;
        if !(full || (self.audit.rotate_daily && day != self.sink.day)) {
            return;
        }
        let checkpoint = self.recorder.checkpoint(ts);
        self.sink.push(vec![checkpoint]);
        if let Err(e) = self.sink.write_pending().and_then(|()| self.sink.file.sync_data()) {
            tracing::error!(error = %e, "cannot finish the audit file before rotation");
            return;
        }
        let next_seq = self.recorder.head().0.map_or(0, |s| s + 1);
        let name = file_name(next_seq);
        let path = self.sink.dir.join(&name);
        match OpenOptions::new().append(true).create(true).mode(0o600).open(&path) {
            Ok(file) => {
                let previous = std::mem::replace(&mut self.sink.name, name);
                self.sink.file = file;
                self.sink.size = 0;
                self.sink.day = day;
                let start = self.recorder.file_start(&previous, ts);
                self.sink.push(vec![start]);
                tracing::info!(file = %path.display(), previous = %previous, "audit log rotated");
                self.prune();
            }
            Err(e) => tracing::error!(file = %path.display(), error = %e, "cannot rotate the audit log: writing on in the current file"),
        }
    }

    /// Removes old files past `retain_files` or `retain_days` (never the current one).
    fn prune(&self) {
        let Ok(files) = log_files(&self.sink.dir) else { return };
        let old = &files[..files.len().saturating_sub(1)];
        let mut remove: Vec<&PathBuf> = Vec::new();
        if self.audit.retain_files > 0 && files.len() > self.audit.retain_files {
            remove.extend(&old[..files.len() - self.audit.retain_files]);
        }
        if self.audit.retain_days > 0 {
            let limit = Duration::from_secs(self.audit.retain_days * 86_400);
            for f in old {
                let aged = std::fs::metadata(f).and_then(|m| m.modified()).ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age > limit);
                if aged && !remove.contains(&f) {
                    remove.push(f);
                }
            }
        }
        for f in remove {
            match std::fs::remove_file(f) {
                Ok(()) => tracing::info!(file = %f.display(), "audit file removed by retention"),
                Err(e) => tracing::warn!(file = %f.display(), error = %e, "cannot remove an old audit file"),
            }
        }
    }
}
