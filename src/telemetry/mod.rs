//! Logs: the tracing subscriber (JSON by default, to stderr) and the one access line each
//! request gets when its response body ends or is dropped ([`access`]). Access lines are
//! formatted by hand in JSON ([`line`]) and written in batches ([`sink`]); every other line
//! goes through tracing's own formatter, at once.

mod access;
mod line;
mod sink;

use std::io::IsTerminal;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;
use crate::config::log_filter::{max_level, parse_filter};

pub use access::{AccessLog, RequestId};

/// The target of access lines.
pub const ACCESS: &str = "access";

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
        .with_writer(sink::LogWriter)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(json_format())
            .finish()
            .with(filter)
            .try_init(),
        LogFormat::Text => builder.finish().with(filter).try_init(),
    };
    // A second init (tests, `demo` after `run` set one up) keeps the first subscriber.
    if result.is_ok() {
        if format == LogFormat::Json {
            line::enable();
        }
        sink::start_flusher();
    }
    FlushOnDrop
}

/// The JSON format of every line but the access line (which `line.rs` writes itself).
fn json_format() -> tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json> {
    tracing_subscriber::fmt::format()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
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
    sink::SINK.flush();
}
