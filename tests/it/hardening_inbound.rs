//! Hardening, the client side (issue 7, items 1 and 2): request smuggling and parsing over
//! raw sockets, and the limits and timeouts that stop a hostile or broken client from
//! holding the sidecar. Every read is under a timeout; everything is on loopback.
//!
//! The expectations come from RFC 9112 (HTTP/1.1 message syntax): §2.2 (bare CR), §5.1 and
//! §5.2 (field syntax, obs-fold), §6.1 (Transfer-Encoding), §6.3 (message body length), §7.1
//! (chunked), §9.3.2 (pipelining); from RFC 9110 §5.5 (CR, LF, NUL in values) and §7.6.1
//! (Connection); and from RFC 9113 (HTTP/2) for the h2c tests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A path no test requests itself: if the mock ever records it, a request was smuggled.
const SMUGGLED: &str = "/services/v2/smuggled";

/// What one raw exchange gave back.
pub(crate) struct Exchange {
    pub bytes: Vec<u8>,
    /// The sidecar closed the connection (EOF or reset) within the time allowed.
    pub closed: bool,
    pub elapsed: Duration,
}

impl Exchange {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The status of the first response, if one came.
    pub(crate) fn status(&self) -> Option<u16> {
        let rest = self.bytes.strip_prefix(b"HTTP/1.1 ")?;
        std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
    }
}

pub(crate) async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .expect("connects in time")
        .expect("connects")
}

/// Send `request` as is (from a task of its own, so a sidecar that stops reading cannot
/// block the test), and read until the sidecar closes or `limit` passes.
pub(crate) async fn raw(addr: SocketAddr, request: &[u8], limit: Duration) -> Exchange {
    let started = Instant::now();
    let (mut rd, mut wr) = connect(addr).await.into_split();
    let request = request.to_vec();
    // The sidecar may close before it has read everything: that is not an error here.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        wr
    });
    let (bytes, closed) = read_until_closed(&mut rd, limit).await;
    writer.abort();
    Exchange {
        bytes,
        closed,
        elapsed: started.elapsed(),
    }
}

/// Read until the peer closes (EOF or reset) or `limit` passes; says whether it closed.
pub(crate) async fn read_until_closed<R: AsyncRead + Unpin>(
    rd: &mut R,
    limit: Duration,
) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// An HTTP/1.1 response taken apart.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Parsed {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One complete response at the start of `bytes` and the number of bytes it took. A
/// response framed by the end of the connection is complete only once `eof`.
pub(crate) fn parse_response(bytes: &[u8], eof: bool) -> Option<(Parsed, usize)> {
    let end = find(bytes, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut pos = end + 4;
    let value = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        Vec::new()
    } else if value("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = pos + find(&bytes[pos..], b"\r\n")?;
            let size_text = std::str::from_utf8(&bytes[pos..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                // No trailers in these tests: the empty line ends the message.
                bytes.get(pos..pos + 2).filter(|t| *t == b"\r\n")?;
                pos += 2;
                break;
            }
            body.extend_from_slice(bytes.get(pos..pos + size)?);
            pos += size;
            bytes.get(pos..pos + 2)?;
            pos += 2;
        }
        body
    } else if let Some(n) = value("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let body = bytes.get(pos..pos + n)?.to_vec();
        pos += n;
        body
    } else if eof {
        let body = bytes[pos..].to_vec();
        pos = bytes.len();
        body
    } else {
        return None;
    };
    Some((
        Parsed {
            status,
            headers,
            body,
        },
        pos,
    ))
}

/// Every complete response in `bytes`, in order.
pub(crate) fn parse_all(bytes: &[u8]) -> Vec<Parsed> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some((p, used)) = parse_response(rest, true) {
        out.push(p);
        rest = &rest[used..];
        if rest.is_empty() {
            break;
        }
    }
    out
}

/// Read one complete response from a connection that stays open, at most `limit`.
pub(crate) async fn read_response<R: AsyncRead + Unpin>(
    rd: &mut R,
    limit: Duration,
) -> Option<Parsed> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some((p, _)) = parse_response(&got, false) {
            return Some(p);
        }
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            Ok(_) => return parse_response(&got, true).map(|(p, _)| p),
            Err(_) => return None,
        }
    }
}

/// A sidecar with one CertCentral route on the mock and `extra` lines in `[server]`.
async fn sidecar(w: &World, extra: &str) -> Running {
    Running::start(&format!(
        "{}{extra}{}",
        w.server_toml(),
        w.certcentral_route("cc", "/")
    ))
    .await
}

fn assert_nothing_smuggled(w: &World) {
    let smuggled: Vec<_> = w
        .mock
        .seen()
        .into_iter()
        .filter(|r| r.path == SMUGGLED)
        .collect();
    assert!(
        smuggled.is_empty(),
        "a smuggled request reached the upstream: {smuggled:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 1. Smuggling and parsing
// ---------------------------------------------------------------------------------------

/// Each of these must be refused with 400 and the connection closed, before anything goes
/// upstream; the request line after it (a would-be smuggled request) must never be served.
#[tokio::test]
async fn ambiguous_framing_and_malformed_fields_are_400_and_close() {
    let w = World::new().await;
    let s = sidecar(&w, "").await;
    let post = "POST /_test/upload HTTP/1.1\r\nHost: localhost\r\n";
    let get = "GET /_test/echo HTTP/1.1\r\nHost: localhost\r\n";
    let cases: Vec<(&str, String)> = vec![
        // §6.3 (5): differing Content-Length values make the framing invalid: "the server
        // MUST respond with a 400 (Bad Request) status code and then close the connection".
        (
            "two differing Content-Length",
            format!("{post}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ),
        (
            "a Content-Length list that disagrees",
            format!("{post}Content-Length: 5, 6\r\n\r\nhello!"),
        ),
        (
            "a Content-Length that is not a number",
            format!("{post}Content-Length: +5\r\n\r\nhello"),
        ),
        // §6.3 (4): Transfer-Encoding in a request whose final coding is not chunked:
        // "the server MUST respond with the 400 (Bad Request) status code and then close
        // the connection".
        (
            "Transfer-Encoding: gzip",
            format!("{post}Transfer-Encoding: gzip\r\n\r\nhello"),
        ),
        (
            "Transfer-Encoding: identity",
            format!("{post}Transfer-Encoding: identity\r\n\r\nhello"),
        ),
        (
            "chunked, then gzip on a second line",
            format!(
                "{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            ),
        ),
        // §6.1: "A server or client that receives an HTTP/1.0 message containing a
        // Transfer-Encoding header field MUST treat the message as if the framing is faulty".
        (
            "HTTP/1.0 with Transfer-Encoding",
            "POST /_test/upload HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_string(),
        ),
        // §5.2: a server MUST either reject obs-fold with 400 or unfold it; rejecting is the
        // safe choice for a proxy and what the sidecar does.
        (
            "obs-fold",
            format!("{get}X-Note: first\r\n second\r\n\r\n"),
        ),
        // §5.1: "A server MUST reject, with a response status code of 400 (Bad Request), any
        // received request message that contains whitespace between a header field name and
        // colon."
        (
            "space before the colon (Transfer-Encoding)",
            format!("{post}Content-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "space before the colon (X-DC-DEVKEY)",
            format!("{get}X-DC-DEVKEY : client-guess\r\n\r\n"),
        ),
        // §5.1: field-name = token, at least one tchar.
        ("empty header name", format!("{get}: value\r\n\r\n")),
        // RFC 9110 §5.5: NUL, CR, LF in a value are invalid and dangerous: reject (or replace
        // with SP); RFC 9112 §2.2: a bare CR is invalid.
        ("NUL in a value", format!("{get}X-Note: a\0b\r\n\r\n")),
        ("bare CR in a value", format!("{get}X-Note: a\rb\r\n\r\n")),
    ];
    let smuggled = format!("GET {SMUGGLED} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    for (what, req) in &cases {
        let before = w.mock.seen().len();
        let got = raw(
            s.addr(),
            format!("{req}{smuggled}").as_bytes(),
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(got.status(), Some(400), "{what}: {}", got.text());
        assert!(got.closed, "{what}: the connection stayed open after a 400");
        assert_eq!(parse_all(&got.bytes).len(), 1, "{what}: {}", got.text());
        assert_eq!(w.mock.seen().len(), before, "{what}: reached the upstream");
    }
    assert_nothing_smuggled(&w);
}

/// §6.1: "A sender MUST NOT apply the chunked transfer coding more than once to a message
/// body", and a server that gets a coding it does not understand "SHOULD respond with 501".
/// The sidecar removes Transfer-Encoding (hop-by-hop) before forwarding, so passing such a
/// body on would hand DigiCert bytes that are still chunk- or gzip-coded with nothing saying
/// so, and a parser behind another hop could read the inner chunks as framing. Expected: 400
/// (or 501 for an unknown coding), connection closed, nothing upstream.
#[tokio::test]
async fn only_a_single_chunked_coding_is_accepted() {
    let w = World::new().await;
    let s = sidecar(&w, "").await;
    let post = "POST /_test/upload HTTP/1.1\r\nHost: localhost\r\n";
    // "hello" chunked once is 15 (0xf) bytes; chunked again around that.
    let twice = "f\r\n5\r\nhello\r\n0\r\n\r\n\r\n0\r\n\r\n";
    let cases: Vec<(&str, String, &[u16])> = vec![
        (
            "Transfer-Encoding: chunked, chunked",
            format!("{post}Transfer-Encoding: chunked, chunked\r\n\r\n{twice}"),
            &[400],
        ),
        (
            "Transfer-Encoding: chunked on two lines",
            format!(
                "{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n{twice}"
            ),
            &[400],
        ),
        (
            "Transfer-Encoding: gzip, chunked",
            format!("{post}Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            &[400, 501],
        ),
    ];
    let mut failures = Vec::new();
    for (what, req, statuses) in &cases {
        let before = w.mock.seen().len();
        let got = raw(s.addr(), req.as_bytes(), Duration::from_secs(3)).await;
        let reached = w.mock.seen().len() - before;
        if !got.status().is_some_and(|st| statuses.contains(&st)) || !got.closed || reached > 0 {
            failures.push(format!(
                "{what}: status {:?}, closed {}, requests upstream {reached}, answer {:?}",
                got.status(),
                got.closed,
                parse_all(&got.bytes)
                    .first()
                    .map(|p| String::from_utf8_lossy(&p.body).into_owned())
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// §6.3 (3): with both Transfer-Encoding and Content-Length, "Transfer-Encoding overrides
/// the Content-Length"; a server MAY reject it or process it by Transfer-Encoding alone, and
/// "Regardless, the server MUST close the connection after responding". Either way the
/// upstream never gets two framings nor the request hidden behind them.
#[tokio::test]
async fn content_length_with_transfer_encoding_never_smuggles() {
    let w = World::new().await;
    let s = sidecar(&w, "").await;
    let smuggled = format!("GET {SMUGGLED} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let hidden = format!("0\r\n\r\n{smuggled}");
    let post = "POST /_test/upload HTTP/1.1\r\nHost: localhost\r\n";
    let cases: Vec<(&str, String, u64)> = vec![
        // CL covers the smuggled request, TE ends the body at once (CL.TE).
        (
            "Content-Length then Transfer-Encoding",
            format!(
                "{post}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{hidden}",
                hidden.len()
            ),
            0,
        ),
        // The same in the other order (TE.CL).
        (
            "Transfer-Encoding then Content-Length",
            format!(
                "{post}Transfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{hidden}",
                hidden.len()
            ),
            0,
        ),
        // CL shorter than the chunked body: by CL, "hello..." would start the next request.
        (
            "a short Content-Length with a chunked body",
            format!(
                "{post}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}"
            ),
            5,
        ),
    ];
    for (what, req, te_bytes) in &cases {
        let got = raw(s.addr(), req.as_bytes(), Duration::from_secs(3)).await;
        assert!(
            got.closed,
            "{what}: the connection must close: {}",
            got.text()
        );
        let answers = parse_all(&got.bytes);
        assert_eq!(answers.len(), 1, "{what}: {}", got.text());
        match answers[0].status {
            400 => {}
            200 => assert_eq!(
                answers[0].json()["bytes"],
                *te_bytes,
                "{what}: the body must be read by Transfer-Encoding alone"
            ),
            other => panic!("{what}: status {other}: {}", got.text()),
        }
    }
    assert_nothing_smuggled(&w);
}

/// §7.1: chunk-size = 1*HEXDIG, and recipients "MUST anticipate potentially large
/// hexadecimal numerals and prevent parsing errors due to integer conversion overflows";
/// a chunk not followed by CRLF is malformed. A broken chunked body is a framing error
/// (§6.3): the answer is a 400 and the connection closes; the bytes after it are never read
/// as a request, and the upstream never completes the request.
#[tokio::test]
async fn bad_chunk_sizes_are_400_and_close() {
    let w = World::new().await;
    let s = sidecar(&w, "").await;
    let smuggled = format!("GET {SMUGGLED} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let head =
        "POST /_test/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases = [
        ("non-hex size", "zz\r\nhello\r\n0\r\n\r\n"),
        ("negative size", "-5\r\nhello\r\n0\r\n\r\n"),
        (
            "size overflowing 64 bits",
            "1ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        ("no CRLF after the chunk data", "5\r\nhelloXX0\r\n\r\n"),
    ];
    let mut failures = Vec::new();
    for (what, body) in cases {
        let got = raw(
            s.addr(),
            format!("{head}{body}{smuggled}").as_bytes(),
            Duration::from_secs(3),
        )
        .await;
        let answers = parse_all(&got.bytes);
        let ok = got.status() == Some(400) && got.closed && answers.len() == 1;
        if !ok {
            failures.push(format!(
                "{what}: status {:?}, closed {}, answers {}, error {:?}: {}",
                got.status(),
                got.closed,
                answers.len(),
                answers
                    .first()
                    .and_then(|a| a.header("x-digicert-sidecar-error")),
                got.text()
            ));
        }
    }
    assert_nothing_smuggled(&w);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// §9.3.2: responses to pipelined requests come "in the same order that the requests were
/// received". Each request gets the route's key exactly once, whatever the client sent.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order_each_with_one_key() {
    let w = World::new().await;
    let s = sidecar(&w, "").await;
    let two = "GET /_test/echo?n=1 HTTP/1.1\r\nHost: localhost\r\nX-DC-DEVKEY: client-guess-1\r\n\r\n\
               GET /_test/echo?n=2 HTTP/1.1\r\nHost: localhost\r\nx-dc-devkey: client-guess-2\r\n\
               x-api-key: client-guess-3\r\nAuthorization: Bearer x\r\nConnection: close\r\n\r\n";
    let got = raw(s.addr(), two.as_bytes(), Duration::from_secs(5)).await;
    assert!(got.closed, "{}", got.text());
    let answers = parse_all(&got.bytes);
    assert_eq!(answers.len(), 2, "{}", got.text());
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 200, "{}", got.text());
        let echo = answer.json();
        assert_eq!(echo["path"], format!("/_test/echo?n={}", i + 1), "in order");
        assert_eq!(
            echo["headers"]["x-dc-devkey"],
            serde_json::json!(["[valid]"]),
            "exactly one injected key: {echo}"
        );
        assert!(echo["headers"].get("x-api-key").is_none(), "{echo}");
        assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    }
    assert_eq!(w.mock.seen().len(), 2);
}

/// RFC 9110 §7.6.1: a proxy removes the fields that `Connection` names from the message it
/// received. The key the sidecar attaches is its own, added after that: naming the
/// credential header in `Connection` must not make the request go out without it.
#[tokio::test]
async fn connection_cannot_name_away_the_injected_key() {
    let w = World::new().await;
    let cc = sidecar(&w, "").await;
    let one = Running::start(&format!("{}{}", w.server_toml(), w.one_route("one", "/"))).await;
    let cases = [
        (
            cc.addr(),
            "Connection: x-dc-devkey, close\r\nX-DC-DEVKEY: client-guess\r\n",
            "x-dc-devkey",
        ),
        (
            cc.addr(),
            "Connection: close, X-DC-DEVKEY\r\n",
            "x-dc-devkey",
        ),
        (
            one.addr(),
            "Connection: x-api-key, close\r\nx-api-key: client-guess\r\n",
            "x-api-key",
        ),
    ];
    for (addr, extra, header) in cases {
        let got = raw(
            addr,
            format!("GET /_test/echo HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        let answers = parse_all(&got.bytes);
        assert_eq!(answers.len(), 1, "{extra}: {}", got.text());
        assert_eq!(answers[0].status, 200, "{extra}: {}", got.text());
        let echo = answers[0].json();
        assert_eq!(
            echo["headers"][header],
            serde_json::json!(["[valid]"]),
            "{extra}: {echo}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. Limits and timeouts
// ---------------------------------------------------------------------------------------

/// `header_read_timeout` (SPEC: slow-loris guard) bounds the whole head, not each read: a
/// head that stops, and one that trickles a byte now and then, are both cut off. hyper closes
/// without an answer (a 408 would be fine too).
#[tokio::test]
async fn a_slow_head_is_cut_off_after_header_read_timeout() {
    let w = World::new().await;
    let s = sidecar(&w, "header_read_timeout = \"1s\"\n").await;
    let partial = raw(
        s.addr(),
        b"GET /services/v2/user/me HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",
        Duration::from_secs(4),
    );
    let trickle = async {
        let started = Instant::now();
        let (mut rd, mut wr) = connect(s.addr()).await.into_split();
        let drip = tokio::spawn(async move {
            let _ = wr
                .write_all(b"GET /services/v2/user/me HTTP/1.1\r\nHost: localhost\r\n")
                .await;
            for i in 0..40 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if wr
                    .write_all(format!("X-Drip-{i}: a\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let (bytes, closed) = read_until_closed(&mut rd, Duration::from_secs(4)).await;
        drip.abort();
        Exchange {
            bytes,
            closed,
            elapsed: started.elapsed(),
        }
    };
    let (partial, trickle) = tokio::join!(partial, trickle);
    for (what, got) in [("partial head", partial), ("trickled head", trickle)] {
        assert!(got.closed, "{what}: still open after {:?}", got.elapsed);
        assert!(
            got.elapsed >= Duration::from_millis(900) && got.elapsed < Duration::from_millis(2500),
            "{what}: closed after {:?}",
            got.elapsed
        );
        assert!(
            got.bytes.is_empty() || got.status() == Some(408),
            "{what}: {}",
            got.text()
        );
    }
    assert!(w.mock.seen().is_empty());
}

/// The slow-loris at its purest: connect and say nothing, or only the start of the h2c
/// preface. `header_read_timeout` must close these too, or each holds one of
/// `max_connections` for ever.
#[tokio::test]
async fn a_silent_connection_is_cut_off_after_header_read_timeout() {
    let w = World::new().await;
    let s = sidecar(&w, "header_read_timeout = \"1s\"\n").await;
    let (silent, preface) = tokio::join!(
        raw(s.addr(), b"", Duration::from_secs(3)),
        raw(s.addr(), b"PRI * HTTP/2.0\r\n", Duration::from_secs(3)),
    );
    let mut failures = Vec::new();
    for (what, got) in [("no byte at all", silent), ("half an h2 preface", preface)] {
        if !got.closed || got.elapsed > Duration::from_millis(2500) {
            failures.push(format!(
                "{what}: still open after {:?} (header_read_timeout = 1s)",
                got.elapsed
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `body_idle_timeout` (SPEC: "a request or response body that stalls this long is
/// aborted"): 10 of 1000 declared bytes, then nothing. A small body is held for replay, so
/// nothing may reach the upstream; a large one streams, and the upstream must never get a
/// complete request from it.
#[tokio::test]
async fn a_stalled_request_body_is_aborted_after_body_idle_timeout() {
    let w = World::new().await;
    let s = sidecar(&w, "body_idle_timeout = \"1s\"\n").await;
    for (what, declared) in [("held body", 1000u64), ("streamed body", 200_000)] {
        let before = w.mock.seen().len();
        let started = Instant::now();
        let mut tcp = connect(s.addr()).await;
        tcp.write_all(
            format!(
                "POST /_test/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {declared}\r\n\r\n0123456789"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let answer = read_response(&mut tcp, Duration::from_secs(4)).await;
        let elapsed = started.elapsed();
        let answer = answer.unwrap_or_else(|| panic!("{what}: no answer after {elapsed:?}"));
        assert!(
            matches!(answer.status, 400 | 408),
            "{what}: {} {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
            "{what}: answered after {elapsed:?}"
        );
        if declared <= 64 * 1024 {
            assert_eq!(w.mock.seen().len(), before, "{what}: reached the upstream");
        }
    }
}

/// A client that asks for 200 MB and never reads: the sidecar (the real binary) must not
/// buffer the answer (backpressure to DigiCert), and after `body_idle_timeout` without
/// progress it must let the connection go. With `max_connections = 1` a second client is
/// served only once the first connection is freed.
#[tokio::test]
async fn a_client_that_stops_reading_costs_bounded_memory_and_is_let_go() {
    let w = World::new().await;
    let (addr, config) = w.binary_config("body_idle_timeout = \"1s\"\nmax_connections = 1\nrequest_timeout = \"60s\"\n[log]\nlevel = \"warn\"\n");
    let p = Process::spawn(&config, w.path("stall.log"), &[]);
    wait_listening(addr).await;
    let warm = raw(
        addr,
        b"GET /services/v2/user/me HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(warm.status(), Some(200), "{}", warm.text());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = p.rss_kib();
    assert!(baseline > 0, "reads /proc");

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /_test/bytes?n=200000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peak = p.peak_rss_kib();
    eprintln!(
        "stalled reader: baseline RSS {baseline} KiB, peak {peak} KiB, now {} KiB",
        p.rss_kib()
    );
    assert!(
        peak < baseline + 64 * 1024,
        "memory grew by {} KiB for a client that reads nothing",
        peak.saturating_sub(baseline)
    );

    // The stalled connection has made no progress for 2 s past body_idle_timeout.
    let started = Instant::now();
    let next = raw(
        addr,
        b"GET /services/v2/user/me HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(4),
    )
    .await;
    assert_eq!(
        next.status(),
        Some(200),
        "the stalled connection still holds the only slot after {:?} more",
        started.elapsed()
    );
    drop(stalled);
}

/// SPEC: a head larger than `max_header_bytes` ("beyond: 431") or with more than 100 fields
/// is 431 with the JSON error `headers_too_large`, and never reaches the upstream. A head
/// far beyond the limit, which never ends, is cut off with a 431 (hyper's own, bare) and
/// the connection closed, without the sidecar buffering it.
#[tokio::test]
async fn too_many_headers_or_too_large_a_head_is_431() {
    let w = World::new().await;
    let s = sidecar(&w, "max_header_bytes = \"16KiB\"\n").await;
    let start = "GET /services/v2/user/me HTTP/1.1\r\nHost: localhost\r\n";
    let many: String = (0..101).map(|i| format!("X-Filler-{i}: v\r\n")).collect();
    for (what, req) in [
        (
            "101 header fields",
            format!("{start}{many}Connection: close\r\n\r\n"),
        ),
        (
            "a 20 KiB head",
            format!(
                "{start}X-Big: {}\r\nConnection: close\r\n\r\n",
                "a".repeat(20 * 1024)
            ),
        ),
    ] {
        let got = raw(s.addr(), req.as_bytes(), Duration::from_secs(3)).await;
        let answers = parse_all(&got.bytes);
        assert_eq!(answers.len(), 1, "{what}: {}", got.text());
        assert_eq!(answers[0].status, 431, "{what}: {}", got.text());
        assert_eq!(
            answers[0].header("x-digicert-sidecar-error"),
            Some("headers_too_large"),
            "{what}: {}",
            got.text()
        );
        assert_eq!(
            answers[0].json()["errors"][0]["code"],
            "sidecar_headers_too_large"
        );
    }

    // 1 MiB of a head that never ends.
    let endless = format!("{start}X-Big: {}", "a".repeat(1024 * 1024));
    let got = raw(s.addr(), endless.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(got.status(), Some(431), "endless head: {}", got.text());
    assert!(got.closed, "endless head: the connection stayed open");
    let json = parse_all(&got.bytes)
        .first()
        .is_some_and(|a| a.header("x-digicert-sidecar-error").is_some());
    eprintln!("endless head: 431, sidecar JSON error: {json}");
    assert!(w.mock.seen().is_empty());

    // Just inside both limits: served.
    let fields: String = (0..90)
        .map(|i| format!("X-Filler-{i}: {}\r\n", "v".repeat(120)))
        .collect();
    let got = raw(
        s.addr(),
        format!("{start}{fields}Connection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(got.status(), Some(200), "{}", got.text());
}

/// `max_connections = 4`: a fifth connection waits (in the listen backlog) until one of the
/// four closes, then is served.
#[tokio::test]
async fn the_connection_after_max_connections_waits_for_one_to_close() {
    let w = World::new().await;
    let s = sidecar(&w, "max_connections = 4\n").await;
    let request = b"GET /services/v2/user/me HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut open = Vec::new();
    for i in 0..4 {
        let mut tcp = connect(s.addr()).await;
        tcp.write_all(request).await.unwrap();
        let answer = read_response(&mut tcp, Duration::from_secs(5)).await;
        assert_eq!(answer.map(|a| a.status), Some(200), "connection {i}");
        open.push(tcp);
    }
    let mut fifth = connect(s.addr()).await;
    fifth.write_all(request).await.unwrap();
    assert!(
        read_response(&mut fifth, Duration::from_millis(700))
            .await
            .is_none(),
        "the fifth connection was served while four were open"
    );
    drop(open.remove(0));
    let answer = read_response(&mut fifth, Duration::from_secs(3)).await;
    assert_eq!(
        answer.map(|a| a.status),
        Some(200),
        "served once a slot is free"
    );
}

// ---------------------------------------------------------------------------------------
// HTTP/2 (h2c with prior knowledge), with frames built by hand (RFC 9113 §4, §6; HPACK
// RFC 7541 with literals only).
// ---------------------------------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(ty);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), `flags` in the high bits.
fn hpack_int(out: &mut Vec<u8>, n: u32, flags: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A string literal without Huffman coding (RFC 7541 §5.2).
fn hpack_str(out: &mut Vec<u8>, s: &str) {
    hpack_int(out, 7, 0, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// `GET path` to `localhost`: `:method GET` and `:scheme http` from the static table, the
/// rest as literals without indexing.
fn request_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    b.push(0x04); // :path, literal without indexing, name from the static table
    hpack_str(&mut b, path);
    b.push(0x01); // :authority
    hpack_str(&mut b, "localhost");
    b
}

/// One header field as a literal without indexing, new name.
fn literal_field(name: &str, value: &str) -> Vec<u8> {
    let mut b = vec![0x00];
    hpack_str(&mut b, name);
    hpack_str(&mut b, value);
    b
}

struct Frame {
    ty: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// The error code of RST_STREAM or GOAWAY.
    fn error_code(&self) -> Option<u32> {
        let at = match self.ty {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

enum Next {
    Frame(Frame),
    Closed,
    TimedOut,
}

struct H2Reader {
    rd: tokio::net::tcp::OwnedReadHalf,
    buf: Vec<u8>,
}

impl H2Reader {
    async fn next(&mut self, deadline: tokio::time::Instant) -> Next {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        ty: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes([
                            self.buf[5],
                            self.buf[6],
                            self.buf[7],
                            self.buf[8],
                        ]) & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Next::Frame(f);
                }
            }
            let mut tmp = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.rd.read(&mut tmp)).await {
                Err(_) => return Next::TimedOut,
                Ok(Ok(0)) | Ok(Err(_)) => return Next::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    /// Read until GOAWAY or the end of the connection; says which, if either, came.
    async fn until_goaway(&mut self, limit: Duration) -> (Option<u32>, bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.next(deadline).await {
                Next::Frame(f) if f.ty == GOAWAY => return (f.error_code(), false),
                Next::Frame(_) => {}
                Next::Closed => return (None, true),
                Next::TimedOut => return (None, false),
            }
        }
    }
}

/// Preface and SETTINGS both ways; returns the server's settings.
async fn h2_connect(
    addr: SocketAddr,
) -> (H2Reader, tokio::net::tcp::OwnedWriteHalf, Vec<(u16, u32)>) {
    let (rd, mut wr) = connect(addr).await.into_split();
    wr.write_all(&[PREFACE, &frame(SETTINGS, 0, 0, &[])].concat())
        .await
        .unwrap();
    let mut r = H2Reader {
        rd,
        buf: Vec::new(),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match r.next(deadline).await {
            Next::Frame(f) if f.ty == SETTINGS && f.flags & ACK == 0 => {
                let settings = f
                    .payload
                    .chunks_exact(6)
                    .map(|c| {
                        (
                            u16::from_be_bytes([c[0], c[1]]),
                            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                        )
                    })
                    .collect();
                wr.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
                return (r, wr, settings);
            }
            Next::Frame(_) => {}
            Next::Closed => panic!("h2c: the server closed before its SETTINGS"),
            Next::TimedOut => panic!("h2c: no SETTINGS from the server"),
        }
    }
}

/// Another client is still served promptly.
async fn assert_still_serving(s: &Running) {
    let started = Instant::now();
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        get(&s.url("/services/v2/user/me"), &[]),
    )
    .await
    .expect("another client is answered");
    assert_eq!(got.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "another client waited {:?}",
        started.elapsed()
    );
}

/// SETTINGS_MAX_CONCURRENT_STREAMS = 100 is announced and enforced: with 100 slow requests
/// open on one connection the 101st stream is refused (RFC 9113 §5.1.2: REFUSED_STREAM), and
/// only 100 requests reach the upstream.
#[tokio::test]
async fn h2_concurrent_streams_are_capped_at_100() {
    let w = World::new().await;
    // The route lets them all through to DigiCert at once, so the cap seen is h2's.
    let toml =
        w.certcentral_toml_limited("[routes.rate_limit]\nwindows = []\nmax_in_flight = 1000\n");
    let s = Running::start(&toml).await;
    let (mut r, mut wr, settings) = h2_connect(s.addr()).await;
    assert!(
        settings.contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, 100)),
        "{settings:?}"
    );
    let block = request_block("/_test/slow?ms=10000");
    let mut out = Vec::new();
    for i in 0..101u32 {
        out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * i, &block));
    }
    wr.write_all(&out).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut resets = Vec::new();
    loop {
        match r.next(deadline).await {
            Next::Frame(f) if f.ty == RST_STREAM => resets.push((f.stream, f.error_code())),
            Next::Frame(f) if f.ty == GOAWAY => panic!("GOAWAY {:?}", f.error_code()),
            Next::Frame(_) => {}
            Next::Closed => panic!("the connection closed"),
            Next::TimedOut => break,
        }
    }
    assert_eq!(resets, vec![(201, Some(REFUSED_STREAM))]);
    assert!(
        eventually(Duration::from_secs(6), || async {
            w.mock.seen().len() >= 100
        })
        .await,
        "{} requests upstream",
        w.mock.seen().len()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.mock.seen().len(), 100);
}

/// Rapid reset (CVE-2023-44487): 2000 streams opened and cancelled at once. The server must
/// cut the connection off (GOAWAY, or close) rather than churn through them, keep serving
/// other clients, and not turn the burst into requests to DigiCert (each would carry the key
/// and spend the route's rate limit).
#[tokio::test]
async fn h2_rapid_reset_is_cut_off_and_others_are_still_served() {
    let w = World::new().await;
    let s = sidecar(&w, "").await;
    let (mut r, mut wr, _) = h2_connect(s.addr()).await;
    let n = 2000u32;
    let block = request_block("/services/v2/user/me");
    let mut out = Vec::new();
    for i in 0..n {
        let id = 1 + 2 * i;
        out.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &block));
        out.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&out).await;
        wr
    });
    let (goaway, closed) = r.until_goaway(Duration::from_secs(5)).await;
    assert_still_serving(&s).await;
    writer.abort();
    let forwarded = w.mock.seen().len().saturating_sub(1);
    eprintln!("rapid reset: GOAWAY {goaway:?}, closed {closed}, {forwarded} of {n} forwarded");
    assert!(
        goaway.is_some() || closed,
        "the connection was neither sent GOAWAY nor closed"
    );
    assert!(
        forwarded <= 100,
        "{forwarded} of {n} reset streams were forwarded upstream"
    );
}

/// CONTINUATION flood (2024, CVE-2024-27316 and kin): HEADERS without END_HEADERS, then
/// CONTINUATION frames that never end. The server must cut the connection off instead of
/// buffering without bound, and nothing reaches the upstream.
#[tokio::test]
async fn h2_continuation_flood_is_cut_off() {
    let w = World::new().await;
    let s = sidecar(&w, "").await;
    let (mut r, mut wr, _) = h2_connect(s.addr()).await;
    let mut out = frame(
        HEADERS,
        END_STREAM,
        1,
        &request_block("/services/v2/user/me"),
    );
    let filler = literal_field("x-flood", &"a".repeat(1000));
    for _ in 0..10_000 {
        out.extend(frame(CONTINUATION, 0, 1, &filler));
    }
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&out).await;
        wr
    });
    let (goaway, closed) = r.until_goaway(Duration::from_secs(5)).await;
    eprintln!("CONTINUATION flood: GOAWAY {goaway:?}, closed {closed}");
    assert!(
        goaway.is_some() || closed,
        "the flood was neither sent GOAWAY nor closed"
    );
    writer.abort();
    assert_still_serving(&s).await;
    assert_eq!(w.mock.seen().len(), 1, "only the other client's request");
}
