//! Forward proxies for the egress tests: a real tinyproxy (Debian's package, started on a
//! free loopback port with a config written by the test, in the foreground) and a small
//! CONNECT proxy of our own for what a real one will not do (a split status line, 204, 403,
//! 407, closing at once, never answering) and for an `https://` proxy with its own CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use digicert_sidecar::mock::TestCa;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{free_port, wait_listening};

/// A tinyproxy process; killed when dropped.
pub struct Tinyproxy {
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Child,
}

impl Tinyproxy {
    /// Start tinyproxy in `dir`, with `BasicAuth user password` if `auth` is given. `None`
    /// (after saying why) where tinyproxy is not installed; CI installs it, so there a
    /// missing tinyproxy fails the test instead.
    pub async fn start(dir: &Path, auth: Option<(&str, &str)>) -> Option<Self> {
        let found = Command::new("tinyproxy")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "tinyproxy is not installed; .ci/run installs it"
            );
            eprintln!("SKIPPED: tinyproxy is not installed (apt-get install tinyproxy)");
            return None;
        }
        let port = free_port();
        let log = dir.join("tinyproxy.log");
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nLogFile \"{}\"\nLogLevel Info\n",
            log.display()
        );
        if let Some((user, password)) = auth {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let conf_path = dir.join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).expect("write tinyproxy.conf");
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        wait_listening(addr).await;
        Some(Self { addr, log, child })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What tinyproxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The request lines it logged (`CONNECT host:port HTTP/1.1`, …).
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split_once("): ").map(|(_, r)| r.to_string()))
            .filter(|r| r.ends_with("HTTP/1.1") || r.ends_with("HTTP/1.0"))
            .collect()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the in-test proxy does with a CONNECT.
#[derive(Clone)]
pub enum Behaviour {
    /// Answer with these pieces (written apart), then relay to the CONNECT target.
    Tunnel(Vec<&'static [u8]>),
    /// Answer this and close.
    Refuse(&'static [u8]),
    /// Close as soon as the request arrives.
    Close,
    /// Read the request and never answer.
    Silent,
}

/// A CONNECT proxy on 127.0.0.1, plain or TLS.
pub struct FakeProxy {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    client_certs: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProxy {
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::serve(behaviour, None).await
    }

    /// An `https://` proxy whose certificate `ca` issued (for `localhost`, `127.0.0.1`). It
    /// would accept a client certificate from `client_ca` if one were offered, and counts
    /// any that is.
    pub async fn start_tls(behaviour: Behaviour, ca: &TestCa, client_ca: &[u8]) -> Self {
        let leaf = ca
            .server_cert(&["localhost", "127.0.0.1"])
            .expect("proxy cert");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(client_ca.to_vec()))
            .expect("client CA");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .expect("verifier");
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from(leaf.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone())),
            )
            .expect("server config");
        Self::serve(behaviour, Some(Arc::new(config))).await
    }

    async fn serve(behaviour: Behaviour, tls: Option<Arc<ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let client_certs = Arc::new(Mutex::new(0));
        let task = tokio::spawn({
            let heads = heads.clone();
            let client_certs = client_certs.clone();
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let behaviour = behaviour.clone();
                    let heads = heads.clone();
                    let client_certs = client_certs.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            None => one(tcp, behaviour, heads).await,
                            Some(config) => {
                                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                                let Ok(stream) = acceptor.accept(tcp).await else {
                                    return;
                                };
                                if stream.get_ref().1.peer_certificates().is_some() {
                                    *client_certs.lock().unwrap() += 1;
                                }
                                one(stream, behaviour, heads).await
                            }
                        }
                    });
                }
            }
        });
        Self {
            addr,
            heads,
            client_certs,
            task,
        }
    }

    /// Every request head received.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// TLS clients that offered a certificate to this proxy.
    pub fn client_certs_offered(&self) -> usize {
        *self.client_certs.lock().unwrap()
    }
}

async fn one<S>(mut io: S, behaviour: Behaviour, heads: Arc<Mutex<Vec<String>>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if let Behaviour::Close = behaviour {
            return;
        }
        match io.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    heads.lock().unwrap().push(head.clone());
    match behaviour {
        Behaviour::Close => {}
        Behaviour::Silent => tokio::time::sleep(Duration::from_secs(60)).await,
        Behaviour::Refuse(answer) => {
            let _ = io.write_all(answer).await;
            let _ = io.shutdown().await;
        }
        Behaviour::Tunnel(pieces) => {
            let target = head
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let Ok(mut upstream) = TcpStream::connect(target.as_str()).await else {
                let _ = io.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                return;
            };
            for piece in pieces {
                let _ = io.write_all(piece).await;
                let _ = io.flush().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = tokio::io::copy_bidirectional(&mut io, &mut upstream).await;
        }
    }
}
