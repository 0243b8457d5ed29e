//! Integration tests over the real wire: a server on 127.0.0.1:0 with a temporary
//! data directory, and generated clients.

mod helpers;

mod admin;
mod auth;
mod backup;
mod business_hours;
mod client;
mod compact;
mod confidence;
mod corruption;
mod demo;
mod drilldown;
mod drivers;
mod hostile_input;
mod ingest;
mod limits;
mod live;
mod metrics;
mod model;
mod recovery;
mod reflection_and_health;
mod replay;
mod scorecard;
mod sla;
mod tls;
mod unions;
mod worked_example;
