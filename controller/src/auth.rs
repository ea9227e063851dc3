//! The one authentication rule of every listener: a presented secret (an `X-Auth-Token`, a
//! `Bearer` token, a CSRF field) is accepted only if it equals one of the configured secrets,
//! compared in constant time (`subtle`) against every one of them, so neither where a guess
//! differs nor which secret it came close to shows in the answer's timing.

use std::collections::BTreeSet;

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

/// The secrets a listener accepts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Secrets(Vec<Vec<u8>>);

impl Secrets {
    /// Every non-empty secret of `secrets` (an empty one would accept an empty header).
    pub(crate) fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Secrets {
        Secrets(
            secrets
                .into_iter()
                .map(|s| s.as_ref().as_bytes().to_vec())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }

    /// Whether no secret is configured (then nothing is accepted).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is one of the secrets. Every secret is compared, whatever the
    /// outcome of the others.
    pub(crate) fn accepts(&self, presented: &str) -> bool {
        let presented = presented.as_bytes();
        let mut found = subtle::Choice::from(0);
        for secret in &self.0 {
            found |= secret.as_slice().ct_eq(presented);
        }
        !presented.is_empty() && bool::from(found)
    }

    /// Whether the request's `X-Auth-Token` header is one of the secrets.
    pub(crate) fn accepts_auth_token(&self, headers: &HeaderMap) -> bool {
        headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| self.accepts(t))
    }

    /// Whether the request's `Authorization: Bearer` token is one of the secrets.
    pub(crate) fn accepts_bearer(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.accepts(t))
    }
}

impl From<&BTreeSet<String>> for Secrets {
    fn from(set: &BTreeSet<String>) -> Self {
        Secrets::new(set)
    }
}

/// Whether two secrets are equal, in constant time; an empty one matches nothing.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    Secrets::new([a]).accepts(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_non_empty_secret_is_accepted() {
        let secrets = Secrets::new(["alpha", "", "beta"]);
        assert!(secrets.accepts("alpha") && secrets.accepts("beta"));
        for wrong in ["", "alph", "alphaa", "ALPHA", "gamma"] {
            assert!(!secrets.accepts(wrong), "{wrong:?}");
        }
        assert!(!Secrets::new([""]).accepts(""));
        assert!(Secrets::new([""]).is_empty());
        assert!(same_secret("x", "x") && !same_secret("", "") && !same_secret("x", "y"));
    }

    #[test]
    fn headers_are_read_the_way_each_listener_expects() {
        let secrets = Secrets::new(["tok"]);
        let mut h = HeaderMap::new();
        assert!(!secrets.accepts_auth_token(&h) && !secrets.accepts_bearer(&h));
        h.insert("x-auth-token", "tok".parse().unwrap());
        assert!(secrets.accepts_auth_token(&h) && !secrets.accepts_bearer(&h));
        h.insert(header::AUTHORIZATION, "Bearer tok".parse().unwrap());
        assert!(secrets.accepts_bearer(&h));
        h.insert(header::AUTHORIZATION, "Basic tok".parse().unwrap());
        assert!(!secrets.accepts_bearer(&h));
    }
}
