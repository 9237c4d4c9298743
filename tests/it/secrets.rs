//! The canary: secrets that must never appear in logs (even at `trace`), error bodies,
//! responses, `check` output or `Debug` output.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use digicert_sidecar::config;
use digicert_sidecar::credential::CredentialStore;
use digicert_sidecar::mock::MockOptions;

use crate::support::*;

const CANARY_DEVKEY: &str = "CANARYdevkey7c1f4e9a0b2d";
const CANARY_API_KEY: &str = "CANARYapikey5e8d2c7b1a3f";
const CANARY_P12_PASSWORD: &str = "CANARYp12pw9d3e6f1a2b4c";
const CANARIES: [&str; 3] = [CANARY_DEVKEY, CANARY_API_KEY, CANARY_P12_PASSWORD];

fn assert_clean(what: &str, text: &str) {
    for c in CANARIES {
        assert!(!text.contains(c), "a secret leaked into {what}:\n{text}");
    }
    // Also not a recognisable piece of one.
    assert!(
        !text.contains("CANARY"),
        "a secret leaked into {what}:\n{text}"
    );
}

#[tokio::test]
async fn no_secret_in_logs_bodies_check_or_debug() {
    let w = World::with(MockOptions {
        devkey: CANARY_DEVKEY.into(),
        api_key: CANARY_API_KEY.into(),
        http1_only: false,
    })
    .await;
    let p12 = w.mock.client.to_pkcs12(CANARY_P12_PASSWORD, false).unwrap();
    w.write("client.p12", &p12);
    w.write(
        "p12-password",
        format!("{CANARY_P12_PASSWORD}\n").as_bytes(),
    );
    let port = free_port();
    let admin = free_port();
    let dead = free_port();
    let cc = w.certcentral_route("cc", "/");
    let one = format!(
        "[[routes]]\nname = \"one\"\npath_prefix = \"/one\"\nstrip_prefix = true\nupstream = \"{}\"\nca_file = \"{}\"\n[routes.api_key]\nheader = \"x-api-key\"\nenv = \"TEST_SIDECAR_API_KEY\"\n",
        w.mock.url(),
        w.ca.display()
    );
    let mtls = w.mtls_route("mtls", "/mtls").replace(
        "path_prefix = \"/mtls\"",
        "path_prefix = \"/mtls\"\nstrip_prefix = true",
    );
    let stm = format!(
        "{}[routes.api_key]\nheader = \"x-api-key\"\nfile = \"{}\"\n",
        w.mtls_route("stm", "/signingmanager"),
        w.api_key.display()
    );
    let dead_url = format!("https://127.0.0.1:{dead}");
    let dead = w
        .certcentral_route("dead", "/dead")
        .replace(&w.mock.url(), &dead_url);
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin}\"\nmax_request_body = \"1KiB\"\nrequest_timeout = \"1s\"\n[log]\nlevel = \"trace\"\nformat = \"json\"\n{cc}{one}{mtls}{stm}{dead}"
    );
    let config_path = w.config_file(&toml);
    let mut p = Process::spawn(
        &config_path,
        w.path("canary.log"),
        &[("TEST_SIDECAR_API_KEY", CANARY_API_KEY)],
    );
    let addr = format!("127.0.0.1:{port}");
    wait_listening(addr.parse().unwrap()).await;
    let url = |path: &str| format!("http://{addr}{path}");

    let mut seen = String::new();
    let mut record = |got: Got, expect: u16| {
        assert_eq!(got.status, expect, "{}", got.text());
        seen.push_str(&format!("{:?}\n{}\n", got.headers, got.text()));
    };
    let h1 = h1_client();
    let h2 = h2c_client();
    record(
        get(&url("/services/v2/user/me"), &[("x-dc-devkey", "client")]).await,
        200,
    );
    record(
        send(
            &h2,
            "GET",
            &url("/services/v2/order/certificate"),
            &[],
            Bytes::new(),
        )
        .await,
        200,
    );
    record(get(&url("/one/account/api/v1/user"), &[]).await, 200);
    record(get(&url("/mtls/account/api/v1/user"), &[]).await, 200);
    record(get(&url("/signingmanager/api/v1/keypairs"), &[]).await, 200);
    record(get(&url("/_test/echo"), &[]).await, 200);
    record(get(&url("/services/v2/nothing"), &[]).await, 404);
    record(get(&url("/dead/services/v2/user/me"), &[]).await, 502);
    record(get(&url("/_test/slow?ms=3000"), &[]).await, 504);
    record(
        send(
            &h1,
            "POST",
            &url("/_test/upload"),
            &[],
            Bytes::from(vec![0; 4096]),
        )
        .await,
        413,
    );
    record(send(&h1, "TRACE", &url("/"), &[], Bytes::new()).await, 405);
    record(get(&url("/a/../b"), &[]).await, 400);
    for path in ["/metrics", "/readyz", "/healthz", "/nothing"] {
        let got = get(&format!("http://127.0.0.1:{admin}{path}"), &[]).await;
        seen.push_str(&format!("{:?}\n{}\n", got.headers, got.text()));
    }
    assert!(
        seen.contains("digicert_sidecar_requests_total"),
        "metrics were read"
    );
    assert_clean("responses and admin answers", &seen);

    p.signal("TERM");
    p.wait(Duration::from_secs(10)).await.expect("exits");
    let log = p.stderr();
    assert!(log.lines().count() > 50, "trace logging is on:\n{log}");
    assert!(
        log.contains("\"target\":\"access\""),
        "access lines are JSON:\n{log}"
    );
    assert_clean("the trace log", &log);

    // `check`, fine and with a wrong password.
    let out = binary()
        .args(["check", "--config"])
        .arg(&config_path)
        .env("TEST_SIDECAR_API_KEY", CANARY_API_KEY)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean("check output", &String::from_utf8_lossy(&out.stdout));
    w.write("p12-password", b"CANARYwrongpassword\n");
    let out = binary()
        .args(["check", "--config"])
        .arg(&config_path)
        .env("TEST_SIDECAR_API_KEY", CANARY_API_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean("check output", &all);
    assert!(all.contains("wrong PKCS#12 password"), "{all}");
    w.write(
        "p12-password",
        format!("{CANARY_P12_PASSWORD}\n").as_bytes(),
    );

    // Debug of the configuration and of loaded credentials.
    let config = config::load_file(&config_path).unwrap();
    assert_clean("Debug of Config", &format!("{config:?} {config:#?}"));
    for route in config.routes.iter().filter(|r| r.name != "one") {
        let store = CredentialStore::load(route, Duration::from_secs(1)).unwrap();
        let live = store.current();
        let shown = format!(
            "{store:?} {live:?} {:?} {:?}",
            live.api_key, live.client_cert
        );
        assert_clean("Debug of credentials", &shown);
        if let Some(k) = &live.api_key {
            assert_clean(
                "Debug of the header value",
                &format!("{:?}", k.header_value()),
            );
        }
    }
}
