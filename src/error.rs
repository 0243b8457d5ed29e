//! The one error type of the service and its one mapping to gRPC status codes.

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// A problem with one request field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request, e.g. `interaction.opened_at`.
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    /// A violation; a description past 1 KiB is cut (values in it should
    /// already be [`shown`], this is the backstop).
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldViolation {
            field: bounded(field.into(), MAX_DESCRIPTION_BYTES),
            description: bounded(description.into(), MAX_DESCRIPTION_BYTES),
        }
    }
}

/// How many characters of a caller's value an error message may echo.
pub const ECHO_CHARS: usize = 64;
/// The longest field description and message an answer carries; anything
/// longer is cut (a long value must not turn INVALID_ARGUMENT into a
/// RESOURCE_EXHAUSTED "metadata size exceeds hard limit" on the client).
const MAX_DESCRIPTION_BYTES: usize = 1_024;
const MAX_MESSAGE_BYTES: usize = 4_096;

/// A caller's value as error messages show it: quoted, and cut to its first
/// [`ECHO_CHARS`] characters with its length when longer, e.g.
/// `"aaaa…" (1048576 bytes)`.
pub fn shown(value: &str) -> String {
    match value.char_indices().nth(ECHO_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &value[..cut], value.len()),
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("… (cut)");
    }
    text
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is malformed; every bad field is named.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The same id and revision were stored with different content.
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    /// A stored value failed its checksum or could not be decoded.
    #[error("stored data is damaged: {0}")]
    DataLoss(String),
    /// The service is shutting down or the writer has stopped.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request is valid but the store is not in a state to take it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The store failed (an IO error, a broken invariant).
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Error {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// The canonical name of the gRPC code, as batch items report it.
    pub fn code_name(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::AlreadyExists(_) => "ALREADY_EXISTS",
            Error::NotFound(_) => "NOT_FOUND",
            Error::DataLoss(_) => "DATA_LOSS",
            Error::Unavailable(_) => "UNAVAILABLE",
            Error::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
            Error::FailedPrecondition(_) => "FAILED_PRECONDITION",
            Error::Internal(_) => "INTERNAL",
        }
    }

    /// The message answered to the caller, at most 4 KiB whatever went into it.
    pub fn message(&self) -> String {
        bounded(self.to_string(), MAX_MESSAGE_BYTES)
    }

    /// The gRPC code this error is answered with.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::NotFound(_) => Code::NotFound,
            Error::DataLoss(_) => Code::DataLoss,
            Error::Unavailable(_) => Code::Unavailable,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Internal(_) => Code::Internal,
        }
    }
}

impl From<sled::Error> for Error {
    fn from(error: sled::Error) -> Self {
        match error {
            sled::Error::Corruption { at, .. } => {
                Error::DataLoss(format!("sled reports corruption at {at:?}"))
            }
            other => Error::Internal(format!("store: {other}")),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Internal(format!("io: {error}"))
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        let message = error.message();
        match &error {
            Error::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for violation in violations {
                    details.add_bad_request_violation(&violation.field, &violation.description);
                }
                tonic::Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::AlreadyExists(_)
            | Error::NotFound(_)
            | Error::DataLoss(_)
            | Error::Unavailable(_)
            | Error::ResourceExhausted(_)
            | Error::FailedPrecondition(_)
            | Error::Internal(_) => tonic::Status::new(error.code(), message),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_value_is_shown_whole_and_quoted() {
        assert_eq!(shown("Europe/Berln"), "\"Europe/Berln\"");
    }

    #[test]
    fn a_long_value_is_shown_as_a_prefix_with_its_length() {
        let long = "é".repeat(100_000);
        let text = shown(&long);
        assert_eq!(
            text,
            format!("{:?}… (200000 bytes)", "é".repeat(ECHO_CHARS))
        );
    }

    #[test]
    fn every_answer_is_bounded_however_long_its_parts() {
        let long = "x".repeat(1 << 20);
        let error = Error::InvalidArgument(vec![FieldViolation::new("time_zone", long.clone())]);
        assert!(error.message().len() < MAX_MESSAGE_BYTES + 16);
        let Error::InvalidArgument(violations) = &error else {
            unreachable!()
        };
        assert!(violations[0].description.len() < MAX_DESCRIPTION_BYTES + 16);
        assert!(Error::NotFound(long).message().len() < MAX_MESSAGE_BYTES + 16);
    }
}
