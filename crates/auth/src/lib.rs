//! Authentication for Cairn's HTTP APIs (remote write, and the query API): HTTP basic auth and
//! bearer tokens from a users file, with bcrypt hashes, optionally binding a principal to one
//! tenant.
//!
//! ```yaml
//! users:
//!   - username: edge-cluster-a
//!     password_hash: "$2b$10$..."   # bcrypt (`cairn tools bcrypt` prints one)
//!     tenant: team-a                 # optional: this writer may only write to team-a
//! tokens:
//!   - name: ci-pipeline
//!     token_hash: "$2b$10$..."       # bcrypt of the bearer token
//! ```
//! A request without valid credentials gets 401 and never reaches storage or a query. A
//! principal bound to a tenant writes to (or reads) that tenant when the request names none,
//! and gets 403 when it names another.
//!
//! bcrypt is slow on purpose; successful verifications are cached (by the exact Authorization
//! header value) so a busy writer pays for it once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

/// Why an auth file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("reading auth file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth file {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// Text not yet tied to a file.
    #[error("{0}")]
    Syntax(String),
}

/// Tenant names as the receiver accepts them: 1-128 of `[A-Za-z0-9_.-]`, not starting with a
/// dot (hidden names are the receiver's own directories).
pub fn valid_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    username: String,
    password_hash: String,
    #[serde(default)]
    tenant: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    token_hash: String,
    #[serde(default)]
    tenant: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    users: Vec<UserEntry>,
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

/// Who is writing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    /// The only tenant this writer may write to.
    pub tenant: Option<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send basic auth or a bearer token")]
    Missing,
    #[error("invalid credentials")]
    Invalid,
}

/// Bounds the verification cache; when full it is cleared (simple and enough for writers).
const CACHE_LIMIT: usize = 10_000;

pub struct Authenticator {
    users: HashMap<String, UserEntry>,
    tokens: Vec<TokenEntry>,
    cache: Mutex<HashMap<String, Principal>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users: Vec<&String> = self.users.keys().collect();
        users.sort();
        let tokens: Vec<&String> = self.tokens.iter().map(|t| &t.name).collect();
        f.debug_struct("Authenticator")
            .field("users", &users)
            .field("tokens", &tokens)
            .finish_non_exhaustive()
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

impl Authenticator {
    pub fn from_yaml(text: &str) -> Result<Authenticator, AuthFileError> {
        let invalid = AuthFileError::Syntax;
        let file: AuthFile = model::yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut users = HashMap::new();
        for u in file.users {
            if bcrypt::verify("", &u.password_hash).is_err() {
                return Err(invalid(format!(
                    "user {:?}: password_hash is not a bcrypt hash",
                    u.username
                )));
            }
            if let Some(t) = &u.tenant {
                if !valid_tenant_name(t) {
                    return Err(invalid(format!(
                        "user {:?}: invalid tenant name {t:?}",
                        u.username
                    )));
                }
            }
            let name = u.username.clone();
            if users.insert(name.clone(), u).is_some() {
                return Err(invalid(format!("duplicate username {name:?}")));
            }
        }
        for t in &file.tokens {
            if bcrypt::verify("", &t.token_hash).is_err() {
                return Err(invalid(format!(
                    "token {:?}: token_hash is not a bcrypt hash",
                    t.name
                )));
            }
            if let Some(tenant) = &t.tenant {
                if !valid_tenant_name(tenant) {
                    return Err(invalid(format!(
                        "token {:?}: invalid tenant name {tenant:?}",
                        t.name
                    )));
                }
            }
        }
        Ok(Authenticator {
            users,
            tokens: file.tokens,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn from_file(path: &Path) -> Result<Authenticator, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            AuthFileError::Syntax(reason) => AuthFileError::Invalid {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })
    }

    /// Checks an Authorization header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        if let Some(p) = self.cache.lock().unwrap().get(header) {
            return Ok(p.clone());
        }
        let principal = self.verify(header)?;
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(header.to_string(), principal.clone());
        Ok(principal)
    }

    fn verify(&self, header: &str) -> Result<Principal, AuthError> {
        let (scheme, rest) = header.trim().split_once(' ').ok_or(AuthError::Invalid)?;
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64_decode(rest).ok_or(AuthError::Invalid)?;
            let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Invalid)?;
            let (user, password) = decoded.split_once(':').ok_or(AuthError::Invalid)?;
            let entry = self.users.get(user).ok_or(AuthError::Invalid)?;
            if bcrypt::verify(password, &entry.password_hash).unwrap_or(false) {
                return Ok(Principal {
                    name: entry.username.clone(),
                    tenant: entry.tenant.clone(),
                });
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let token = rest.trim();
            for t in &self.tokens {
                if bcrypt::verify(token, &t.token_hash).unwrap_or(false) {
                    return Ok(Principal {
                        name: t.name.clone(),
                        tenant: t.tenant.clone(),
                    });
                }
            }
        }
        Err(AuthError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        // Standard base64 of "user:password" for the test's ASCII strings.
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let input = format!("{user}:{password}").into_bytes();
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        format!("Basic {out}")
    }

    #[test]
    fn basic_and_bearer() {
        let h = bcrypt::hash("s3cret", 4).unwrap();
        let t = bcrypt::hash("tok-123", 4).unwrap();
        let yaml = format!(
            "users:\n  - username: a\n    password_hash: \"{h}\"\n    tenant: team-a\n  - username: b\n    password_hash: \"{h}\"\ntokens:\n  - name: ci\n    token_hash: \"{t}\"\n"
        );
        let auth = Authenticator::from_yaml(&yaml).unwrap();
        assert_eq!(
            auth.authenticate(Some(&basic("a", "s3cret"))).unwrap(),
            Principal {
                name: "a".into(),
                tenant: Some("team-a".into())
            }
        );
        assert_eq!(
            auth.authenticate(Some(&basic("b", "s3cret")))
                .unwrap()
                .tenant,
            None
        );
        assert_eq!(
            auth.authenticate(Some(&basic("a", "wrong"))),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authenticate(Some(&basic("nobody", "s3cret"))),
            Err(AuthError::Invalid)
        );
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            auth.authenticate(Some("Bearer tok-123")).unwrap().name,
            "ci"
        );
        assert_eq!(
            auth.authenticate(Some("Bearer nope")),
            Err(AuthError::Invalid)
        );
        assert_eq!(auth.authenticate(Some("Digest x")), Err(AuthError::Invalid));
        // Cached the second time.
        assert!(auth.authenticate(Some(&basic("a", "s3cret"))).is_ok());
    }

    #[test]
    fn rejects_bad_files() {
        assert!(
            Authenticator::from_yaml("users:\n  - username: a\n    password_hash: plain\n")
                .is_err()
        );
        assert!(Authenticator::from_yaml(
            "users:\n  - username: a\n    password_hash: x\n    extra: 1\n"
        )
        .is_err());
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("!!").is_none());
    }
}
