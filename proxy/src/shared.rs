//! State shared by every connection and request: the policy in force compiled for decisions,
//! replay memory, connection counts, node pins, the session ledger, the approval memory,
//! readiness and the shutdown signal; and the clock decisions read.

use crate::config::Config;
use crate::pin_keeper::PersistentPins;
use clawguard_filters::conn_limits::{ClientConnections, ConnectionCounts};
use clawguard_filters::context::{Env, Guard};
use clawguard_filters::exec_guard::ApprovalMemory;
use clawguard_filters::nodes::NodePolicy;
use clawguard_filters::replay::ReplayCache;
use clawguard_filters::sessions::SessionLedger;
use clawguard_policies::LoadedPolicy;
use anyhow::Context;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::watch;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// At most this many recent signatures are remembered.
const REPLAY_CAPACITY: usize = 100_000;

/// One policy version in force: the file as loaded and what was compiled from it for decisions.
/// A reload swaps it whole (`Shared::install`), so a request or message reads one version.
pub struct Live {
    /// The policy.
    pub policy: LoadedPolicy,
    /// The policy compiled for decisions (identities, rules, limits, mode).
    pub guard: Guard,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// What its secret references resolved to, as a hash ([`crate::config::Config::secrets_version`]).
    pub secrets_version: String,
}

/// Protocol drift: what showed that the gateway or its clients are newer than the method table.
pub struct Drift {
    /// Why clawguard thinks so (a `hello-ok` of another version, requests for unknown methods);
    /// `None`: no sign yet.
    pub reason: Option<String>,
    /// Requests for methods the method table does not have, over the last minute.
    pub unknown: clawguard_filters::drift::UnknownMethods,
}

impl Drift {
    /// No sign yet, with the policy's threshold.
    pub fn new(policy: &clawguard_policies::Policy) -> Self {
        Drift { reason: None, unknown: clawguard_filters::drift::UnknownMethods::new(policy.gateway.unknown_methods_per_minute) }
    }
}

/// The TLS listeners' certificates in force, swapped by a reload that changes them.
pub struct TlsSlot {
    /// The acceptor new handshakes use.
    pub acceptor: Arc<ArcSwap<pingora::listeners::tls::Acceptor>>,
    /// The version of the files it was built from (`tls::TlsMaterial::version`).
    pub version: Mutex<String>,
}

/// State shared by every connection.
pub struct Shared {
    /// The TLS listeners' certificates (`None`: no TLS listener).
    pub tls: Option<TlsSlot>,
    /// The policy version in force (see [`Shared::live`]).
    live: ArcSwap<Live>,
    /// Counts policy versions installed since start; connections watch it to be re-judged.
    generation: watch::Sender<u64>,
    /// Counts enforced spend-budget trips; connections watch it to stop runs in flight
    /// (`spend.abort_running`).
    pub spend_trips: watch::Sender<u64>,
    /// The last reload's outcome, for `/policy` (see `reload.rs`).
    pub reloads: Mutex<crate::reload::ReloadState>,
    /// Serialises reloads (file watcher, SIGHUP, `/reload`).
    pub reloading: Mutex<()>,
    /// The policy the process started with: what needs a restart is judged against it.
    pub started: clawguard_policies::Policy,
    /// Signs that the gateway speaks a protocol newer than the method table (cleared by a reload).
    pub drift: Mutex<Drift>,
    /// Device signatures seen in the last 10 minutes, across connections.
    pub replay: Mutex<ReplayCache>,
    /// Open WebSocket connections per address and identity.
    pub connections: Mutex<ConnectionCounts>,
    /// Every open client connection per address.
    pub clients: Mutex<ClientConnections>,
    /// Where each open client connection is in its request cycle (the head deadline).
    pub heads: crate::listeners::Heads,
    /// The policy file (`None`: embedded).
    pub path: Option<PathBuf>,
    /// Becomes `true` when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Whether the listeners and the gateway answer (see `readiness.rs`).
    pub ready: AtomicBool,
    /// The node pin store (persisted, shared with `clawguard nodes`).
    pub pins: Arc<PersistentPins>,
    /// Sessions created per identity and runs in flight.
    pub ledger: SessionLedger,
    /// Approval ids seen and the exec policy's verdict on their commands.
    pub approvals: ApprovalMemory,
    /// HTTP route decisions and response header rules apply (off only for the benchmark's
    /// baseline: `CLAWGUARD_BENCH_NO_HTTP_DECISIONS`, see docs/benchmarks.md).
    pub http_decisions: bool,
    /// The audit log (`None`: off, or the embedded policy, which has no directory for it).
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// The store shared with other replicas (`[state] backend = "redis"`; opened at start).
    pub store: Option<Arc<crate::redis_store::RedisStore>>,
}

impl Shared {
    /// Shared state for a loaded configuration; loads the node pin store (a corrupt one is
    /// an error).
    pub fn new(cfg: &Config, shutdown: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let policy = &cfg.policy.policy;
        let base = cfg.path.as_deref().and_then(std::path::Path::parent).map(PathBuf::from).unwrap_or_default();
        let store = crate::pin_file::store_path(&base, &policy.nodes.store);
        let pins = PersistentPins::start(store, NodePolicy::new(&policy.nodes))?;
        let audit = match &cfg.path {
            Some(path) => crate::audit::AuditLog::open(&policy.audit, &base, &cfg.policy.version).with_context(|| format!("the audit log of {}", path.display()))?,
            None => {
                tracing::warn!("no audit log: the embedded policy has no directory to keep one in (run with --policy)");
                None
            }
        };
        if let Some(a) = &audit {
            pins.record_changes_in(a.clone());
            let source = cfg.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            a.record_now(clawguard_filters::surfaces::record::policy_load(&cfg.policy.version, &source));
        }
        let store = open_store(&policy.state, &base)?;
        let tls = cfg.tls.as_ref().map(|m| TlsSlot {
            acceptor: Arc::new(ArcSwap::from_pointee(pingora::listeners::tls::Acceptor::from_server_config(m.server_config.clone()))),
            version: Mutex::new(m.version.clone()),
        });
        Ok(Shared {
            tls,
            audit,
            store,
            pins,
            ledger: SessionLedger::default(),
            approvals: ApprovalMemory::default(),
            live: ArcSwap::from_pointee(Live { policy: cfg.policy.clone(), guard: Guard::new(&cfg.policy.policy), loaded_at: cfg.loaded_at, secrets_version: cfg.secrets_version.clone() }),
            generation: watch::channel(0).0,
            spend_trips: watch::channel(0).0,
            reloads: Mutex::new(crate::reload::ReloadState::default()),
            reloading: Mutex::new(()),
            started: cfg.policy.policy.clone(),
            drift: Mutex::new(Drift::new(&cfg.policy.policy)),
            replay: Mutex::new(ReplayCache::new(clawguard_filters::state::replay::WINDOW_MS, REPLAY_CAPACITY)),
            connections: Mutex::new(ConnectionCounts::default()),
            clients: Mutex::new(ClientConnections::default()),
            heads: crate::listeners::Heads::default(),
            path: cfg.path.clone(),
            shutdown,
            ready: AtomicBool::new(false),
            http_decisions: std::env::var_os("CLAWGUARD_BENCH_NO_HTTP_DECISIONS").is_none(),
        })
    }

    /// Whether `/readyz` should say ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !*self.shutdown.borrow()
    }

    /// The policy version in force now (cheap: no reference count is touched; keep it for
    /// one request or message, not across a connection's life).
    pub fn live(&self) -> arc_swap::Guard<Arc<Live>> {
        self.live.load()
    }

    /// The policy version in force, to hold across a request's hooks.
    pub fn live_arc(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Puts a new policy version in force and tells every connection to re-judge itself.
    pub fn install(&self, live: Live) -> Arc<Live> {
        let drift = Drift::new(&live.policy.policy);
        let previous = self.live.swap(Arc::new(live));
        // The new version says which gateway to expect: the next handshake tells again.
        *self.drift.lock().unwrap_or_else(|e| e.into_inner()) = drift;
        crate::metrics::GATEWAY_DRIFT.set(0);
        self.generation.send_modify(|g| *g += 1);
        previous
    }

    /// Changes whenever a new policy version is installed.
    pub fn policy_changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The decision environment over `live`: the policy, the clock, the shared state.
    pub fn env<'a>(&'a self, live: &'a Live) -> Env<'a> {
        let audit_down = self.audit.as_ref().is_some_and(|a| a.down());
        Env { guard: &live.guard, now_ms: now_ms(), replay: &self.replay, pins: &*self.pins, ledger: &self.ledger, approvals: &self.approvals, audit_down, shared: self.store.as_deref().map(|s| s as &dyn clawguard_filters::state::shared::SharedStore) }
    }
}

/// The Redis store of `[state] backend = "redis"` (its URL read from the secret reference).
/// A Redis that does not answer yet is not an error: the store's failure rules apply until
/// it does (replay and lockout checks refuse), and the log says so.
fn open_store(state: &clawguard_policies::State, base: &std::path::Path) -> anyhow::Result<Option<Arc<crate::redis_store::RedisStore>>> {
    if state.backend != clawguard_policies::StateBackend::Redis {
        return Ok(None);
    }
    let reference = state.url.as_deref().context("state.url is not set")?;
    let url = crate::secrets::read_text(reference, base).map_err(|e| anyhow::anyhow!("state.url {reference}: {e}"))?;
    let store = crate::redis_store::RedisStore::new(url.trim(), std::time::Duration::from_millis(state.timeout_ms), &state.prefix).map_err(|e| anyhow::anyhow!("{e}"))?;
    match store.ping() {
        Ok(()) => tracing::info!(prefix = %state.prefix, "shared state on Redis"),
        Err(e) => tracing::warn!(error = %e, "shared state on Redis, which does not answer yet: signed connects and lockout checks are refused until it does"),
    }
    Ok(Some(Arc::new(store)))
}
