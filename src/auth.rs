//! Bearer tokens mapped to roles, checked before any handler runs.
//!
//! Tokens are kept only as SHA-256 digests and compared in constant time. The
//! helpdesk backend is a `writer` (IngestService), the BI service a `reader`
//! (ScorecardService except SetTargets, SetCalendar and SetSlaPolicy), operators `admin` (everything). Health
//! checks are always open, so probes need no token.
//!
//! The tokens file is read again when its content changes (checked every
//! second: a Kubernetes Secret volume is updated by swapping a symlink, which
//! file-change notification on the path would miss) and on SIGHUP, without a
//! restart; a file that cannot be read, does not parse or holds no token is
//! logged and the tokens in force are kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

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

/// Where the tokens come from, so that they can be read again.
#[derive(Debug, Clone, Default)]
pub struct TokenSources {
    /// The tokens file (`--tokens-file`).
    pub file: Option<PathBuf>,
    /// Inline tokens (`--tokens`), added to the file's.
    pub inline: Option<String>,
}

impl TokenSources {
    /// Reads and parses every source; errors name the source and entry.
    pub fn load(&self) -> Result<Tokens, String> {
        let text = self.file.as_deref().map(read_file).transpose()?;
        self.parse(text.as_deref())
    }

    /// [`TokenSources::load`] at start: also listens for SIGHUP from now on
    /// (which would otherwise end the process while the store opens) and
    /// keeps the file's text as read, so that [`LiveTokens::watch`] reloads
    /// a file that changed in between.
    pub fn load_for_watching(&self) -> Result<(Tokens, WatchStart), String> {
        let text = self.file.as_deref().map(read_file).transpose()?;
        let tokens = self.parse(text.as_deref())?;
        let hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hangups) => Some(hangups),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; the tokens file is still watched");
                None
            }
        };
        Ok((
            tokens,
            WatchStart {
                loaded: text,
                hangups,
            },
        ))
    }

    /// The tokens of the file's `text`, as read, and the inline ones.
    fn parse(&self, text: Option<&str>) -> Result<Tokens, String> {
        let mut tokens = match (&self.file, text) {
            (Some(path), Some(text)) => {
                let source = file_source(path);
                let tokens = Tokens::parse(text, &source)?;
                // A file meant to hold tokens must not turn authentication off.
                if tokens.is_empty() {
                    return Err(format!(
                        "{source} holds no token: give it `<role> <token>` lines, or leave \
                         out --tokens-file to serve without authentication (loopback only)"
                    ));
                }
                tokens
            }
            _ => Tokens::default(),
        };
        if let Some(inline) = &self.inline {
            tokens.extend(Tokens::parse(inline, "SUPPORT_METRICS_TOKENS")?);
        }
        Ok(tokens)
    }
}

/// Where a watcher of the tokens file starts: the text the tokens in force
/// were read from, and SIGHUP, listened for since.
#[derive(Debug)]
pub struct WatchStart {
    loaded: Option<String>,
    hangups: Option<tokio::signal::unix::Signal>,
}

fn file_source(path: &Path) -> String {
    format!("the tokens file {}", path.display())
}

fn read_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("reading the tokens file {}: {e}", path.display()))
}

/// The tokens in force, replaced whole on a reload.
#[derive(Debug)]
pub struct LiveTokens {
    current: RwLock<Arc<Tokens>>,
}

/// How often the tokens file is checked for a change.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl LiveTokens {
    pub fn new(tokens: Tokens) -> LiveTokens {
        LiveTokens {
            current: RwLock::new(Arc::new(tokens)),
        }
    }

    /// The tokens in force now.
    pub fn current(&self) -> Arc<Tokens> {
        let current = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&current)
    }

    /// Reads the sources again and puts their tokens in force (see
    /// [`LiveTokens::put_in_force`]); the number of tokens in force.
    pub fn reload(&self, sources: &TokenSources) -> Result<usize, String> {
        self.put_in_force(sources.load()?)
    }

    /// Puts `tokens` in force, unless there are none (which would turn
    /// authentication off): then the tokens in force stay.
    fn put_in_force(&self, tokens: Tokens) -> Result<usize, String> {
        if tokens.is_empty() {
            return Err("the tokens file holds no token".into());
        }
        let count = tokens.len();
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(tokens);
        Ok(count)
    }

    /// Reloads whenever the tokens file's content differs from what was last
    /// read (checked every `interval`, from the text `start` was loaded
    /// from) or the process gets SIGHUP, logging each reload and each
    /// refusal. Runs until dropped; with no tokens file, SIGHUP is only logged.
    pub async fn watch(
        self: Arc<Self>,
        sources: TokenSources,
        start: WatchStart,
        interval: Duration,
    ) {
        let WatchStart {
            loaded: mut seen,
            mut hangups,
        } = start;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hangup = tokio::select! {
                _ = ticks.tick() => false,
                Some(()) = async {
                    match hangups.as_mut() {
                        Some(hangups) => hangups.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            let Some(path) = sources.file.as_deref() else {
                if hangup {
                    tracing::info!("SIGHUP: no tokens file to reload");
                }
                continue;
            };
            // Unreadable now (a Secret being swapped): looked at again next
            // time, unless SIGHUP asks now.
            let read = read_file(path);
            let changed = read.as_ref().is_ok_and(|text| seen.as_ref() != Some(text));
            if !hangup && !changed {
                continue;
            }
            let tokens = read.and_then(|text| {
                let tokens = sources.parse(Some(&text));
                seen = Some(text);
                tokens
            });
            let why = if hangup { "SIGHUP" } else { "the file changed" };
            match tokens.and_then(|tokens| self.put_in_force(tokens)) {
                Ok(count) => {
                    tracing::info!(tokens = count, path = %path.display(), why, "tokens reloaded")
                }
                Err(error) => tracing::error!(
                    %error,
                    why,
                    "tokens not reloaded; the tokens in force are kept"
                ),
            }
        }
    }
}

/// Refuses requests whose token does not grant their method; admits every
/// request when no token is configured.
impl Admission for LiveTokens {
    type Ticket = ();

    fn admit<B>(&self, request: &http::Request<B>) -> Result<(), Status> {
        self.current().admit(request)
    }
}

impl Tokens {
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

    /// A tokens file in `dir` holding `text`, and the sources naming it.
    fn tokens_file(dir: &Path, text: &str) -> (std::path::PathBuf, TokenSources) {
        let path = dir.join("tokens");
        std::fs::write(&path, text).unwrap();
        let sources = TokenSources {
            file: Some(path.clone()),
            inline: None,
        };
        (path, sources)
    }

    /// Waits up to 2 s for `token` to be in force (the caller asserts it).
    async fn until_in_force(live: &LiveTokens, token: &str) {
        for _ in 0..100 {
            if live.current().role_of(token).is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn sighup_reloads_the_tokens_file_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, sources) = tokens_file(dir.path(), &format!("admin {WRITER}\n"));
        let (tokens, start) = sources.load_for_watching().unwrap();
        let live = Arc::new(LiveTokens::new(tokens));
        // Listening here too, to know when the signal has been delivered.
        let mut hangups =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
        // Checks of the file so rare that only SIGHUP can explain a reload.
        let watcher =
            tokio::spawn(Arc::clone(&live).watch(sources, start, Duration::from_secs(3600)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&path, "reader reader-token-0123456789\n").unwrap();
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
        hangups.recv().await;
        until_in_force(&live, "reader-token-0123456789").await;
        let tokens = live.current();
        assert_eq!(
            tokens.role_of("reader-token-0123456789"),
            Some(Role::Reader)
        );
        assert_eq!(tokens.role_of(WRITER), None);
        watcher.abort();
    }

    /// The store may take long to open between loading the tokens and
    /// starting the watcher: a file changed meanwhile is still reloaded.
    #[tokio::test]
    async fn a_file_changed_before_the_watcher_starts_is_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let (path, sources) = tokens_file(dir.path(), &format!("admin {WRITER}\n"));
        let (tokens, start) = sources.load_for_watching().unwrap();
        // Deaf to SIGHUP, which another test raises in this process: only
        // the file's check can explain a reload here.
        let start = WatchStart {
            hangups: None,
            ..start
        };
        let live = Arc::new(LiveTokens::new(tokens));
        std::fs::write(&path, "reader reader-token-0123456789\n").unwrap();
        let watcher =
            tokio::spawn(Arc::clone(&live).watch(sources, start, Duration::from_millis(20)));
        until_in_force(&live, "reader-token-0123456789").await;
        assert_eq!(
            live.current().role_of("reader-token-0123456789"),
            Some(Role::Reader)
        );
        assert_eq!(live.current().role_of(WRITER), None);
        watcher.abort();
    }

    #[test]
    fn a_reload_that_would_turn_authentication_off_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, sources) = tokens_file(dir.path(), &format!("writer {WRITER}\n"));
        let live = LiveTokens::new(sources.load().unwrap());
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(live.reload(&sources).unwrap_err().contains("no token"));
        std::fs::write(&path, "writer short\n").unwrap();
        assert!(live.reload(&sources).unwrap_err().contains("entry 1"));
        std::fs::remove_file(&path).unwrap();
        assert!(live
            .reload(&sources)
            .unwrap_err()
            .contains("reading the tokens file"));
        assert_eq!(live.current().role_of(WRITER), Some(Role::Writer));
    }
}
