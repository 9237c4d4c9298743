//! `[[callers]]` and `server.require_caller`, checked: who may call, how each caller proves
//! it (where its token comes from, never the token), and the routes' references to callers.

use std::collections::HashSet;
use std::path::PathBuf;

use super::ConfigError;
use super::paths::file_path;
use super::raw::{RawCaller, RawRequireCaller};
use super::route::Route;
use super::server::ListenAddr;

/// The label of a request that named no caller. Reserved: no caller may be called so.
pub const ANONYMOUS: &str = "anonymous";

/// The configured callers, and whether every request must name one.
#[derive(Debug, Clone, Default)]
pub struct Callers {
    pub list: Vec<Caller>,
    /// `require_caller`, resolved: `auto` is true once any caller is configured.
    pub required: bool,
}

impl Callers {
    /// Whether there is anything to identify: no callers, no caller layer work at all.
    pub fn configured(&self) -> bool {
        !self.list.is_empty()
    }

    /// The files tokens are read from (watched for changes).
    pub fn token_files(&self) -> Vec<PathBuf> {
        self.list
            .iter()
            .filter_map(|c| match &c.token {
                Some(TokenSource::File(p)) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }
}

/// One `[[callers]]` entry, checked.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `[a-z0-9-]+`: it goes into metric labels and the access line.
    pub name: String,
    /// `None`: identified by its Unix uid/gid only.
    pub token: Option<TokenSource>,
    pub unix_uids: Vec<u32>,
    pub unix_gids: Vec<u32>,
}

/// Where a caller's token comes from. A digest is kept as given (it is no secret, but it is
/// not shown either: it would let anyone test guesses offline).
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env(String),
    Sha256([u8; 32]),
}

/// By hand: a digest is not printed.
impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::File(p) => write!(f, "file {}", p.display()),
            TokenSource::Env(v) => write!(f, "env {v}"),
            TokenSource::Sha256(_) => f.write_str("token_sha256 (digest in the configuration)"),
        }
    }
}

pub(super) fn callers(
    raw: &[RawCaller],
    require: RawRequireCaller,
) -> Result<Callers, ConfigError> {
    let mut list = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    let mut sources: Vec<TokenSource> = Vec::new();
    let mut uids = HashSet::new();
    let mut gids = HashSet::new();
    for (i, c) in raw.iter().enumerate() {
        let key = |k: &str| format!("callers[{i}].{k}");
        let name = c.name.trim().to_string();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ConfigError::invalid(
                key("name"),
                format!("`{name}`: a caller's name is 1 to 64 of [a-z0-9-], e.g. \"billing\""),
            ));
        }
        if name == ANONYMOUS {
            return Err(ConfigError::invalid(
                key("name"),
                "`anonymous` is the name of requests without a caller; choose another",
            ));
        }
        if !names.insert(name.clone()) {
            return Err(ConfigError::invalid(
                key("name"),
                format!("caller name `{name}` is used twice"),
            ));
        }
        let key = |k: &str| format!("callers[{i}] ({name}).{k}");
        if c.token.is_some() {
            return Err(ConfigError::invalid(
                key("token"),
                "tokens are not allowed in the configuration; use token_file, token_env or \
                 token_sha256 (the hex SHA-256 digest of the token)",
            ));
        }
        let token = match (&c.token_file, &c.token_env, &c.token_sha256) {
            (None, None, None) => None,
            (Some(f), None, None) if !f.is_empty() => {
                Some(TokenSource::File(file_path(&key("token_file"), f)?))
            }
            (None, Some(e), None) if !e.is_empty() => Some(TokenSource::Env(e.clone())),
            (None, None, Some(h)) => Some(TokenSource::Sha256(hex_digest(h).ok_or_else(|| {
                ConfigError::invalid(
                    key("token_sha256"),
                    "must be 64 hex digits, e.g. the output of `printf %s \"$TOKEN\" | sha256sum`",
                )
            })?)),
            _ => {
                return Err(ConfigError::invalid(
                    key("token_file"),
                    "set one of token_file, token_env or token_sha256",
                ));
            }
        };
        if token.is_none() && c.unix_uids.is_empty() && c.unix_gids.is_empty() {
            return Err(ConfigError::invalid(
                key("token_file"),
                "a caller needs a token (token_file, token_env or token_sha256) or unix_uids / \
                 unix_gids, else nothing can identify it",
            ));
        }
        if let Some(t) = &token {
            if sources.contains(t) {
                let what = match t {
                    TokenSource::File(_) => "token_file",
                    TokenSource::Env(_) => "token_env",
                    TokenSource::Sha256(_) => "token_sha256",
                };
                return Err(ConfigError::invalid(
                    key(what),
                    "another caller has the same token; each caller needs its own",
                ));
            }
            sources.push(t.clone());
        }
        for (ids, seen, what) in [
            (&c.unix_uids, &mut uids, "unix_uids"),
            (&c.unix_gids, &mut gids, "unix_gids"),
        ] {
            if let Some(id) = ids.iter().find(|id| !seen.insert(**id)) {
                return Err(ConfigError::invalid(
                    key(what),
                    format!("{id} names another caller too; a uid or gid names one caller"),
                ));
            }
        }
        list.push(Caller {
            name,
            token,
            unix_uids: c.unix_uids.clone(),
            unix_gids: c.unix_gids.clone(),
        });
    }
    let required = match require {
        RawRequireCaller::Auto => !list.is_empty(),
        RawRequireCaller::Yes if list.is_empty() => {
            return Err(ConfigError::invalid(
                "server.require_caller",
                "is true but no [[callers]] are configured: no request could be served",
            ));
        }
        RawRequireCaller::Yes => true,
        RawRequireCaller::No => false,
    };
    Ok(Callers { list, required })
}

fn hex_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The checks that need both callers and routes: every caller a route names exists,
/// `caller_share` has callers to share among, and uids are only given where a Unix
/// listener can see them.
pub(super) fn check_routes(
    callers: &Callers,
    routes: &[Route],
    main_listen: &ListenAddr,
) -> Result<(), ConfigError> {
    let known = |n: &str| callers.list.iter().any(|c| c.name == n);
    for (i, r) in routes.iter().enumerate() {
        let key = |k: &str| format!("routes[{i}] ({}).{k}", r.name);
        if let Some(names) = &r.policy.callers
            && let Some(n) = names.iter().find(|n| !known(n))
        {
            return Err(ConfigError::invalid(
                key("policy.callers"),
                format!("`{n}` is not a configured caller; define it in [[callers]]"),
            ));
        }
        for (n, _) in &r.policy.caller_allow {
            if !known(n) {
                return Err(ConfigError::invalid(
                    key(&format!("policy.caller_allow.{n}")),
                    format!("`{n}` is not a configured caller; define it in [[callers]]"),
                ));
            }
            if r.policy.callers.as_ref().is_some_and(|c| !c.contains(n)) {
                return Err(ConfigError::invalid(
                    key(&format!("policy.caller_allow.{n}")),
                    format!("`{n}` is not in policy.callers, so it may not use this route at all"),
                ));
            }
        }
        if r.rate_limit.caller_share.is_some() && !callers.configured() {
            return Err(ConfigError::invalid(
                key("rate_limit.caller_share"),
                "shares the route's windows among callers, but no [[callers]] are configured",
            ));
        }
    }
    let unix = std::iter::once(main_listen)
        .chain(routes.iter().filter_map(|r| r.listen.as_ref()))
        .any(|l| matches!(l, ListenAddr::Unix(_) | ListenAddr::Systemd(_)));
    if !unix
        && let Some((i, c)) = callers
            .list
            .iter()
            .enumerate()
            .find(|(_, c)| !c.unix_uids.is_empty() || !c.unix_gids.is_empty())
    {
        let what = if c.unix_uids.is_empty() {
            "unix_gids"
        } else {
            "unix_uids"
        };
        return Err(ConfigError::invalid(
            format!("callers[{i}] ({}).{what}", c.name),
            "only a Unix socket listener knows its peer's uid and gid, and every listener \
             here is TCP; listen on \"unix:/path\" or give the caller a token",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::from_toml_str;
    use super::super::validated::tests::BASE;

    const BILLING: &str =
        "[[callers]]\nname = \"billing\"\ntoken_file = \"/run/secrets/billing\"\n";

    fn err(toml: &str) -> String {
        from_toml_str(toml).unwrap_err().to_string()
    }

    #[test]
    fn callers_are_required_once_configured_unless_told_otherwise() {
        let c = from_toml_str(BASE).unwrap();
        assert!(!c.callers.configured() && !c.callers.required);
        let c = from_toml_str(&format!("{BASE}{BILLING}")).unwrap();
        assert!(c.callers.required, "auto");
        assert_eq!(c.callers.token_files().len(), 1);
        let off = BASE.replace("admin = \"off\"", "admin = \"off\"\nrequire_caller = false");
        assert!(
            !from_toml_str(&format!("{off}{BILLING}"))
                .unwrap()
                .callers
                .required
        );
        let on = BASE.replace("admin = \"off\"", "admin = \"off\"\nrequire_caller = true");
        assert!(
            err(&on).starts_with("server.require_caller:"),
            "{}",
            err(&on)
        );
        let bad = BASE.replace(
            "admin = \"off\"",
            "admin = \"off\"\nrequire_caller = \"maybe\"",
        );
        assert!(err(&bad).contains("require_caller"), "{}", err(&bad));
    }

    #[test]
    fn bad_callers_are_errors_naming_the_key() {
        let cases = [
            (format!("{BASE}{BILLING}{BILLING}"), "callers[1].name"),
            (
                format!(
                    "{BASE}{BILLING}[[callers]]\nname = \"reports\"\ntoken_file = \"/run/secrets/billing\"\n"
                ),
                "callers[1] (reports).token_file",
            ),
            (
                format!(
                    "{BASE}[[callers]]\nname = \"a\"\ntoken_sha256 = \"{0}\"\n[[callers]]\nname = \"b\"\ntoken_sha256 = \"{0}\"\n",
                    "ab".repeat(32)
                ),
                "callers[1] (b).token_sha256",
            ),
            (
                format!("{BASE}[[callers]]\nname = \"a\"\ntoken_sha256 = \"xyz\"\n"),
                "callers[0] (a).token_sha256",
            ),
            (
                format!("{BASE}[[callers]]\nname = \"Billing\"\ntoken_env = \"T\"\n"),
                "callers[0].name",
            ),
            (
                format!("{BASE}[[callers]]\nname = \"anonymous\"\ntoken_env = \"T\"\n"),
                "callers[0].name",
            ),
            (
                format!("{BASE}[[callers]]\nname = \"a\"\n"),
                "callers[0] (a).token_file",
            ),
            (
                format!(
                    "{BASE}[[callers]]\nname = \"a\"\ntoken_env = \"T\"\ntoken_file = \"/x\"\n"
                ),
                "callers[0] (a).token_file",
            ),
            (
                format!("{BASE}[[callers]]\nname = \"a\"\ntoken_env = \"T\"\nunix_uids = [1001]\n"),
                "callers[0] (a).unix_uids",
            ),
            (
                format!("{BASE}[routes.policy]\ncallers = [\"nobody\"]\n{BILLING}"),
                "routes[0] (cc).policy.callers",
            ),
            (
                format!(
                    "{BASE}[routes.policy]\nallow = [\"GET /**\"]\n[routes.policy.caller_allow]\nnobody = [\"POST /x\"]\n{BILLING}"
                ),
                "routes[0] (cc).policy.caller_allow.nobody",
            ),
            (
                format!("{BASE}[routes.policy.caller_allow]\nbilling = [\"POST /x\"]\n{BILLING}"),
                "routes[0] (cc).policy.caller_allow.billing",
            ),
            (
                format!(
                    "{BASE}[routes.rate_limit]\nwindows = [{{ requests = 10, per = \"1s\" }}]\ncaller_share = 1.5\n{BILLING}"
                ),
                "routes[0] (cc).rate_limit.caller_share",
            ),
            (
                format!(
                    "{BASE}[routes.rate_limit]\nwindows = [{{ requests = 10, per = \"1s\" }}]\ncaller_share = 0.0\n{BILLING}"
                ),
                "routes[0] (cc).rate_limit.caller_share",
            ),
            (
                format!("{BASE}[routes.rate_limit]\ncaller_share = 0.5\n{BILLING}"),
                "routes[0] (cc).rate_limit.caller_share",
            ),
            (
                format!(
                    "{BASE}[routes.rate_limit]\nwindows = [{{ requests = 10, per = \"1s\" }}]\ncaller_share = 0.5\n"
                ),
                "routes[0] (cc).rate_limit.caller_share",
            ),
        ];
        for (toml, key) in cases {
            let e = err(&toml);
            assert!(e.starts_with(&format!("{key}:")), "want {key}, got: {e}");
        }
    }

    #[test]
    fn an_inline_token_is_refused_without_being_shown() {
        let e = err(&format!(
            "{BASE}[[callers]]\nname = \"a\"\ntoken = \"CANARYinline\"\n"
        ));
        assert!(e.contains("callers[0] (a).token"), "{e}");
        assert!(!e.contains("CANARY"), "{e}");
    }

    #[test]
    fn unix_callers_on_a_unix_listener_and_shares_with_callers_are_fine() {
        let unix = BASE.replace("127.0.0.1:0", "unix:/run/digicert-sidecar/sock");
        let c = from_toml_str(&format!(
            "{unix}[routes.policy]\nallow = [\"GET /**\"]\ncallers = [\"local\"]\n[routes.policy.caller_allow]\nlocal = [\"POST /x\"]\n[routes.rate_limit]\nwindows = [{{ requests = 10, per = \"1s\" }}]\ncaller_share = 0.5\n[[callers]]\nname = \"local\"\nunix_uids = [1001]\nunix_gids = [50]\n"
        ))
        .unwrap();
        assert_eq!(c.callers.list[0].unix_uids, [1001]);
        assert_eq!(c.routes[0].rate_limit.caller_share, Some(0.5));
        assert_eq!(c.routes[0].policy.caller_allow[0].0, "local");
        let shown = format!(
            "{:?}",
            from_toml_str(&format!(
                "{BASE}[[callers]]\nname = \"a\"\ntoken_sha256 = \"{}\"\n",
                "ab".repeat(32)
            ))
            .unwrap()
        );
        assert!(!shown.contains("abab"), "no digest in Debug: {shown}");
    }
}
