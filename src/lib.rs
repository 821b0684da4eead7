//! phigate: a reverse proxy that enforces OAuth 2.0 access-token policy in front of FHIR servers
//! and other APIs serving protected health information. `ARCHITECTURE.md` maps these modules.

pub mod admin;
pub mod audit;
pub mod backoff;
pub mod binding;
pub mod body;
pub mod breaker;
pub mod cli;
pub mod config;
pub mod demo;
pub mod denial;
pub mod discovery;
pub mod duration;
pub mod fetch;
pub mod geoip;
pub mod hygiene;
pub mod jose;
pub mod mac;
pub mod monitor;
pub mod peer;
pub mod pipeline;
pub mod policy;
pub mod probe;
pub mod proxy;
pub mod record;
pub mod request_body;
pub mod revocation;
pub mod strict_json;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod watch;
pub mod yaml;
