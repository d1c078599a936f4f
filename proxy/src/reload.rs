//! Policy hot reload: the policy file is read and validated exactly as `clawguard check` does
//! (TLS files included), compiled, given the rate-limit state of the version it replaces, and
//! swapped in whole; every open connection is then re-judged (`websocket.rs`). A file that does
//! not validate changes nothing: the running version stays, the located error is logged, counted
//! and shown on `/policy`. Settings that cannot change in a running process are named as
//! needing a restart, never silently ignored. Triggers: a change of the file's contents (its
//! directory watched with `notify`, and polled as a fallback, so a Kubernetes ConfigMap's
//! `..data` swap is seen), SIGHUP, `POST /reload` on the admin listener, and `clawguard reload`.

use crate::metrics;
use crate::shared::{Live, Shared};
use clawguard_filters::context::Guard;
use clawguard_policies::Policy;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the policy file's contents are compared with the running version.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long the policy file's contents must stay the same before the watcher reloads them.
const SETTLE: Duration = Duration::from_millis(50);

/// A policy file that did not load.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The version (SHA-256) of the rejected bytes, when they could be read.
    pub version: Option<String>,
    /// The error, located (`file:line:column: …`).
    pub error: String,
    /// When.
    pub at: SystemTime,
}

/// What `/policy` reports about reloads.
#[derive(Debug, Clone, Default)]
pub struct ReloadState {
    /// The last file that did not load (cleared when a later one does).
    pub rejected: Option<Rejected>,
    /// Settings the running version changed that only a restart applies.
    pub needs_restart: Vec<String>,
    /// Policy versions installed by reload since start.
    pub applied: u64,
    /// How long the last applied reload took, from reading the file to the new version in
    /// force (milliseconds).
    pub last_applied_ms: Option<f64>,
}

/// The outcome of one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new version is in force; `needs_restart` names the settings it changed that are not
    /// applied until a restart.
    Applied {
        /// The new version (the same as `previous` when only the certificates changed).
        version: String,
        /// The version it replaced.
        previous: String,
        /// Settings that need a restart.
        needs_restart: Vec<String>,
        /// Whether new TLS material (certificate, key, client CA) is in force.
        tls: bool,
    },
    /// The file is the version already in force.
    Unchanged {
        /// The version.
        version: String,
    },
    /// The file did not load; the running version stays.
    Rejected {
        /// Why (located).
        error: String,
    },
}

impl Outcome {
    /// As JSON for `/reload` and `clawguard reload`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Outcome::Applied { version, previous, needs_restart, tls } => serde_json::json!({ "result": "applied", "version": version, "previous": previous, "needs_restart": needs_restart, "tls_reloaded": tls }),
            Outcome::Unchanged { version } => serde_json::json!({ "result": "unchanged", "version": version }),
            Outcome::Rejected { error } => serde_json::json!({ "result": "rejected", "error": error }),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Unchanged { .. } => "unchanged",
            Outcome::Rejected { .. } => "rejected",
        }
    }
}

/// The settings of `new` that differ from `old` (the policy the process started with) and that a
/// running process cannot apply.
pub fn needs_restart(old: &Policy, new: &Policy) -> Vec<String> {
    // Plain data throughout: equal debug text is equal settings.
    let differs = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut out = Vec::new();
    if old.server.listen != new.server.listen {
        out.push("server.listen (the listeners are bound at start)".to_string());
    }
    if old.server.threads != new.server.threads {
        out.push("server.threads (the worker threads start with the process)".to_string());
    }
    if old.tls.listen != new.tls.listen {
        out.push("tls.listen (the listeners are bound at start; certificates, keys and the client CA reload live)".to_string());
    }
    if old.admin.listen != new.admin.listen {
        out.push("admin.listen (the admin listener is bound at start)".to_string());
    }
    if differs(&old.logging, &new.logging) {
        out.push("logging (the log format and filter are installed at start)".to_string());
    }
    let mut audit = new.audit.clone();
    audit.record_allowed = old.audit.record_allowed;
    if differs(&old.audit, &audit) {
        out.push("audit (the log's directory, keys, rotation and redaction are opened at start; record_allowed applies now)".to_string());
    }
    if differs(&old.state, &new.state) {
        out.push("state (the shared store is opened at start)".to_string());
    }
    if differs(&old.nodes, &new.nodes) {
        out.push("nodes (the pin store and its policy are opened at start)".to_string());
    }
    out
}

/// Reads, validates and installs the policy file; `trigger` says what asked (for the log).
pub fn reload(shared: &Shared, trigger: &str) -> Outcome {
    let _one_at_a_time = shared.reloading.lock().unwrap_or_else(|e| e.into_inner());
    let started = std::time::Instant::now();
    let Some(path) = shared.path.clone() else {
        return finish(shared, trigger, Outcome::Rejected { error: "the embedded policy has no file to reload: run with --policy FILE".into() }, None);
    };
    let running = shared.live_arc();
    let cfg = match crate::config::load(Some(&path)) {
        Ok(cfg) => cfg,
        Err(e) => {
            let version = std::fs::read(&path).ok().map(|b| clawguard_policies::policy_version(&b));
            return finish(shared, trigger, Outcome::Rejected { error: e.to_string() }, version);
        }
    };
    // New certificates go in force for new handshakes; open connections keep theirs.
    let tls = match (&shared.tls, &cfg.tls) {
        (Some(slot), Some(material)) => {
            let mut version = slot.version.lock().unwrap_or_else(|e| e.into_inner());
            let changed = *version != material.version;
            if changed {
                slot.acceptor.store(Arc::new(pingora::listeners::tls::Acceptor::from_server_config(material.server_config.clone())));
                version.clone_from(&material.version);
                metrics::TLS_RELOADS.inc();
                tracing::info!(trigger, tls = %material.version, "TLS certificates reloaded: new handshakes use them");
            }
            changed
        }
        _ => false,
    };
    // Judged against what the process started with: a setting changed two reloads ago still
    // needs the restart.
    let restart = needs_restart(&shared.started, &cfg.policy.policy);
    if cfg.policy.version == running.policy.version && cfg.secrets_version == running.secrets_version {
        let outcome = if tls {
            Outcome::Applied { version: cfg.policy.version.clone(), previous: cfg.policy.version, needs_restart: restart, tls }
        } else {
            Outcome::Unchanged { version: cfg.policy.version }
        };
        return finish(shared, trigger, outcome, None);
    }
    let mut guard = Guard::new(&cfg.policy.policy);
    guard.carry_state_from(&running.guard);
    let version = cfg.policy.version.clone();
    let previous = shared.install(Live { policy: cfg.policy, guard, loaded_at: cfg.loaded_at, secrets_version: cfg.secrets_version });
    let _ = metrics::POLICY_INFO.remove_label_values(&[&previous.policy.version]);
    metrics::POLICY_INFO.with_label_values(&[&version]).set(1);
    if let Some(audit) = &shared.audit {
        audit.record_now(clawguard_filters::surfaces::record::policy_reload(&version, &previous.policy.version, &path.display().to_string(), trigger, &restart));
    }
    let outcome = finish(shared, trigger, Outcome::Applied { version, previous: previous.policy.version.clone(), needs_restart: restart, tls }, None);
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
    shared.reloads.lock().unwrap_or_else(|e| e.into_inner()).last_applied_ms = Some(took_ms);
    tracing::info!(trigger, took_ms, "policy reload done");
    outcome
}

fn finish(shared: &Shared, trigger: &str, outcome: Outcome, rejected_version: Option<String>) -> Outcome {
    metrics::POLICY_RELOADS.with_label_values(&[outcome.label()]).inc();
    let mut state = shared.reloads.lock().unwrap_or_else(|e| e.into_inner());
    match &outcome {
        Outcome::Applied { version, previous, needs_restart, .. } => {
            state.rejected = None;
            state.applied += 1;
            state.needs_restart.clone_from(needs_restart);
            metrics::POLICY_RELOAD_FAILING.set(0);
            tracing::info!(trigger, %version, %previous, "policy reloaded");
            for setting in needs_restart {
                tracing::warn!(trigger, %version, setting, "the reloaded policy changes a setting that needs a restart: it is not applied until clawguard restarts");
            }
        }
        Outcome::Unchanged { version } => {
            if state.rejected.take().is_some() {
                metrics::POLICY_RELOAD_FAILING.set(0);
            }
            tracing::debug!(trigger, %version, "policy unchanged");
        }
        Outcome::Rejected { error } => {
            metrics::POLICY_RELOAD_FAILING.set(1);
            tracing::error!(trigger, error = %error, "policy reload rejected: the running policy stays in force");
            if let (Some(audit), Some(path)) = (&shared.audit, &shared.path) {
                audit.record_now(clawguard_filters::surfaces::record::policy_rejected(rejected_version.as_deref(), &path.display().to_string(), trigger, error));
            }
            state.rejected = Some(Rejected { version: rejected_version, error: error.clone(), at: SystemTime::now() });
        }
    }
    outcome
}

/// Watches the policy file (and the TLS files it names) and reloads when their contents
/// change: the policy file's directory is
/// watched (`notify`: an edit in place, a rename over the file and a ConfigMap's `..data` swap
/// are all events in that directory), and the contents are also compared every
/// [`POLL_INTERVAL`] in case an event is missed (a filesystem without inotify, a watch that
/// could not be set). A file whose contents were rejected is not retried until they change.
pub fn watch_file(shared: std::sync::Weak<Shared>) -> std::io::Result<()> {
    let dir = shared.upgrade().and_then(|s| s.path.clone()).and_then(|p| p.parent().map(std::path::Path::to_path_buf)).unwrap_or_else(|| ".".into());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    })
    .and_then(|mut w| {
        use notify::Watcher as _;
        w.watch(if dir.as_os_str().is_empty() { std::path::Path::new(".") } else { &dir }, notify::RecursiveMode::NonRecursive).map(|()| w)
    });
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the policy's directory: changes are found by polling every second");
            None
        }
    };
    std::thread::Builder::new().name("clawguard-reload".into()).spawn(move || {
        // Dropped with the thread: the watch lasts as long as the process.
        let _watcher = watcher;
        let mut seen: Option<String> = None;
        loop {
            match rx.recv_timeout(POLL_INTERVAL) {
                // A burst of events (an editor's save, the kubelet's swap): let it settle.
                Ok(()) => {
                    std::thread::sleep(SETTLE);
                    while rx.try_recv().is_ok() {}
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(POLL_INTERVAL),
            }
            let Some(shared) = shared.upgrade() else { return };
            let Some(path) = shared.path.clone() else { return };
            let Ok(bytes) = std::fs::read(&path) else {
                // A ConfigMap swap can leave the path briefly absent; the next look sees it.
                continue;
            };
            let version = clawguard_policies::policy_version(&bytes);
            let (running, tls_files, secrets_changed, secrets) = {
                let live = shared.live();
                // As config::load resolves the TLS paths: against the policy's directory (an
                // empty base, the working directory, only for a path with no parent).
                let base = path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
                // A rotated token file changes what the policy means, not its bytes.
                let secrets = crate::secrets::version(&live.policy.policy, &base);
                (live.policy.version.clone(), crate::tls::files_version(&live.policy.policy, &base), secrets != live.secrets_version, secrets)
            };
            let running_tls = shared.tls.as_ref().map(|slot| slot.version.lock().unwrap_or_else(|e| e.into_inner()).clone());
            // The certificates count only while the policy in force names the same files.
            let tls_changed = version == running && running_tls.is_some() && tls_files != running_tls;
            // No TLS listener: the policy's version alone is the state.
            let state = format!("{version}/{}/{secrets}", tls_files.unwrap_or_default());
            if (version == running && !tls_changed && !secrets_changed) || seen.as_deref() == Some(state.as_str()) {
                continue;
            }
            // A writer that truncates and then writes (`echo > policy.toml`, most tools other
            // than editors) leaves a moment where the file is empty or half written, and a
            // prefix of a policy can be a valid, different policy: only contents that stay the
            // same across a settle interval are reloaded (the next look sees the rest).
            std::thread::sleep(SETTLE);
            if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
                continue;
            }
            seen = Some(state);
            reload(&shared, "file");
        }
    })?;
    Ok(())
}

/// Reloads on SIGHUP (the signal stream was installed before anything listened, so a SIGHUP
/// never kills the process).
pub fn on_sighup(mut hangups: tokio::signal::unix::Signal, rt: tokio::runtime::Runtime, shared: Arc<Shared>) -> std::io::Result<()> {
    std::thread::Builder::new().name("clawguard-signals".into()).spawn(move || {
        rt.block_on(async move {
            while hangups.recv().await.is_some() {
                let shared = shared.clone();
                // Validation reads files: off the signal loop.
                let _ = tokio::task::spawn_blocking(move || reload(&shared, "sighup")).await;
            }
        })
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        clawguard_policies::LoadedPolicy::parse("p.toml", text).unwrap_or_else(|e| panic!("{e}")).policy
    }

    #[test]
    fn issue15_what_needs_a_restart_is_named_and_what_applies_live_is_not() {
        let start = policy("[server]\nlisten = [\"127.0.0.1:18790\"]\n[audit]\nrecord_allowed = \"sensitive\"\n");
        assert!(needs_restart(&start, &start).is_empty());
        // Live: identities, limits, the HTTP rules, record_allowed, the TLS files.
        let live = policy("[server]\nlisten = [\"127.0.0.1:18790\"]\n[audit]\nrecord_allowed = \"all\"\n[limits]\nsystem_run_per_minute = 1\n");
        assert!(needs_restart(&start, &live).is_empty(), "{:?}", needs_restart(&start, &live));
        let restart = policy("[server]\nlisten = [\"127.0.0.1:18791\"]\nthreads = 3\n[admin]\nlisten = \"127.0.0.1:15021\"\n[logging]\nlevel = \"debug\"\n[audit]\ndir = \"elsewhere\"\n[nodes]\nstore = \"other.json\"\n");
        let reported = needs_restart(&start, &restart);
        let named: Vec<&str> = reported.iter().map(|s| s.split(' ').next().unwrap_or("")).collect();
        assert_eq!(named, ["server.listen", "server.threads", "admin.listen", "logging", "audit", "nodes"]);
    }
}
