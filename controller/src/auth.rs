//! The one authentication rule of every listener: a presented secret (an `X-Auth-Token`, a
//! `Bearer` token, a CSRF field) is accepted only if it equals one of the configured secrets,
//! compared in constant time (`subtle`) against every one of them, so neither where a guess
//! differs nor which secret it came close to shows in the answer's timing.

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

    /// Whether the request's `Authorization: Bearer` token is one of the secrets.
    pub(crate) fn accepts_bearer(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.accepts(t))
    }
}

/// What an operator's token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Everything.
    Admin,
    /// Queries and watching; no change of any kind.
    Reader,
}

/// Who presented a token: its name (for audit lines) and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Operator {
    /// The token's name in the token file, else where it is configured (`tokens line 3`,
    /// `auth_tokens[0]`): nothing derived from the token itself.
    pub(crate) name: String,
    /// What it may do.
    pub(crate) role: Role,
}

impl Operator {
    /// Whether it may change things.
    pub(crate) fn may_mutate(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The operators' tokens, each with its operator.
#[derive(Clone, Debug, Default)]
pub(crate) struct Operators(Vec<(Vec<u8>, Operator)>);

impl Operators {
    /// From token-file lines and the TOML lists. A line is `TOKEN` (an admin), `ROLE TOKEN`
    /// or `ROLE NAME TOKEN` (ROLE: `admin` or `reader`); empty lines and `#` comments are
    /// skipped.
    pub(crate) fn parse<'a>(
        lines: impl IntoIterator<Item = &'a str>,
        admins: &[String],
        readers: &[String],
    ) -> Result<Operators, String> {
        let mut entries = Vec::new();
        let mut add = |token: &str, role: Role, name: String| {
            if !token.is_empty() {
                entries.push((token.as_bytes().to_vec(), Operator { name, role }));
            }
        };
        for (n, line) in lines.into_iter().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let role = |word: &str| match word {
                "admin" => Ok(Role::Admin),
                "reader" => Ok(Role::Reader),
                other => Err(format!(
                    "line {}: unknown role {other:?} (admin or reader)",
                    n + 1
                )),
            };
            let unnamed = format!("tokens line {}", n + 1);
            match words.as_slice() {
                [token] => add(token, Role::Admin, unnamed),
                [r, token] => add(token, role(r)?, unnamed),
                [r, name, token] => add(token, role(r)?, (*name).to_owned()),
                _ => {
                    return Err(format!(
                        "line {}: expected TOKEN, ROLE TOKEN or ROLE NAME TOKEN",
                        n + 1
                    ));
                }
            }
        }
        for (i, token) in admins.iter().enumerate() {
            add(token, Role::Admin, format!("auth_tokens[{i}]"));
        }
        for (i, token) in readers.iter().enumerate() {
            add(token, Role::Reader, format!("reader_tokens[{i}]"));
        }
        Ok(Operators(entries))
    }

    /// Whether no token is configured (then nothing is accepted).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The operator whose token was presented. Every token is compared, in constant time,
    /// whatever the outcome of the others.
    pub(crate) fn identify(&self, presented: &str) -> Option<Operator> {
        let bytes = presented.as_bytes();
        let mut found = None;
        for (secret, operator) in &self.0 {
            if bool::from(secret.as_slice().ct_eq(bytes)) && !bytes.is_empty() {
                found = Some(operator.clone());
            }
        }
        found
    }

    /// The operator of the request's `Authorization: Bearer` token.
    pub(crate) fn identify_bearer(&self, headers: &HeaderMap) -> Option<Operator> {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| self.identify(t))
    }

    /// The operator of the request's `X-Auth-Token`.
    pub(crate) fn identify_auth_token(&self, headers: &HeaderMap) -> Option<Operator> {
        headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| self.identify(t))
    }
}

/// The refusal text for a reader's mutation.
pub(crate) fn reader_refusal(operator: &Operator) -> String {
    format!(
        "{} holds a reader's token: it may query and watch, not change anything",
        operator.name
    )
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
        assert!(same_secret("x", "x") && !same_secret("", "") && !same_secret("x", "y"));
    }

    #[test]
    fn token_lines_name_a_role_and_an_operator() {
        let ops = Operators::parse(
            [
                "# operators",
                "plain-admin",
                "reader watch-token",
                "admin alice alice-token",
                "reader bob bob-token",
                "",
            ],
            &["toml-admin".into()],
            &["toml-reader".into()],
        )
        .unwrap();
        let who = |t: &str| ops.identify(t).map(|o| (o.name, o.role));
        assert_eq!(who("alice-token"), Some(("alice".into(), Role::Admin)));
        assert_eq!(who("bob-token"), Some(("bob".into(), Role::Reader)));
        assert_eq!(who("watch-token").unwrap().1, Role::Reader);
        assert_eq!(who("plain-admin").unwrap().0, "tokens line 2");
        assert_eq!(who("toml-reader").unwrap().0, "reader_tokens[0]");
        assert_eq!(who("toml-reader").unwrap().1, Role::Reader);
        assert_eq!(who("toml-admin").unwrap().1, Role::Admin);
        for wrong in ["", "alice", "reader", "bob-token "] {
            assert_eq!(who(wrong), None, "{wrong:?}");
        }
        let err = Operators::parse(["root x"], &[], &[]).unwrap_err();
        assert!(err.contains("unknown role"), "{err}");
        let err = Operators::parse(["admin a b c"], &[], &[]).unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn headers_are_read_the_way_each_listener_expects() {
        let secrets = Secrets::new(["tok"]);
        let operators = Operators::parse(["tok"], &[], &[]).unwrap();
        let mut h = HeaderMap::new();
        assert!(operators.identify_auth_token(&h).is_none() && !secrets.accepts_bearer(&h));
        h.insert("x-auth-token", "tok".parse().unwrap());
        assert!(operators.identify_auth_token(&h).is_some() && !secrets.accepts_bearer(&h));
        h.insert(header::AUTHORIZATION, "Bearer tok".parse().unwrap());
        assert!(secrets.accepts_bearer(&h));
        h.insert(header::AUTHORIZATION, "Basic tok".parse().unwrap());
        assert!(!secrets.accepts_bearer(&h));
    }
}
