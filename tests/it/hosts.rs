//! Hosts without Kubernetes, with the real binary: socket activation by
//! `systemd-socket-activate`, sd_notify read on a `NOTIFY_SOCKET` of the test's own,
//! `exec -- CMD` (every exit status, signals, the child's environment), `wait`, and
//! `POST /quitquitquit`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::net::UnixDatagram;

use crate::support::*;

/// The datagram socket a service manager listens on: every sd_notify message sent to it.
struct Notifications {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Notifications {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the NOTIFY_SOCKET");
        Self { socket, path }
    }

    /// The next message, at most `limit` away.
    async fn next(&self, limit: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(limit, self.socket.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned())
    }

    /// The next message that is not a watchdog ping.
    async fn next_state(&self, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.next(left).await?;
            if m != "WATCHDOG=1" {
                return Some(m);
            }
        }
    }
}

/// The config of [`World::certcentral_toml`] on `listen`, with the admin listener on.
fn config_on(w: &World, listen: &str, extra_server: &str) -> PathBuf {
    let toml = with_admin(&w.certcentral_toml()).replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{listen}\"{extra_server}"),
    );
    w.config_file(&toml)
}

/// `systemd-socket-activate` passing a Unix socket named `fdname` to the real binary, with
/// `env` handed through (`-E`).
fn socket_activated(
    w: &World,
    socket: impl AsRef<std::ffi::OsStr>,
    fdname: &str,
    config: &Path,
    env: &[(&str, &str)],
) -> Process {
    let stderr_path = w.path("activated.log");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut cmd = std::process::Command::new("systemd-socket-activate");
    cmd.arg("-l").arg(socket).arg(format!("--fdname={fdname}"));
    for (k, v) in env {
        cmd.arg("-E").arg(format!("{k}={v}"));
    }
    cmd.arg(env!("CARGO_BIN_EXE_digicert-sidecar"))
        .args(["run", "--config"])
        .arg(config);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("systemd-socket-activate starts (Debian's `systemd` package)");
    Process { child, stderr_path }
}

/// Connect to `socket` until it accepts (systemd-socket-activate made it).
async fn wait_for_socket(socket: &Path) {
    for _ in 0..500 {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never accepted", socket.display());
}

#[tokio::test]
async fn socket_activation_and_every_notification() {
    let w = World::new().await;
    let socket = w.path("proxy.sock");
    let config = config_on(&w, "systemd:proxy", "");
    let notes = Notifications::bind(w.dir.path());
    let notify_socket = notes.path.display().to_string();
    let mut p = socket_activated(
        &w,
        &socket,
        "proxy",
        &config,
        &[
            ("NOTIFY_SOCKET", &notify_socket),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    wait_for_socket(&socket).await;

    // systemd-socket-activate starts the service on the first connection, as systemd does.
    let got = get_unix(&socket, "/services/v2/user/me").await;
    assert_eq!(got.status, 200, "{}\n{}", got.text(), p.stderr());
    assert_eq!(
        got.json()["username"],
        "demo.user",
        "the mock accepted the devkey"
    );
    assert_eq!(
        notes.next_state(Duration::from_secs(5)).await.as_deref(),
        Some("READY=1"),
        "{}",
        p.stderr()
    );

    // WATCHDOG_USEC=200ms: a ping every 100 ms.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(800);
    while let Some(m) = notes
        .next(until.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        if m == "WATCHDOG=1" {
            pings += 1;
        }
    }
    assert!(pings >= 3, "{pings} watchdog pings in 800 ms");

    p.signal("HUP");
    let reloading = notes
        .next_state(Duration::from_secs(5))
        .await
        .unwrap_or_default();
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading}");
    let usec = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|u| u > 0), "{reloading}");
    assert_eq!(
        notes.next_state(Duration::from_secs(5)).await.as_deref(),
        Some("READY=1"),
        "READY=1 again once the reload is done"
    );

    p.signal("TERM");
    assert_eq!(
        notes.next_state(Duration::from_secs(5)).await.as_deref(),
        Some("STOPPING=1")
    );
    let status = p.wait(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
    assert!(
        socket.exists(),
        "the socket belongs to systemd: not removed"
    );
}

#[tokio::test]
async fn a_missing_systemd_socket_is_a_clear_start_error() {
    let w = World::new().await;
    let socket = w.path("other.sock");
    let config = config_on(&w, "systemd:proxy", "");
    let mut p = socket_activated(&w, &socket, "other", &config, &[]);
    wait_for_socket(&socket).await;
    let status = p.wait(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(1));
    let err = p.stderr();
    assert!(
        err.contains("systemd:proxy") && err.contains("FileDescriptorName=proxy"),
        "{err}"
    );
}

/// A passed TCP socket is served like a configured one, and one off loopback is refused
/// unless `allow_non_loopback`: its address comes from the .socket unit, not the file.
#[tokio::test]
async fn a_passed_tcp_socket_is_served_and_checked_for_loopback() {
    let w = World::new().await;
    let config = config_on(&w, "systemd:proxy", "");
    let port = free_port();
    let mut p = socket_activated(&w, format!("127.0.0.1:{port}"), "proxy", &config, &[]);
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_listening(addr).await;
    let got = get(&format!("http://{addr}/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 200, "{}", p.stderr());
    p.signal("TERM");
    assert_eq!(
        p.wait(Duration::from_secs(10)).await.and_then(|s| s.code()),
        Some(0)
    );

    let port = free_port();
    let mut p = socket_activated(&w, format!("0.0.0.0:{port}"), "proxy", &config, &[]);
    wait_listening(format!("127.0.0.1:{port}").parse().expect("addr")).await;
    let status = p.wait(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(1));
    assert!(
        p.stderr().contains("not a loopback address"),
        "{}",
        p.stderr()
    );
}

#[tokio::test]
async fn systemd_listen_outside_socket_activation_is_refused_clearly() {
    // Started by hand (no LISTEN_FDS), `systemd:` cannot be served: exit 1 with one line.
    let w = World::new().await;
    let config = config_on(&w, "systemd:proxy", "");
    let mut p = Process::spawn(&config, w.path("plain.log"), &[]);
    let status = p.wait(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(1));
    assert!(p.stderr().contains("LISTEN_FDS"), "{}", p.stderr());
}

// ------------------------------------------------------------------ exec

/// `digicert-sidecar exec --config CONFIG [extra] -- sh -c SCRIPT`: (status, stderr).
async fn exec_sh(
    config: &Path,
    extra: &[&str],
    script: &str,
    envs: &[(&str, &str)],
) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_digicert-sidecar"));
    cmd.arg("exec")
        .arg("--config")
        .arg(config)
        .args(extra)
        .args(["--", "sh", "-c", script]);
    for key in [
        "DIGICERT_SIDECAR_CONFIG",
        "DIGICERT_DEVKEY",
        "DIGICERT_API_KEY",
    ] {
        cmd.env_remove(key);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.stdin(Stdio::null()).output())
        .await
        .expect("exec ends")
        .expect("exec runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn exec_gives_the_command_a_sidecar_and_exits_with_its_status() {
    let w = World::new().await;
    let config = w.config_file(&w.certcentral_toml());
    let out = w.path("answer.json");
    let script = format!(
        "curl -sf \"$DIGICERT_SIDECAR_URL/services/v2/user/me\" -o {}",
        out.display()
    );
    let (status, err) = exec_sh(&config, &[], &script, &[]).await;
    assert_eq!(status, Some(0), "{err}");
    let answer = std::fs::read_to_string(&out).expect("the command wrote the answer");
    assert!(answer.contains("\"username\":\"demo.user\""), "{answer}");

    let (status, err) = exec_sh(&config, &[], "exit 7", &[]).await;
    assert_eq!(status, Some(7), "a non-zero status is passed on: {err}");
}

#[tokio::test]
async fn exec_reports_a_signal_as_128_plus_n() {
    let w = World::new().await;
    let config = w.config_file(&w.certcentral_toml());
    let (status, err) = exec_sh(&config, &[], "kill -KILL $$", &[]).await;
    assert_eq!(status, Some(128 + 9), "{err}");
}

#[tokio::test]
async fn exec_passes_sigterm_and_sigint_to_the_command() {
    let w = World::new().await;
    let config = w.config_file(&w.certcentral_toml());
    for (sig, n) in [("TERM", 15), ("INT", 2)] {
        let started = w.path(&format!("started-{sig}"));
        let script = format!("touch {}; exec sleep 30", started.display());
        let mut p = Process::spawn_with(
            &[
                "exec",
                "--config",
                &config.display().to_string(),
                "--",
                "sh",
                "-c",
                &script,
            ],
            w.path(&format!("exec-{sig}.log")),
            &[],
        );
        assert!(
            eventually(Duration::from_secs(10), || async { started.exists() }).await,
            "the command started: {}",
            p.stderr()
        );
        let t0 = std::time::Instant::now();
        p.signal(sig);
        let status = p.wait(Duration::from_secs(10)).await.expect("exits");
        assert_eq!(status.code(), Some(128 + n), "SIG{sig}: {}", p.stderr());
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "sleep 30 was ended by the SIG{sig} passed on"
        );
    }
}

#[tokio::test]
async fn exec_of_a_missing_command_is_127() {
    let w = World::new().await;
    let config = w.config_file(&w.certcentral_toml());
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_digicert-sidecar"));
    cmd.arg("exec")
        .arg("--config")
        .arg(&config)
        .args(["--", "/nonexistent/digicert-sidecar-test-command"]);
    let out = cmd.output().await.expect("exec runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert!(
        err.contains("cannot run /nonexistent/digicert-sidecar-test-command"),
        "{err}"
    );
}

#[tokio::test]
async fn exec_never_runs_the_command_when_the_sidecar_cannot_start() {
    let w = World::new().await;
    let toml = w
        .certcentral_toml()
        .replace(&w.devkey.display().to_string(), "/nonexistent/devkey");
    let config = w.config_file(&toml);
    let ran = w.path("ran");
    let (status, err) = exec_sh(&config, &[], &format!("touch {}", ran.display()), &[]).await;
    assert_eq!(status, Some(1), "{err}");
    assert!(!ran.exists(), "the command must not run");
    assert!(
        err.contains("/nonexistent/devkey"),
        "the reason is on stderr: {err}"
    );

    // A configuration error: the same.
    let (status, _) = exec_sh(
        &w.path("missing.toml"),
        &[],
        &format!("touch {}", ran.display()),
        &[],
    )
    .await;
    assert_eq!(status, Some(1));
    assert!(!ran.exists(), "the command must not run");
}

#[tokio::test]
async fn the_commands_environment_never_holds_a_secret() {
    const CANARY: &str = "canary-secret-7f3a9c1e5b";
    let w = World::new().await;
    // The route reads its key from an environment variable, and zero-config variables are set
    // too: neither may reach the command.
    let toml = w.certcentral_toml().replace(
        &format!("file = \"{}\"", w.devkey.display()),
        "env = \"MY_DIGICERT_DEVKEY\"",
    );
    let config = w.config_file(&toml);
    let environ = w.path("environ");
    let script = format!("tr '\\0' '\\n' < /proc/$$/environ > {}", environ.display());
    let (status, err) = exec_sh(
        &config,
        &["--proxy-env"],
        &script,
        &[
            ("MY_DIGICERT_DEVKEY", DEVKEY),
            ("DIGICERT_DEVKEY", CANARY),
            ("DIGICERT_API_KEY", CANARY),
            ("DIGICERT_CLIENT_CERT_PASSWORD", CANARY),
        ],
    )
    .await;
    assert_eq!(status, Some(0), "{err}");
    let env = std::fs::read_to_string(&environ).expect("the command read its environ");
    assert!(
        !env.contains(CANARY),
        "a secret reached the command:\n{env}"
    );
    assert!(
        !env.contains(DEVKEY),
        "the route's key reached the command:\n{env}"
    );
    let url = env
        .lines()
        .find_map(|l| l.strip_prefix("DIGICERT_SIDECAR_URL="))
        .expect("DIGICERT_SIDECAR_URL is set");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(
        env.lines().any(|l| l == format!("HTTP_PROXY={url}")),
        "{env}"
    );
    assert!(
        env.lines().any(|l| l == format!("http_proxy={url}")),
        "{env}"
    );
    assert!(!err.contains(CANARY) && !err.contains(DEVKEY), "{err}");
}

#[tokio::test]
async fn exec_on_a_unix_listener_sets_the_socket_variable() {
    let w = World::new().await;
    let socket = w.path("exec.sock");
    let toml = w.certcentral_toml().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"unix:{}\"", socket.display()),
    );
    let config = w.config_file(&toml);
    let out = w.path("socket-answer.json");
    let script = format!(
        "[ \"$DIGICERT_SIDECAR_SOCKET\" = {} ] && [ -z \"$DIGICERT_SIDECAR_URL\" ] && \
         curl -sf --unix-socket \"$DIGICERT_SIDECAR_SOCKET\" http://localhost/services/v2/user/me -o {}",
        socket.display(),
        out.display()
    );
    let (status, err) = exec_sh(&config, &[], &script, &[]).await;
    assert_eq!(status, Some(0), "{err}");
    assert!(
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("demo.user")
    );
}

// ------------------------------------------------------------------ wait and quitquitquit

#[tokio::test]
async fn wait_returns_once_ready_and_fails_with_what_it_saw() {
    let w = World::new().await;
    let admin_port = free_port();
    let config = config_on(&w, "127.0.0.1:0", "");
    let config_text = std::fs::read_to_string(&config).expect("config").replace(
        "admin = \"127.0.0.1:0\"",
        &format!("admin = \"127.0.0.1:{admin_port}\""),
    );
    std::fs::write(&config, config_text).expect("config");
    let admin = format!("127.0.0.1:{admin_port}");

    // Nothing listens yet: the timeout passes, with the last thing seen.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_digicert-sidecar"))
        .args(["wait", "--admin", &admin, "--timeout", "300ms"])
        .output()
        .await
        .expect("wait runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not ready after 300ms") && err.contains("cannot connect"),
        "{err}"
    );

    // `wait` started before the sidecar returns 0 once /readyz answers 200.
    let waiting = tokio::process::Command::new(env!("CARGO_BIN_EXE_digicert-sidecar"))
        .args(["wait", "--admin", &admin, "--timeout", "20s"])
        .output();
    let waiting = tokio::spawn(waiting);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _p = Process::spawn(&config, w.path("wait.log"), &[]);
    let out = waiting.await.expect("joined").expect("wait runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// POST /quitquitquit from loopback: 202, then the sidecar drains and exits 0 (STOPPING=1
/// to systemd, as on SIGTERM).
#[tokio::test]
async fn quitquitquit_stops_the_sidecar_like_sigterm() {
    let w = World::new().await;
    let port = free_port();
    let admin_port = free_port();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin_port}\"\nadmin_shutdown = true\n{}",
        w.certcentral_route("cc", "/")
    );
    let config = w.config_file(&toml);
    let notes = Notifications::bind(w.dir.path());
    let notify_socket = notes.path.display().to_string();
    let mut p = Process::spawn(
        &config,
        w.path("quit.log"),
        &[("NOTIFY_SOCKET", &notify_socket)],
    );
    assert_eq!(
        notes.next_state(Duration::from_secs(10)).await.as_deref(),
        Some("READY=1")
    );
    let admin = format!("http://127.0.0.1:{admin_port}/quitquitquit");

    let got = get(&admin, &[]).await;
    assert_eq!(got.status, 405, "GET is not enough");
    let got = send(&h1_client(), "POST", &admin, &[], bytes::Bytes::new()).await;
    assert_eq!(got.status, 202, "{}", got.text());
    assert_eq!(
        notes.next_state(Duration::from_secs(5)).await.as_deref(),
        Some("STOPPING=1")
    );
    let status = p.wait(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
}

#[tokio::test]
async fn quitquitquit_is_404_unless_admin_shutdown_is_on() {
    let w = World::new().await;
    let running = Running::start(&with_admin(&w.certcentral_toml())).await;
    let addr = running.admin.expect("admin on");
    let got = send(
        &h1_client(),
        "POST",
        &format!("http://{addr}/quitquitquit"),
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(got.status, 404);
    assert_eq!(running.admin("/healthz").await.status, 200, "still serving");
    running.stop().await;
}

/// `${VAR}` in a `*_file` path: the real binary reads the credential systemd passed, and an
/// unset variable is a configuration error that names it.
#[tokio::test]
async fn credentials_directory_in_file_paths() {
    let w = World::new().await;
    let toml = w.certcentral_toml().replace(
        &format!("file = \"{}\"", w.devkey.display()),
        "file = \"${CREDENTIALS_DIRECTORY}/devkey\"",
    );
    let config = w.config_file(&toml);
    let dir = w.dir.path().display().to_string();
    let check = |envs: Vec<(&'static str, String)>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_digicert-sidecar"));
        cmd.arg("check")
            .arg("--config")
            .arg(&config)
            .env_remove("CREDENTIALS_DIRECTORY");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output()
    };
    let out = check(vec![("CREDENTIALS_DIRECTORY", dir.clone())])
        .await
        .expect("check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("{dir}/devkey")), "{text}");

    let out = check(Vec::new()).await.expect("check runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("api_key.file") && err.contains("CREDENTIALS_DIRECTORY is not set"),
        "{err}"
    );
}
