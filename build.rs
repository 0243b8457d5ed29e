//! Compiles `proto/` without a system `protoc`: protox parses the files into a
//! descriptor set, tonic-prost-build generates the Rust code from it, and the
//! descriptor set is kept for the reflection service.

use std::path::PathBuf;

const PROTO_FILES: &[&str] = &[
    "proto/supportmetrics/v1/common.proto",
    "proto/supportmetrics/v1/ingest.proto",
    "proto/supportmetrics/v1/scorecard.proto",
    "proto/supportmetrics/v1/admin.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTO_FILES, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // compile_fds does not write the descriptor set itself; reflection needs it.
    std::fs::write(
        out_dir.join("supportmetrics_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
