# Multi-stage build: compile with the Rust toolchain, run on distroless as non-root.
#   docker build -t support-metrics:0.1.0 .
FROM rust:1.88-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
RUN cargo build --release --locked --bin support-metrics

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/support-metrics /usr/local/bin/support-metrics
USER 65532:65532
EXPOSE 50051 9464
ENV SUPPORT_METRICS_LISTEN=0.0.0.0:50051 \
    SUPPORT_METRICS_METRICS_LISTEN=0.0.0.0:9464 \
    SUPPORT_METRICS_DATA_DIR=/data
ENTRYPOINT ["/usr/local/bin/support-metrics"]
