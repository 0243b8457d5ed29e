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
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }
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
        let message = error.to_string();
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
