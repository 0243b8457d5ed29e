//! Bearer tokens mapped to roles, checked before any handler runs.
//!
//! Tokens are kept only as SHA-256 digests and compared in constant time. The
//! helpdesk backend is a `writer` (IngestService), the BI service a `reader`
//! (ScorecardService except SetTargets, SetCalendar and SetSlaPolicy), operators `admin` (everything). Health
//! checks are always open, so probes need no token.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Status;

use crate::gate::Admission;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Writer,
    Reader,
    Admin,
}

impl Role {
    fn parse(name: &str) -> Option<Role> {
        match name {
            "writer" => Some(Role::Writer),
            "reader" => Some(Role::Reader),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The configured tokens, as digests.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Role)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Parses entries of `<role> <token>` or `<role> sha256:<64 hex digits>`,
    /// one per line or separated by `;`; `#` starts a comment. `source` names
    /// where they came from in errors.
    pub fn parse(text: &str, source: &str) -> Result<Tokens, String> {
        let mut entries = Vec::new();
        for (index, entry) in text.split(['\n', ';']).enumerate() {
            let entry = entry.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let bad = |why: &str| format!("{source}, entry {}: {why}", index + 1);
            let mut parts = entry.split_whitespace();
            let (Some(role), Some(secret), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("must be `<role> <token>` or `<role> sha256:<hex>`"));
            };
            let role =
                Role::parse(role).ok_or_else(|| bad("role must be writer, reader or admin"))?;
            let hash = match secret.strip_prefix("sha256:") {
                Some(hex) => parse_hex(hex).ok_or_else(|| bad("sha256: needs 64 hex digits"))?,
                None if secret.len() < 16 => {
                    return Err(bad("a token needs at least 16 characters"))
                }
                None => digest(secret),
            };
            entries.push((hash, role));
        }
        Ok(Tokens { entries })
    }

    /// Adds the entries of another set.
    pub fn extend(&mut self, other: Tokens) {
        self.entries.extend(other.entries);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The role of a presented token. Every entry is compared, in constant time.
    fn role_of(&self, token: &str) -> Option<Role> {
        let presented = digest(token);
        let mut found = None;
        for (hash, role) in &self.entries {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(*role);
            }
        }
        found
    }
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// Who may call a gRPC path: `None` means anyone, without a token.
fn allowed(path: &str) -> Option<&'static [Role]> {
    const ADMIN: &[Role] = &[Role::Admin];
    if path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.") {
        None
    } else if path.starts_with("/supportmetrics.v1.IngestService/") {
        Some(&[Role::Writer, Role::Admin])
    } else if path == "/supportmetrics.v1.ScorecardService/SetTargets"
        || path == "/supportmetrics.v1.ScorecardService/SetCalendar"
        || path == "/supportmetrics.v1.ScorecardService/SetSlaPolicy"
    {
        Some(ADMIN)
    } else if path.starts_with("/supportmetrics.v1.ScorecardService/") {
        Some(&[Role::Reader, Role::Admin])
    } else {
        Some(ADMIN)
    }
}

/// Checks one request's `authorization` header against the tokens.
fn check(tokens: &Tokens, path: &str, authorization: Option<&[u8]>) -> Result<(), Status> {
    let Some(roles) = allowed(path) else {
        return Ok(());
    };
    let token = authorization
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|value| {
            // The scheme is case-insensitive (RFC 9110 §11.1).
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
        .ok_or_else(|| {
            Status::unauthenticated("send `authorization: Bearer <token>` to call this service")
        })?;
    let role = tokens
        .role_of(token)
        .ok_or_else(|| Status::unauthenticated("the bearer token is not known"))?;
    if roles.contains(&role) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "the {role:?} role may not call {path}"
        )))
    }
}

/// Refuses requests whose token does not grant their method; admits every
/// request when no token is configured.
impl Admission for Tokens {
    type Ticket = ();

    fn admit<B>(&self, request: &http::Request<B>) -> Result<(), Status> {
        if self.is_empty() {
            return Ok(());
        }
        let path = request.uri().path();
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|value| value.as_bytes());
        check(self, path, authorization).inspect_err(|status| {
            tracing::warn!(path, code = ?status.code(), "refused: {}", status.message());
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITER: &str = "writer-token-0123456789";

    fn tokens() -> Tokens {
        let reader_hash: String = digest("reader-token-0123456789")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Tokens::parse(
            &format!(
                "# the helpdesk\nwriter {WRITER}\nreader sha256:{reader_hash}; admin admin-token-0123456789\n"
            ),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn tokens_and_hashes_map_to_roles() {
        let tokens = tokens();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens.role_of(WRITER), Some(Role::Writer));
        assert_eq!(
            tokens.role_of("reader-token-0123456789"),
            Some(Role::Reader)
        );
        assert_eq!(tokens.role_of("admin-token-0123456789"), Some(Role::Admin));
        assert_eq!(tokens.role_of("writer-token-012345678"), None);
    }

    #[test]
    fn bad_entries_are_named() {
        for (text, why) in [
            ("writer", "must be"),
            ("owner some-long-token-value", "role must be"),
            ("reader short", "at least 16"),
            ("reader sha256:abc", "64 hex"),
        ] {
            let error = Tokens::parse(text, "SUPPORT_METRICS_TOKENS").unwrap_err();
            assert!(
                error.starts_with("SUPPORT_METRICS_TOKENS, entry 1"),
                "{error}"
            );
            assert!(error.contains(why), "{error}");
        }
    }

    #[test]
    fn the_header_must_be_a_bearer_token_of_an_allowed_role() {
        let tokens = tokens();
        let ingest = "/supportmetrics.v1.IngestService/RecordBatch";
        let bearer = |t: &str| format!("Bearer {t}");
        assert!(check(&tokens, ingest, Some(bearer(WRITER).as_bytes())).is_ok());
        let code = |header: Option<&str>, path: &str| {
            check(&tokens, path, header.map(str::as_bytes))
                .err()
                .map(|s| s.code())
        };
        assert_eq!(code(None, ingest), Some(tonic::Code::Unauthenticated));
        assert_eq!(
            code(Some(WRITER), ingest),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(Some(&bearer("reader-token-0123456789")), ingest),
            Some(tonic::Code::PermissionDenied)
        );
        assert_eq!(code(None, "/grpc.health.v1.Health/Check"), None);
        assert!(check(&tokens, ingest, Some(format!("bearer {WRITER}").as_bytes())).is_ok());
        assert_eq!(
            code(Some(&format!("Basic {WRITER}")), ingest),
            Some(tonic::Code::Unauthenticated)
        );
        // Settings that change how history is judged are for operators only.
        let reader = bearer("reader-token-0123456789");
        for setter in ["SetTargets", "SetCalendar", "SetSlaPolicy"] {
            let path = format!("/supportmetrics.v1.ScorecardService/{setter}");
            assert_eq!(
                code(Some(&reader), &path),
                Some(tonic::Code::PermissionDenied),
                "{setter}"
            );
        }
        for getter in ["GetTargets", "GetCalendar", "GetSlaPolicy"] {
            let path = format!("/supportmetrics.v1.ScorecardService/{getter}");
            assert_eq!(code(Some(&reader), &path), None, "{getter}");
        }
    }
}
