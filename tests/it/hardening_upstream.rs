//! Hardening, the DigiCert side (issue 7, item 3): hostile upstreams made in the test on
//! 127.0.0.1:0, plain TCP or TLS (tokio-rustls), each answering in its own broken way. Each
//! gives the SPEC error; there is no plaintext fallback; a server that failed verification
//! never receives a byte of the request (so never the key); a response that breaks mid-body
//! aborts the client's connection instead of ending it cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use digicert_sidecar::mock::TestCa;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::support::*;

/// What a hostile server does with each connection.
#[derive(Clone)]
enum Script {
    /// Accept TCP, read whatever comes, never answer.
    Silent,
    /// Wait for the first bytes (a ClientHello), answer these raw bytes, keep reading.
    Raw(Vec<u8>),
    /// TLS with `config`; read the request head, then write `reply` (if any) and either
    /// close without close_notify (`close`) or hold the connection.
    Tls {
        config: Arc<ServerConfig>,
        reply: Option<Vec<u8>>,
        close: bool,
    },
}

/// What a hostile server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    handshakes: AtomicUsize,
    handshake_failures: AtomicUsize,
    /// Per connection: the raw bytes (plain TCP scripts) or the decrypted ones (TLS).
    bytes: Mutex<Vec<Vec<u8>>>,
}

struct Hostile {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl Hostile {
    async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_one(tcp, script.clone(), shared.clone()));
            }
        });
        Self { addr, seen }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    fn handshakes(&self) -> usize {
        self.seen.handshakes.load(Ordering::SeqCst)
    }

    fn handshake_failures(&self) -> usize {
        self.seen.handshake_failures.load(Ordering::SeqCst)
    }

    fn bytes(&self) -> Vec<Vec<u8>> {
        self.seen.bytes.lock().unwrap().clone()
    }
}

fn record(seen: &Seen, slot: usize, data: &[u8]) {
    seen.bytes.lock().unwrap()[slot].extend_from_slice(data);
}

/// Read into the connection's record until EOF, `limit`, or (with `until_head`) the end of
/// an HTTP head.
async fn read_into<R: AsyncRead + Unpin>(
    rd: &mut R,
    seen: &Seen,
    slot: usize,
    limit: Duration,
    until_head: bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                record(seen, slot, &buf[..n]);
                got.extend_from_slice(&buf[..n]);
                if until_head && got.windows(4).any(|w| w == b"\r\n\r\n") {
                    return;
                }
            }
            _ => return,
        }
    }
}

async fn serve_one(mut tcp: TcpStream, script: Script, seen: Arc<Seen>) {
    let slot = {
        let mut all = seen.bytes.lock().unwrap();
        all.push(Vec::new());
        all.len() - 1
    };
    match script {
        Script::Silent => read_into(&mut tcp, &seen, slot, Duration::from_secs(30), false).await,
        Script::Raw(reply) => {
            let mut buf = vec![0u8; 16 * 1024];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await
            {
                record(&seen, slot, &buf[..n]);
            }
            let _ = tcp.write_all(&reply).await;
            read_into(&mut tcp, &seen, slot, Duration::from_secs(30), false).await;
        }
        Script::Tls {
            config,
            reply,
            close,
        } => {
            let mut tls = match TlsAcceptor::from(config).accept(tcp).await {
                Ok(tls) => tls,
                Err(_) => {
                    seen.handshake_failures.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            };
            seen.handshakes.fetch_add(1, Ordering::SeqCst);
            read_into(&mut tls, &seen, slot, Duration::from_secs(5), true).await;
            if let Some(reply) = reply {
                let _ = tls.write_all(&reply).await;
                let _ = tls.flush().await;
            }
            if close {
                // Dropped without close_notify: the TCP connection just ends.
                drop(tls);
            } else {
                read_into(&mut tls, &seen, slot, Duration::from_secs(30), false).await;
            }
        }
    }
}

fn tls_config(cert_der: &[u8], key_der: &[u8]) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert_der.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec())),
        )
        .unwrap();
    Arc::new(config)
}

/// A CA the route trusts (its PEM written to the world's directory) and a good server
/// certificate from it for localhost.
struct Pki {
    ca: TestCa,
    ca_file: PathBuf,
    good: Arc<ServerConfig>,
}

impl Pki {
    fn new(w: &World) -> Self {
        let ca = TestCa::new("Hostile Upstream Test Root").unwrap();
        let ca_file = w.write("hostile-ca.pem", ca.cert_pem.as_bytes());
        let leaf = ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
        let good = tls_config(&leaf.cert_der, &leaf.key_der);
        Self { ca, ca_file, good }
    }

    fn tls(&self, reply: &[u8], close: bool) -> Script {
        Script::Tls {
            config: self.good.clone(),
            reply: Some(reply.to_vec()),
            close,
        }
    }
}

/// A sidecar with one CertCentral-style route to `upstream`, trusting `ca_file`, and
/// `extra` lines in `[server]`.
async fn sidecar(w: &World, upstream: &str, ca_file: &Path, extra: &str) -> Running {
    Running::start(&config(w, upstream, ca_file, extra)).await
}

fn config(w: &World, upstream: &str, ca_file: &Path, extra: &str) -> String {
    format!(
        "{}{extra}[[routes]]\nname = \"hostile\"\npath_prefix = \"/\"\nupstream = \"{upstream}\"\nca_file = \"{}\"\n[routes.api_key]\nheader = \"X-DC-DEVKEY\"\nfile = \"{}\"\n",
        w.server_toml(),
        ca_file.display(),
        w.devkey.display()
    )
}

fn assert_sidecar_error(what: &str, got: &Got, statuses: &[u16], reasons: &[&str]) {
    assert!(
        statuses.contains(&got.status),
        "{what}: status {} {}",
        got.status,
        got.text()
    );
    let reason = got.sidecar_error().unwrap_or("-");
    assert!(
        reasons.contains(&reason),
        "{what}: reason {reason}: {}",
        got.text()
    );
    assert_eq!(
        got.json()["errors"][0]["code"],
        format!("sidecar_{reason}"),
        "{what}"
    );
    assert!(!got.text().contains(DEVKEY), "{what}: the key in an answer");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Nothing but TLS records ever reached `server`: every connection starts with a TLS
/// handshake record, and no byte of HTTP or of the key is in the clear.
fn assert_only_tls(what: &str, server: &Hostile) {
    let all = server.bytes();
    assert!(!all.is_empty(), "{what}: no connection was made");
    for bytes in all {
        if bytes.is_empty() {
            continue;
        }
        assert_eq!(
            bytes.get(..2),
            Some(&[0x16u8, 0x03][..]),
            "{what}: not a TLS handshake: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        for plain in [&b"GET "[..], b"HTTP/1.1", b"x-dc-devkey", DEVKEY.as_bytes()] {
            assert!(
                !contains(&bytes, plain),
                "{what}: {:?} in the clear",
                String::from_utf8_lossy(plain)
            );
        }
    }
}

/// Refused: 502 `upstream_unreachable` at once. Accepts TCP but never speaks TLS: the
/// `connect_timeout` (TCP + TLS) gives up well before `request_timeout`. SPEC has no code for
/// a connect timeout; the sidecar calls it `upstream_unreachable` (502), which keeps it
/// retriable as a connect error, and `upstream_timeout` (504) would also be defensible.
#[tokio::test]
async fn refused_and_silent_upstreams_answer_502_fast() {
    let w = World::new().await;
    let refused = sidecar(&w, &format!("https://localhost:{}", free_port()), &w.ca, "").await;
    let got = get(&refused.url("/services/v2/user/me"), &[]).await;
    assert_sidecar_error("refused", &got, &[502], &["upstream_unreachable"]);

    let silent = Hostile::start(Script::Silent).await;
    let s = sidecar(&w, &silent.url(), &w.ca, "connect_timeout = \"1s\"\n").await;
    let started = Instant::now();
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    let elapsed = started.elapsed();
    eprintln!(
        "silent TCP upstream: {} {:?} after {elapsed:?}",
        got.status,
        got.sidecar_error()
    );
    assert_sidecar_error(
        "silent",
        &got,
        &[502, 504],
        &["upstream_unreachable", "upstream_timeout"],
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "connect_timeout = 1s, request_timeout = 5s: answered after {elapsed:?}"
    );
    assert_only_tls("silent", &silent);
}

/// TLS and the request are accepted, no answer ever comes: 504 `upstream_timeout` after
/// `request_timeout`. The server got the request with the key exactly once.
#[tokio::test]
async fn an_upstream_that_never_answers_is_504_after_request_timeout() {
    let w = World::new().await;
    let pki = Pki::new(&w);
    let mute = Hostile::start(Script::Tls {
        config: pki.good.clone(),
        reply: None,
        close: false,
    })
    .await;
    let s = Running::start(
        &config(&w, &mute.url(), &pki.ca_file, "")
            .replace("request_timeout = \"5s\"", "request_timeout = \"1s\""),
    )
    .await;
    let started = Instant::now();
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    let elapsed = started.elapsed();
    assert_sidecar_error("mute", &got, &[504], &["upstream_timeout"]);
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
    let head = String::from_utf8_lossy(&mute.bytes()[0]).to_ascii_lowercase();
    assert_eq!(
        head.matches("\r\nx-dc-devkey: ").count(),
        1,
        "one key: {head}"
    );
}

/// A response that breaks off mid-body (Content-Length not reached, or a chunked body with
/// no last chunk) must reach the client as a broken message: over HTTP/1.1 the connection is
/// aborted, never ended as if the body were complete; over h2 the stream is reset.
#[tokio::test]
async fn an_upstream_that_breaks_mid_body_aborts_the_client_connection() {
    let w = World::new().await;
    let pki = Pki::new(&w);
    let x = "x".repeat(1000);
    let cases = [
        (
            "Content-Length",
            format!("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{x}"),
        ),
        (
            "chunked",
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n{x}\r\n"),
        ),
    ];
    for (what, reply) in cases {
        let server = Hostile::start(pki.tls(reply.as_bytes(), true)).await;
        let s = sidecar(&w, &server.url(), &pki.ca_file, "").await;

        // HTTP/1.1, by hand: the head arrives, the body must fail.
        let tcp = TcpStream::connect(s.addr()).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/services/v2/user/me")
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
            .await
            .expect("a head in time")
            .expect("a head");
        assert_cut_off(resp, what, "HTTP/1.1").await;

        // h2c: the stream must be reset, not ended.
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            h2c_client().request(
                http::Request::get(s.url("/services/v2/user/me"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            ),
        )
        .await
        .expect("a head in time")
        .expect("a head");
        assert_cut_off(resp, what, "h2").await;
    }
}

/// An answer whose head came through (200) but whose body must end in an error, not cleanly.
async fn assert_cut_off(resp: http::Response<hyper::body::Incoming>, what: &str, client: &str) {
    assert_eq!(resp.status(), 200, "{what}");
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .expect("the body ends in time");
    assert!(
        body.is_err(),
        "{what}: {client} client got a clean end after {} bytes",
        body.map(|b| b.to_bytes().len()).unwrap_or(0)
    );
}

/// A status line or head that does not parse, or a head too large for the client's buffer
/// (about 400 KiB) or with too many fields: 502 `upstream_protocol`.
#[tokio::test]
async fn malformed_or_oversized_upstream_heads_are_502_upstream_protocol() {
    let w = World::new().await;
    let pki = Pki::new(&w);
    let many: String = (0..150).map(|i| format!("X-Field-{i}: v\r\n")).collect();
    let cases = [
        (
            "status not a number",
            "HTTP/1.1 2O0 OK\r\nContent-Length: 0\r\n\r\n".to_string(),
        ),
        ("not HTTP at all", "SSH-2.0-OpenSSH_9.6\r\n\r\n".to_string()),
        (
            "two differing Content-Length",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_string(),
        ),
        (
            "a 1 MiB header",
            format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
                "a".repeat(1024 * 1024)
            ),
        ),
        (
            "150 header fields",
            format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 0\r\n\r\n"),
        ),
    ];
    for (what, reply) in cases {
        let server = Hostile::start(pki.tls(reply.as_bytes(), true)).await;
        let s = sidecar(&w, &server.url(), &pki.ca_file, "").await;
        let got = get(&s.url("/services/v2/user/me"), &[]).await;
        assert_sidecar_error(what, &got, &[502], &["upstream_protocol"]);
    }
}

/// A certificate that fails verification is 502 `upstream_tls`, and the server never gets
/// a byte of the request: its TLS accept fails and it decrypts nothing. The first case, a
/// good certificate, shows the harness works (and that the key is sent exactly once).
#[tokio::test]
async fn untrusted_certificates_are_502_upstream_tls_and_get_no_request_byte() {
    let w = World::new().await;
    let pki = Pki::new(&w);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let good = Hostile::start(pki.tls(ok, true)).await;
    let s = sidecar(&w, &good.url(), &pki.ca_file, "").await;
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!((got.status, got.text().as_str()), (200, "ok"));
    let head = String::from_utf8_lossy(&good.bytes()[0]).into_owned();
    assert_eq!(
        head.to_ascii_lowercase()
            .matches("\r\nx-dc-devkey: ")
            .count(),
        1,
        "{head}"
    );
    assert!(head.contains(&format!("x-dc-devkey: {DEVKEY}\r\n")));

    let wrong_name = pki.ca.server_cert(&["other.example"]).unwrap();
    let other_ca = TestCa::new("Some Other Root").unwrap();
    let unknown = other_ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
    let an_hour_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let expired = pki
        .ca
        .server_cert_until(&["localhost", "127.0.0.1"], Some(an_hour_ago))
        .unwrap();
    let self_signed =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cases: Vec<(&str, Arc<ServerConfig>, &Path)> = vec![
        (
            "wrong hostname",
            tls_config(&wrong_name.cert_der, &wrong_name.key_der),
            &pki.ca_file,
        ),
        (
            "expired",
            tls_config(&expired.cert_der, &expired.key_der),
            &pki.ca_file,
        ),
        (
            "self-signed",
            tls_config(
                self_signed.cert.der(),
                &self_signed.signing_key.serialize_der(),
            ),
            &pki.ca_file,
        ),
        (
            "unknown CA",
            tls_config(&unknown.cert_der, &unknown.key_der),
            &pki.ca_file,
        ),
    ];
    for (what, config, ca_file) in cases {
        let server = Hostile::start(Script::Tls {
            config,
            reply: Some(ok.to_vec()),
            close: true,
        })
        .await;
        let s = sidecar(&w, &server.url(), ca_file, "").await;
        let got = get(&s.url("/services/v2/user/me"), &[]).await;
        assert_sidecar_error(what, &got, &[502], &["upstream_tls"]);
        assert!(
            eventually(Duration::from_secs(2), || async {
                server.handshake_failures() >= 1
            })
            .await,
            "{what}: the server's TLS accept did not fail"
        );
        assert_eq!(server.handshakes(), 0, "{what}: a handshake completed");
        assert!(
            server.bytes().iter().all(|b| b.is_empty()),
            "{what}: the server decrypted request bytes"
        );
    }
}

/// An HTTP server where HTTPS was expected: the sidecar sends a ClientHello, reads an HTTP
/// answer where a ServerHello should be, and gives up with 502 `upstream_tls`. There is no
/// plaintext retry: the server never sees "GET ".
#[tokio::test]
async fn a_plaintext_server_gets_only_a_client_hello() {
    let w = World::new().await;
    let plain = Hostile::start(Script::Raw(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    ))
    .await;
    let s = sidecar(&w, &plain.url(), &w.ca, "").await;
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_sidecar_error("plaintext server", &got, &[502], &["upstream_tls"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(plain.connections(), 1, "no second try");
    assert_only_tls("plaintext server", &plain);
}

/// A server that only speaks TLS 1.1 (rustls cannot serve it, so it is played by hand):
/// one that refuses the ClientHello with a protocol_version alert, one that answers with a
/// TLS 1.1 ServerHello. Both: 502 `upstream_tls`, nothing but the ClientHello sent, no
/// downgrade and no second try.
#[tokio::test]
async fn a_tls_1_1_only_server_is_502_upstream_tls() {
    let w = World::new().await;
    // Alert record, TLS 1.1, level fatal (2), protocol_version (70).
    let alert = vec![0x15, 0x03, 0x02, 0x00, 0x02, 0x02, 0x46];
    // ServerHello record, TLS 1.1: version 3.2, random, empty session id,
    // TLS_RSA_WITH_AES_128_CBC_SHA, no compression.
    let mut hello = vec![
        0x16, 0x03, 0x02, 0x00, 0x2a, 0x02, 0x00, 0x00, 0x26, 0x03, 0x02,
    ];
    hello.extend_from_slice(&[0x42; 32]);
    hello.extend_from_slice(&[0x00, 0x00, 0x2f, 0x00]);
    for (what, reply) in [
        ("protocol_version alert", alert),
        ("TLS 1.1 ServerHello", hello),
    ] {
        let old = Hostile::start(Script::Raw(reply)).await;
        let s = sidecar(&w, &old.url(), &w.ca, "").await;
        let got = get(&s.url("/services/v2/user/me"), &[]).await;
        assert_sidecar_error(what, &got, &[502], &["upstream_tls"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(old.connections(), 1, "{what}: no second try");
        assert_only_tls(what, &old);
    }
}

/// 1xx answers (100 Continue, 103 Early Hints) before the final answer are interim: the
/// client gets the final 200 and its body.
#[tokio::test]
async fn informational_answers_are_skipped_and_the_final_answer_passes() {
    let w = World::new().await;
    let pki = Pki::new(&w);
    let reply = b"HTTP/1.1 100 Continue\r\n\r\n\
                  HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfinal";
    let server = Hostile::start(pki.tls(reply, true)).await;
    let s = sidecar(&w, &server.url(), &pki.ca_file, "").await;
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "final");
    assert_eq!(got.sidecar_error(), None);
}

/// SPEC: "Never follow redirects." A 302 to another server is passed through as it is, with
/// its Location, and the other server sees no connection (so never the key).
#[tokio::test]
async fn a_redirect_to_another_host_is_passed_through_not_followed() {
    let w = World::new().await;
    let pki = Pki::new(&w);
    let other =
        Hostile::start(pki.tls(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true)).await;
    let location = format!("{}/services/v2/user/me", other.url());
    let reply = format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
    let server = Hostile::start(pki.tls(reply.as_bytes(), true)).await;
    let s = sidecar(&w, &server.url(), &pki.ca_file, "").await;
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 302, "{}", got.text());
    assert_eq!(got.headers["location"], location.as_str());
    assert_eq!(got.sidecar_error(), None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(other.connections(), 0, "the redirect was followed");
}

/// An upstream that closes each keep-alive connection after one answer (as servers do when
/// they end an idle connection): every request still gets its answer, on a new connection
/// when the kept one turns out closed.
#[tokio::test]
async fn an_upstream_that_closes_kept_connections_costs_no_request() {
    let w = World::new().await;
    let pki = Pki::new(&w);
    let reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
    let server = Hostile::start(pki.tls(reply, true)).await;
    let s = sidecar(&w, &server.url(), &pki.ca_file, "").await;
    for i in 0..20 {
        let got = get(&s.url("/services/v2/user/me"), &[]).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
        assert_eq!(got.text(), "ok");
        if i % 2 == 1 {
            // Give the close time to arrive, too.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(server.connections(), 20, "one connection per answer");
}
