//! The HTTP `CONNECT` step through a corporate proxy: ask for a tunnel to `host:port`, read
//! the proxy's answer head with `httparse`, and hand back the stream, ready for the TLS
//! session with DigiCert. Our own rather than hyper-util's `Tunnel`, which accepts only a
//! `200` (a `204` or other 2xx fails) and drops the status that `egress_proxy_denied` names.

use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most a proxy's answer head may take.
const MAX_HEAD: usize = 16 * 1024;

/// Why a tunnel was not opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// Writing or reading failed: the proxy reset or closed the connection.
    #[error("the connection to the proxy broke ({0})")]
    Io(#[from] std::io::Error),
    /// The proxy closed the connection before its answer was complete.
    #[error("the proxy closed the connection without answering the CONNECT")]
    Closed,
    /// The answer is not HTTP.
    #[error("the proxy's answer to the CONNECT is not HTTP ({0})")]
    Malformed(String),
    /// The proxy answered with something other than 2xx.
    #[error("the proxy answered the CONNECT with {0}")]
    Denied(u16),
}

/// Send `CONNECT authority` (with `auth` as `Proxy-Authorization`) on `io` and wait for a
/// 2xx answer. Nothing after the answer head is read, so the stream is the tunnel.
pub async fn open<S>(
    io: &mut S,
    authority: &str,
    auth: Option<&HeaderValue>,
) -> Result<(), TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::with_capacity(160);
    head.extend_from_slice(b"CONNECT ");
    head.extend_from_slice(authority.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    head.extend_from_slice(authority.as_bytes());
    head.extend_from_slice(b"\r\n");
    if let Some(auth) = auth {
        head.extend_from_slice(b"Proxy-Authorization: ");
        head.extend_from_slice(auth.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let written = io.write_all(&head).await;
    zeroize::Zeroize::zeroize(&mut head);
    written?;
    io.flush().await?;

    // Read one byte at a time once past what can be the head, so that no byte of the
    // tunnel is taken; answers are short, and this happens once per connection.
    let mut buf = Vec::with_capacity(256);
    loop {
        let mut byte = [0u8; 1];
        if io.read(&mut byte).await? == 0 {
            return Err(TunnelError::Closed);
        }
        buf.push(byte[0]);
        if !buf.ends_with(b"\n") {
            if buf.len() > MAX_HEAD {
                return Err(TunnelError::Malformed("its head is too long".into()));
            }
            continue;
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let code = resp.code.unwrap_or(0);
                return if (200..300).contains(&code) {
                    Ok(())
                } else {
                    Err(TunnelError::Denied(code))
                };
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(TunnelError::Malformed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    async fn answer(reply: &'static [&'static [u8]]) -> (Result<(), TunnelError>, Vec<u8>) {
        let (mut client, mut proxy) = duplex(4096);
        let server = tokio::spawn(async move {
            let mut seen = vec![0u8; 1024];
            let n = proxy.read(&mut seen).await.unwrap();
            seen.truncate(n);
            for part in reply {
                proxy.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
            proxy.write_all(b"TUNNEL").await.unwrap();
            (seen, proxy)
        });
        let auth = HeaderValue::from_static("Basic dTpw");
        let result = open(&mut client, "one.digicert.com:443", Some(&auth)).await;
        let (seen, _proxy) = server.await.unwrap();
        if result.is_ok() {
            let mut rest = [0u8; 6];
            client.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest, b"TUNNEL", "the tunnel's first bytes were not taken");
        }
        (result, seen)
    }

    #[tokio::test]
    async fn any_2xx_opens_the_tunnel_even_split_across_reads() {
        let (r, seen) = answer(&[b"HTTP/1.1 200 Connection established\r\n\r\n"]).await;
        r.unwrap();
        let seen = String::from_utf8(seen).unwrap();
        assert!(
            seen.starts_with("CONNECT one.digicert.com:443 HTTP/1.1\r\n"),
            "{seen}"
        );
        assert!(seen.contains("Host: one.digicert.com:443\r\n"));
        assert!(seen.contains("Proxy-Authorization: Basic dTpw\r\n"));
        answer(&[b"HTTP/1.1 204 No Content\r\n\r\n"])
            .await
            .0
            .unwrap();
        answer(&[b"HTTP/1.0 2", b"00 OK\r\nVia: x\r", b"\n\r\n"])
            .await
            .0
            .unwrap();
    }

    #[tokio::test]
    async fn other_answers_name_their_status() {
        let (r, _) =
            answer(&[b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"])
                .await;
        assert!(matches!(r, Err(TunnelError::Denied(407))), "{r:?}");
        let (r, _) = answer(&[b"HTTP/1.1 403 Forbidden\r\n\r\n"]).await;
        assert!(matches!(r, Err(TunnelError::Denied(403))), "{r:?}");
        let (r, _) = answer(&[b"SSH-2.0-OpenSSH\r\n"]).await;
        assert!(matches!(r, Err(TunnelError::Malformed(_))), "{r:?}");
    }

    /// Why this step is ours: hyper-util's `Tunnel` (0.1.21) refuses a 204 and drops the
    /// status of a 403, which `egress_proxy_denied` must name.
    #[tokio::test]
    async fn hyper_utils_tunnel_fails_a_204_and_loses_a_403s_status() {
        use hyper_util::client::legacy::connect::HttpConnector;
        use hyper_util::client::legacy::connect::proxy::Tunnel;
        use tower::Service;

        for (answer, ours_ok) in [
            (&b"HTTP/1.1 204 No Content\r\n\r\n"[..], true),
            (&b"HTTP/1.1 403 Forbidden\r\n\r\n"[..], false),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                loop {
                    let (mut tcp, _) = listener.accept().await.unwrap();
                    let mut head = [0u8; 512];
                    let _ = tcp.read(&mut head).await;
                    let _ = tcp.write_all(answer).await;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            });
            let proxy: http::Uri = format!("http://{addr}").parse().unwrap();
            let mut theirs = Tunnel::new(proxy, HttpConnector::new());
            let Err(err) = theirs
                .call("https://one.digicert.com".parse().unwrap())
                .await
            else {
                panic!("hyper-util's Tunnel fails both");
            };
            assert!(!err.to_string().contains("403"), "{err}");

            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let ours = open(&mut tcp, "one.digicert.com:443", None).await;
            match ours {
                Ok(()) => assert!(ours_ok),
                Err(TunnelError::Denied(403)) => assert!(!ours_ok),
                Err(e) => panic!("{e}"),
            }
        }
    }
}
