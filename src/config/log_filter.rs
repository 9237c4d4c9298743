//! The `[log] level` filter: a level (`info`) and/or `target=level` pairs.

use tracing_subscriber::filter::{LevelFilter, ParseError, Targets};

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
pub fn max_level(filter: &Targets) -> LevelFilter {
    filter
        .iter()
        .map(|(_, level)| level)
        .chain(filter.default_level())
        .max()
        .unwrap_or(LevelFilter::OFF)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
