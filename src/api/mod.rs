//! gRPC services: validate at the edge, call the store and domain, map the result.

pub mod admin;
pub mod convert;
pub mod ingest;
pub mod scorecard;
pub mod validate;

pub use admin::AdminApi;
pub use ingest::IngestApi;
pub use scorecard::ScorecardApi;
