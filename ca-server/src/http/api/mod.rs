//! The JSON API under `/api/v1` (and `/healthz`, `/metrics`, `/ca.pub`,
//! `/krl`): one file per resource; handlers are extractors plus one workflow call.

pub mod audit;
pub mod bastion;
pub mod ca_pub;
pub mod client_config;
pub mod health;
pub mod krl;
pub mod metrics;
pub mod policy;
pub mod reports;
pub mod requests;
pub mod reviews;
pub mod revocations;
pub mod session;
