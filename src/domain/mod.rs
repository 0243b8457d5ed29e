//! Pure domain: records, metric math, ticket derivation, time. No tonic, no sled, no IO.

pub mod aggregate;
pub mod calendar;
pub mod drilldown;
pub mod records;
pub mod scorecard;
pub mod sketch;
pub mod sla;
pub mod ticket;
pub mod time;
