//! An in-process stand-in for the DigiCert APIs, used by `demo` and by the tests. It answers
//! as DigiCert does: CertCentral checks `X-DC-DEVKEY` (403 `access_denied_invalid_key`),
//! DigiCert ONE checks `x-api-key` (401 `invalid_api_key`), and a separate `clientauth`
//! endpoint demands a client certificate from its CA (Software Trust Manager there wants
//! the key too). Paths under `/_test/` help the tests: echo, slow, big bodies, fixed statuses.

mod api;
pub mod pki;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use pki::{Leaf, PkiError, TestCa};

/// How the mock behaves.
#[derive(Clone)]
pub struct MockOptions {
    /// The CertCentral API key it accepts.
    pub devkey: String,
    /// The DigiCert ONE API key it accepts.
    pub api_key: String,
    /// Offer only http/1.1 in ALPN (default: h2 and http/1.1).
    pub http1_only: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            devkey: "demo-certcentral-devkey".into(),
            api_key: "demo-digicert-one-api-key".into(),
            http1_only: false,
        }
    }
}

/// How the mock words a rejected credential: the body's shape and its framing. DigiCert
/// answers in each of these; the sidecar must recognise them all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejection {
    pub shape: RejectionShape,
    /// Send the body chunked (no `Content-Length`), split inside the JSON.
    pub chunked: bool,
}

/// The body of a rejection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RejectionShape {
    /// `{"errors":[{"code":...}]}`: `access_denied_invalid_key` (CertCentral, 403),
    /// `invalid_api_key` (DigiCert ONE, 401).
    #[default]
    ErrorsArray,
    /// CertCentral's combined code, `{"errors":[{"code":"access_denied|access_denied_invalid_key"}]}`.
    PipedCode,
    /// DigiCert ONE's other shape, `{"error":{"code":"invalid_api_key",...}}`.
    ErrorObject,
}

/// A request as the mock saw it (for the tests to assert on).
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// Which server: `false` the plain one, `true` the clientauth one.
    pub clientauth: bool,
    /// The client certificate's subject on the clientauth server.
    pub client_subject: Option<String>,
}

/// Mutable state, shared with the request handlers.
pub(crate) struct State {
    pub devkeys: Mutex<Vec<String>>,
    pub api_keys: Mutex<Vec<String>>,
    pub tls_connections: AtomicUsize,
    pub seen: Mutex<Vec<Seen>>,
    /// Client certificate subjects accepted on clientauth; `None`: any the CA issued.
    pub client_subjects: Mutex<Option<Vec<String>>>,
    /// Failures served so far by `/_test/flaky`, by its `id`.
    pub flaky: Mutex<std::collections::HashMap<String, u32>>,
    /// `/_test/slow` requests being served now, and the most at once so far.
    pub slow_now: AtomicUsize,
    pub slow_max: AtomicUsize,
    /// How rejections are worded, for the API-key server and the clientauth one.
    pub rejection: Mutex<[Rejection; 2]>,
}

/// A running mock: two TLS servers on 127.0.0.1 and the PKI they use.
pub struct MockDigicert {
    /// The mock's CA: trust its `cert_pem` to reach the mock.
    pub ca: TestCa,
    /// CertCentral and DigiCert ONE (API-key auth).
    pub addr: SocketAddr,
    /// The `clientauth.` endpoint (mTLS).
    pub clientauth_addr: SocketAddr,
    /// A client certificate the clientauth endpoint accepts.
    pub client: Leaf,
    state: Arc<State>,
    _tasks: JoinSet<()>,
}

impl MockDigicert {
    /// Start both servers on ephemeral ports of 127.0.0.1.
    pub async fn start(options: MockOptions) -> Result<Self, PkiError> {
        let ca = TestCa::new("Mock DigiCert Root CA")?;
        let server = ca.server_cert(&["localhost", "127.0.0.1"])?;
        let client = ca.client_cert("demo-service-user", None)?;
        let state = Arc::new(State {
            devkeys: Mutex::new(vec![options.devkey.clone()]),
            api_keys: Mutex::new(vec![options.api_key.clone()]),
            tls_connections: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            client_subjects: Mutex::new(None),
            flaky: Mutex::new(std::collections::HashMap::new()),
            slow_now: AtomicUsize::new(0),
            slow_max: AtomicUsize::new(0),
            rejection: Mutex::new([Rejection::default(); 2]),
        });
        let alpn: Vec<Vec<u8>> = if options.http1_only {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![CertificateDer::from(server.cert_der.clone())];
        let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.clone()));

        let mut plain = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key())?;
        plain.alpn_protocols = alpn.clone();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.cert_der.clone()))?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?;
        let mut mtls = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key())?;
        mtls.alpn_protocols = alpn;

        let plain_listener = TcpListener::bind("127.0.0.1:0").await?;
        let mtls_listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = plain_listener.local_addr()?;
        let clientauth_addr = mtls_listener.local_addr()?;
        let mut tasks = JoinSet::new();
        tasks.spawn(serve(
            plain_listener,
            TlsAcceptor::from(Arc::new(plain)),
            false,
            state.clone(),
        ));
        tasks.spawn(serve(
            mtls_listener,
            TlsAcceptor::from(Arc::new(mtls)),
            true,
            state.clone(),
        ));
        Ok(Self {
            ca,
            addr,
            clientauth_addr,
            client,
            state,
            _tasks: tasks,
        })
    }

    /// `https://localhost:PORT` of the API-key server.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// `https://localhost:PORT` of the clientauth server.
    pub fn clientauth_url(&self) -> String {
        format!("https://localhost:{}", self.clientauth_addr.port())
    }

    /// TLS handshakes completed so far, both servers together.
    pub fn tls_connections(&self) -> usize {
        self.state.tls_connections.load(Ordering::SeqCst)
    }

    /// The most `/_test/slow` requests the mock was serving at one time.
    pub fn max_concurrent_slow(&self) -> usize {
        self.state.slow_max.load(Ordering::SeqCst)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Replace the CertCentral keys accepted (rotation tests).
    pub fn set_devkeys(&self, keys: &[&str]) {
        if let Ok(mut k) = self.state.devkeys.lock() {
            *k = keys.iter().map(|s| s.to_string()).collect();
        }
    }

    /// Accept only client certificates with these subjects (`None`: any from the CA), as
    /// DigiCert ONE does once a service user's old certificate is revoked or expired.
    pub fn set_client_subjects(&self, subjects: Option<&[&str]>) {
        if let Ok(mut s) = self.state.client_subjects.lock() {
            *s = subjects.map(|v| v.iter().map(|s| s.to_string()).collect());
        }
    }

    /// How the API-key server (`clientauth` false) or the clientauth one words a rejected
    /// credential from now on.
    pub fn set_rejection(&self, clientauth: bool, rejection: Rejection) {
        if let Ok(mut r) = self.state.rejection.lock() {
            r[usize::from(clientauth)] = rejection;
        }
    }

    /// Replace the DigiCert ONE keys accepted (rotation tests).
    pub fn set_api_keys(&self, keys: &[&str]) {
        if let Ok(mut k) = self.state.api_keys.lock() {
            *k = keys.iter().map(|s| s.to_string()).collect();
        }
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, clientauth: bool, state: Arc<State>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            state.tls_connections.fetch_add(1, Ordering::SeqCst);
            let subject = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| {
                    x509_parser::parse_x509_certificate(c.as_ref())
                        .ok()
                        .map(|(_, x)| x.subject().to_string())
                });
            let ctx = Arc::new(api::Ctx {
                state,
                clientauth,
                client_subject: subject,
            });
            let service = service_fn(move |req| api::handle(ctx.clone(), req));
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
