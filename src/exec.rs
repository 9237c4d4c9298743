//! `digicert-sidecar exec -- CMD`: a sidecar for as long as one command runs (cron jobs, CI
//! jobs, scripts, Kubernetes Jobs without native sidecars). The sidecar starts first; CMD
//! runs only once it is ready, learns where it listens from `DIGICERT_SIDECAR_URL` (or
//! `DIGICERT_SIDECAR_SOCKET`), gets SIGTERM and SIGINT passed on, and its exit status
//! becomes ours after the sidecar drains.

use std::ffi::OsString;
use std::io;
use std::process::ExitStatus;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::{ClientCertSource, Config, ListenAddr, SecretSource};
use crate::server::Sidecar;

/// Exit status when the sidecar cannot start (CMD never runs).
pub const CANNOT_START: u8 = 1;
/// Exit status when CMD cannot be found (as a shell says it).
pub const NOT_FOUND: u8 = 127;
/// Exit status when CMD exists but cannot be run (as a shell says it).
pub const NOT_EXECUTABLE: u8 = 126;

/// Environment variables that hold secrets in the zero-config mode; never passed to CMD.
const ZERO_CONFIG_SECRETS: &[&str] = &[
    "DIGICERT_DEVKEY",
    "DIGICERT_API_KEY",
    "DIGICERT_CLIENT_CERT_PASSWORD",
];

/// What systemd hands the sidecar, not CMD: CMD is not the service's main process.
const SERVICE_MANAGER_VARS: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// How CMD is run.
pub struct Exec {
    pub command: Vec<OsString>,
    /// Also set `HTTP_PROXY`/`http_proxy` to the sidecar.
    pub proxy_env: bool,
}

/// Every environment variable that holds a secret the configuration reads.
pub fn secret_env_vars(config: &Config) -> Vec<String> {
    let mut vars: Vec<String> = ZERO_CONFIG_SECRETS.iter().map(|v| v.to_string()).collect();
    for route in &config.routes {
        if let Some(key) = &route.api_key
            && let SecretSource::Env(v) = &key.source
        {
            vars.push(v.clone());
        }
        if let Some(ClientCertSource::Pkcs12 {
            password: SecretSource::Env(v),
            ..
        }) = &route.client_cert
        {
            vars.push(v.clone());
        }
    }
    vars.sort();
    vars.dedup();
    vars
}

/// The variables that tell CMD where the sidecar is.
fn sidecar_env(addr: &ListenAddr, proxy_env: bool) -> Vec<(&'static str, String)> {
    match addr {
        ListenAddr::Tcp(a) => {
            let url = format!("http://{a}");
            let mut env = vec![("DIGICERT_SIDECAR_URL", url.clone())];
            if proxy_env {
                env.push(("HTTP_PROXY", url.clone()));
                env.push(("http_proxy", url));
            }
            env
        }
        ListenAddr::Unix(p) => vec![("DIGICERT_SIDECAR_SOCKET", p.display().to_string())],
        // A bound listener is TCP or Unix; a systemd socket is reported as one of those.
        ListenAddr::Systemd(_) => Vec::new(),
    }
}

/// The exit status of a shell-like wrapper for CMD's `status`: its code, or 128+N when
/// signal N ended it.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    }
}

/// Serve `sidecar` while CMD runs; CMD's exit status, or 126/127 when it cannot be run.
pub async fn run(sidecar: Sidecar, config: &Config, exec: Exec) -> u8 {
    let Some((program, args)) = exec.command.split_first() else {
        eprintln!("error: exec: no command given (digicert-sidecar exec -- CMD [ARGS...])");
        return 2;
    };
    let Some(addr) = sidecar.local_addrs().into_iter().next() else {
        eprintln!("error: exec: the sidecar has no listener");
        return CANNOT_START;
    };
    // Installed before CMD starts, so that a signal sent right after is passed on, not
    // taken by the default action (which would end the sidecar and orphan CMD).
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: exec: cannot handle signals: {e}");
            return CANNOT_START;
        }
    };

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    for v in secret_env_vars(config)
        .iter()
        .map(String::as_str)
        .chain(SERVICE_MANAGER_VARS.iter().copied())
    {
        cmd.env_remove(v);
    }
    for (k, v) in sidecar_env(&addr, exec.proxy_env) {
        cmd.env(k, v);
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(sidecar.serve(async move {
        let _ = stop_rx.await;
    }));
    let shown = program.to_string_lossy();

    let code = match cmd.spawn() {
        Err(e) => {
            eprintln!("error: exec: cannot run {shown}: {e}");
            match e.kind() {
                io::ErrorKind::NotFound => NOT_FOUND,
                _ => NOT_EXECUTABLE,
            }
        }
        Ok(mut child) => {
            tracing::info!(command = %shown, pid = child.id(), sidecar = %addr, "exec: command started");
            let status = loop {
                let sig = tokio::select! {
                    status = child.wait() => break status,
                    _ = term.recv() => nix::sys::signal::Signal::SIGTERM,
                    _ = int.recv() => nix::sys::signal::Signal::SIGINT,
                };
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    tracing::info!(signal = %sig, "exec: passing the signal on to the command");
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
                }
            };
            match status {
                Ok(status) => {
                    let code = exit_code(status);
                    tracing::info!(command = %shown, status = code, "exec: command ended; stopping the sidecar");
                    code
                }
                Err(e) => {
                    eprintln!("error: exec: cannot wait for {shown}: {e}");
                    1
                }
            }
        }
    };
    let _ = stop_tx.send(());
    let _ = serving.await;
    code
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    #[test]
    fn statuses_map_like_a_shell() {
        assert_eq!(super::exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(super::exit_code(ExitStatus::from_raw(3 << 8)), 3);
        // Killed by SIGKILL (9) and SIGTERM (15).
        assert_eq!(super::exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(super::exit_code(ExitStatus::from_raw(15)), 143);
    }

    #[test]
    fn secret_variables_are_the_configured_ones_and_zero_configs() {
        let toml = r#"
[server]
listen = "127.0.0.1:0"
admin = "off"
[[routes]]
name = "cc"
upstream = "https://www.digicert.com"
[routes.api_key]
header = "X-DC-DEVKEY"
env = "MY_DEVKEY"
"#;
        let config = crate::config::from_toml_str(toml).expect("valid");
        let vars = super::secret_env_vars(&config);
        assert!(vars.contains(&"MY_DEVKEY".to_owned()));
        assert!(vars.contains(&"DIGICERT_DEVKEY".to_owned()));
    }
}
