//! Logs: the tracing subscriber (JSON by default, to stderr) and the one access line each
//! request gets when its response body ends or is dropped. An access line holds the request
//! id, route, method, path without query, status, durations and bytes: never a header value
//! other than the request id, never a body, never a query string.

use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write as _};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use http::uri::PathAndQuery;
use http::{Method, StatusCode};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, ParseError, Targets};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::body::OnEnd;
use crate::config::LogFormat;
use crate::metrics::Metrics;

/// The target of access lines.
pub const ACCESS: &str = "access";

/// Parse a log filter: a level (`info`) and/or `target=level` pairs
/// (`warn,digicert_sidecar=debug`). (tracing-subscriber's `Targets`: the same syntax as
/// `RUST_LOG` for these, without the regex engine `EnvFilter` brings along and runs at start
/// for span and field filters the sidecar does not offer.)
/// Span and field filters (`[span]`, `{field}`) are refused rather than silently ignored.
pub fn parse_filter(text: &str) -> Result<Targets, String> {
    let mut entries = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry.contains(['[', ']', '{', '}', '"']) {
            return Err(format!(
                "`{entry}`: span and field filters are not supported; use a level or target=level"
            ));
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err("no level given".into());
    }
    entries
        .join(",")
        .parse()
        .map_err(|e: ParseError| e.to_string())
}

/// The most verbose level `filter` lets through anywhere: events above it are skipped at
/// their call site (and `log` records below the `log` crate's own check).
fn max_level(filter: &Targets) -> LevelFilter {
    filter
        .iter()
        .map(|(_, level)| level)
        .chain(filter.default_level())
        .max()
        .unwrap_or(LevelFilter::OFF)
}

/// Install the global subscriber. `RUST_LOG`, when set, overrides `level`. Keep the
/// returned guard until the process ends: dropping it writes out buffered access lines.
pub fn init(format: LogFormat, level: &str) -> FlushOnDrop {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = from_env
        .and_then(|v| parse_filter(&v).ok())
        .or_else(|| parse_filter(level).ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let builder = tracing_subscriber::fmt()
        .with_max_level(max_level(&filter))
        .with_writer(LogWriter)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines::new())
            .finish()
            .with(filter)
            .try_init(),
        LogFormat::Text => builder.finish().with(filter).try_init(),
    };
    // A second init (tests, `demo` after `run` set one up) keeps the first subscriber.
    if result.is_ok() {
        start_flusher();
    }
    FlushOnDrop
}

/// Writes out the buffered access lines when dropped (at the end of `main`).
#[must_use = "buffered access lines are written when this is dropped"]
pub struct FlushOnDrop;

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        flush();
    }
}

/// Write out the buffered access lines now.
pub fn flush() {
    SINK.flush();
}

// --- where lines go -----------------------------------------------------------------------
//
// One write(2) per access line was ~4 % of the CPU per request (docs/performance.md), so
// access lines are gathered in memory and written to stderr in batches: when
// [`BATCH`] bytes have gathered, else [`FLUSH_AFTER`] after the first line of a batch (the
// trade nginx's `access_log … buffer= flush=` makes). Every other line (warnings, errors,
// reloads) writes the batch and itself at once, so lines keep their order and a problem is
// never held back. An idle sidecar wakes no thread.

/// Write the batch out once it holds this much.
const BATCH: usize = 32 * 1024;
/// Longest an access line waits in memory.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

struct Sink {
    buf: Mutex<Vec<u8>>,
    /// Signalled when the batch stops being empty.
    started: Condvar,
}

static SINK: Sink = Sink {
    buf: Mutex::new(Vec::new()),
    started: Condvar::new(),
};

impl Sink {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buf.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn buffer(&self, line: &[u8]) {
        let mut buf = self.lock();
        let was_empty = buf.is_empty();
        buf.extend_from_slice(line);
        if buf.len() >= BATCH {
            write_out(&mut buf);
        } else if was_empty {
            self.started.notify_one();
        }
    }

    fn write_now(&self, line: &[u8]) {
        let mut buf = self.lock();
        buf.extend_from_slice(line);
        write_out(&mut buf);
    }

    fn flush(&self) {
        write_out(&mut self.lock());
    }
}

/// Write and empty the batch (under the lock, so batches never interleave). A failed write
/// drops the batch, as a failed write to stderr always did: logging never stops serving.
fn write_out(buf: &mut Vec<u8>) {
    if buf.is_empty() {
        return;
    }
    let _ = std::io::stderr().lock().write_all(buf);
    buf.clear();
    if buf.capacity() > 4 * BATCH {
        buf.shrink_to(BATCH);
    }
}

fn start_flusher() {
    let spawned = std::thread::Builder::new()
        .name("log-flush".into())
        .stack_size(64 * 1024)
        .spawn(|| {
            loop {
                let mut buf = SINK.lock();
                while buf.is_empty() {
                    buf = SINK
                        .started
                        .wait(buf)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                drop(buf);
                std::thread::sleep(FLUSH_AFTER);
                SINK.flush();
            }
        });
    if spawned.is_err() {
        // Without the thread, batches still go out when full and at exit; say so.
        eprintln!(
            "digicert-sidecar: cannot start the log flusher; access lines are written in 32 KiB batches"
        );
    }
}

/// The subscriber's writer: access lines are batched, everything else is written at once.
struct LogWriter;

struct LineWriter {
    batched: bool,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.batched {
            SINK.buffer(bytes);
        } else {
            SINK.write_now(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { batched: false }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        LineWriter {
            batched: meta.target() == ACCESS,
        }
    }
}

// --- how access lines look ------------------------------------------------------------------
//
// tracing-subscriber's JSON formatter collects every field into a map of `serde_json::Value`s
// (an allocation per field) before writing it; the access line, written for every request,
// is instead written straight into the line buffer, with the same keys and the same
// timestamp format. Every other event goes to the stock formatter.

struct JsonLines {
    other: Format<Json>,
}

impl JsonLines {
    fn new() -> Self {
        Self {
            other: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if event.metadata().target() != ACCESS {
            return self.other.format_event(ctx, writer, event);
        }
        let now = time::OffsetDateTime::from(SystemTime::now());
        write!(
            writer,
            "{{\"timestamp\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z\",\"level\":\"{}\"",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.microsecond(),
            event.metadata().level(),
        )?;
        let mut fields = JsonFieldWriter {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writeln!(writer, ",\"target\":\"{ACCESS}\"}}")
    }
}

/// Writes each field as `,"name":value`.
struct JsonFieldWriter<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl JsonFieldWriter<'_, '_> {
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_ok() {
            self.result = write!(self.out, ",\"{}\":{}", field.name(), value);
        }
    }

    fn string(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.result = (|| {
                write!(self.out, ",\"{}\":\"", field.name())?;
                write!(JsonEscaped(self.out), "{value:?}")?;
                self.out.write_char('"')
            })();
        }
    }
}

impl Visit for JsonFieldWriter<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // `Debug` of a `str` adds quotes; go through `Display` instead.
        self.string(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.string(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, format_args!("{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, format_args!("{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // Durations in ms: microsecond precision, written with integer formatting (the
        // shortest-round-trip float formatting cost more than the rest of the line).
        if value.is_finite() && value.abs() < 1e12 {
            let micros = (value * 1000.0).round() as i64;
            let sign = if micros < 0 { "-" } else { "" };
            let micros = micros.unsigned_abs();
            self.field(
                field,
                format_args!("{sign}{}.{:03}", micros / 1000, micros % 1000),
            );
        } else if value.is_finite() {
            self.field(field, format_args!("{value}"));
        } else {
            self.field(field, format_args!("null"));
        }
    }
}

/// A `fmt::Write` that escapes what goes through it as the inside of a JSON string.
struct JsonEscaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for JsonEscaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f | 0x7f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

/// A request id: the client's (validated: at most [`RequestId::MAX`] bytes of
/// `[A-Za-z0-9._:-]`) or 32 random hex digits. Held inline: no allocation per request.
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    bytes: [u8; RequestId::MAX],
}

impl RequestId {
    pub const MAX: usize = 128;

    /// The client's id, if it is one we keep.
    pub fn from_client(id: &[u8]) -> Option<Self> {
        if id.is_empty()
            || id.len() > Self::MAX
            || !id
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return None;
        }
        let mut bytes = [0; Self::MAX];
        bytes[..id.len()].copy_from_slice(id);
        Some(Self {
            len: id.len() as u8,
            bytes,
        })
    }

    /// A new random id.
    pub fn random() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = rand::random::<u128>();
        let mut bytes = [0; Self::MAX];
        for (i, b) in bytes[..32].iter_mut().enumerate() {
            *b = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
        }
        Self { len: 32, bytes }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("-")
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What the access line says about one request; filled in as the request goes.
pub struct AccessLog {
    pub request_id: RequestId,
    pub route: Option<Arc<str>>,
    pub method: Method,
    /// The request target; only its path is logged, never the query.
    pub target: Option<PathAndQuery>,
    pub status: StatusCode,
    pub error: Option<&'static str>,
    pub start: Instant,
    pub upstream_ms: Option<f64>,
    pub metrics: Option<Arc<Metrics>>,
}

/// By hand: the request target holds the query string, which is never shown.
impl fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLog")
            .field("request_id", &self.request_id)
            .field("route", &self.route)
            .field("method", &self.method)
            .field("path", &self.target.as_ref().map(PathAndQuery::path))
            .field("status", &self.status)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    pub fn new(request_id: RequestId, method: Method, target: Option<PathAndQuery>) -> Self {
        Self {
            request_id,
            route: None,
            method,
            target,
            status: StatusCode::OK,
            error: None,
            start: Instant::now(),
            upstream_ms: None,
            metrics: None,
        }
    }
}

impl OnEnd for AccessLog {
    fn body_ended(self: Box<Self>, bytes: u64, complete: bool) {
        let seconds = self.start.elapsed().as_secs_f64();
        let duration_ms = seconds * 1000.0;
        if let Some(m) = &self.metrics {
            m.request(self.route.as_ref(), &self.method, self.status, seconds);
        }
        tracing::info!(
            target: ACCESS,
            request_id = self.request_id.as_str(),
            route = self.route.as_deref().unwrap_or("-"),
            method = self.method.as_str(),
            path = self.target.as_ref().map_or("/", PathAndQuery::path),
            status = self.status.as_u16(),
            error = self.error.unwrap_or("-"),
            duration_ms,
            upstream_ms = self.upstream_ms.unwrap_or(-1.0),
            bytes,
            complete,
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text_of(lines: &[serde_json::Value]) -> String {
        lines.iter().map(|l| l.to_string()).collect()
    }

    /// Lines as the JSON subscriber of `init` writes them.
    fn json_lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines::new())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn the_access_line_is_json_with_the_fields_of_the_spec() {
        let lines = json_lines(|| {
            let mut log = AccessLog::new(
                RequestId::from_client(b"req-1").unwrap(),
                Method::POST,
                Some(PathAndQuery::from_static("/services/v2/order?secret=1")),
            );
            log.route = Some(Arc::from("cc \"quoted\"\n"));
            log.status = StatusCode::CREATED;
            log.upstream_ms = Some(1.5004);
            Box::new(log).body_ended(209, true);
            tracing::warn!(route = "cc", "something else");
        });
        assert_eq!(lines.len(), 2);
        let a = &lines[0];
        assert_eq!(a["target"], "access");
        assert_eq!(a["level"], "INFO");
        assert_eq!(a["message"], "request");
        assert_eq!(a["request_id"], "req-1");
        assert_eq!(a["route"], "cc \"quoted\"\n");
        assert_eq!(a["method"], "POST");
        assert_eq!(a["path"], "/services/v2/order", "never the query");
        assert_eq!(a["status"], 201);
        assert_eq!(a["error"], "-");
        assert_eq!(a["upstream_ms"], 1.5);
        assert_eq!(a["bytes"], 209);
        assert_eq!(a["complete"], true);
        assert!(a["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(!text_of(&lines).contains("secret"), "never the query");
        let ts = a["timestamp"].as_str().unwrap();
        assert!(
            ts.len() == 27 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "RFC 3339 with microseconds: {ts}"
        );
        // Every other line keeps the stock format.
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["route"], "cc");
        assert_eq!(lines[1]["message"], "something else");
    }

    #[test]
    fn log_filters_are_levels_and_target_levels() {
        let f = parse_filter(" warn , digicert_sidecar=debug ,hyper=off").unwrap();
        assert!(f.would_enable("digicert_sidecar::proxy", &tracing::Level::DEBUG));
        assert!(!f.would_enable("digicert_sidecar", &tracing::Level::TRACE));
        assert!(f.would_enable("access", &tracing::Level::WARN));
        assert!(!f.would_enable("access", &tracing::Level::INFO));
        assert!(!f.would_enable("hyper::proto", &tracing::Level::ERROR));
        assert_eq!(max_level(&f), LevelFilter::DEBUG);
        assert_eq!(max_level(&parse_filter("info").unwrap()), LevelFilter::INFO);
        assert_eq!(
            max_level(&parse_filter("trace").unwrap()),
            LevelFilter::TRACE
        );
        for bad in ["", " , ", "x=loud", "x[span]=debug", "x[{f=1}]=debug"] {
            assert!(parse_filter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_of_an_access_log_shows_no_query() {
        let log = AccessLog::new(
            RequestId::random(),
            Method::GET,
            Some(PathAndQuery::from_static("/a?secret=1")),
        );
        let shown = format!("{log:?}");
        assert!(
            shown.contains("\"/a\"") && !shown.contains("secret"),
            "{shown}"
        );
    }

    #[test]
    fn json_escaping_covers_quotes_backslashes_and_controls() {
        let mut out = String::new();
        write!(JsonEscaped(&mut out), "a\"b\\c\n\u{1}\u{7f}é").unwrap();
        assert_eq!(out, "a\\\"b\\\\c\\n\\u0001\\u007fé");
        let back: String = serde_json::from_str(&format!("\"{out}\"")).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}\u{7f}é");
    }

    #[test]
    fn request_ids_are_kept_when_well_formed_else_made() {
        assert_eq!(
            RequestId::from_client(b"abc-1.2:3_4").unwrap().as_str(),
            "abc-1.2:3_4"
        );
        for bad in [&b""[..], b"a b", b"a\"b", &[b'a'; 129]] {
            assert!(RequestId::from_client(bad).is_none());
        }
        assert!(RequestId::from_client(&[b'a'; 128]).is_some());
        let (a, b) = (RequestId::random(), RequestId::random());
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.as_str(), b.as_str());
    }
}
