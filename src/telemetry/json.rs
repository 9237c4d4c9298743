//! How access lines look: JSON written straight into the line buffer.

use std::fmt::{self, Write as _};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::ACCESS;

// --- how access lines look ------------------------------------------------------------------
//
// tracing-subscriber's JSON formatter collects every field into a map of `serde_json::Value`s
// (an allocation per field) before writing it; the access line, written for every request,
// is instead written straight into the line buffer, with the same keys and the same
// timestamp format. Every other event goes to the stock formatter.

pub(super) struct JsonLines {
    other: Format<Json>,
}

impl JsonLines {
    pub(super) fn new() -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escaping_covers_quotes_backslashes_and_controls() {
        let mut out = String::new();
        write!(JsonEscaped(&mut out), "a\"b\\c\n\u{1}\u{7f}é").unwrap();
        assert_eq!(out, "a\\\"b\\\\c\\n\\u0001\\u007fé");
        let back: String = serde_json::from_str(&format!("\"{out}\"")).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}\u{7f}é");
    }
}
