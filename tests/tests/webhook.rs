//! Issue 16: `clawguard webhook`, the real binary over TLS: an `AdmissionReview` fixture posted
//! to `/mutate` gets the recorded answer, the health endpoints answer, and a renewed certificate
//! is used for new handshakes while one that does not load is not.

use clawguard_tests::harness::{clawguard_bin, free_port};
use rcgen::{CertificateParams, KeyPair};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A self-signed serving pair for `localhost`, written to `dir`; its certificate.
fn write_pair(dir: &Path) -> CertificateDer<'static> {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(dir.join("tls.crt.new"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key.new"), key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("tls.key.new"), dir.join("tls.key")).unwrap();
    std::fs::rename(dir.join("tls.crt.new"), dir.join("tls.crt")).unwrap();
    cert.der().clone()
}

fn trusting(cert: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    Arc::new(ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots).with_no_client_auth())
}

/// One request over a new TLS connection; the status and body.
async fn request(config: Arc<ClientConfig>, addr: SocketAddr, head: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = TlsConnector::from(config).connect(ServerName::try_from("localhost").unwrap(), tcp).await?;
    tls.write_all(format!("{head}\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes()).await?;
    tls.write_all(body).await?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    // The server keeps the connection open: read until the body is whole.
    loop {
        let n = tls.read(&mut chunk).await?;
        out.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&out).to_string();
        if let Some((h, b)) = text.split_once("\r\n\r\n") {
            let len = h.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            if b.len() >= len || n == 0 {
                let status = h.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                return Ok((status, b.to_string()));
            }
        }
        if n == 0 {
            return Ok((0, text));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn issue16_the_webhook_answers_reviews_over_tls_and_reloads_its_certificate() {
    let dir = std::env::temp_dir().join(format!("clawguard-webhook-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let first = write_pair(&dir);
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let mut child = std::process::Command::new(clawguard_bin())
        .args(["webhook", "--listen", &addr.to_string(), "--exclude-namespace", "clawguard-system"])
        .arg("--cert")
        .arg(dir.join("tls.crt"))
        .arg("--key")
        .arg(dir.join("tls.key"))
        .stderr(log)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let health = loop {
        if let Ok(r) = request(trusting(&first), addr, "GET /healthz HTTP/1.1", b"").await {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the webhook did not start: {}", std::fs::read_to_string(dir.join("log")).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(health.0, 200);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/inject/admission");
    for case in ["pod-create", "pod-host-network-refused", "pod-in-excluded-namespace"] {
        let body = std::fs::read(fixtures.join(format!("{case}.request.json"))).unwrap();
        let (status, answer) = request(trusting(&first), addr, "POST /mutate HTTP/1.1\r\nContent-Type: application/json", &body).await.unwrap();
        assert_eq!(status, 200, "{case}: {answer}");
        let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join(format!("{case}.response.json"))).unwrap()).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&answer).unwrap(), want, "{case}");
    }
    assert_eq!(request(trusting(&first), addr, "GET /nope HTTP/1.1", b"").await.unwrap().0, 404);

    // Renewed in place (as cert-manager does): new handshakes get the new certificate.
    let second = write_pair(&dir);
    let start = Instant::now();
    while request(trusting(&second), addr, "GET /readyz HTTP/1.1", b"").await.map(|r| r.0).ok() != Some(200) {
        assert!(start.elapsed() < Duration::from_secs(10), "the renewed certificate was not taken: {}", std::fs::read_to_string(dir.join("log")).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(request(trusting(&first), addr, "GET /readyz HTTP/1.1", b"").await.is_err(), "the old certificate is no longer served");
    // A broken pair keeps the one in use.
    std::fs::write(dir.join("tls.key"), "not a key").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(request(trusting(&second), addr, "GET /readyz HTTP/1.1", b"").await.unwrap().0, 200);
    assert!(std::fs::read_to_string(dir.join("log")).unwrap().contains("do not load"), "the log says why");
    let _ = child.kill();
    let _ = child.wait();
}
