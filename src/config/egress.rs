//! `[egress]` and a route's `egress_proxy`, checked: which corporate proxy (if any) each
//! route goes through to reach its upstream. The environment (`HTTPS_PROXY`, `ALL_PROXY`,
//! `NO_PROXY`) is read here, once, with hyper-util's matcher, which reads them as curl does;
//! a proxy URL in the configuration wins over the environment. `HTTP_PROXY` is never read:
//! every upstream is https.

use std::path::PathBuf;

use http::Uri;
use http::uri::Authority;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};

use super::ConfigError;
use super::paths::file_path;
use super::raw::RawEgress;
use super::secrets::SecretSource;

/// `[egress]`, checked.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    pub proxy: ProxySetting,
    /// Added to `NO_PROXY`.
    pub no_proxy: Vec<String>,
    /// `user:password` for `Proxy-Authorization: Basic`.
    pub proxy_auth: Option<SecretSource>,
    /// Trust roots for an `https://` proxy itself.
    pub proxy_ca_file: Option<PathBuf>,
}

/// `proxy = ...`: where the proxy comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// `HTTPS_PROXY`/`ALL_PROXY` (and `NO_PROXY`) from the environment.
    #[default]
    Env,
    /// Always connect directly.
    None,
    /// This proxy (checked: http or https, no userinfo).
    Url(String),
}

/// How one route leaves for its upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressPath {
    /// A direct TCP connection; `why` says why no proxy is used.
    Direct { why: String },
    /// Through a CONNECT tunnel.
    Proxy(ProxyRoute),
}

/// A proxy a route goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRoute {
    /// `https://` proxy: TLS to the proxy itself, then the tunnel inside it.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Where the proxy was named: `HTTPS_PROXY`, `[egress] proxy`, `routes[0].egress_proxy`.
    pub source: String,
    pub auth: Option<ProxyAuth>,
    /// Extra trust roots for an `https://` proxy.
    pub ca_file: Option<PathBuf>,
}

/// Where `Proxy-Authorization` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyAuth {
    /// `proxy_auth_file` / `proxy_auth_env`: `user:password`.
    Secret(SecretSource),
    /// The userinfo of the proxy URL in this environment variable.
    UrlInEnv(String),
}

impl std::fmt::Display for EgressPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EgressPath::Direct { why } => write!(f, "direct ({why})"),
            EgressPath::Proxy(p) => write!(f, "via {p}"),
        }
    }
}

impl std::fmt::Display for ProxyRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let userinfo = match self.auth {
            Some(ProxyAuth::UrlInEnv(_)) => "***@",
            _ => "",
        };
        write!(
            f,
            "{scheme}://{userinfo}{}:{} ({})",
            self.host, self.port, self.source
        )?;
        if let Some(ProxyAuth::Secret(s)) = &self.auth {
            write!(f, ", credentials from {s}")?;
        }
        Ok(())
    }
}

/// Check `[egress]`.
pub(super) fn egress(raw: &RawEgress) -> Result<Egress, ConfigError> {
    let proxy = setting("egress.proxy", raw.proxy.as_deref().unwrap_or("env"))?;
    let proxy_auth = match (&raw.proxy_auth_file, &raw.proxy_auth_env) {
        (None, None) => None,
        (Some(f), None) => Some(SecretSource::File(file_path("egress.proxy_auth_file", f)?)),
        (None, Some(e)) if !e.is_empty() => Some(SecretSource::Env(e.clone())),
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "egress.proxy_auth_env",
                "name the environment variable that holds `user:password`",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "egress.proxy_auth_file",
                "set either proxy_auth_file or proxy_auth_env, not both",
            ));
        }
    };
    let proxy_ca_file = raw
        .proxy_ca_file
        .as_deref()
        .map(|f| file_path("egress.proxy_ca_file", f))
        .transpose()?;
    for (i, entry) in raw.no_proxy.iter().enumerate() {
        if entry.trim().is_empty() || entry.contains(',') {
            return Err(ConfigError::invalid(
                format!("egress.no_proxy[{i}]"),
                "one host suffix, IP address or CIDR range per entry, e.g. \".internal.example\"",
            ));
        }
    }
    Ok(Egress {
        proxy,
        no_proxy: raw.no_proxy.clone(),
        proxy_auth,
        proxy_ca_file,
    })
}

/// Check a `proxy`/`egress_proxy` value.
pub(super) fn setting(key: &str, text: &str) -> Result<ProxySetting, ConfigError> {
    match text {
        "env" => return Ok(ProxySetting::Env),
        "none" => return Ok(ProxySetting::None),
        _ => {}
    }
    let bad = |why: &str| {
        ConfigError::invalid(
            key,
            format!("{why}; use \"env\", \"none\" or a URL like \"http://proxy.corp:3128\""),
        )
    };
    let uri: Uri = text.parse().map_err(|_| bad("not a proxy URL"))?;
    let authority = uri.authority().ok_or_else(|| bad("the URL has no host"))?;
    if authority.as_str().contains('@') {
        // Never echo the URL: it holds a password.
        return Err(ConfigError::invalid(
            key,
            "a proxy URL in the configuration may not carry a user or password; put \
             `user:password` in a file named by [egress] proxy_auth_file (or proxy_auth_env)",
        ));
    }
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("only http:// and https:// proxies are supported")),
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(bad("a proxy URL has no path"));
    }
    Ok(ProxySetting::Url(text.to_owned()))
}

/// How a route to `upstream` (its `host[:port]`) leaves: `own` is its `egress_proxy` (if
/// set), `key` the name to report it under; `env` reads the environment (the process's, or
/// a test's).
pub(super) fn path(
    key: &str,
    own: Option<&ProxySetting>,
    egress: &Egress,
    upstream: &Authority,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EgressPath, ConfigError> {
    let (setting, source_key) = match own {
        Some(s) => (s, key.to_owned()),
        None => (&egress.proxy, "[egress] proxy".to_owned()),
    };
    let dst: Uri = format!("https://{upstream}/")
        .parse()
        .map_err(|_| ConfigError::invalid(key, "the upstream is not a URL"))?;
    // NO_PROXY applies to every proxy, as with curl's `--proxy`.
    let mut no: Vec<(String, String)> = Vec::new();
    if let Some((var, value)) = first_env(env, &["NO_PROXY", "no_proxy"]) {
        no.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(|e| (var.to_owned(), e.to_owned())),
        );
    }
    no.extend(
        egress
            .no_proxy
            .iter()
            .map(|e| ("[egress] no_proxy".to_owned(), e.trim().to_owned())),
    );
    let (url, source) = match setting {
        ProxySetting::None => {
            return Ok(EgressPath::Direct {
                why: format!("{source_key} = \"none\""),
            });
        }
        ProxySetting::Url(u) => (u.clone(), source_key),
        ProxySetting::Env => {
            match first_env(
                env,
                &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"],
            ) {
                Some((var, value)) => (value, var.to_owned()),
                None => {
                    return Ok(EgressPath::Direct {
                        why: "no HTTPS_PROXY or ALL_PROXY in the environment".into(),
                    });
                }
            }
        }
    };
    // Name the error after where the URL was written: the variable, or the config key.
    let bad = |why: &str| {
        let at = match (own, setting) {
            (None, ProxySetting::Env) => source.clone(),
            (None, _) => "egress.proxy".to_owned(),
            (Some(_), _) => key.to_owned(),
        };
        ConfigError::invalid(
            at,
            format!(
                "{why}; to leave the environment's proxy aside set [egress] proxy = \"none\" \
                 or a proxy URL"
            ),
        )
    };
    let all_no = no
        .iter()
        .map(|(_, e)| e.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let Some(intercept) = intercept(&url, &all_no, &dst) else {
        if intercept(&url, "", &dst).is_none() {
            return Err(bad("not a proxy URL like \"http://proxy.corp:3128\""));
        }
        // Say which entry let the upstream bypass the proxy.
        let (var, entry) = no
            .iter()
            .find(|(_, e)| intercept(&url, e, &dst).is_none())
            .cloned()
            .unwrap_or_default();
        return Ok(EgressPath::Direct {
            why: format!("{var}: {entry}"),
        });
    };
    let proxy = intercept.uri();
    let tls = match proxy.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad("only http:// and https:// proxies are supported")),
    };
    let host = proxy
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    // curl's defaults: 1080 for an http:// proxy, 443 for https://.
    let port = proxy.port_u16().unwrap_or(if tls { 443 } else { 1080 });
    let auth = match (&egress.proxy_auth, intercept.basic_auth()) {
        (Some(s), _) => Some(ProxyAuth::Secret(s.clone())),
        (None, Some(_)) => Some(ProxyAuth::UrlInEnv(source.clone())),
        (None, None) => None,
    };
    Ok(EgressPath::Proxy(ProxyRoute {
        tls,
        host,
        port,
        source,
        auth,
        ca_file: egress.proxy_ca_file.clone(),
    }))
}

/// hyper-util's reading of a proxy URL and a `NO_PROXY` list, for `dst`.
pub fn intercept(url: &str, no_proxy: &str, dst: &Uri) -> Option<Intercept> {
    Matcher::builder()
        .https(url)
        .no(no_proxy)
        .build()
        .intercept(dst)
}

fn first_env(
    env: &dyn Fn(&str) -> Option<String>,
    names: &[&'static str],
) -> Option<(&'static str, String)> {
    names
        .iter()
        .find_map(|n| env(n).filter(|v| !v.is_empty()).map(|v| (*n, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(host: &str) -> Authority {
        format!("{host}:443").parse().unwrap()
    }

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn resolve(egress: &Egress, host: &str, vars: &[(&str, &str)]) -> String {
        path(
            "routes[0].egress_proxy",
            None,
            egress,
            &upstream(host),
            &env_of(vars),
        )
        .unwrap()
        .to_string()
    }

    #[test]
    fn https_proxy_then_all_proxy_and_never_http_proxy() {
        let e = Egress::default();
        assert_eq!(
            resolve(&e, "www.digicert.com", &[("HTTPS_PROXY", "http://p:3128")]),
            "via http://p:3128 (HTTPS_PROXY)"
        );
        assert_eq!(
            resolve(&e, "www.digicert.com", &[("https_proxy", "p:8080")]),
            "via http://p:8080 (https_proxy)"
        );
        assert_eq!(
            resolve(&e, "www.digicert.com", &[("ALL_PROXY", "https://p")]),
            "via https://p:443 (ALL_PROXY)"
        );
        assert_eq!(
            resolve(&e, "www.digicert.com", &[("HTTP_PROXY", "http://p:3128")]),
            "direct (no HTTPS_PROXY or ALL_PROXY in the environment)"
        );
        assert_eq!(
            resolve(&e, "www.digicert.com", &[("HTTPS_PROXY", "http://p")]),
            "via http://p:1080 (HTTPS_PROXY)"
        );
    }

    #[test]
    fn no_proxy_is_read_as_curl_does() {
        let e = Egress::default();
        let via = |no: &str, host: &str| {
            resolve(
                &e,
                host,
                &[("HTTPS_PROXY", "http://p:3128"), ("NO_PROXY", no)],
            )
        };
        assert_eq!(
            via(".digicert.com", "one.digicert.com"),
            "direct (NO_PROXY: .digicert.com)"
        );
        assert_eq!(
            via("digicert.com", "www.digicert.com"),
            "direct (NO_PROXY: digicert.com)"
        );
        assert_eq!(
            via("x.example, *", "www.digicert.com"),
            "direct (NO_PROXY: *)"
        );
        assert_eq!(
            via("DIGICERT.COM", "www.digicert.com"),
            "direct (NO_PROXY: DIGICERT.COM)"
        );
        assert_eq!(
            via("10.0.0.0/8", "10.1.2.3"),
            "direct (NO_PROXY: 10.0.0.0/8)"
        );
        assert_eq!(
            via("127.0.0.1", "127.0.0.1"),
            "direct (NO_PROXY: 127.0.0.1)"
        );
        assert!(via("notdigicert.com", "www.digicert.com").starts_with("via "));
        assert!(via("10.0.0.0/8", "11.1.2.3").starts_with("via "));
        let with_list = Egress {
            no_proxy: vec![".internal.example".into()],
            ..Egress::default()
        };
        assert_eq!(
            resolve(
                &with_list,
                "digicert.internal.example",
                &[("HTTPS_PROXY", "http://p:3128")]
            ),
            "direct ([egress] no_proxy: .internal.example)"
        );
    }

    #[test]
    fn the_config_wins_over_the_environment_and_none_is_direct() {
        let e = Egress {
            proxy: setting("egress.proxy", "http://corp:3128").unwrap(),
            ..Egress::default()
        };
        let vars = [("HTTPS_PROXY", "http://other:1")];
        assert_eq!(
            resolve(&e, "www.digicert.com", &vars),
            "via http://corp:3128 ([egress] proxy)"
        );
        let own = setting("x", "none").unwrap();
        let p = path(
            "routes[1].egress_proxy",
            Some(&own),
            &e,
            &upstream("h"),
            &env_of(&vars),
        );
        assert_eq!(
            p.unwrap().to_string(),
            "direct (routes[1].egress_proxy = \"none\")"
        );
    }

    #[test]
    fn passwords_are_refused_inline_accepted_from_env_and_never_shown() {
        let err = setting("egress.proxy", "http://u:hunter2@p:3128")
            .unwrap_err()
            .to_string();
        assert!(err.contains("proxy_auth_file"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let e = Egress::default();
        let shown = resolve(
            &e,
            "www.digicert.com",
            &[("HTTPS_PROXY", "http://u:hunter2@p:3128")],
        );
        assert_eq!(shown, "via http://***@p:3128 (HTTPS_PROXY)");
        for bad in [
            "socks5://p:1080",
            "ftp://p",
            "http://p:3128/path",
            "nope nope",
        ] {
            assert!(setting("egress.proxy", bad).is_err(), "{bad}");
        }
    }
}
