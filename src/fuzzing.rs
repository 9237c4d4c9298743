//! Entry points for the fuzzers in `fuzz/` (cargo-fuzz) and for the test that replays their
//! corpora in CI. Each takes arbitrary bytes and must never panic.

use std::sync::OnceLock;

use http::{Method, Request};

use crate::config;
use crate::door::Door;
use crate::headers;
use crate::policy::AllowRule;

/// Configuration parsing and validation.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = config::from_toml_str(text);
    }
}

/// The policy matcher: the first line is a rule, the rest `METHOD path` pairs.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let Some(rule) = lines.next().and_then(|r| AllowRule::parse(r).ok()) else {
        return;
    };
    for line in lines.take(64) {
        let (method, path) = line.split_once(' ').unwrap_or(("GET", line));
        if let Ok(method) = Method::from_bytes(method.as_bytes()) {
            let _ = rule.matches(&method, path);
        }
    }
}

/// The request-sanitizing layer: door checks and header stripping on a request built from
/// the input (`METHOD target` on the first line, then `name: value` lines).
pub fn sanitize(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
    let mut builder = Request::builder().method(method).uri(target);
    for line in lines.take(128) {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    let Ok(mut req) = builder.body(()) else {
        return;
    };
    let door = Door {
        allowed_hosts: vec!["www.digicert.com".into()],
    };
    if door.check(&req).is_ok() {
        headers::strip_hop_by_hop(req.headers_mut());
        let own = http::HeaderName::from_static("x-dc-devkey");
        headers::strip_credentials(req.headers_mut(), Some(&own));
        for name in headers::CREDENTIAL_HEADERS.iter() {
            assert!(
                !req.headers().contains_key(name),
                "a credential header survived"
            );
        }
    }
}

/// The whole inbound HTTP stack, in memory: the bytes are a client's side of a connection
/// to a real sidecar (routes to an upstream that refuses connections, so nothing leaves).
pub fn http_stack(data: &[u8]) {
    let _ = http_stack_answer(data);
}

/// [`http_stack`], returning what the client read back (`None` if the sidecar is not up).
pub fn http_stack_answer(data: &[u8]) -> Option<Vec<u8>> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    static SIDECAR: OnceLock<Option<crate::Sidecar>> = OnceLock::new();
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fuzzer")
    });
    let sidecar = SIDECAR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dcs-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let key = dir.join("devkey");
        std::fs::write(&key, "fuzz-key\n").ok()?;
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"off\"\nrequest_timeout = \"1s\"\n\
             header_read_timeout = \"1s\"\nbody_idle_timeout = \"1s\"\nmax_request_body = \"64KiB\"\n\
             [log]\nlevel = \"off\"\n\
             [[routes]]\nname = \"cc\"\nupstream = \"https://127.0.0.1:1\"\n\
             [routes.api_key]\nheader = \"X-DC-DEVKEY\"\nfile = \"{}\"\n\
             [routes.rate_limit]\nwindows = []\n",
            key.display()
        );
        let config = config::from_toml_str(&toml).ok()?;
        rt.block_on(crate::Sidecar::bind(config)).ok()
    });
    let sidecar = sidecar.as_ref()?;
    let answer = rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serving = sidecar.serve_io(server);
        let talking = async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
            sink
        };
        tokio::time::timeout(std::time::Duration::from_secs(3), async {
            tokio::join!(serving, talking).1
        })
        .await
        .unwrap_or_default()
    });
    Some(answer)
}

#[cfg(test)]
mod tests {
    //! Every seed (and every input the fuzzers saved) in `fuzz/corpus/<target>` runs here in
    //! CI, so a crash once found stays fixed.

    fn replay(target: &str, run: fn(&[u8])) -> usize {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n > 0, "no corpus for {target}");
        n
    }

    #[test]
    fn config_corpus() {
        replay("config", super::config);
    }

    #[test]
    fn policy_corpus() {
        replay("policy", super::policy);
    }

    #[test]
    fn sanitize_corpus() {
        replay("sanitize", super::sanitize);
    }

    #[test]
    fn http_stack_corpus() {
        replay("http_stack", super::http_stack);
        let answer = super::http_stack_answer(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("the in-memory sidecar starts");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 502"), "{text}");
        assert!(text.contains("sidecar_upstream_unreachable"), "{text}");
    }
}
