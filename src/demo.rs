//! `digicert-sidecar demo`: the DigiCert mock and a sidecar configured against it, in one
//! process, with the `curl` lines to try. No DigiCert account needed.

use std::net::SocketAddr;
use std::path::Path;

use crate::config::{self, Config};
use crate::mock::{MockDigicert, MockOptions};
use crate::server::{Sidecar, termination_signal};

/// Password of the demo's PKCS#12 file (it protects a throw-away key).
const DEMO_P12_PASSWORD: &str = "demo-p12-password";

/// Run the demo until SIGTERM/SIGINT. Errors are for the user: a port in use, a full disk.
/// `http1_only`: the mock offers only HTTP/1.1 in ALPN (the sidecar then pools HTTP/1.1
/// connections to it, as it does to any host without HTTP/2).
pub async fn run(listen: SocketAddr, http1_only: bool) -> Result<(), String> {
    let options = MockOptions {
        http1_only,
        ..MockOptions::default()
    };
    let mock = MockDigicert::start(options.clone())
        .await
        .map_err(|e| format!("cannot start the DigiCert mock: {e}"))?;
    let dir = tempfile_dir().map_err(|e| {
        format!(
            "cannot create a temporary directory in {} for the demo credentials: {e} \
             (in a container, give it a writable /tmp, e.g. `docker run --tmpfs /tmp`, or set TMPDIR)",
            std::env::temp_dir().display()
        )
    })?;
    let files = write_files(dir.path(), &mock, &options)
        .map_err(|e| format!("cannot write the demo credentials: {e}"))?;
    let config = demo_config(listen, &mock, &files)?;
    let sidecar = Sidecar::bind(config).await.map_err(|e| {
        format!(
            "{e} (another program may use it: try `digicert-sidecar demo --listen 127.0.0.1:18080`)"
        )
    })?;
    let Some(config::ListenAddr::Tcp(addr)) = sidecar.local_addrs().into_iter().next() else {
        return Err("the demo listener did not bind a TCP address".into());
    };
    println!("{}", instructions(addr, &mock, dir.path()));
    sidecar.serve(termination_signal()).await;
    drop(dir);
    Ok(())
}

struct Files {
    ca: String,
    devkey: String,
    api_key: String,
    p12: String,
    p12_password: String,
}

fn tempfile_dir() -> std::io::Result<TempDir> {
    let path = std::env::temp_dir().join(format!("digicert-sidecar-demo-{}", std::process::id()));
    std::fs::create_dir_all(&path)?;
    Ok(TempDir(path))
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_files(dir: &Path, mock: &MockDigicert, options: &MockOptions) -> Result<Files, String> {
    let write = |name: &str, data: &[u8]| -> Result<String, String> {
        let path = dir.join(name);
        std::fs::write(&path, data).map_err(|e| format!("{}: {e}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        Ok(path.display().to_string())
    };
    let p12 = mock
        .client
        .to_pkcs12(DEMO_P12_PASSWORD, false)
        .map_err(|e| e.to_string())?;
    Ok(Files {
        ca: write("mock-ca.pem", mock.ca.cert_pem.as_bytes())?,
        devkey: write("devkey", format!("{}\n", options.devkey).as_bytes())?,
        api_key: write("api-key", format!("{}\n", options.api_key).as_bytes())?,
        p12: write("service-user.p12", &p12)?,
        p12_password: write("p12-password", DEMO_P12_PASSWORD.as_bytes())?,
    })
}

fn demo_config(listen: SocketAddr, mock: &MockDigicert, f: &Files) -> Result<Config, String> {
    let toml = format!(
        r#"
[server]
listen = "{listen}"
admin = "off"

[log]
format = "text"

# The mock is on loopback: never through an HTTPS_PROXY of the environment.
[egress]
proxy = "none"

[[routes]]
name = "certcentral"
path_prefix = "/services/v2"
upstream = "{plain}"
ca_file = "{ca}"
[routes.api_key]
header = "X-DC-DEVKEY"
file = "{devkey}"

[[routes]]
name = "digicert-one"
path_prefix = "/account"
upstream = "{plain}"
ca_file = "{ca}"
[routes.api_key]
header = "x-api-key"
file = "{api_key}"

[[routes]]
name = "digicert-one-mtls"
path_prefix = "/mtls"
strip_prefix = true
upstream = "{mtls}"
ca_file = "{ca}"
[routes.client_cert]
pkcs12_file = "{p12}"
password_file = "{p12_password}"

[[routes]]
name = "software-trust-manager"
path_prefix = "/signingmanager"
upstream = "{mtls}"
ca_file = "{ca}"
[routes.api_key]
header = "x-api-key"
file = "{api_key}"
[routes.client_cert]
pkcs12_file = "{p12}"
password_file = "{p12_password}"
"#,
        plain = mock.url(),
        mtls = mock.clientauth_url(),
        ca = f.ca,
        devkey = f.devkey,
        api_key = f.api_key,
        p12 = f.p12,
        p12_password = f.p12_password,
    );
    config::from_toml_str(&toml).map_err(|e| format!("demo configuration: {e}"))
}

fn instructions(addr: SocketAddr, mock: &MockDigicert, dir: &Path) -> String {
    let base = format!("http://{addr}");
    format!(
        r#"digicert-sidecar demo is running: a DigiCert mock on {mock_url} (CertCentral and DigiCert ONE)
and {mtls_url} (clientauth, mTLS), and the sidecar on {base}. Credentials are in {dir}.

Try these; the app sends no credential, the sidecar adds it:
  curl -s {base}/services/v2/user/me
  curl -s {base}/services/v2/order/certificate
  curl -s {base}/account/api/v1/user
  curl -s {base}/mtls/account/api/v1/user
  curl -s {base}/signingmanager/api/v1/keypairs

A credential the app sends is replaced by the sidecar's:
  curl -s -H 'X-DC-DEVKEY: not-the-key' {base}/services/v2/user/me

What DigiCert answers without the sidecar (wrong key):
  curl -s --cacert {dir}/mock-ca.pem -H 'X-DC-DEVKEY: not-the-key' {mock_url}/services/v2/user/me

Errors made by the sidecar look like DigiCert's:
  curl -s {base}/no/such/route

Stop with Ctrl-C."#,
        mock_url = mock.url(),
        mtls_url = mock.clientauth_url(),
        dir = dir.display(),
    )
}
