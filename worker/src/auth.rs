//! HTTP basic auth against an nginx-style htpasswd file: `user:{PLAIN}password` and
//! `user:{SHA}base64(sha1(password))` lines.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::path::Path;

/// The `WWW-Authenticate` value of every auth `401`.
pub const CHALLENGE: &str = "Basic realm=\"huststore\"";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Secret {
    Plain(Vec<u8>),
    /// The SHA-1 digest of the password.
    Sha1([u8; 20]),
}

/// The users of an htpasswd file.
#[derive(Debug, Default, Clone)]
pub struct Users {
    entries: Vec<(Vec<u8>, Secret)>,
}

impl Users {
    /// Reads an htpasswd file. Lines in other schemes are skipped with a warning (nginx would
    /// take crypt(3) hashes; we support the two schemes the spec names).
    pub fn load(path: &Path) -> Result<Users, String> {
        let text = std::fs::read(path).map_err(|e| {
            format!(
                "could not read auth_basic_user_file {}: {e}",
                path.display()
            )
        })?;
        Ok(Users::parse(&text, &path.display().to_string()))
    }

    fn parse(text: &[u8], origin: &str) -> Users {
        let mut users = Users::default();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                log::warn!("{origin}:{}: htpasswd line without ':' skipped", n + 1);
                continue;
            };
            let (user, secret) = (&line[..colon], &line[colon + 1..]);
            let secret = if let Some(p) = secret.strip_prefix(b"{PLAIN}") {
                Secret::Plain(p.to_vec())
            } else if let Some(s) = secret.strip_prefix(b"{SHA}") {
                match STANDARD
                    .decode(s)
                    .ok()
                    .and_then(|d| <[u8; 20]>::try_from(d).ok())
                {
                    Some(digest) => Secret::Sha1(digest),
                    None => {
                        log::warn!("{origin}:{}: bad {{SHA}} digest, line skipped", n + 1);
                        continue;
                    }
                }
            } else {
                log::warn!(
                    "{origin}:{}: unsupported password scheme (use {{PLAIN}} or {{SHA}}), line skipped",
                    n + 1
                );
                continue;
            };
            users.entries.push((user.to_vec(), secret));
        }
        users
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let value = trim_start(value);
        if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"basic ") {
            return false;
        }
        let Ok(decoded) = STANDARD.decode(trim_start(&value[6..]).trim_ascii_end()) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        self.entries.iter().any(|(u, secret)| {
            u == user
                && match secret {
                    Secret::Plain(p) => constant_time_eq(p, password),
                    Secret::Sha1(digest) => {
                        constant_time_eq(digest, Sha1::digest(password).as_slice())
                    }
                }
        })
    }
}

fn trim_start(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ').unwrap_or(v.len());
    &v[start..]
}

/// Compares without an early exit on the first differing byte, so response timing does not
/// reveal how much of a password matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_pass: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(user_pass)).into_bytes()
    }

    #[test]
    fn plain_and_sha_lines() {
        // {SHA} of "secret", as `htpasswd -s` writes it.
        let users = Users::parse(
            b"alice:{PLAIN}wonder\nbob:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n# comment\ncarol:$apr1$x$y\n",
            "test",
        );
        assert!(users.check(Some(&header("alice:wonder"))));
        assert!(users.check(Some(&header("bob:secret"))));
        assert!(!users.check(Some(&header("bob:wrong"))));
        assert!(!users.check(Some(&header("alice:wonde"))));
        assert!(!users.check(Some(&header("carol:anything"))));
        assert!(!users.check(None));
        assert!(!users.check(Some(b"Bearer abc")));
        assert!(!users.check(Some(b"Basic !!!")));
        assert!(users.check(Some(
            format!("basic {}", STANDARD.encode("alice:wonder")).as_bytes()
        )));
    }

    #[test]
    fn passwords_may_contain_colons() {
        let users = Users::parse(b"u:{PLAIN}a:b\n", "test");
        assert!(users.check(Some(&header("u:a:b"))));
    }
}
