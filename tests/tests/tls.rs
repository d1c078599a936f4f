//! TLS and mTLS termination with real certificates (rcgen) and a rustls client.

use clawguard_tests::fake_gateway::FakeGateway;
use clawguard_tests::harness::{free_port, Clawguard};
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

struct Pki {
    ca: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: PrivateKeyDer<'static>,
}

/// Writes ca.pem, server.pem, server.key into `dir`; returns the client side.
fn make_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "clawguard test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap().signed_by(&server_key, &issuer).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params.distinguished_name.push(DnType::OrganizationName, "Test Operators");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    Pki {
        ca: ca_cert.der().clone(),
        client_chain: vec![client_cert.der().clone()],
        client_key: PrivateKeyDer::try_from(client_key.serialize_der()).unwrap(),
    }
}

fn client_config(pki: &Pki, with_cert: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots);
    let config = if with_cert {
        builder.with_client_auth_cert(pki.client_chain.clone(), pki.client_key.clone_key()).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

fn tls_policy(dir: &Path, port: u16, mtls: bool) -> String {
    let d = dir.display();
    let ca = if mtls { format!("client_ca = \"{d}/ca.pem\"\n") } else { String::new() };
    format!("[tls]\nlisten = [\"127.0.0.1:{port}\"]\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\n{ca}")
}

async fn https_get(config: Arc<ClientConfig>, addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = TlsConnector::from(config).connect(ServerName::try_from("localhost").unwrap(), tcp).await?;
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).to_string())
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("clawguard-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn https_and_wss_through_rustls() {
    let dir = temp_dir("plain");
    let pki = make_pki(&dir);
    let gw = FakeGateway::start().await;
    let port = free_port();
    let cg = Clawguard::start(gw.addr, &tls_policy(&dir, port, false));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let resp = https_get(client_config(&pki, false), addr, "/headers").await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"method\":\"GET\""));

    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(client_config(&pki, false)).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("wss://localhost:{port}/"), tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    let next = |m: Message| -> Value { serde_json::from_str(m.to_text().unwrap()).unwrap() };
    assert_eq!(next(ws.next().await.unwrap().unwrap())["event"], "connect.challenge");
    ws.send(Message::text(json!({"type":"req","id":"1","method":"connect","params":{"scopes":["operator.admin"]}}).to_string())).await.unwrap();
    assert_eq!(next(ws.next().await.unwrap().unwrap())["payload"]["type"], "hello-ok");
    ws.send(Message::text(json!({"type":"req","id":"2","method":"echo","params":{"over":"tls"}}).to_string())).await.unwrap();
    assert_eq!(next(ws.next().await.unwrap().unwrap())["payload"]["over"], "tls");
    drop(cg);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_requires_a_client_certificate_from_the_ca() {
    let dir = temp_dir("mtls");
    let pki = make_pki(&dir);
    let gw = FakeGateway::start().await;
    let port = free_port();
    let cg = Clawguard::start(gw.addr, &tls_policy(&dir, port, true));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let without = https_get(client_config(&pki, false), addr, "/headers").await;
    assert!(without.as_ref().map(|r| !r.starts_with("HTTP/1.1")).unwrap_or(true), "served without a client certificate: {without:?}");
    let with = https_get(client_config(&pki, true), addr, "/headers").await.unwrap();
    assert!(with.starts_with("HTTP/1.1 200"), "{with}");
    // The verified certificate's identity reaches clawguard's filters: its SHA-256 fingerprint.
    let fingerprint = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&pki.client_chain[0]));
    let log = cg.log();
    assert!(log.contains(&format!("sha256={fingerprint}")) && log.contains("Test Operators"), "{log}");
    drop(cg);
    let _ = std::fs::remove_dir_all(dir);
}

/// The response headers of a raw HTTP/1.1 response, names lowercased.
fn response_headers(resp: &str) -> Vec<(String, String)> {
    let head = resp.split("\r\n\r\n").next().unwrap_or("");
    head.lines().skip(1).filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect()
}

/// A response's score on Mozilla's HTTP Observatory scoring table (its published per-test
/// modifiers, base 100; the tests that apply to one response: CSP, Referrer-Policy, HSTS,
/// X-Content-Type-Options, X-Frame-Options, CORP; cookies, CORS and SRI score 0 here: no cookies,
/// no Access-Control-Allow-Origin, same-origin scripts). Returns the score and what was counted.
fn observatory_score(headers: &[(String, String)], https: bool) -> (i32, Vec<String>) {
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.to_ascii_lowercase());
    let mut score = 100;
    let mut why = Vec::new();
    let mut note = |points: i32, test: &str| {
        score += points;
        why.push(format!("{test} {points:+}"));
    };
    let csp = get("content-security-policy");
    let directive = |name: &str| csp.as_deref().and_then(|c| c.split(';').map(str::trim).find(|d| d.split_whitespace().next() == Some(name)).map(str::to_string));
    match &csp {
        None => note(-25, "csp-not-implemented"),
        Some(_) => {
            let script = directive("script-src").or_else(|| directive("default-src")).unwrap_or_default();
            let style = directive("style-src").or_else(|| directive("default-src")).unwrap_or_default();
            let default_none = directive("default-src").is_some_and(|d| d.contains("'none'"));
            if script.contains("'unsafe-inline'") || script.contains("'unsafe-eval'") {
                note(-20, "csp-implemented-with-unsafe-inline");
            } else if script.split_whitespace().any(|s| matches!(s, "http:" | "https:" | "*")) {
                note(-20, "csp-implemented-with-insecure-scheme");
            } else if style.contains("'unsafe-inline'") {
                note(0, "csp-implemented-with-unsafe-inline-in-style-src-only");
            } else if default_none {
                note(5, "csp-implemented-with-no-unsafe-default-src-none");
            } else {
                note(0, "csp-implemented-with-no-unsafe");
            }
        }
    }
    match get("referrer-policy").as_deref() {
        Some("no-referrer" | "same-origin" | "strict-origin" | "strict-origin-when-cross-origin") => note(5, "referrer-policy-private"),
        Some("unsafe-url" | "origin" | "origin-when-cross-origin" | "no-referrer-when-downgrade") => note(-5, "referrer-policy-unsafe"),
        _ => note(0, "referrer-policy-not-implemented"),
    }
    if https {
        let max_age = get("strict-transport-security").and_then(|v| v.split(';').find_map(|p| p.trim().strip_prefix("max-age=").and_then(|n| n.parse::<u64>().ok())));
        match max_age {
            None => note(-20, "hsts-not-implemented"),
            Some(n) if n < 15_768_000 => note(-10, "hsts-implemented-max-age-less-than-six-months"),
            Some(_) => note(0, "hsts-implemented-max-age-at-least-six-months"),
        }
    }
    match get("x-content-type-options").as_deref() {
        Some("nosniff") => note(0, "x-content-type-options-nosniff"),
        _ => note(-5, "x-content-type-options-not-implemented"),
    }
    if directive("frame-ancestors").is_some() {
        note(5, "x-frame-options-implemented-via-csp");
    } else {
        match get("x-frame-options").as_deref() {
            Some("deny" | "sameorigin") => note(0, "x-frame-options-sameorigin-or-deny"),
            _ => note(-20, "x-frame-options-not-implemented"),
        }
    }
    match get("cross-origin-resource-policy").as_deref() {
        Some("same-origin" | "same-site") => note(0, "corp-implemented-with-same-origin"),
        Some("cross-origin") => note(0, "corp-implemented-with-cross-origin"),
        _ => note(0, "corp-not-implemented"),
    }
    (score, why)
}

#[tokio::test(flavor = "multi_thread")]
async fn issue12_security_headers_score_a_plus_on_the_observatory_table_through_tls() {
    let dir = temp_dir("observatory");
    let pki = make_pki(&dir);
    let gw = FakeGateway::start().await;
    let port = free_port();
    let cg = Clawguard::start(gw.addr, &tls_policy(&dir, port, false));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // The fake gateway sends bare answers (no security headers at all): what it scores directly.
    let mut direct = TcpStream::connect(gw.addr).await.unwrap();
    direct.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut raw = Vec::new();
    direct.read_to_end(&mut raw).await.unwrap();
    let (direct_score, direct_why) = observatory_score(&response_headers(&String::from_utf8_lossy(&raw)), true);
    assert!(direct_score < 50, "the oracle is not lenient: the bare gateway scores {direct_score} ({direct_why:?})");
    for (path, what) in [("/", "the Control UI"), ("/v1/models", "an API route")] {
        let resp = https_get(client_config(&pki, false), addr, path).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{what}: {resp}");
        let headers = response_headers(&resp);
        let (score, why) = observatory_score(&headers, true);
        assert!(score >= 100, "{what} scores {score} (grade below A+): {why:?}\n{headers:?}");
        assert!(headers.iter().all(|(k, _)| k != "server" && k != "x-powered-by"), "{what}: {headers:?}");
    }
    drop(cg);
    let _ = std::fs::remove_dir_all(dir);
}

/// A rustls client that offers only `suites`, in that order, and `alpn`.
fn client_offering(pki: &Pki, suites: Vec<tokio_rustls::rustls::SupportedCipherSuite>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let provider = tokio_rustls::rustls::crypto::CryptoProvider { cipher_suites: suites, ..tokio_rustls::rustls::crypto::ring::default_provider() };
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS12, &tokio_rustls::rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The cipher suite and ALPN protocol clawguard's TLS listener chooses for `config`.
async fn negotiated(config: Arc<ClientConfig>, addr: SocketAddr) -> (String, Option<Vec<u8>>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(config).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let (_, conn) = tls.get_ref();
    (format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite()), conn.alpn_protocol().map(<[u8]>::to_vec))
}

#[tokio::test(flavor = "multi_thread")]
async fn issue12_the_server_cipher_order_applies_and_h2_is_offered() {
    use tokio_rustls::rustls::crypto::ring::cipher_suite as cs;
    let dir = temp_dir("cipher-order");
    let pki = make_pki(&dir);
    let gw = FakeGateway::start().await;
    let port = free_port();
    let cg = Clawguard::start(gw.addr, &tls_policy(&dir, port, false));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // A client that prefers ChaCha20 gets the server's first choice, AES-256-GCM, in both versions.
    let tls13 = vec![cs::TLS13_CHACHA20_POLY1305_SHA256, cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_AES_256_GCM_SHA384];
    let (suite, _) = negotiated(client_offering(&pki, tls13, &[]), addr).await;
    assert_eq!(suite, "TLS13_AES_256_GCM_SHA384");
    let tls12 = vec![cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384];
    let (suite, _) = negotiated(client_offering(&pki, tls12, &[]), addr).await;
    assert_eq!(suite, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
    // A suite the client alone prefers is still used when it is the only one both share.
    let (suite, _) = negotiated(client_offering(&pki, vec![cs::TLS13_CHACHA20_POLY1305_SHA256], &[]), addr).await;
    assert_eq!(suite, "TLS13_CHACHA20_POLY1305_SHA256");
    // ALPN: h2 when offered, http/1.1 otherwise.
    let all = tokio_rustls::rustls::crypto::ring::default_provider().cipher_suites;
    let (_, alpn) = negotiated(client_offering(&pki, all.clone(), &[b"h2", b"http/1.1"]), addr).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (_, alpn) = negotiated(client_offering(&pki, all, &[b"http/1.1"]), addr).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    drop(cg);
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue 15: new certificates (here a new CA and server certificate written over the files the
/// policy names) are picked up without a restart: new handshakes present them, an open
/// connection goes on; a bad certificate keeps the running one and says why.
#[tokio::test(flavor = "multi_thread")]
async fn issue15_certificates_rotate_without_dropping_connections() {
    let dir = temp_dir("rotate");
    let first = make_pki(&dir);
    let gw = FakeGateway::start().await;
    let port = free_port();
    let cg = Clawguard::start(gw.addr, &tls_policy(&dir, port, false));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(client_config(&first, false)).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://localhost:{port}/"), tls).await.unwrap();
    let next = |m: Message| -> Value { serde_json::from_str(m.to_text().unwrap()).unwrap() };
    assert_eq!(next(ws.next().await.unwrap().unwrap())["event"], "connect.challenge");
    ws.send(Message::text(json!({"type":"req","id":"1","method":"connect","params":{"scopes":["operator.admin"]}}).to_string())).await.unwrap();
    assert_eq!(next(ws.next().await.unwrap().unwrap())["payload"]["type"], "hello-ok");

    // Rotation: a new CA and server certificate over the same files.
    let second = make_pki(&dir);
    let start = std::time::Instant::now();
    loop {
        if https_get(client_config(&second, false), addr, "/headers").await.is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "the new certificate was not served; log:\n{}", cg.log());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(https_get(client_config(&first, false), addr, "/headers").await.is_err(), "the old certificate is no longer presented");
    ws.send(Message::text(json!({"type":"req","id":"2","method":"echo","params":{"after":"rotation"}}).to_string())).await.unwrap();
    assert_eq!(next(ws.next().await.unwrap().unwrap())["payload"]["after"], "rotation", "the open connection goes on");
    assert!(cg.log().contains("TLS certificates reloaded"), "{}", cg.log());

    // A broken certificate: the running one stays, and /policy says which file and why.
    std::fs::write(dir.join("server.pem"), "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").unwrap();
    let start = std::time::Instant::now();
    let rejected = loop {
        let (_, body) = clawguard_tests::client::http_get(cg.admin, "/policy").unwrap();
        let p: Value = serde_json::from_str(&body).unwrap();
        if !p["last_rejected"].is_null() {
            break p["last_rejected"]["error"].as_str().unwrap_or("").to_string();
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "the broken certificate was not reported; log:\n{}", cg.log());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(rejected.contains("server.pem"), "{rejected}");
    let resp = https_get(client_config(&second, false), addr, "/headers").await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "the last good certificate is still served: {resp}");
    drop(cg);
    let _ = std::fs::remove_dir_all(dir);
}
