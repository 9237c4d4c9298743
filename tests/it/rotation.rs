//! Credentials change under a running sidecar: Kubernetes symlink swaps, rewrites, renames,
//! SIGHUP, bad files, DigiCert rejecting a key, and 20 + 20 rotations under load.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;

/// A Kubernetes-style secret volume: `name -> ..data/name`, `..data -> ..<generation>`.
fn k8s_secret(dir: &Path, generation: &str, files: &[(&str, &[u8])]) {
    std::fs::create_dir_all(dir).unwrap();
    let gen_dir = dir.join(format!("..{generation}"));
    std::fs::create_dir_all(&gen_dir).unwrap();
    for (name, data) in files {
        std::fs::write(gen_dir.join(name), data).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{generation}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

/// A PKCS#12 file the mock's CA issued, expired yesterday.
fn expired_p12(w: &World) -> Vec<u8> {
    w.mock
        .ca
        .client_cert(
            "expired-user",
            Some(time::OffsetDateTime::now_utc() - time::Duration::days(1)),
        )
        .unwrap()
        .to_pkcs12(P12_PASSWORD, false)
        .unwrap()
}

async fn works(s: &Running, path: &str) -> bool {
    get(&s.url(path), &[]).await.status == 200
}

#[tokio::test]
async fn a_kubernetes_symlink_swap_is_picked_up() {
    let w = World::new().await;
    let secret = w.path("k8s");
    k8s_secret(&secret, "2026_01", &[("devkey", DEVKEY.as_bytes())]);
    let route = w.certcentral_route("cc", "/").replace(
        &w.devkey.display().to_string(),
        &secret.join("devkey").display().to_string(),
    );
    let s = Running::start(&with_admin(&format!("{}{route}", w.server_toml()))).await;
    assert!(works(&s, "/services/v2/user/me").await);

    // DigiCert accepts both keys while the secret is swapped, then only the new one.
    w.mock.set_devkeys(&[DEVKEY, "rotated-key-2"]);
    k8s_secret(&secret, "2026_02", &[("devkey", b"rotated-key-2\n")]);
    let reloads = "digicert_sidecar_credential_reloads_total{route=\"cc\",result=\"success\"}";
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.metric(reloads).await == 1.0
        })
        .await,
        "the ..data swap is noticed"
    );
    w.mock.set_devkeys(&["rotated-key-2"]);
    assert!(
        works(&s, "/services/v2/user/me").await,
        "the new key is used"
    );
    assert_eq!(
        s.metric("digicert_sidecar_credential_rejected_total{route=\"cc\"}")
            .await,
        0.0
    );
    s.stop().await;
}

#[tokio::test]
async fn an_in_place_rewrite_and_a_rename_over_the_file_are_picked_up() {
    let w = World::new().await;
    let s = Running::start(&with_admin(&w.certcentral_toml())).await;
    std::fs::write(&w.devkey, "rewritten-key\n").unwrap();
    w.mock.set_devkeys(&["rewritten-key"]);
    assert!(eventually(Duration::from_secs(5), || works(&s, "/services/v2/user/me")).await);
    replace_file(&w.devkey, b"renamed-key\n");
    w.mock.set_devkeys(&["renamed-key"]);
    assert!(eventually(Duration::from_secs(5), || works(&s, "/services/v2/user/me")).await);
    s.stop().await;
}

#[tokio::test]
async fn a_rejected_key_is_reloaded_once_and_the_request_retried() {
    let w = World::new().await;
    let (hidden, link) = w.unwatched_key(DEVKEY);
    let route = w
        .certcentral_route("cc", "/")
        .replace(&w.devkey.display().to_string(), &link.display().to_string());
    let s = Running::start(&with_admin(&format!("{}{route}", w.server_toml()))).await;
    assert!(works(&s, "/services/v2/user/me").await);

    std::fs::write(&hidden, "replacement-key\n").unwrap();
    w.mock.set_devkeys(&["replacement-key"]);
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(
        got.status,
        200,
        "retried with the reloaded key: {}",
        got.text()
    );
    assert_eq!(
        s.metric("digicert_sidecar_credential_rejected_total{route=\"cc\"}")
            .await,
        1.0
    );
    assert_eq!(
        s.metric("digicert_sidecar_credential_reloads_total{route=\"cc\",result=\"success\"}")
            .await,
        1.0
    );

    // Revoked with no replacement: DigiCert's 403 reaches the app, reload tried once.
    w.mock.set_devkeys(&["someone-else"]);
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 403);
    assert_eq!(got.json()["errors"][0]["code"], "access_denied_invalid_key");
    assert_eq!(
        s.metric("digicert_sidecar_credential_rejected_total{route=\"cc\"}")
            .await,
        2.0
    );
    assert_eq!(
        s.metric("digicert_sidecar_credential_reloads_total{route=\"cc\",result=\"unchanged\"}")
            .await,
        1.0
    );
    s.stop().await;
}

#[tokio::test]
async fn a_bad_replacement_keeps_the_last_good_credential() {
    let w = World::new().await;
    let expired = expired_p12(&w);
    let other = w.mock.ca.client_cert("other", None).unwrap();
    let pem = format!(
        "[[routes]]\nname = \"pem\"\npath_prefix = \"/pem\"\nstrip_prefix = true\nupstream = \"{}\"\nca_file = \"{}\"\n[routes.client_cert]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        w.mock.clientauth_url(),
        w.ca.display(),
        w.cert_pem.display(),
        w.key_pem.display()
    );
    let toml = format!("{}{}{pem}", w.server_toml(), w.mtls_route("mtls", "/mtls"));
    let s = Running::start(&with_admin(&toml.replace(
        "path_prefix = \"/mtls\"",
        "path_prefix = \"/mtls\"\nstrip_prefix = true",
    )))
    .await;
    let errors = "digicert_sidecar_credential_reloads_total{route=\"mtls\",result=\"error\"}";
    let good_p12 = std::fs::read(&w.p12).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"this is not PKCS#12".to_vec()),
        ("empty", Vec::new()),
        ("expired", expired),
    ];
    let mut expected = 0.0;
    for (what, data) in cases {
        replace_file(&w.p12, &data);
        expected += 1.0;
        assert!(
            eventually(Duration::from_secs(5), || async {
                s.metric(errors).await >= expected
            })
            .await,
            "{what}: the failed reload is counted:\n{}",
            s.admin("/metrics").await.text()
        );
        assert!(
            works(&s, "/mtls/account/api/v1/user").await,
            "{what}: the old certificate still works"
        );
    }
    replace_file(&w.p12, &good_p12);
    std::fs::write(&w.p12_password, "wrong-password\n").unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.metric(errors).await > expected
        })
        .await
    );
    assert!(
        works(&s, "/mtls/account/api/v1/user").await,
        "wrong password: the old certificate still works"
    );
    std::fs::remove_file(&w.p12).unwrap();
    std::fs::write(&w.p12_password, format!("{P12_PASSWORD}\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        works(&s, "/mtls/account/api/v1/user").await,
        "missing file: the old certificate still works"
    );

    // PEM key that does not match the certificate.
    replace_file(&w.key_pem, other.key_pem.as_bytes());
    let pem_errors = "digicert_sidecar_credential_reloads_total{route=\"pem\",result=\"error\"}";
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.metric(pem_errors).await >= 1.0
        })
        .await
    );
    assert!(
        works(&s, "/pem/account/api/v1/user").await,
        "mismatch: the old pair still works"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_new_client_certificate_retires_connections_made_with_the_old_one() {
    let w = World::new().await;
    let toml = with_admin(&format!("{}{}", w.server_toml(), w.mtls_route("mtls", "/")));
    let s = Running::start(&toml).await;
    let client = h1_client();
    for _ in 0..5 {
        let got = send(
            &client,
            "GET",
            &s.url("/_test/echo"),
            &[],
            Default::default(),
        )
        .await;
        assert_eq!(
            got.json()["client_subject"],
            "CN=demo-service-user, O=Example Service Users"
        );
    }
    let next = w.mock.ca.client_cert("svc-next", None).unwrap();
    replace_file(&w.p12, &next.to_pkcs12(P12_PASSWORD, false).unwrap());
    // DigiCert stops accepting the old certificate; pooled connections still carry it.
    w.mock
        .set_client_subjects(Some(&["CN=svc-next, O=Example Service Users"]));
    assert!(
        eventually(Duration::from_secs(5), || async {
            let got = send(
                &client,
                "GET",
                &s.url("/_test/echo"),
                &[],
                Default::default(),
            )
            .await;
            got.status == 200
                && got.json()["client_subject"] == "CN=svc-next, O=Example Service Users"
        })
        .await
    );
    s.stop().await;
}

#[tokio::test]
async fn twenty_key_and_twenty_certificate_rotations_under_load_fail_no_request() {
    let w = World::new().await;
    let toml = with_admin(&format!(
        "{}{}{}",
        w.server_toml(),
        w.certcentral_route("cc", "/services"),
        w.mtls_route("mtls", "/account")
    ));
    let s = Arc::new(Running::start(&toml).await);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for i in 0..6 {
        let (s, stop, ok, failed) = (s.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let client = if i % 2 == 0 {
                h1_client()
            } else {
                h2c_client()
            };
            let path = if i < 3 {
                "/services/v2/user/me"
            } else {
                "/account/api/v1/user"
            };
            while !stop.load(Ordering::Relaxed) {
                let got = send(&client, "GET", &s.url(path), &[], Default::default()).await;
                if got.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed: {path} {} {}", got.status, got.text());
                }
            }
        }));
    }

    let mut old_key = DEVKEY.to_string();
    for i in 1..=20 {
        let key = format!("rotated-devkey-{i}");
        w.mock.set_devkeys(&[&old_key, &key]);
        replace_file(&w.devkey, format!("{key}\n").as_bytes());
        let sample = "digicert_sidecar_credential_reloads_total{route=\"cc\",result=\"success\"}";
        assert!(
            eventually(Duration::from_secs(5), || async {
                s.metric(sample).await >= i as f64
            })
            .await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        w.mock.set_devkeys(&[&key]);
        old_key = key;
    }
    let mut old_subject = "CN=demo-service-user, O=Example Service Users".to_string();
    for i in 1..=20 {
        let cn = format!("svc-{i}");
        let subject = format!("CN={cn}, O=Example Service Users");
        let cert = w.mock.ca.client_cert(&cn, None).unwrap();
        w.mock.set_client_subjects(Some(&[&old_subject, &subject]));
        replace_file(&w.p12, &cert.to_pkcs12(P12_PASSWORD, false).unwrap());
        let sample = "digicert_sidecar_credential_reloads_total{route=\"mtls\",result=\"success\"}";
        assert!(
            eventually(Duration::from_secs(5), || async {
                s.metric(sample).await >= i as f64
            })
            .await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        w.mock.set_client_subjects(Some(&[&subject]));
        old_subject = subject;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("rotations: 20 keys + 20 certificates, {ok} requests succeeded, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 100, "the load ran ({ok} requests)");
}

#[tokio::test]
async fn a_failed_reload_names_the_file_it_read() {
    let w = World::new().await;
    let toml = format!("{}{}", w.server_toml(), w.mtls_route("mtls", "/"));
    let config = digicert_sidecar::config::from_toml_str(&toml).unwrap();
    let store = digicert_sidecar::credential::CredentialStore::load(
        &config.routes[0],
        Duration::from_secs(1),
    )
    .unwrap();
    let expired = expired_p12(&w);
    let p12 = w.p12.display().to_string();
    for (what, data) in [
        ("expired", expired),
        ("broken", b"this is not PKCS#12".to_vec()),
    ] {
        replace_file(&w.p12, &data);
        let err = store.reload().unwrap_err().to_string();
        assert!(err.contains(&p12), "{what}: {err}");
    }
}
