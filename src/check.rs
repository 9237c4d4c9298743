//! `digicert-sidecar check`: load the configuration and every credential, and say in plain
//! words what would be used, or one line per problem, like `nginx -t`. Never a secret.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use crate::config::{self, ClientCertSource, Config};
use crate::credential::{ApiKey, ClientCert};

/// The result of a check: the text to print, and whether everything is usable.
pub struct Report {
    pub text: String,
    pub problems: Vec<String>,
}

/// Check the configuration `path` (or the environment, as `run` would).
pub fn run(path: Option<&Path>) -> Report {
    match config::load(path) {
        Err(e) => Report {
            text: String::new(),
            problems: vec![format!("configuration: {e}")],
        },
        Ok((config, origin)) => check_config(&config, &origin.to_string()),
    }
}

/// Check an already-parsed configuration.
pub fn check_config(config: &Config, origin: &str) -> Report {
    let mut text = String::new();
    let mut problems = Vec::new();
    let now = SystemTime::now();
    let s = &config.server;
    let _ = writeln!(text, "configuration: {origin}");
    let _ = writeln!(
        text,
        "listen: {}   admin: {}",
        s.listen,
        s.admin
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into())
    );
    for r in &config.routes {
        let _ = writeln!(
            text,
            "route {}: {}{} -> {}",
            r.name,
            r.listen
                .as_ref()
                .map(|l| format!("{l} "))
                .unwrap_or_default(),
            r.path_prefix,
            r.upstream
        );
        let _ = writeln!(text, "  leaves: {}", r.egress);
        if let crate::config::EgressPath::Proxy(p) = &r.egress
            && let Err(e) = crate::credential::proxy::load(p)
        {
            problems.push(format!("route {}: egress proxy: {e}", r.name));
        }
        match crate::credential::trust::roots_with_sources(r.ca_file.as_deref(), &|name| {
            std::env::var_os(name)
        }) {
            Ok((_, sources)) => {
                let shown: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
                let _ = writeln!(text, "  trust roots: {}", shown.join("; "));
            }
            Err(e) => problems.push(format!("route {}: ca_file: {e}", r.name)),
        }
        if let Some(k) = &r.api_key {
            match ApiKey::load(k) {
                Ok(_) => {
                    let _ = writeln!(text, "  header {} from {}: ok", k.header, k.source);
                }
                Err(e) => problems.push(format!("route {}: api_key: {e}", r.name)),
            }
        }
        if let Some(c) = &r.client_cert {
            let from = match c {
                ClientCertSource::Pkcs12 { file, password } => {
                    format!("PKCS#12 {} (password from {password})", file.display())
                }
                ClientCertSource::Pem {
                    cert_file,
                    key_file,
                } => format!("PEM {} + {}", cert_file.display(), key_file.display()),
            };
            match ClientCert::load(c) {
                Ok(cert) => {
                    let days = cert
                        .not_after()
                        .duration_since(now)
                        .map(|d| d.as_secs() / 86_400)
                        .ok();
                    let _ = writeln!(text, "  client certificate from {from}");
                    let _ = writeln!(text, "    subject: {}", cert.subject());
                    let _ = writeln!(
                        text,
                        "    expires: {}{}",
                        cert.not_after_display(),
                        match days {
                            Some(d) => format!(" (in {d} days)"),
                            None => " (EXPIRED)".into(),
                        }
                    );
                    if cert.expired_at(now) {
                        problems.push(format!(
                            "route {}: client certificate {} expired on {}",
                            r.name,
                            cert.subject(),
                            cert.not_after_display()
                        ));
                    }
                }
                Err(e) => problems.push(format!("route {}: client_cert: {e}", r.name)),
            }
        }
        let rl = &r.rate_limit;
        if !rl.windows.is_empty() {
            let windows: Vec<String> = rl
                .windows
                .iter()
                .map(|w| format!("{} per {}", w.requests, humantime::format_duration(w.per)))
                .collect();
            let _ = writeln!(text, "  rate limit: {}", windows.join(", "));
            if config.rate_limit_store.is_some() {
                let budget = rl
                    .budget
                    .as_deref()
                    .unwrap_or("derived from the credential");
                let _ = writeln!(text, "  budget in the store: {budget}");
            }
        }
        if let Some(allow) = &r.policy.allow {
            let _ = writeln!(text, "  policy: {} allow rule(s)", allow.len());
        }
        if let Some(names) = &r.policy.callers {
            let _ = writeln!(text, "  callers: {}", names.join(", "));
        }
        for (name, rules) in &r.policy.caller_allow {
            let _ = writeln!(text, "  caller {name}: {} more allow rule(s)", rules.len());
        }
        if let Some(share) = rl.caller_share {
            let _ = writeln!(text, "  caller share: {share} of each window");
        }
    }
    if let Some(store) = &config.rate_limit_store {
        crate::rate_limit::store::report(store, &mut text, &mut problems);
    }
    callers(config, &mut text, &mut problems);
    Report { text, problems }
}

/// The callers: name, where the token comes from, uids and gids; each token is read (and
/// the set checked for duplicates) as `run` would, and never shown, nor its digest.
fn callers(config: &Config, text: &mut String, problems: &mut Vec<String>) {
    let c = &config.callers;
    if !c.configured() {
        return;
    }
    let _ = writeln!(
        text,
        "callers ({}):",
        if c.required {
            "required on every listener"
        } else {
            "optional: requests without a token are anonymous"
        }
    );
    for caller in &c.list {
        let mut line = format!("  caller {}:", caller.name);
        if let Some(t) = &caller.token {
            let _ = write!(line, " token from {t}");
        }
        if !caller.unix_uids.is_empty() {
            let _ = write!(line, " unix uids {:?}", caller.unix_uids);
        }
        if !caller.unix_gids.is_empty() {
            let _ = write!(line, " unix gids {:?}", caller.unix_gids);
        }
        let _ = writeln!(text, "{line}");
    }
    if let Err(e) = crate::caller::CallerStore::load(c) {
        problems.push(format!("callers: {e}"));
    }
}
