//! Integration tests over the real wire: a server on 127.0.0.1:0 with a temporary
//! data directory, and generated clients.

mod helpers;

mod admin;
mod auth;
mod backup;
mod bulk;
mod business_hours;
mod client;
mod command_line;
mod compact;
mod confidence;
mod corruption;
mod demo;
mod drilldown;
mod drivers;
mod hostile_input;
mod ingest;
mod leaderboards;
mod limits;
mod live;
mod metrics;
mod model;
mod readme;
mod recovery;
mod reflection_and_health;
mod replay;
mod scorecard;
mod sla;
mod tls;
mod unions;
mod unknown_scopes;
mod worked_example;
