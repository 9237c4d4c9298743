//! Callers: several applications on one sidecar, each with its own token (or Unix uid), its
//! own rules and its own share of the route's windows, named in the access line and the
//! metrics; a token never forwarded, logged, counted or echoed.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use bytes::Bytes;
use digicert_sidecar::caller::token::digest_of;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::process::Command;

use crate::support::*;

const BILLING: &str = "billing-token-5f2a9c0d41e7";
const REPORTS: &str = "reports-token-81b3e7a2c9f0";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `billing` reads its token from a file, `reports` is known by its token's digest.
fn callers_toml(w: &World) -> String {
    let billing = w.write("billing-token", format!("{BILLING}\n").as_bytes());
    format!(
        "[[callers]]\nname = \"billing\"\ntoken_file = \"{}\"\n[[callers]]\nname = \"reports\"\ntoken_sha256 = \"{}\"\n",
        billing.display(),
        hex(&digest_of(REPORTS.as_bytes()))
    )
}

/// The README's example: `reports` may read, `billing` may also order; the DigiCert ONE
/// route is billing's alone.
fn two_callers_toml(w: &World) -> String {
    format!(
        "{}{}[routes.policy]\nallow = [\"GET /services/v2/**\", \"GET /_test/**\"]\ncallers = [\"billing\", \"reports\"]\n[routes.policy.caller_allow]\nbilling = [\"POST /services/v2/order/certificate/*\"]\n{}[routes.policy]\ncallers = [\"billing\"]\n{}",
        with_admin(&w.server_toml()),
        w.certcentral_route("cc", "/"),
        w.one_route("one", "/one").replace(
            "path_prefix = \"/one\"",
            "path_prefix = \"/one\"\nstrip_prefix = true"
        ),
        callers_toml(w)
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn basic(name: &str, token: &str) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{token}"));
    format!("Basic {b}")
}

#[tokio::test]
async fn two_callers_on_one_listener_each_allowed_only_its_own_calls() {
    let w = World::new().await;
    let s = Running::start(&two_callers_toml(&w)).await;
    let h1 = h1_client();
    let order = s.url("/services/v2/order/certificate/ssl_basic");
    let me = s.url("/services/v2/user/me");
    let as_reports = bearer(REPORTS);
    let as_billing = bearer(BILLING);

    // reports reads, in origin form with Authorization: Bearer.
    let got = get(&me, &[("authorization", &as_reports)]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    // reports may not order: the route's rules, without billing's extra one.
    let got = send(
        &h1,
        "POST",
        &order,
        &[("authorization", &as_reports)],
        Bytes::from("{}"),
    )
    .await;
    assert_eq!(
        (got.status, got.sidecar_error()),
        (403, Some("policy_denied"))
    );
    // billing orders, with Proxy-Authorization: Bearer.
    let got = send(
        &h1,
        "POST",
        &order,
        &[("proxy-authorization", &as_billing)],
        Bytes::from("{}"),
    )
    .await;
    assert_eq!(got.status, 201, "{}", got.text());
    // The DigiCert ONE route is billing's alone.
    let one = s.url("/one/account/api/v1/user");
    let got = get(&one, &[("proxy-authorization", &basic("reports", REPORTS))]).await;
    assert_eq!(
        (got.status, got.sidecar_error()),
        (403, Some("caller_denied"))
    );
    assert!(
        got.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("reports")
    );
    let got = get(&one, &[("proxy-authorization", &basic("billing", BILLING))]).await;
    assert_eq!(got.status, 200, "{}", got.text());

    // No token, a wrong one, a Basic name that is not the token's caller: 401 with the
    // Bearer challenge in origin form.
    for headers in [
        vec![],
        vec![("authorization", bearer("not-a-token"))],
        vec![("proxy-authorization", basic("reports", BILLING))],
        vec![("proxy-authorization", "Digest x".to_string())],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let got = get(&me, &headers).await;
        assert_eq!(got.status, 401, "{headers:?}: {}", got.text());
        assert_eq!(got.sidecar_error(), Some("caller_unauthenticated"));
        assert_eq!(
            got.headers["www-authenticate"],
            "Bearer realm=\"digicert-sidecar\""
        );
        assert!(!got.text().contains(BILLING), "{}", got.text());
    }
    // In absolute form (HTTP_PROXY clients): 407 with the Basic proxy challenge.
    let port = w.mock.addr.port();
    let answer = raw(
        s.addr(),
        format!("GET http://localhost:{port}/services/v2/user/me HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("proxy-authenticate: basic realm=\"digicert-sidecar\""),
        "{answer}"
    );
    // In absolute form `Authorization` belongs to the request, not to the caller.
    let answer = raw(
        s.addr(),
        format!("GET http://localhost:{port}/services/v2/user/me HTTP/1.1\r\nHost: localhost:{port}\r\nAuthorization: Bearer {REPORTS}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
    let answer = raw(
        s.addr(),
        format!("GET http://localhost:{port}/services/v2/user/me HTTP/1.1\r\nHost: localhost:{port}\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n", basic("reports", REPORTS)),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The token goes no further than the sidecar.
    let got = get(
        &s.url("/_test/echo"),
        &[("proxy-authorization", &as_billing)],
    )
    .await;
    assert_eq!(got.status, 200);
    let echoed = got.json();
    for h in ["authorization", "proxy-authorization"] {
        assert!(
            echoed["headers"].get(h).is_none(),
            "{h} forwarded: {echoed}"
        );
    }

    let metrics = s.admin("/metrics").await.text();
    for sample in [
        "digicert_sidecar_requests_total{route=\"cc\",caller=\"reports\",method=\"GET\",status=\"200\"}",
        "digicert_sidecar_requests_total{route=\"cc\",caller=\"billing\",method=\"POST\",status=\"201\"}",
        "digicert_sidecar_requests_total{route=\"one\",caller=\"reports\",method=\"GET\",status=\"403\"}",
        "digicert_sidecar_requests_total{route=\"cc\",caller=\"anonymous\",method=\"GET\",status=\"401\"}",
        "digicert_sidecar_caller_rejected_total{reason=\"missing\"}",
        "digicert_sidecar_caller_rejected_total{reason=\"wrong_token\"}",
        "digicert_sidecar_caller_rejected_total{reason=\"name_mismatch\"}",
        "digicert_sidecar_caller_rejected_total{reason=\"malformed\"}",
        "digicert_sidecar_caller_rejected_total{reason=\"denied\"}",
    ] {
        assert!(
            metric_value(&metrics, sample) >= 1.0,
            "{sample}:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("digicert_sidecar_rate_limited_total{route=\"cc\",caller=\"billing\"} 0"),
        "{metrics}"
    );
    for token in [BILLING, REPORTS] {
        assert!(!metrics.contains(token));
    }
    s.stop().await;
}

#[tokio::test]
async fn the_tenth_wrong_token_on_a_connection_closes_it() {
    let w = World::new().await;
    let s = Running::start(&two_callers_toml(&w)).await;
    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    for i in 1..=10 {
        let req = http::Request::get("/services/v2/user/me")
            .header("host", "localhost")
            .header("authorization", bearer(&format!("guess-{i}")))
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender
            .ready()
            .await
            .unwrap_or_else(|e| panic!("closed after {} guesses: {e}", i - 1));
        let got = read(sender.send_request(req).await.unwrap()).await;
        assert_eq!(got.status, 401);
        let closes = got.headers.get("connection").is_some_and(|v| v == "close");
        assert_eq!(closes, i == 10, "guess {i}: {:?}", got.headers);
    }
    // The sidecar closed the connection after the tenth answer.
    tokio::time::timeout(Duration::from_secs(2), conn)
        .await
        .expect("the connection is closed")
        .unwrap()
        .unwrap();
    assert_eq!(
        s.metric("digicert_sidecar_caller_rejected_total{reason=\"wrong_token\"}")
            .await,
        9.0
    );
    assert_eq!(
        s.metric("digicert_sidecar_caller_rejected_total{reason=\"too_many_wrong\"}")
            .await,
        1.0
    );
    // A new connection with the right token is served.
    let got = get(
        &s.url("/services/v2/user/me"),
        &[("authorization", &bearer(REPORTS))],
    )
    .await;
    assert_eq!(got.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn on_h2_the_tenth_wrong_token_closes_the_connection() {
    let w = World::new().await;
    let s = Running::start(&two_callers_toml(&w)).await;
    let me = s.url("/services/v2/user/me");
    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let request = |token: String| {
        http::Request::builder()
            .uri(&me)
            .header("authorization", token)
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap()
    };
    for i in 1..=10 {
        let got = read(
            sender
                .send_request(request(bearer(&format!("guess-{i}"))))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got.status, 401, "guess {i}");
    }
    // Until it is closed, even the right token is refused on it, unchecked.
    if let Ok(resp) = sender.send_request(request(bearer(REPORTS))).await {
        let got = read(resp).await;
        assert_eq!(got.status, 401);
        assert!(
            got.json()["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("too many")
        );
    }
    // h2 has no `Connection: close`: the sidecar ends the connection itself.
    tokio::time::timeout(Duration::from_secs(2), conn)
        .await
        .expect("the sidecar closes the h2 connection after ten wrong tokens")
        .unwrap()
        .ok();
    // Another connection is served.
    let got = get(&me, &[("authorization", &bearer(REPORTS))]).await;
    assert_eq!(got.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn one_caller_flooding_leaves_the_other_its_share() {
    let w = World::new().await;
    // 4 per 10 s for the route; half of that at most for each caller.
    let toml = format!(
        "{}{}",
        w.certcentral_toml_limited(
            "[routes.rate_limit]\nwindows = [{ requests = 4, per = \"10s\" }]\nmax_wait = \"0s\"\ncaller_share = 0.5\n"
        ),
        callers_toml(&w)
    );
    let s = Running::start(&with_admin(&toml)).await;
    let me = s.url("/services/v2/user/me");
    let status = |token: &'static str| {
        let me = me.clone();
        async move { get(&me, &[("authorization", &bearer(token))]).await }
    };
    // billing floods: two go, then its share is spent.
    assert_eq!(status(BILLING).await.status, 200);
    assert_eq!(status(BILLING).await.status, 200);
    for _ in 0..5 {
        let got = status(BILLING).await;
        assert_eq!(
            (got.status, got.sidecar_error()),
            (429, Some("rate_limited"))
        );
        assert!(got.headers.contains_key("retry-after"));
    }
    // reports still gets its share, in the same window.
    assert_eq!(status(REPORTS).await.status, 200);
    assert_eq!(status(REPORTS).await.status, 200);
    assert_eq!(status(REPORTS).await.status, 429);
    assert_eq!(
        s.metric("digicert_sidecar_rate_limited_total{route=\"cc\",caller=\"billing\"}")
            .await,
        5.0
    );
    assert_eq!(
        s.metric("digicert_sidecar_rate_limited_total{route=\"cc\",caller=\"reports\"}")
            .await,
        1.0
    );
    assert_eq!(
        w.mock.seen().len(),
        4,
        "DigiCert saw the route's window, no more"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_unix_socket_caller_is_known_by_its_uid() {
    let w = World::new().await;
    let uid = w.dir.path().metadata().unwrap().uid();
    let sock = w.path("sidecar.sock");
    let toml = |uids: &str| {
        format!(
            "{}{}[[callers]]\nname = \"local\"\nunix_uids = [{uids}]\n",
            with_admin(&w.server_toml()).replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"unix:{}\"", sock.display()),
            ),
            w.certcentral_route("cc", "/"),
        )
    };
    let s = Running::start(&toml(&uid.to_string())).await;
    let got = get_unix(&sock, "/services/v2/user/me").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        s.metric("digicert_sidecar_requests_total{route=\"cc\",caller=\"local\",method=\"GET\",status=\"200\"}")
            .await,
        1.0
    );
    s.stop().await;

    // Another uid is nobody: without a token, 401.
    let s = Running::start(&toml(&(uid + 1).to_string())).await;
    let got = get_unix(&sock, "/services/v2/user/me").await;
    assert_eq!(
        (got.status, got.sidecar_error()),
        (401, Some("caller_unauthenticated"))
    );
    s.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_once_its_file_changes() {
    let w = World::new().await;
    let s = Running::start(&two_callers_toml(&w)).await;
    let me = s.url("/services/v2/user/me");
    assert_eq!(
        get(&me, &[("authorization", &bearer(BILLING))])
            .await
            .status,
        200
    );
    replace_file(&w.path("billing-token"), b"billing-token-rotated\n");
    let revoked = eventually(Duration::from_secs(5), || async {
        get(&me, &[("authorization", &bearer(BILLING))])
            .await
            .status
            == 401
    })
    .await;
    assert!(revoked, "the old token still works");
    assert_eq!(
        get(&me, &[("authorization", &bearer("billing-token-rotated"))])
            .await
            .status,
        200
    );
    // An empty file is a bad reload: the last good token stays.
    replace_file(&w.path("billing-token"), b"");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        get(&me, &[("authorization", &bearer("billing-token-rotated"))])
            .await
            .status,
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn without_require_caller_no_token_is_anonymous_but_a_wrong_one_is_refused() {
    let w = World::new().await;
    let toml = format!("{}{}", with_admin(&w.certcentral_toml()), callers_toml(&w)).replace(
        "admin = \"127.0.0.1:0\"",
        "admin = \"127.0.0.1:0\"\nrequire_caller = false",
    );
    // A route that names its callers still wants one.
    let toml = format!(
        "{toml}{}[routes.policy]\ncallers = [\"billing\"]\n",
        w.one_route("one", "/one").replace(
            "path_prefix = \"/one\"",
            "path_prefix = \"/one\"\nstrip_prefix = true"
        )
    );
    let s = Running::start(&toml).await;
    let me = s.url("/services/v2/user/me");
    assert_eq!(get(&me, &[]).await.status, 200);
    let got = get(&s.url("/one/account/api/v1/user"), &[]).await;
    assert_eq!(
        (got.status, got.sidecar_error()),
        (401, Some("caller_unauthenticated"))
    );
    assert_eq!(
        get(&me, &[("authorization", &bearer("wrong"))])
            .await
            .status,
        401
    );
    assert_eq!(
        get(&me, &[("authorization", &bearer(REPORTS))])
            .await
            .status,
        200
    );
    assert_eq!(
        s.metric("digicert_sidecar_requests_total{route=\"cc\",caller=\"anonymous\",method=\"GET\",status=\"200\"}")
            .await,
        1.0
    );
    s.stop().await;
}

#[tokio::test]
async fn an_empty_token_file_stops_the_start() {
    let w = World::new().await;
    let toml = format!("{}{}", w.certcentral_toml(), callers_toml(&w));
    w.write("billing-token", b"\n");
    let config = digicert_sidecar::config::from_toml_str(&toml).unwrap();
    let err = digicert_sidecar::Sidecar::bind(config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("caller billing") && err.contains("empty"),
        "{err}"
    );
}

/// The real binary: curl through `-x http://name:token@…` (the Basic form), a wrong token,
/// the access lines naming the caller, and a canary token nowhere: not in the trace log,
/// the answers, the metrics, `check`, or what DigiCert receives.
#[tokio::test]
async fn through_the_binary_curl_as_a_proxy_client_and_the_token_appears_nowhere() {
    const CANARY: &str = "CANARYcallertoken4b9e1d7a";
    let w = World::new().await;
    let port = free_port();
    let admin = free_port();
    w.write("billing-token", format!("{CANARY}\n").as_bytes());
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin}\"\n[log]\nlevel = \"trace\"\n{}[[callers]]\nname = \"billing\"\ntoken_file = \"{}\"\n[[callers]]\nname = \"reports\"\ntoken_env = \"TEST_REPORTS_TOKEN\"\n",
        w.certcentral_route("cc", "/"),
        w.path("billing-token").display()
    );
    let config = w.config_file(&toml);
    let mut p = Process::spawn(
        &config,
        w.path("callers.log"),
        &[("TEST_REPORTS_TOKEN", REPORTS)],
    );
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let mock = w.mock.addr.port();
    let curl = |proxy: String, path: &str| {
        let target = format!("http://localhost:{mock}{path}");
        async move {
            let out = Command::new("curl")
                .args([
                    "-s",
                    "--noproxy",
                    "",
                    "-x",
                    &proxy,
                    "-w",
                    "\n%{http_code}",
                    &target,
                ])
                .output()
                .await
                .expect("curl runs (.ci/run installs it)");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let mut seen = String::new();
    let ok = curl(
        format!("http://billing:{CANARY}@127.0.0.1:{port}"),
        "/services/v2/user/me",
    )
    .await;
    assert!(ok.ends_with("\n200") && ok.contains("demo.user"), "{ok}");
    let echo = curl(
        format!("http://billing:{CANARY}@127.0.0.1:{port}"),
        "/_test/echo",
    )
    .await;
    assert!(echo.ends_with("\n200"), "{echo}");
    assert!(!echo.contains("authorization"), "forwarded: {echo}");
    let wrong = curl(
        format!("http://billing:{CANARY}x@127.0.0.1:{port}"),
        "/services/v2/user/me",
    )
    .await;
    assert!(
        wrong.ends_with("\n407") && wrong.contains("sidecar_caller_unauthenticated"),
        "{wrong}"
    );
    let none = curl(format!("http://127.0.0.1:{port}"), "/services/v2/user/me").await;
    assert!(none.ends_with("\n407"), "{none}");
    let reports = get(
        &format!("http://127.0.0.1:{port}/services/v2/user/me"),
        &[("authorization", &bearer(REPORTS))],
    )
    .await;
    assert_eq!(reports.status, 200);
    seen.push_str(&ok);
    seen.push_str(&echo);
    seen.push_str(&wrong);
    seen.push_str(&none);
    let metrics = get(&format!("http://127.0.0.1:{admin}/metrics"), &[])
        .await
        .text();
    assert!(
        metric_value(
            &metrics,
            "digicert_sidecar_requests_total{route=\"cc\",caller=\"billing\",method=\"GET\",status=\"200\"}"
        ) >= 2.0,
        "{metrics}"
    );
    seen.push_str(&metrics);
    let check = binary()
        .args(["check", "--config", &config.display().to_string()])
        .env("TEST_REPORTS_TOKEN", REPORTS)
        .output()
        .expect("check runs");
    let check = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.contains("caller billing: token from file"), "{check}");
    assert!(
        check.contains("caller reports: token from env TEST_REPORTS_TOKEN"),
        "{check}"
    );
    seen.push_str(&check);

    p.signal("TERM");
    p.wait(Duration::from_secs(10)).await.expect("exits");
    let log = p.stderr();
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.contains("\"target\":\"access\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let callers: Vec<&str> = access
        .iter()
        .map(|a| a["caller"].as_str().unwrap())
        .collect();
    assert_eq!(
        callers,
        ["billing", "billing", "-", "-", "reports"],
        "{log}"
    );
    seen.push_str(&log);
    let digest = hex(&digest_of(CANARY.as_bytes()));
    let header = basic("billing", CANARY);
    for (what, secret) in [
        ("the token", CANARY),
        ("its digest", digest.as_str()),
        ("its Basic header", &header[6..]),
        ("a piece", "CANARY"),
    ] {
        assert!(!seen.contains(secret), "{what} leaked:\n{seen}");
    }
    assert!(!seen.contains(REPORTS), "a token leaked:\n{seen}");
}

#[test]
fn the_readme_example_is_a_valid_configuration() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Several applications, one sidecar")
        .nth(1)
        .expect("the README has the section");
    let toml = section
        .split("```toml\n")
        .nth(1)
        .and_then(|t| t.split("```").next())
        .expect("a TOML example");
    let config =
        digicert_sidecar::config::from_toml_str(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(config.callers.list.len(), 2);
    assert!(config.callers.required);
    assert_eq!(config.routes[0].rate_limit.caller_share, Some(0.5));
}

/// The real binary with the README's two callers on its TCP listener and a Unix-socket
/// caller on a route of its own: each allowed only its own calls, the Unix caller known by
/// its uid, and a token revoked by replacing its file.
#[tokio::test]
async fn through_the_binary_each_caller_gets_its_own_calls_and_a_replaced_token_is_revoked() {
    let w = World::new().await;
    let port = free_port();
    let admin = free_port();
    let uid = w.dir.path().metadata().unwrap().uid();
    let sock = w.path("local.sock");
    let local_route = w.certcentral_route("local", "/").replace(
        "path_prefix = \"/\"",
        &format!("path_prefix = \"/\"\nlisten = \"unix:{}\"", sock.display()),
    );
    let toml = two_callers_toml(&w)
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""))
        .replace("admin = \"127.0.0.1:0\"", &format!("admin = \"127.0.0.1:{admin}\""))
        .replacen(
            "[[callers]]",
            &format!("{local_route}[routes.policy]\ncallers = [\"local\"]\n[[callers]]\nname = \"local\"\nunix_uids = [{uid}]\n[[callers]]"),
            1,
        );
    let config = w.config_file(&toml);
    let _p = Process::spawn(&config, w.path("two.log"), &[]);
    let _ = digicert_sidecar::config::load_file(&config).expect("the config is valid");
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let h1 = h1_client();
    let order = url("/services/v2/order/certificate/ssl_basic");
    let post = |token: &'static str| {
        let (h1, order) = (h1.clone(), order.clone());
        async move {
            send(
                &h1,
                "POST",
                &order,
                &[("authorization", &bearer(token))],
                Bytes::from("{}"),
            )
            .await
        }
    };
    assert_eq!(
        get(
            &url("/services/v2/user/me"),
            &[("authorization", &bearer(REPORTS))]
        )
        .await
        .status,
        200
    );
    assert_eq!(post(REPORTS).await.sidecar_error(), Some("policy_denied"));
    assert_eq!(post(BILLING).await.status, 201);
    let one = url("/one/account/api/v1/user");
    assert_eq!(
        get(&one, &[("authorization", &bearer(REPORTS))])
            .await
            .sidecar_error(),
        Some("caller_denied")
    );
    assert_eq!(
        get(&one, &[("authorization", &bearer(BILLING))])
            .await
            .status,
        200
    );
    // The Unix socket: this test's uid is `local`, no token needed; the TCP callers may not
    // use its route.
    assert_eq!(get_unix(&sock, "/services/v2/user/me").await.status, 200);

    replace_file(&w.path("billing-token"), b"billing-token-rotated-7d1c\n");
    let revoked = eventually(Duration::from_secs(5), || async {
        post(BILLING).await.status == 401
    })
    .await;
    assert!(revoked, "the replaced token still works");
    assert_eq!(
        send(
            &h1,
            "POST",
            &order,
            &[("authorization", &bearer("billing-token-rotated-7d1c"))],
            Bytes::from("{}")
        )
        .await
        .status,
        201
    );
    let metrics = get(&format!("http://127.0.0.1:{admin}/metrics"), &[])
        .await
        .text();
    for sample in [
        "digicert_sidecar_requests_total{route=\"local\",caller=\"local\",method=\"GET\",status=\"200\"}",
        "digicert_sidecar_requests_total{route=\"cc\",caller=\"billing\",method=\"POST\",status=\"201\"}",
        "digicert_sidecar_requests_total{route=\"cc\",caller=\"anonymous\",method=\"POST\",status=\"401\"}",
        "digicert_sidecar_requests_total{route=\"one\",caller=\"reports\",method=\"GET\",status=\"403\"}",
    ] {
        assert!(
            metric_value(&metrics, sample) >= 1.0,
            "{sample}:\n{metrics}"
        );
    }
}
