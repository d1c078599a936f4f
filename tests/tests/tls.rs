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
