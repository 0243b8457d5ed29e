//! The only place generated types are included.

/// `supportmetrics.v1`: messages and services generated from `proto/`.
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("supportmetrics.v1");
}

/// The encoded descriptor set of `proto/`, served by the reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("supportmetrics_descriptor");
