//! support-metrics: records customer-support interactions and serves per-team
//! quality scorecards from precomputed aggregates.

pub mod allocator;
pub mod api;
pub mod app;
pub mod auth;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod gate;
pub mod limit;
pub mod live;
pub mod metrics;
pub mod ndjson;
pub mod proto;
pub mod queries;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod workload;
