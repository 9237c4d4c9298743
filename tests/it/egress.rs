//! Egress through a corporate proxy: a real tinyproxy (header and mTLS routes, pooled
//! tunnels, proxy authentication), NO_PROXY, a proxy that is down or misbehaves (our own
//! CONNECT proxy), an `https://` proxy with its own CA, and `SSL_CERT_FILE` trust.
//! Environment variables are set only on the real binary's process, never in this one.

use std::time::Duration;

use digicert_sidecar::mock::TestCa;

use crate::support::proxy::{Behaviour, FakeProxy, Tinyproxy};
use crate::support::*;

/// `[server]`, `[egress]` with `egress`, then `routes`.
fn with_egress(w: &World, egress: &str, routes: &str) -> String {
    format!("{}[egress]\n{egress}\n{routes}", w.server_toml())
}

fn proxy_at(url: &str) -> String {
    format!("proxy = \"{url}\"\n")
}

/// The `[egress]` lines for the proxy at `url` with its password in the file at `auth`.
fn proxy_with_auth_file(url: &str, auth: &std::path::Path) -> String {
    format!(
        "{}proxy_auth_file = \"{}\"\n",
        proxy_at(url),
        auth.display()
    )
}

#[tokio::test]
async fn header_and_mtls_routes_go_through_tinyproxy_which_sees_only_connect() {
    let w = World::new().await;
    let Some(tp) = Tinyproxy::start(w.dir.path(), None).await else {
        return;
    };
    let routes = format!(
        "{}{}",
        w.certcentral_route("cc", "/"),
        w.mtls_route("mtls", "/account")
    );
    let s = Running::start(&with_admin(&with_egress(&w, &proxy_at(&tp.url()), &routes))).await;

    for _ in 0..3 {
        let got = get(&s.url("/services/v2/user/me"), &[]).await;
        assert_eq!(got.status, 200, "{}", got.text());
        let got = get(&s.url("/account/api/v1/user"), &[]).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.json()["authentication"], "client_certificate");
    }
    let subjects: Vec<_> = w
        .mock
        .seen()
        .into_iter()
        .filter(|s| s.clientauth)
        .map(|s| s.client_subject)
        .collect();
    assert_eq!(subjects.len(), 3);
    assert!(
        subjects.iter().all(|s| s
            .as_deref()
            .is_some_and(|s| s.contains("demo-service-user"))),
        "the upstream saw the client certificate through the tunnel: {subjects:?}"
    );

    // One tunnel per upstream, reused: the pool keeps them like direct connections.
    let requests = tp.requests();
    assert_eq!(
        requests,
        vec![
            format!("CONNECT localhost:{} HTTP/1.1", w.mock.addr.port()),
            format!(
                "CONNECT localhost:{} HTTP/1.1",
                w.mock.clientauth_addr.port()
            ),
        ],
        "tinyproxy's log:\n{}",
        tp.log()
    );
    assert_eq!(w.mock.tls_connections(), 2);
    let log = tp.log();
    for secret_or_plaintext in [DEVKEY, "/services/v2", "/account/api", "X-DC-DEVKEY"] {
        assert!(
            !log.contains(secret_or_plaintext),
            "{secret_or_plaintext}:\n{log}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn http1_keep_alive_connections_through_the_proxy_are_pooled() {
    let w = World::with(digicert_sidecar::mock::MockOptions {
        devkey: DEVKEY.into(),
        api_key: API_KEY.into(),
        http1_only: true,
    })
    .await;
    let Some(tp) = Tinyproxy::start(w.dir.path(), None).await else {
        return;
    };
    let s = Running::start(&with_egress(
        &w,
        &proxy_at(&tp.url()),
        &w.certcentral_route("cc", "/"),
    ))
    .await;
    for _ in 0..5 {
        let got = get(&s.url("/services/v2/user/me"), &[]).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.headers["content-type"], "application/json");
    }
    assert_eq!(
        tp.requests().len(),
        1,
        "one tunnel, kept alive:\n{}",
        tp.log()
    );
    assert_eq!(w.mock.tls_connections(), 1);
    s.stop().await;
}

#[tokio::test]
async fn tinyproxy_auth_is_accepted_from_a_file_and_a_refusal_names_the_status() {
    let w = World::new().await;
    let Some(tp) = Tinyproxy::start(w.dir.path(), Some(("corp", "CANARYproxypw3f9a"))).await else {
        return;
    };
    let good = w.write("proxy-auth", b"corp:CANARYproxypw3f9a\n");
    let egress = proxy_with_auth_file(&tp.url(), &good);
    let s = Running::start(&with_egress(&w, &egress, &w.certcentral_route("cc", "/"))).await;
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    s.stop().await;

    let wrong = w.write("proxy-auth-wrong", b"corp:not-the-password\n");
    for egress in [proxy_with_auth_file(&tp.url(), &wrong), proxy_at(&tp.url())] {
        let s = Running::start(&with_admin(&with_egress(
            &w,
            &egress,
            &w.certcentral_route("cc", "/"),
        )))
        .await;
        let got = get(&s.url("/services/v2/user/me"), &[]).await;
        assert_eq!(got.status, 502);
        assert_eq!(got.sidecar_error(), Some("egress_proxy_denied"));
        let message = got.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_string();
        // tinyproxy 1.11 answers a CONNECT without good credentials 401 (most proxies
        // say 407); either way the message names the status and where credentials go.
        assert!(
            message.contains("status 401") || message.contains("status 407"),
            "{message}"
        );
        assert!(message.contains("proxy_auth_file"), "{message}");
        assert!(!got.text().contains("CANARY"));
        assert_eq!(
            s.metric("digicert_sidecar_upstream_errors_total{route=\"cc\",reason=\"egress_proxy_denied\"}")
                .await,
            1.0
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn a_new_proxy_password_in_its_file_is_used_without_a_restart() {
    let w = World::new().await;
    let Some(tp) = Tinyproxy::start(w.dir.path(), Some(("corp", "rotated-pw"))).await else {
        return;
    };
    let auth = w.write("proxy-auth", b"corp:old-pw\n");
    let egress = proxy_with_auth_file(&tp.url(), &auth);
    let s = Running::start(&with_egress(&w, &egress, &w.certcentral_route("cc", "/"))).await;
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.sidecar_error(), Some("egress_proxy_denied"));
    replace_file(&auth, b"corp:rotated-pw\n");
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&s.url("/services/v2/user/me"), &[]).await.status == 200
        })
        .await,
        "the file watcher reloads the proxy credentials"
    );
    s.stop().await;
}

#[tokio::test]
async fn no_proxy_sends_a_route_direct_and_none_ignores_the_proxy() {
    let w = World::new().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    for egress in [
        format!("{}no_proxy = [\"localhost\"]\n", proxy_at(&dead)),
        format!(
            "{}no_proxy = [\".example\", \"LOCALHOST\"]\n",
            proxy_at(&dead)
        ),
        "proxy = \"none\"\n".to_string(),
    ] {
        let s = Running::start(&with_egress(&w, &egress, &w.certcentral_route("cc", "/"))).await;
        let got = get(&s.url("/services/v2/user/me"), &[]).await;
        assert_eq!(got.status, 200, "{egress}: {}", got.text());
        s.stop().await;
    }
    // A route's own egress_proxy wins over [egress].
    let route = w.certcentral_route("cc", "/").replace(
        "[routes.api_key]",
        "egress_proxy = \"none\"\n[routes.api_key]",
    );
    let s = Running::start(&with_egress(&w, &proxy_at(&dead), &route)).await;
    assert_eq!(get(&s.url("/services/v2/user/me"), &[]).await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn a_proxy_that_is_down_is_502_unreachable_counted_and_never_unready() {
    let w = World::new().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let probe = "[routes.probe]\npath = \"/services/v2/user/me\"\ninterval = \"1s\"\n";
    let toml = with_admin(&with_egress(
        &w,
        &proxy_at(&dead),
        &format!(
            "{}{probe}[routes.retry]\nattempts = 2\n",
            w.certcentral_route("cc", "/")
        ),
    ));
    let s = Running::start(&toml).await;
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 502);
    assert_eq!(got.sidecar_error(), Some("egress_proxy_unreachable"));
    assert_eq!(
        got.json()["errors"][0]["code"],
        "sidecar_egress_proxy_unreachable"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        s.admin("/readyz").await.status,
        200,
        "a proxy outage never makes a route unready"
    );
    assert!(
        s.metric(
            "digicert_sidecar_upstream_errors_total{route=\"cc\",reason=\"egress_proxy_unreachable\"}"
        )
        .await
            >= 1.0
    );
    assert_eq!(w.mock.tls_connections(), 0);
    assert!(
        s.metric("digicert_sidecar_retries_total{route=\"cc\"}")
            .await
            >= 1.0,
        "a proxy that cannot be reached is a connect error: retried like one"
    );
    s.stop().await;
}

/// 200, or the sidecar's error reason and words its message must hold.
type Expected = Result<(), (&'static str, &'static str)>;

#[tokio::test]
async fn a_misbehaving_proxy_is_told_apart_from_one_that_tunnels() {
    let w = World::new().await;
    let cases: [(Behaviour, Expected); 7] = [
        (
            Behaviour::Tunnel(vec![b"HTTP/1.1 2", b"00 Connection established\r", b"\n\r\n"]),
            Ok(()),
        ),
        (
            Behaviour::Tunnel(vec![b"HTTP/1.1 204 No Content\r\nVia: corp\r\n\r\n"]),
            Ok(()),
        ),
        (
            Behaviour::Refuse(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n\r\n",
            ),
            Err(("egress_proxy_denied", "407")),
        ),
        (
            Behaviour::Refuse(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n"),
            Err(("egress_proxy_denied", "403")),
        ),
        (
            Behaviour::Close,
            Err(("egress_proxy_unreachable", "the proxy")),
        ),
        (
            Behaviour::Silent,
            Err(("egress_proxy_unreachable", "connect timeout")),
        ),
        (
            Behaviour::Refuse(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"),
            Err(("egress_proxy_unreachable", "not HTTP")),
        ),
    ];
    for (behaviour, expected) in cases {
        let proxy = FakeProxy::start(behaviour).await;
        let toml = with_egress(
            &w,
            &proxy_at(&format!("http://{}", proxy.addr)),
            &w.certcentral_route("cc", "/"),
        )
        .replace("[server]\n", "[server]\nconnect_timeout = \"1s\"\n");
        let s = Running::start(&toml).await;
        let started = std::time::Instant::now();
        let got = get(&s.url("/services/v2/user/me"), &[]).await;
        match expected {
            Ok(()) => assert_eq!(got.status, 200, "{}", got.text()),
            Err((reason, words)) => {
                assert_eq!(got.status, 502, "{reason}: {}", got.text());
                assert_eq!(got.sidecar_error(), Some(reason), "{}", got.text());
                let message = got.json()["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .to_string();
                assert!(message.contains(words), "{words}: {message}");
                assert!(started.elapsed() < Duration::from_secs(4));
            }
        }
        let heads = proxy.heads();
        if !heads.is_empty() {
            assert!(
                heads[0].starts_with(&format!(
                    "CONNECT localhost:{} HTTP/1.1\r\n",
                    w.mock.addr.port()
                )),
                "{heads:?}"
            );
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn an_https_proxy_is_trusted_by_proxy_ca_file_and_never_offered_the_client_certificate() {
    let w = World::new().await;
    let corp = TestCa::new("Corp Proxy CA").unwrap();
    let corp_ca = w.write("corp-ca.pem", corp.cert_pem.as_bytes());
    // The proxy would accept the sidecar's client certificate (the mock's CA issued it) if
    // it were offered; it must not be.
    let proxy = FakeProxy::start_tls(
        Behaviour::Tunnel(vec![b"HTTP/1.1 200 OK\r\n\r\n"]),
        &corp,
        &w.mock.ca.cert_der,
    )
    .await;
    let url = format!("https://localhost:{}", proxy.addr.port());
    let routes = format!(
        "{}{}",
        w.certcentral_route("cc", "/"),
        w.mtls_route("mtls", "/account")
    );
    let egress = format!(
        "{}proxy_ca_file = \"{}\"\n",
        proxy_at(&url),
        corp_ca.display()
    );
    let s = Running::start(&with_egress(&w, &egress, &routes)).await;
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let got = get(&s.url("/account/api/v1/user"), &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["authentication"], "client_certificate");
    assert_eq!(proxy.heads().len(), 2);
    assert_eq!(proxy.client_certs_offered(), 0);
    s.stop().await;

    // Without the proxy's CA its TLS fails: the proxy is unreachable, not the upstream.
    let s = Running::start(&with_egress(&w, &proxy_at(&url), &routes)).await;
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 502);
    assert_eq!(
        got.sidecar_error(),
        Some("egress_proxy_unreachable"),
        "{}",
        got.text()
    );
    assert!(got.text().contains("TLS"), "{}", got.text());
    s.stop().await;
}

#[tokio::test]
async fn check_fails_on_an_unreadable_proxy_password_and_a_bad_environment_proxy() {
    let w = World::new().await;
    let egress = proxy_with_auth_file("http://127.0.0.1:3128", &w.path("missing-proxy-auth"));
    let config = w.config_file(&with_egress(&w, &egress, &w.certcentral_route("cc", "/")));
    let out = binary()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("check runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("route cc: egress proxy: cannot read"),
        "{text}"
    );
    assert!(text.contains("missing-proxy-auth"), "{text}");

    let config = w.config_file(&format!(
        "{}{}",
        w.server_toml(),
        w.certcentral_route("cc", "/")
    ));
    let out = binary()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .env("ALL_PROXY", "socks5://corp:CANARYsocks@127.0.0.1:1080")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .expect("check runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ALL_PROXY: only http:// and https:// proxies"),
        "{text}"
    );
    assert!(!text.contains("CANARY"), "{text}");
}

/// The real binary with `envs` set on its process only; `check` first, then `run`.
async fn binary_with_env(
    w: &World,
    toml: &str,
    envs: &[(&str, &str)],
) -> (
    std::process::Output,
    Process,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    let (port, admin) = (free_port(), free_port());
    let toml = toml
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .replace("admin = \"off\"", &format!("admin = \"127.0.0.1:{admin}\""));
    let config = w.config_file(&toml);
    let mut check = binary();
    check.arg("check").arg("--config").arg(&config);
    for key in [
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        check.env_remove(key);
    }
    let checked = check
        .envs(envs.iter().copied())
        .output()
        .expect("check runs");
    let mut all: Vec<(&str, &str)> = vec![
        ("HTTPS_PROXY", ""),
        ("https_proxy", ""),
        ("ALL_PROXY", ""),
        ("all_proxy", ""),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
        ("SSL_CERT_FILE", ""),
        ("SSL_CERT_DIR", ""),
    ];
    all.extend_from_slice(envs);
    let p = Process::spawn(&config, w.path("sidecar.log"), &all);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin = format!("127.0.0.1:{admin}").parse().unwrap();
    wait_listening(addr).await;
    (checked, p, addr, admin)
}

#[tokio::test]
async fn https_proxy_from_the_environment_with_its_password_never_shown() {
    let w = World::new().await;
    const CANARY: &str = "CANARYenvproxypw8e2d";
    let Some(tp) = Tinyproxy::start(w.dir.path(), Some(("corp", CANARY))).await else {
        return;
    };
    let env_url = format!("http://corp:{CANARY}@{}", tp.addr);
    let toml = format!("{}{}", w.server_toml(), w.certcentral_route("cc", "/"));
    let (checked, p, addr, admin) = binary_with_env(
        &w,
        &toml,
        &[("HTTPS_PROXY", &env_url), ("RUST_LOG", "trace")],
    )
    .await;
    let out = String::from_utf8_lossy(&checked.stdout).into_owned()
        + &String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{out}");
    assert!(
        out.contains(&format!("leaves: via http://***@{} (HTTPS_PROXY)", tp.addr)),
        "{out}"
    );
    let got = get(&format!("http://{addr}/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(tp.requests().len(), 1, "{}", tp.log());
    let metrics = get(&format!("http://{admin}/metrics"), &[]).await.text();
    drop(p);
    let logs = std::fs::read_to_string(w.path("sidecar.log")).unwrap_or_default();
    // The same password from proxy_auth_file.
    let auth = w.write("proxy-auth", format!("corp:{CANARY}\n").as_bytes());
    let toml = with_egress(
        &w,
        &proxy_with_auth_file(&tp.url(), &auth),
        &w.certcentral_route("cc", "/"),
    );
    let (checked2, p, addr, admin) = binary_with_env(&w, &toml, &[("RUST_LOG", "trace")]).await;
    let out2 = String::from_utf8_lossy(&checked2.stdout).into_owned()
        + &String::from_utf8_lossy(&checked2.stderr);
    assert!(out2.contains("credentials from file"), "{out2}");
    let got2 = get(&format!("http://{addr}/services/v2/user/me"), &[]).await;
    assert_eq!(got2.status, 200, "{}", got2.text());
    let metrics2 = get(&format!("http://{admin}/metrics"), &[]).await.text();
    drop(p);
    let logs2 = std::fs::read_to_string(w.path("sidecar.log")).unwrap_or_default();
    for (what, text) in [
        ("check", &out),
        ("metrics", &metrics),
        ("logs", &logs),
        ("answer", &got.text()),
        ("check (file)", &out2),
        ("metrics (file)", &metrics2),
        ("logs (file)", &logs2),
        ("answer (file)", &got2.text()),
    ] {
        assert!(
            !text.contains(CANARY),
            "the proxy password leaked into {what}:\n{text}"
        );
        assert!(
            !text.contains("Y29ycDpDQU5BUlk"),
            "its base64 leaked into {what}:\n{text}"
        );
    }
}

#[tokio::test]
async fn no_proxy_from_the_environment_is_shown_by_check_and_honoured() {
    let w = World::new().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let toml = format!("{}{}", w.server_toml(), w.certcentral_route("cc", "/"));
    let (checked, _p, addr, _) = binary_with_env(
        &w,
        &toml,
        &[
            ("https_proxy", &dead),
            ("NO_PROXY", "example.org, localhost,.internal"),
        ],
    )
    .await;
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(
        out.contains("leaves: direct (NO_PROXY: localhost)"),
        "{out}"
    );
    let got = get(&format!("http://{addr}/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
}

#[tokio::test]
async fn ssl_cert_file_is_trusted_and_check_counts_it() {
    let w = World::new().await;
    // The route has no ca_file: only SSL_CERT_FILE makes the mock's CA trusted.
    let route = w
        .certcentral_route("cc", "/")
        .replace(&format!("ca_file = \"{}\"\n", w.ca.display()), "");
    let toml = format!("{}{route}", w.server_toml());
    let ca = w.ca.display().to_string();
    let (checked, p, addr, _) = binary_with_env(&w, &toml, &[("SSL_CERT_FILE", &ca)]).await;
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(
        out.contains(&format!("SSL_CERT_FILE {ca}: 1 root(s)")),
        "{out}"
    );
    let got = get(&format!("http://{addr}/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    drop(p);

    let (_, _p, addr, _) = binary_with_env(&w, &toml, &[]).await;
    let got = get(&format!("http://{addr}/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 502);
    assert_eq!(got.sidecar_error(), Some("upstream_tls"));
}
