//! The admin listener, readiness, expiry and DigiCert's verdict through the probe.

use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn healthz_readyz_metrics_and_nothing_else() {
    let w = World::new().await;
    let s = Running::start(&with_admin(&format!(
        "{}{}",
        w.certcentral_toml(),
        w.mtls_route("mtls", "/account")
    )))
    .await;
    assert_eq!(get(&s.url("/services/v2/user/me"), &[]).await.status, 200);
    assert_eq!(s.admin("/healthz").await.status, 200);
    assert_eq!(s.admin("/readyz").await.status, 200);
    let metrics = s.admin("/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for name in [
        "digicert_sidecar_requests_total{route=\"cc\",method=\"GET\",status=\"200\"} 1",
        "digicert_sidecar_request_duration_seconds_count{route=\"cc\"} 1",
        "digicert_sidecar_credential_reloads_total{route=\"cc\",result=\"error\"} 0",
        "digicert_sidecar_client_cert_not_after_seconds{route=\"mtls\"}",
        "digicert_sidecar_credential_rejected_total{route=\"cc\"} 0",
        "digicert_sidecar_rate_limited_total{route=\"cc\"} 0",
        "digicert_sidecar_retries_total{route=\"cc\"} 0",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    // The admin listener never proxies.
    let other = s.admin("/services/v2/user/me").await;
    assert_eq!(other.status, 404);
    assert_eq!(w.mock.seen().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn admin_off_binds_nothing() {
    let w = World::new().await;
    let s = Running::certcentral(&w).await;
    assert!(s.admin.is_none());
    s.stop().await;
}

#[tokio::test]
async fn certificate_expiry_is_exported_and_an_expired_one_makes_the_route_unready() {
    let w = World::new().await;
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::days(10);
    let soon = w.mock.ca.client_cert("soon", Some(not_after)).unwrap();
    w.write("client.p12", &soon.to_pkcs12(P12_PASSWORD, false).unwrap());
    let s = Running::start(&with_admin(&format!(
        "{}{}",
        w.server_toml(),
        w.mtls_route("mtls", "/")
    )))
    .await;
    let exported = s
        .metric("digicert_sidecar_client_cert_not_after_seconds{route=\"mtls\"}")
        .await;
    assert!(
        (exported - not_after.unix_timestamp() as f64).abs() <= 1.0,
        "{exported}"
    );
    assert_eq!(s.admin("/readyz").await.status, 200);
    s.stop().await;

    let expired = w
        .mock
        .ca
        .client_cert(
            "expired",
            Some(time::OffsetDateTime::now_utc() - time::Duration::hours(1)),
        )
        .unwrap();
    w.write(
        "client.p12",
        &expired.to_pkcs12(P12_PASSWORD, false).unwrap(),
    );
    let s = Running::start(&with_admin(&format!(
        "{}{}",
        w.server_toml(),
        w.mtls_route("mtls", "/")
    )))
    .await;
    let ready = s.admin("/readyz").await;
    assert_eq!(ready.status, 503);
    let body = ready.json();
    assert_eq!(body["failing"][0]["route"], "mtls");
    assert!(
        body["failing"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_probe_turns_readiness_with_digicerts_verdict_but_not_with_an_outage() {
    let w = World::new().await;
    let probe = "[routes.probe]\npath = \"/services/v2/user/me\"\ninterval = \"1s\"\n";
    let dead = w
        .certcentral_route("down", "/down")
        .replace(&w.mock.url(), &format!("https://127.0.0.1:{}", free_port()));
    let toml = with_admin(&format!("{}{probe}{dead}{probe}", w.certcentral_toml()));
    let s = Running::start(&toml).await;
    let valid = "digicert_sidecar_credential_valid{route=\"cc\"}";
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.metric(valid).await == 1.0
        })
        .await
    );
    assert_eq!(
        s.admin("/readyz").await.status,
        200,
        "an unreachable upstream is no reason to be unready"
    );

    w.mock.set_devkeys(&["revoked-and-replaced"]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.admin("/readyz").await.status == 503
        })
        .await,
        "a rejected credential makes the route unready"
    );
    let body = s.admin("/readyz").await.json();
    assert_eq!(body["failing"][0]["route"], "cc");
    assert_eq!(s.metric(valid).await, 0.0);
    assert!(
        s.metric("digicert_sidecar_credential_rejected_total{route=\"cc\"}")
            .await
            >= 1.0
    );

    w.mock.set_devkeys(&[DEVKEY]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.admin("/readyz").await.status == 200
        })
        .await
    );
    s.stop().await;
}

#[tokio::test]
async fn the_binary_logs_reload_failures_expiry_warnings_sighup_and_drains_readiness() {
    let w = World::new().await;
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::days(12);
    let soon = w.mock.ca.client_cert("soon", Some(not_after)).unwrap();
    w.write("client.p12", &soon.to_pkcs12(P12_PASSWORD, false).unwrap());
    // The key is a symlink into a directory nobody watches: only SIGHUP reloads it.
    let hidden = w.path("hidden");
    std::fs::create_dir_all(&hidden).unwrap();
    std::fs::write(hidden.join("key"), format!("{DEVKEY}\n")).unwrap();
    let link = w.path("devkey-link");
    std::os::unix::fs::symlink(hidden.join("key"), &link).unwrap();
    let (port, admin) = (free_port(), free_port());
    let cc = w
        .certcentral_route("cc", "/")
        .replace(&w.devkey.display().to_string(), &link.display().to_string());
    let config = w.config_file(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin}\"\nshutdown_grace = \"10s\"\n{cc}{}",
        w.mtls_route("mtls", "/account")
    ));
    let mut p = Process::spawn(&config, w.path("sidecar.log"), &[]);
    wait_listening(format!("127.0.0.1:{admin}").parse().unwrap()).await;
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let admin_url = |path: &str| format!("http://127.0.0.1:{admin}{path}");

    // Expiry warning at start.
    let warned = eventually(Duration::from_secs(5), || async {
        p.stderr().contains("the client certificate expires soon")
    })
    .await;
    assert!(warned, "{}", p.stderr());

    // A failed reload: one error line naming the route and the file.
    replace_file(&w.p12, b"garbage");
    assert!(
        eventually(Duration::from_secs(5), || async {
            p.stderr().contains("credential reload failed")
        })
        .await,
        "{}",
        p.stderr()
    );
    let line = p
        .stderr()
        .lines()
        .find(|l| l.contains("credential reload failed"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("\"route\":\"mtls\"") && line.contains("client.p12"),
        "{line}"
    );
    assert!(!line.contains(P12_PASSWORD));
    assert_eq!(get(&url("/account/api/v1/user"), &[]).await.status, 200);

    // SIGHUP: the key behind the unwatched symlink is read again.
    std::fs::write(hidden.join("key"), "after-sighup\n").unwrap();
    w.mock.set_devkeys(&[DEVKEY, "after-sighup"]);
    p.signal("HUP");
    let reloaded = eventually(Duration::from_secs(5), || async {
        metric_value(
            &get(&admin_url("/metrics"), &[]).await.text(),
            "digicert_sidecar_credential_reloads_total{route=\"cc\",result=\"success\"}",
        ) == 1.0
    })
    .await;
    assert!(reloaded, "{}", p.stderr());
    w.mock.set_devkeys(&["after-sighup"]);
    assert_eq!(get(&url("/services/v2/user/me"), &[]).await.status, 200);

    // SIGTERM: /readyz turns 503 at once, /healthz stays 200 while requests finish.
    let slow = tokio::spawn({
        let u = url("/_test/slow?ms=1500");
        async move { get(&u, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.signal("TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(&admin_url("/readyz"), &[]).await.status, 503);
    assert_eq!(get(&admin_url("/healthz"), &[]).await.status, 200);
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 200, "{}", slow.text());
    assert_eq!(
        p.wait(Duration::from_secs(10)).await.and_then(|s| s.code()),
        Some(0)
    );
}
