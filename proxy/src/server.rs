//! Wires the pingora server: proxy listeners (plaintext and TLS), the admin
//! listener and the lifecycle service.

use crate::admin::AdminApp;
use crate::config::Config;
use crate::metrics;
use crate::proxy::Clawguard;
use crate::shared::Shared;
use crate::readiness::{Lifecycle, Readiness};
use anyhow::Context;
use pingora::apps::http_app::HttpServer;
use crate::listeners::ClientListeners;
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Builds the server and runs it until shutdown.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    raise_open_file_limit();
    // SIGHUP must never kill the proxy (operators send it to reload): its handler is installed
    // before anything listens, and reloads once the shared state exists.
    let (hangups, signals) = sighup_stream().context("cannot handle SIGHUP")?;
    let p = &cfg.policy.policy;
    let listeners: Vec<SocketAddr> = p.server.listen.iter().chain(&p.tls.listen).copied().collect();
    for addr in listeners.iter().chain(std::iter::once(&p.admin.listen)) {
        // pingora exits without a useful message when a listener cannot bind; say which one.
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    }

    let conf = ServerConf {
        threads: if p.server.threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) } else { p.server.threads },
        grace_period_seconds: Some(p.server.shutdown_grace_seconds),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared::new(&cfg, shutdown_rx)?);
    if !shared.http_decisions {
        tracing::error!("CLAWGUARD_BENCH_NO_HTTP_DECISIONS is set: HTTP requests are forwarded WITHOUT route decisions or security headers (a benchmark baseline; never in production)");
    }
    crate::reload::on_sighup(hangups, signals, shared.clone()).context("cannot start the SIGHUP handler")?;
    if shared.path.is_some() {
        crate::reload::watch_file(Arc::downgrade(&shared)).context("cannot start the policy file watcher")?;
    }
    // The spend poll follows the policy in force: it idles while `spend.poll` is false.
    crate::spend_poll::start(Arc::downgrade(&shared)).context("cannot start the spend poll")?;
    let readiness = Arc::new(Mutex::new(Readiness::default()));
    // Rate-limit keys that have fully refilled carry no information: drop them on a timer.
    let pruned = Arc::downgrade(&shared);
    let every = std::time::Duration::from_secs(p.limits.prune_interval_seconds.max(1));
    std::thread::Builder::new().name("clawguard-limits".into()).spawn(move || loop {
        std::thread::sleep(every);
        let Some(shared) = pruned.upgrade() else { return };
        let live = shared.live();
        let left = live.guard.limits.prune() + live.guard.clients.prune();
        crate::metrics::RATE_LIMIT_KEYS.set(i64::try_from(left).unwrap_or(i64::MAX));
        tracing::trace!(keys = left, "rate-limit keys pruned");
    })?;

    // Client connections are admitted, held to head deadlines and (on TLS listeners) handshaken
    // with clawguard's own rustls config by clawguard's accept loop, then served by pingora.
    let acceptor = shared.tls.as_ref().map(|slot| slot.acceptor.clone());
    let tls_listen = if acceptor.is_some() { p.tls.listen.clone() } else { Vec::new() };
    let app = http_proxy(&server.configuration, Clawguard::new(shared.clone()));
    let proxy = ClientListeners::new("clawguard proxy", p.server.listen.clone(), tls_listen, acceptor, app, shared.clone());
    let mut admin = Service::new("clawguard admin".to_string(), HttpServer::new_app(AdminApp { shared: shared.clone(), readiness: readiness.clone() }));
    admin.add_tcp(&p.admin.listen.to_string());
    let lifecycle = Lifecycle { shared: shared.clone(), detail: readiness, shutdown_tx, listeners };

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(background_service("clawguard lifecycle", lifecycle));

    metrics::POLICY_INFO.with_label_values(&[&cfg.policy.version]).set(1);
    metrics::BUILD_INFO.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    tracing::info!(
        version = %cfg.policy.version,
        policy = %cfg.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "embedded".into()),
        listen = ?p.server.listen,
        tls_listen = ?p.tls.listen,
        upstream = %p.upstream.address,
        admin = %p.admin.listen,
        "clawguard starting"
    );
    server.run(pingora::server::RunArgs::default());
    if let Some(audit) = &shared.audit {
        audit.close();
    }
    tracing::info!("clawguard stopped");
    Ok(())
}

/// The SIGHUP stream and the runtime that drives it (see `reload::on_sighup`).
fn sighup_stream() -> anyhow::Result<(tokio::signal::unix::Signal, tokio::runtime::Runtime)> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let hangups = rt.block_on(async { signal(SignalKind::hangup()) })?;
    Ok((hangups, rt))
}

/// Many WebSocket connections need many descriptors: raise the soft limit to the hard one.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
}
