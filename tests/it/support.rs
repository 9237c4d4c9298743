//! Shared test support: the DigiCert mock with credentials written to files, the sidecar
//! started in-process (the real `Sidecar::bind` + `serve`) or as the real binary, and small
//! HTTP clients for HTTP/1.1, h2c and Unix sockets.

#![allow(dead_code)]

pub mod proxy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use digicert_sidecar::Sidecar;
use digicert_sidecar::config::{self, ListenAddr};
use digicert_sidecar::mock::{MockDigicert, MockOptions};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::oneshot;

pub const DEVKEY: &str = "cc-devkey-0123456789abcdef";
pub const API_KEY: &str = "one-api-key-0123456789abcdef";
pub const P12_PASSWORD: &str = "p12-password-for-tests";

/// The `[routes.rate_limit]` section of the test routes: no windows.
pub const NO_RATE_LIMIT: &str = "[routes.rate_limit]\nwindows = []\n";

/// The mock plus every credential it accepts, written to files in a temp dir.
pub struct World {
    pub mock: MockDigicert,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub devkey: PathBuf,
    pub api_key: PathBuf,
    pub p12: PathBuf,
    pub p12_password: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

impl World {
    pub async fn new() -> Self {
        Self::with(MockOptions {
            devkey: DEVKEY.into(),
            api_key: API_KEY.into(),
            http1_only: false,
        })
        .await
    }

    pub async fn with(options: MockOptions) -> Self {
        let mock = MockDigicert::start(options.clone())
            .await
            .expect("mock starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, data: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, data).expect("write test file");
            p
        };
        let p12 = mock.client.to_pkcs12(P12_PASSWORD, false).expect("p12");
        Self {
            ca: write("ca.pem", mock.ca.cert_pem.as_bytes()),
            devkey: write("devkey", format!("{}\n", options.devkey).as_bytes()),
            api_key: write("api-key", format!("{}\n", options.api_key).as_bytes()),
            p12: write("client.p12", &p12),
            p12_password: write("p12-password", format!("{P12_PASSWORD}\n").as_bytes()),
            cert_pem: write("client.pem", mock.client.cert_pem.as_bytes()),
            key_pem: write("client.key", mock.client.key_pem.as_bytes()),
            mock,
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).expect("write test file");
        p
    }

    /// A key file reached through a symlink into a directory nobody watches, so that only
    /// DigiCert's rejection makes the sidecar read it again: `(the file, the link to name
    /// in the route)`.
    pub fn unwatched_key(&self, key: &str) -> (PathBuf, PathBuf) {
        let hidden = self.path("hidden");
        std::fs::create_dir_all(&hidden).expect("hidden dir");
        let file = hidden.join("key");
        std::fs::write(&file, format!("{key}\n")).expect("write key");
        let link = self.path("key-link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        (file, link)
    }

    /// `[server]` for tests: ephemeral port, admin off, short timeouts.
    pub fn server_toml(&self) -> String {
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"off\"\nrequest_timeout = \"5s\"\nshutdown_grace = \"5s\"\n".into()
    }

    /// A CertCentral route on the mock, rate limiting off ([`NO_RATE_LIMIT`]).
    pub fn certcentral_route(&self, name: &str, prefix: &str) -> String {
        format!(
            "[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{}\"\nca_file = \"{}\"\n[routes.api_key]\nheader = \"X-DC-DEVKEY\"\nfile = \"{}\"\n{NO_RATE_LIMIT}",
            self.mock.url(),
            self.ca.display(),
            self.devkey.display()
        )
    }

    /// The most common test configuration: [`Self::server_toml`] and one CertCentral route
    /// `cc` on `/`.
    pub fn certcentral_toml(&self) -> String {
        format!(
            "{}{}",
            self.server_toml(),
            self.certcentral_route("cc", "/")
        )
    }

    /// [`Self::certcentral_toml`] with `rate_limit` as the route's `[routes.rate_limit]`.
    pub fn certcentral_toml_limited(&self, rate_limit: &str) -> String {
        self.certcentral_toml().replace(NO_RATE_LIMIT, rate_limit)
    }

    /// A DigiCert ONE (x-api-key) route on the mock.
    pub fn one_route(&self, name: &str, prefix: &str) -> String {
        format!(
            "[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{}\"\nca_file = \"{}\"\n[routes.api_key]\nheader = \"x-api-key\"\nfile = \"{}\"\n",
            self.mock.url(),
            self.ca.display(),
            self.api_key.display()
        )
    }

    /// A clientauth (mTLS, PKCS#12) route on the mock.
    pub fn mtls_route(&self, name: &str, prefix: &str) -> String {
        format!(
            "[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{}\"\nca_file = \"{}\"\n[routes.client_cert]\npkcs12_file = \"{}\"\npassword_file = \"{}\"\n",
            self.mock.clientauth_url(),
            self.ca.display(),
            self.p12.display(),
            self.p12_password.display()
        )
    }

    /// A configuration for the real binary: `[server]` on a free loopback port with the admin
    /// listener off, then `extra` (more `[server]` keys, a `[log]` table …), then route `cc`
    /// on `/` ([`Self::certcentral_route`]). Returns the address it will listen on and the file.
    pub fn binary_config(&self, extra: &str) -> (SocketAddr, PathBuf) {
        let port = free_port();
        let path = self.config_file(&format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin = \"off\"\n{extra}{}",
            self.certcentral_route("cc", "/")
        ));
        (SocketAddr::from(([127, 0, 0, 1], port)), path)
    }

    /// Write a config file and return its path.
    pub fn config_file(&self, toml: &str) -> PathBuf {
        self.write("config.toml", toml.as_bytes())
    }
}

/// Send raw bytes, read the whole answer (the request says `Connection: close`), for at
/// most 5 s.
pub async fn raw(addr: SocketAddr, request: impl AsRef<[u8]>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request.as_ref()).await.expect("send");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The same configuration with the admin listener on an ephemeral port.
pub fn with_admin(toml: &str) -> String {
    toml.replace("admin = \"off\"", "admin = \"127.0.0.1:0\"")
}

/// A sidecar served in this process by the real `Sidecar::bind` + `serve`.
pub struct Running {
    pub addrs: Vec<ListenAddr>,
    pub admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The sidecar of [`World::certcentral_toml`].
    pub async fn certcentral(w: &World) -> Self {
        Self::start(&w.certcentral_toml()).await
    }

    pub async fn start(toml: &str) -> Self {
        let config = config::from_toml_str(toml).expect("test config is valid");
        let sidecar = Sidecar::bind(config).await.expect("sidecar starts");
        let addrs = sidecar.local_addrs();
        let admin = sidecar.admin_addr();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(sidecar.serve(async move {
            let _ = rx.await;
        }));
        Self {
            addrs,
            admin,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The first TCP listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs
            .iter()
            .find_map(|a| match a {
                ListenAddr::Tcp(a) => Some(*a),
                _ => None,
            })
            .expect("a TCP listener")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// GET an admin path.
    pub async fn admin(&self, path: &str) -> Got {
        let addr = self.admin.expect("the admin listener is on");
        get(&format!("http://{addr}{path}"), &[]).await
    }

    /// The value of one sample of /metrics, e.g. `x_total{route="cc"}`; 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.admin("/metrics").await.text(), sample)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// The value of `sample` (name and labels, as exported) in a Prometheus text page.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Poll `check` every 20 ms until it holds, at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Replace a file atomically (write a temporary beside it, rename over it).
pub fn replace_file(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("tmp-new");
    std::fs::write(&tmp, data).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename over");
}

/// A plain-HTTP/1.1 client with keep-alive.
pub fn h1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An h2c (prior knowledge) client.
pub fn h2c_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response with its body read.
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The sidecar error reason, if the sidecar made this answer.
    pub fn sidecar_error(&self) -> Option<&str> {
        self.headers
            .get("x-digicert-sidecar-error")
            .and_then(|v| v.to_str().ok())
    }
}

pub async fn read(resp: Response<hyper::body::Incoming>) -> Got {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    Got {
        status,
        headers,
        body,
    }
}

/// GET `url` with extra headers over HTTP/1.1.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Got {
    send(&h1_client(), "GET", url, headers, Bytes::new()).await
}

pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Got {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client
        .request(b.body(Full::new(body)).expect("request builds"))
        .await
        .expect("request is answered");
    read(resp).await
}

/// GET `path` over a Unix socket (HTTP/1.1).
pub async fn get_unix(socket: &Path, path: &str) -> Got {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect to the unix socket");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .expect("request builds");
    read(sender.send_request(req).await.expect("answered")).await
}

/// The real binary.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_digicert-sidecar"))
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The real binary running `run --config FILE`, stderr captured.
pub struct Process {
    pub child: Child,
    pub stderr_path: PathBuf,
}

impl Process {
    pub fn spawn(config: &Path, stderr_path: PathBuf, envs: &[(&str, &str)]) -> Self {
        let config = config.display().to_string();
        Self::spawn_with(&["run", "--config", &config], stderr_path, envs)
    }

    pub fn spawn_with(args: &[&str], stderr_path: PathBuf, envs: &[(&str, &str)]) -> Self {
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut cmd = binary();
        cmd.args(args);
        for key in [
            "DIGICERT_SIDECAR_CONFIG",
            "DIGICERT_DEVKEY",
            "DIGICERT_API_KEY",
            "RUST_LOG",
        ] {
            cmd.env_remove(key);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("binary starts");
        Self { child, stderr_path }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Wait for the exit status, at most `limit`.
    pub async fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_field(self.pid(), "VmHWM:")
    }

    /// Current resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        status_field(self.pid(), "VmRSS:")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Wait until `addr` accepts TCP connections (the binary is up).
pub async fn wait_listening(addr: SocketAddr) {
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nothing listens on {addr}");
}
