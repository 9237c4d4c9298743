//! The command line: `check`, `--help`, zero-config from the environment, refusals at start.

use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

fn run_check(config: &std::path::Path) -> (i32, String, String) {
    let out = binary()
        .arg("check")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .expect("check runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn check_describes_every_route_and_exits_0() {
    let w = World::new().await;
    let config = w.config_file(&format!(
        "{}{}",
        w.certcentral_toml(),
        w.mtls_route("mtls", "/mtls")
    ));
    let (code, out, err) = run_check(&config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("route cc: / -> https://localhost:"), "{out}");
    assert!(out.contains("header x-dc-devkey from file"), "{out}");
    assert!(out.contains("PKCS#12"), "{out}");
    assert!(out.contains("subject: CN=demo-service-user"), "{out}");
    assert!(out.contains("expires: ") && out.contains("days)"), "{out}");
    assert!(!out.contains(DEVKEY) && !out.contains(P12_PASSWORD));
}

#[tokio::test]
async fn check_gives_one_line_per_problem_and_exits_1() {
    let w = World::new().await;
    let other = w.mock.ca.client_cert("someone-else", None).unwrap();
    let wrong_key = w.write("other.key", other.key_pem.as_bytes());
    let bad_pw = w.write("bad-pw", b"not-the-password\n");
    let mismatch = format!(
        "[[routes]]\nname = \"mismatch\"\npath_prefix = \"/c\"\nupstream = \"https://clientauth.one.digicert.com\"\n[routes.client_cert]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        w.cert_pem.display(),
        wrong_key.display()
    );
    let missing = w
        .certcentral_route("missing", "/a")
        .replace(&w.devkey.display().to_string(), "/nonexistent/devkey");
    let badpw = w.mtls_route("badpw", "/b").replace(
        &w.p12_password.display().to_string(),
        &bad_pw.display().to_string(),
    );
    let toml = format!("{}{missing}{badpw}{mismatch}", w.server_toml());
    let (code, out, err) = run_check(&w.config_file(&toml));
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].contains("route missing") && lines[0].contains("/nonexistent/devkey"),
        "{err}"
    );
    assert!(
        lines[1].contains("route badpw") && lines[1].contains("wrong PKCS#12 password"),
        "{err}"
    );
    assert!(
        lines[2].contains("route mismatch") && lines[2].contains("does not belong"),
        "{err}"
    );
    assert!(!err.contains(P12_PASSWORD) && !out.contains(P12_PASSWORD));
}

#[tokio::test]
async fn an_unknown_key_is_named_with_its_file() {
    let w = World::new().await;
    let config = w.config_file(&format!(
        "{}lisen = \"x\"\n{}",
        w.server_toml(),
        w.certcentral_route("cc", "/")
    ));
    let (code, _, err) = run_check(&config);
    assert_eq!(code, 1);
    assert!(err.contains("lisen"), "{err}");
    assert!(err.contains(&config.display().to_string()), "{err}");
}

#[test]
fn help_explains_the_commands() {
    let out = binary().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for word in ["run", "check", "demo", "X-DC-DEVKEY", "x-api-key"] {
        assert!(text.contains(word), "{word} missing from --help:\n{text}");
    }
    let bad = binary().arg("--no-such-flag").output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "usage errors exit 2");
}

#[tokio::test]
async fn zero_config_from_environment_variables() {
    let w = World::new().await;
    let port = free_port();
    let mut p = Process::spawn_with(
        &["run"],
        w.path("zero.log"),
        &[
            ("DIGICERT_DEVKEY", DEVKEY),
            ("DIGICERT_UPSTREAM", &w.mock.url()),
            ("DIGICERT_CA_FILE", &w.ca.display().to_string()),
            (
                "DIGICERT_SIDECAR_SERVER__LISTEN",
                &format!("127.0.0.1:{port}"),
            ),
            ("DIGICERT_SIDECAR_SERVER__ADMIN", "off"),
        ],
    );
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let got = get(&format!("http://127.0.0.1:{port}/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 200, "{}", p.stderr());
    p.signal("TERM");
    assert_eq!(
        p.wait(Duration::from_secs(10)).await.and_then(|s| s.code()),
        Some(0)
    );
}

#[tokio::test]
async fn start_up_problems_exit_1() {
    let w = World::new().await;
    // Off loopback without allow_non_loopback.
    let config = w.config_file(&format!(
        "[server]\nlisten = \"0.0.0.0:{}\"\nadmin = \"off\"\n{}",
        free_port(),
        w.certcentral_route("cc", "/")
    ));
    let mut p = Process::spawn(&config, w.path("nl.log"), &[]);
    assert_eq!(
        p.wait(Duration::from_secs(10)).await.and_then(|s| s.code()),
        Some(1)
    );
    assert!(p.stderr().contains("loopback"), "{}", p.stderr());
    // A credential that cannot be read.
    let config = w.config_file(
        &w.certcentral_toml()
            .replace(&w.devkey.display().to_string(), "/nonexistent/key"),
    );
    let mut p = Process::spawn(&config, w.path("nk.log"), &[]);
    assert_eq!(
        p.wait(Duration::from_secs(10)).await.and_then(|s| s.code()),
        Some(1)
    );
    assert!(p.stderr().contains("/nonexistent/key"), "{}", p.stderr());
}

#[tokio::test]
async fn every_example_in_config_checks_with_dummy_secrets() {
    let w = World::new().await;
    let secrets = w.path("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("devkey"), "dummy-devkey\n").unwrap();
    std::fs::write(secrets.join("api-key"), "dummy-api-key\n").unwrap();
    std::fs::write(
        secrets.join("service-user.p12"),
        w.mock.client.to_pkcs12("dummy", false).unwrap(),
    )
    .unwrap();
    std::fs::write(secrets.join("p12-password"), "dummy\n").unwrap();
    std::fs::write(secrets.join("proxy-auth"), "corp:dummy\n").unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/run/secrets/digicert", &secrets.display().to_string());
        let copy = w.write("example.toml", text.as_bytes());
        let (code, out, err) = run_check(&copy);
        assert_eq!(code, 0, "{}:\n{out}{err}", path.display());
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} examples in config/");
}

#[tokio::test]
async fn the_config_file_can_come_from_the_environment_beside_kubernetes_service_variables() {
    let w = World::new().await;
    let config = w.config_file(&w.certcentral_toml());
    let out = binary()
        .arg("check")
        .env("DIGICERT_SIDECAR_CONFIG", &config)
        .env("DIGICERT_SIDECAR_PORT", "tcp://10.0.0.1:8080")
        .env("DIGICERT_SIDECAR_SERVICE_HOST", "10.0.0.1")
        .env("DIGICERT_SIDECAR_SERVER__MAX_CONNECTIONS", "7")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("route cc"), "{text}");
    // A nested override that is wrong is still an error.
    let out = binary()
        .arg("check")
        .env("DIGICERT_SIDECAR_CONFIG", &config)
        .env("DIGICERT_SIDECAR_SERVER__MAX_CONECTIONS", "7")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_conections"));
}
