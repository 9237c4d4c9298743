//! The callers' token digests: the SHA-256 digest of each caller's token (never the token),
//! published atomically; a reload reads every token source again and swaps the new digests
//! in only if all are good, so a bad file keeps the last good set.

use std::sync::Arc;

use arc_swap::ArcSwap;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::token::{Digest, Presented, digest_of};
use super::{AuthFailure, CallerId, MIN_TOKEN_LEN, Strikes};
use crate::config::{ANONYMOUS, Callers, SecretSource, TokenSource};
use crate::credential::{CredentialError, read_secret};

/// Why the caller tokens could not be loaded. Names the caller and the source, never a token.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("caller {caller}: token: {source}")]
    Token {
        caller: String,
        source: CredentialError,
    },
    #[error("callers {0} and {1} have the same token; each caller needs its own")]
    SameToken(String, String),
}

/// The digests in force, by caller index (`None`: the caller has no token).
type Digests = Vec<Option<Digest>>;

/// Holds the callers and the digests of their tokens, and reloads them.
pub struct CallerStore {
    callers: Callers,
    names: Vec<Arc<str>>,
    anonymous: Arc<str>,
    digests: ArcSwap<Digests>,
}

/// By hand: no digest is printed.
impl std::fmt::Debug for CallerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerStore")
            .field("callers", &self.names)
            .field("required", &self.callers.required)
            .finish_non_exhaustive()
    }
}

impl CallerStore {
    /// Read every caller's token for the first time; any problem is an error.
    pub fn load(callers: &Callers) -> Result<Self, CallerError> {
        Ok(Self {
            digests: ArcSwap::from_pointee(read_all(callers)?),
            names: callers
                .list
                .iter()
                .map(|c| Arc::from(c.name.as_str()))
                .collect(),
            anonymous: Arc::from(ANONYMOUS),
            callers: callers.clone(),
        })
    }

    /// Read every token source again; swap the new digests in only if all are good.
    /// Returns whether anything changed.
    pub fn reload(&self) -> Result<bool, CallerError> {
        let new = read_all(&self.callers)?;
        let changed = **self.digests.load() != new;
        if changed {
            self.digests.store(Arc::new(new));
        }
        Ok(changed)
    }

    /// [`Self::reload`], reported in a log line. A failure keeps the last good tokens.
    pub fn reload_and_report(&self, cause: &str) {
        match self.reload() {
            Ok(true) => tracing::info!(cause, "caller tokens reloaded; new requests use them"),
            Ok(false) => tracing::debug!(cause, "caller tokens unchanged"),
            Err(e) => {
                tracing::error!(cause, error = %e, "caller token reload failed; keeping the last good tokens");
            }
        }
    }

    pub fn configured(&self) -> bool {
        self.callers.configured()
    }

    pub fn required(&self) -> bool {
        self.callers.required
    }

    /// The caller names, in `[[callers]]` order.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    fn id(&self, index: usize) -> CallerId {
        CallerId {
            name: self.names[index].clone(),
            index: Some(index),
        }
    }

    /// The identity of an anonymous request.
    pub fn anonymous(&self) -> CallerId {
        CallerId {
            name: self.anonymous.clone(),
            index: None,
        }
    }

    /// The caller whose token has this digest. Every digest is compared, in constant time,
    /// whichever matches.
    fn by_digest(&self, presented: &Digest) -> Option<usize> {
        let digests = self.digests.load();
        let mut found = None;
        for (i, d) in digests.iter().enumerate() {
            if let Some(d) = d
                && bool::from(d.ct_eq(presented))
            {
                found = Some(i);
            }
        }
        found
    }

    /// The caller a Unix peer's uid (first) or gid names.
    fn by_peer(&self, uid: u32, gid: u32) -> Option<usize> {
        let list = &self.callers.list;
        list.iter()
            .position(|c| c.unix_uids.contains(&uid))
            .or_else(|| list.iter().position(|c| c.unix_gids.contains(&gid)))
    }

    /// Who is calling: a presented token names its caller (and a wrong one is refused even
    /// where callers are not required); without one, a Unix peer's uid or gid may; else the
    /// request is anonymous, refused where callers are required. `strikes` counts the
    /// connection's wrong tokens.
    pub fn identify(
        &self,
        presented: &Presented,
        unix_peer: Option<(u32, u32)>,
        strikes: Option<&Strikes>,
    ) -> Result<CallerId, AuthFailure> {
        if strikes.is_some_and(Strikes::exhausted) {
            return Err(AuthFailure::TooMany);
        }
        let found = match presented {
            Presented::Nothing => match unix_peer.and_then(|(u, g)| self.by_peer(u, g)) {
                Some(i) => Ok(self.id(i)),
                None if self.callers.required => Err(AuthFailure::Missing),
                None => Ok(self.anonymous()),
            },
            Presented::Malformed => Err(AuthFailure::Malformed),
            Presented::Token { digest, name } => match self.by_digest(digest) {
                None => Err(AuthFailure::Wrong),
                Some(i) if name.as_deref().is_some_and(|n| n != &*self.names[i]) => {
                    Err(AuthFailure::NameMismatch)
                }
                Some(i) => Ok(self.id(i)),
            },
        };
        match found {
            Err(f) if f.is_guess() && strikes.is_some_and(Strikes::strike) => {
                Err(AuthFailure::TooMany)
            }
            other => other,
        }
    }
}

fn read_all(callers: &Callers) -> Result<Digests, CallerError> {
    let mut out: Digests = Vec::with_capacity(callers.list.len());
    for c in &callers.list {
        let read = |source: SecretSource| {
            read_secret(&source)
                .map(|t| {
                    let t = t.expose_secret().as_bytes();
                    if t.len() < MIN_TOKEN_LEN {
                        tracing::warn!(caller = %c.name, "a caller token shorter than {MIN_TOKEN_LEN} characters can be guessed (ten tries a connection, but connections are many); use e.g. `openssl rand -hex 32`");
                    }
                    digest_of(t)
                })
                .map_err(|source| CallerError::Token {
                    caller: c.name.clone(),
                    source,
                })
        };
        let digest = match &c.token {
            None => None,
            Some(TokenSource::Sha256(d)) => Some(*d),
            Some(TokenSource::File(p)) => Some(read(SecretSource::File(p.clone()))?),
            Some(TokenSource::Env(v)) => Some(read(SecretSource::Env(v.clone()))?),
        };
        if let Some(d) = digest
            && let Some(j) = out.iter().position(|o| o.as_ref() == Some(&d))
        {
            return Err(CallerError::SameToken(
                callers.list[j].name.clone(),
                c.name.clone(),
            ));
        }
        out.push(digest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Caller;

    fn store(dir: &std::path::Path, required: bool) -> CallerStore {
        std::fs::write(dir.join("billing"), "tok-billing\n").unwrap();
        let callers = Callers {
            list: vec![
                Caller {
                    name: "billing".into(),
                    token: Some(TokenSource::File(dir.join("billing"))),
                    unix_uids: vec![],
                    unix_gids: vec![],
                },
                Caller {
                    name: "reports".into(),
                    token: Some(TokenSource::Sha256(digest_of(b"tok-reports"))),
                    unix_uids: vec![1001],
                    unix_gids: vec![50],
                },
            ],
            required,
        };
        CallerStore::load(&callers).unwrap()
    }

    fn bearer(t: &str) -> Presented {
        Presented::Token {
            digest: digest_of(t.as_bytes()),
            name: None,
        }
    }

    #[test]
    fn tokens_and_peers_name_callers() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), true);
        let name = |r: Result<CallerId, AuthFailure>| r.map(|c| c.name.to_string());
        assert_eq!(
            name(s.identify(&bearer("tok-billing"), None, None)),
            Ok("billing".into())
        );
        assert_eq!(
            name(s.identify(&bearer("tok-reports"), None, None)),
            Ok("reports".into())
        );
        assert_eq!(
            name(s.identify(&bearer("nope"), None, None)),
            Err(AuthFailure::Wrong)
        );
        assert_eq!(
            name(s.identify(&Presented::Nothing, None, None)),
            Err(AuthFailure::Missing)
        );
        let peer = |uid, gid| name(s.identify(&Presented::Nothing, Some((uid, gid)), None));
        assert_eq!(peer(1001, 0), Ok("reports".into()));
        assert_eq!(peer(7, 50), Ok("reports".into()));
        assert_eq!(peer(7, 7), Err(AuthFailure::Missing));
        let basic = |n: &str| Presented::Token {
            digest: digest_of(b"tok-billing"),
            name: Some(n.into()),
        };
        assert_eq!(
            name(s.identify(&basic("billing"), None, None)),
            Ok("billing".into())
        );
        assert_eq!(
            name(s.identify(&basic("reports"), None, None)),
            Err(AuthFailure::NameMismatch)
        );
    }

    #[test]
    fn without_requirement_no_token_is_anonymous_but_a_wrong_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), false);
        let anon = s.identify(&Presented::Nothing, None, None).unwrap();
        assert_eq!((&*anon.name, anon.index), ("anonymous", None));
        assert_eq!(
            s.identify(&bearer("nope"), None, None).unwrap_err(),
            AuthFailure::Wrong
        );
    }

    #[test]
    fn the_tenth_wrong_token_closes_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), true);
        let strikes = Strikes::default();
        for _ in 0..9 {
            assert_eq!(
                s.identify(&bearer("guess"), None, Some(&strikes))
                    .unwrap_err(),
                AuthFailure::Wrong
            );
        }
        // A missing token is no guess.
        assert_eq!(
            s.identify(&Presented::Nothing, None, Some(&strikes))
                .unwrap_err(),
            AuthFailure::Missing
        );
        assert_eq!(
            s.identify(&bearer("guess"), None, Some(&strikes))
                .unwrap_err(),
            AuthFailure::TooMany
        );
        // Even the right token is refused on that connection from now on.
        assert_eq!(
            s.identify(&bearer("tok-billing"), None, Some(&strikes))
                .unwrap_err(),
            AuthFailure::TooMany
        );
    }

    #[test]
    fn a_bad_reload_keeps_the_last_good_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), true);
        std::fs::write(dir.path().join("billing"), "").unwrap();
        let err = s.reload().unwrap_err().to_string();
        assert!(err.contains("billing") && err.contains("empty"), "{err}");
        assert!(s.identify(&bearer("tok-billing"), None, None).is_ok());
        std::fs::write(dir.path().join("billing"), "tok-reports").unwrap();
        let err = s.reload().unwrap_err().to_string();
        assert!(err.contains("same token"), "{err}");
        std::fs::write(dir.path().join("billing"), "tok-new").unwrap();
        assert!(s.reload().unwrap());
        assert!(s.identify(&bearer("tok-billing"), None, None).is_err());
        assert!(s.identify(&bearer("tok-new"), None, None).is_ok());
        assert!(!s.reload().unwrap(), "unchanged");
        assert!(!format!("{s:?}").contains("tok-"));
    }
}
