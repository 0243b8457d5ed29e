//! support-metrics: records customer-support interactions and serves per-team
//! quality scorecards from precomputed aggregates.

pub mod domain;
pub mod error;
pub mod proto;
pub mod store;
