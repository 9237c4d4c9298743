//! Policy: which methods and paths a route lets callers use (`[routes.policy] allow`), and
//! which local users may call it over a Unix socket. Runs after the door checks, before the
//! credential is attached.

use http::Method;
use percent_encoding::percent_decode_str;

/// One `"METHOD /path/glob"` rule. `*` matches one path segment, `**` any number (even none).
/// A method of `*` matches every method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    method: Option<Method>,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Any,
}

impl AllowRule {
    /// Parse `"GET /services/v2/order/certificate/*"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split_whitespace();
        let (Some(method), Some(path), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "`{text}` is not a rule; write \"METHOD /path/glob\", e.g. \"GET /services/v2/user\""
            ));
        };
        let method = match method {
            "*" => None,
            m => Some(
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("`{m}` is not an HTTP method"))?,
            ),
        };
        if !path.starts_with('/') {
            return Err(format!("the path in `{text}` must start with '/'"));
        }
        let segments = split(path)
            .map(|s| match s {
                "*" => Ok(Segment::One),
                "**" => Ok(Segment::Any),
                s if s.contains('*') => Err(format!(
                    "`{s}` in `{text}`: '*' and '**' must be whole segments"
                )),
                s => Ok(Segment::Literal(decode(s))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { method, segments })
    }

    /// Whether this rule admits `method` on `path` (no query string; any query is ignored).
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        self.matches_segments(method, &segments(path))
    }

    fn matches_segments(&self, method: &Method, segs: &[String]) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && glob(&self.segments, segs)
    }
}

/// Whether any rule admits the request; `None` (no `allow` key) admits everything.
pub fn allows(rules: Option<&[AllowRule]>, method: &Method, path: &str) -> bool {
    match rules {
        None => true,
        Some(rules) => {
            let segs = segments(path);
            rules.iter().any(|r| r.matches_segments(method, &segs))
        }
    }
}

/// The decoded segments of a request path, query string dropped.
fn segments(path: &str) -> Vec<String> {
    let path = path.split('?').next().unwrap_or("");
    split(path).map(decode).collect()
}

/// Whether a Unix peer with these credentials may use the route. Lists that are not set
/// admit everyone; when both are set, either may admit.
pub fn peer_allowed(uids: Option<&[u32]>, gids: Option<&[u32]>, uid: u32, gid: u32) -> bool {
    match (uids, gids) {
        (None, None) => true,
        (u, g) => u.is_some_and(|u| u.contains(&uid)) || g.is_some_and(|g| g.contains(&gid)),
    }
}

/// Path segments, ignoring the leading slash and one trailing slash.
fn split(path: &str) -> impl Iterator<Item = &str> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    trimmed
        .split('/')
        .filter(|s| !trimmed.is_empty() || !s.is_empty())
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Whether `pattern` matches all of `path`, by dynamic programming over (pattern, path)
/// positions: O(pattern × path) whatever the number of `**` (plain backtracking is
/// exponential in it, as the fuzzer showed).
fn glob(pattern: &[Segment], path: &[String]) -> bool {
    let n = path.len();
    // `next[j]`: the rest of the pattern after the current segment matches `path[j..]`.
    let mut next = vec![false; n + 1];
    next[n] = true;
    let mut cur = vec![false; n + 1];
    for seg in pattern.iter().rev() {
        for j in (0..=n).rev() {
            cur[j] = match seg {
                Segment::Any => next[j] || (j < n && cur[j + 1]),
                Segment::One => j < n && !path[j].is_empty() && next[j + 1],
                Segment::Literal(l) => j < n && *l == path[j] && next[j + 1],
            };
        }
        std::mem::swap(&mut next, &mut cur);
    }
    next[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rule: &str, method: &str, path: &str) -> bool {
        AllowRule::parse(rule)
            .unwrap()
            .matches(&Method::from_bytes(method.as_bytes()).unwrap(), path)
    }

    #[test]
    fn literal_paths_match_exactly() {
        assert!(m("GET /services/v2/user", "GET", "/services/v2/user"));
        assert!(!m("GET /services/v2/user", "GET", "/services/v2/user/1"));
        assert!(!m("GET /services/v2/user", "GET", "/services/v2"));
        assert!(!m("GET /services/v2/user", "POST", "/services/v2/user"));
    }

    #[test]
    fn a_trailing_slash_is_the_same_path() {
        assert!(m("GET /services/v2/user", "GET", "/services/v2/user/"));
        assert!(m("GET /services/v2/user/", "GET", "/services/v2/user"));
    }

    #[test]
    fn the_query_string_is_ignored() {
        assert!(m(
            "GET /services/v2/order/certificate",
            "GET",
            "/services/v2/order/certificate?limit=5"
        ));
    }

    #[test]
    fn star_is_one_non_empty_segment() {
        let r = "POST /services/v2/order/certificate/*";
        assert!(m(r, "POST", "/services/v2/order/certificate/ssl_basic"));
        assert!(!m(r, "POST", "/services/v2/order/certificate"));
        assert!(!m(r, "POST", "/services/v2/order/certificate/a/b"));
        assert!(!m(r, "POST", "/services/v2/order/certificate//"));
    }

    #[test]
    fn double_star_is_any_depth_including_none() {
        let r = "GET /services/v2/order/certificate/**";
        assert!(m(r, "GET", "/services/v2/order/certificate"));
        assert!(m(r, "GET", "/services/v2/order/certificate/1"));
        assert!(m(r, "GET", "/services/v2/order/certificate/1/2/3"));
        assert!(!m(r, "GET", "/services/v2/order"));
        assert!(m("GET /**/me", "GET", "/services/v2/user/me"));
        assert!(m("GET /**", "GET", "/"));
    }

    #[test]
    fn method_case_is_normalised_and_star_means_any() {
        assert!(m("get /a", "GET", "/a"));
        assert!(m("* /a", "DELETE", "/a"));
        assert!(!m("GET /a", "get", "/a"));
    }

    #[test]
    fn percent_encoding_is_decoded_on_both_sides() {
        assert!(m("GET /services/v2/user", "GET", "/services/v2/%75ser"));
        assert!(m("GET /a%20b", "GET", "/a b"));
        assert!(!m("GET /services/v2/user", "GET", "/services/v2/%2575ser"));
    }

    #[test]
    fn bad_rules_are_explained() {
        assert!(AllowRule::parse("GET").is_err());
        assert!(AllowRule::parse("GET services").is_err());
        assert!(AllowRule::parse("GET /a*").is_err());
        assert!(AllowRule::parse("GET /a extra").is_err());
    }

    #[test]
    fn many_double_stars_stay_fast() {
        let rule = format!("GET {}/x", "/**".repeat(200));
        let path = format!("{}/y", "/a".repeat(2000));
        let started = std::time::Instant::now();
        assert!(!m(&rule, "GET", &path));
        assert!(m(&rule, "GET", &format!("{}/x", "/a".repeat(2000))));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn no_rules_allow_everything() {
        assert!(allows(None, &Method::DELETE, "/x"));
        assert!(!allows(Some(&[]), &Method::GET, "/x"));
    }

    #[test]
    fn peers_by_uid_or_gid() {
        assert!(peer_allowed(None, None, 5, 5));
        assert!(peer_allowed(Some(&[1000]), None, 1000, 5));
        assert!(!peer_allowed(Some(&[1000]), None, 1001, 5));
        assert!(peer_allowed(Some(&[1000]), Some(&[50]), 1001, 50));
    }
}
