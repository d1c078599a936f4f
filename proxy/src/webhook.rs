//! `clawguard webhook`: the mutating admission webhook server. HTTPS (rustls) on one port:
//! `POST /mutate` answers an `AdmissionReview` with `clawguard-inject`'s decision; `GET
//! /healthz` and `/readyz` answer 200. The certificate and key are read again when their files
//! change (cert-manager renews them in place): new handshakes use the new pair; a pair that does
//! not load keeps the old one, and the log says why.

use crate::tls::single_cert_config;
use clap::Parser;
use clawguard_inject::admission::{review, Scope};
use clawguard_inject::Settings;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

/// The largest request head, and body (the API server's own request limit is 3 MiB).
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 8 * 1024 * 1024;
/// How often the certificate files are compared with the pair in use.
const CERT_POLL: Duration = Duration::from_secs(2);

/// `clawguard webhook` arguments.
#[derive(Parser)]
pub struct Args {
    /// The HTTPS listen address.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// The serving certificate (PEM chain).
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// A namespace whose pods are never injected (the webhook's own; repeatable).
    #[arg(long = "exclude-namespace")]
    exclude_namespaces: Vec<String>,
    #[command(flatten)]
    sidecar: crate::inject_cli::SidecarArgs,
}

/// The certificate files' contents, hashed: a change of either is a change.
fn files_version(cert: &Path, key: &Path) -> String {
    let mut h = Sha256::new();
    for f in [cert, key] {
        match std::fs::read(f) {
            Ok(bytes) => h.update(&bytes),
            Err(e) => h.update(e.to_string().as_bytes()),
        }
        h.update([0]);
    }
    hex::encode(h.finalize())
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let config = single_cert_config(&read(cert)?, &read(key)?).map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Runs the server until it is killed; exit 1 when it cannot start.
pub fn run(args: Args) -> ExitCode {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new("info")).with_writer(std::io::stderr).try_init();
    pingora::tls::install_default_crypto_provider();
    let first = match acceptor(&args.cert, &args.key) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("clawguard webhook: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("clawguard webhook: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args, first)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clawguard webhook: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args, first: TlsAcceptor) -> std::io::Result<()> {
    let current = Arc::new(arc_swap::ArcSwap::from_pointee(first));
    {
        let (current, cert, key) = (current.clone(), args.cert.clone(), args.key.clone());
        let mut seen = files_version(&cert, &key);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CERT_POLL).await;
                let now = files_version(&cert, &key);
                if now == seen {
                    continue;
                }
                seen = now;
                match acceptor(&cert, &key) {
                    Ok(a) => {
                        current.store(Arc::new(a));
                        tracing::info!(cert = %cert.display(), "webhook certificate reloaded: new handshakes use it");
                    }
                    Err(e) => tracing::warn!(error = %e, "the webhook certificate files changed but do not load: keeping the certificate in use"),
                }
            }
        });
    }
    let settings = Arc::new(args.sidecar.settings(false));
    let scope = Arc::new(Scope { excluded_namespaces: args.exclude_namespaces });
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, "clawguard webhook listening (POST /mutate, GET /healthz, /readyz)");
    loop {
        let (tcp, peer) = listener.accept().await?;
        let (acceptor, settings, scope) = (current.load_full(), settings.clone(), scope.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            if let Err(e) = connection(tls, &settings, &scope).await {
                tracing::debug!(%peer, error = %e, "webhook connection ended");
            }
        });
    }
}

/// Serves the requests of one connection (the API server keeps it alive).
async fn connection<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S, settings: &Settings, scope: &Scope) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    loop {
        let (method, path, head_len, body_len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let length = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")).map(|h| std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok()));
                    let chunked = req.headers.iter().any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
                    let body_len = match (length, chunked) {
                        (_, true) => return respond(&mut s, 411, "text/plain", b"a Content-Length body is expected\n").await,
                        (Some(None), _) => return respond(&mut s, 400, "text/plain", b"unreadable Content-Length\n").await,
                        (Some(Some(n)), _) => n,
                        (None, _) => 0,
                    };
                    if body_len > MAX_BODY {
                        return respond(&mut s, 413, "text/plain", b"the AdmissionReview is too large\n").await;
                    }
                    break (req.method.unwrap_or("").to_string(), req.path.unwrap_or("").to_string(), n, body_len);
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => return respond(&mut s, 431, "text/plain", b"request head too large\n").await,
                Err(_) => return respond(&mut s, 400, "text/plain", b"not HTTP/1.1\n").await,
            }
            let mut chunk = [0u8; 8192];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        while buf.len() < head_len + body_len {
            let mut chunk = [0u8; 65536];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf[head_len..head_len + body_len].to_vec();
        buf.drain(..head_len + body_len);
        let route = path.split('?').next().unwrap_or("");
        match (method.as_str(), route) {
            ("POST", "/mutate") => {
                let answer = review(&body, settings, scope);
                if let Some(message) = answer["response"]["status"]["message"].as_str() {
                    tracing::warn!(uid = %answer["response"]["uid"], %message, "pod refused");
                } else if answer["response"]["patch"].is_string() {
                    tracing::info!(uid = %answer["response"]["uid"], "pod injected");
                }
                write(&mut s, 200, "application/json", answer.to_string().as_bytes()).await?;
            }
            ("GET", "/healthz" | "/readyz") => write(&mut s, 200, "text/plain", b"ok\n").await?,
            _ => write(&mut s, 404, "text/plain", b"not found: POST /mutate, GET /healthz, GET /readyz\n").await?,
        }
    }
}

async fn write<S: tokio::io::AsyncWrite + Unpin>(s: &mut S, status: u16, kind: &str, body: &[u8]) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        411 => "Length Required",
        413 => "Payload Too Large",
        _ => "Request Header Fields Too Large",
    };
    let head = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await
}

/// Answers and ends the connection (after a request that cannot be read).
async fn respond<S: tokio::io::AsyncWrite + Unpin>(s: &mut S, status: u16, kind: &str, body: &[u8]) -> std::io::Result<()> {
    write(s, status, kind, body).await?;
    s.shutdown().await
}
