//! The TPA certificate authority: configuration, CA key, storage, audit trail,
//! the issuance workflow and the HTTP server. `main.rs` only parses arguments
//! and calls [`commands::run`].

pub mod alerts;
pub mod audit;
pub mod audit_checkpoint;
pub mod audit_sinks;
pub mod availability;
pub mod cli;
pub mod cli_consent;
pub mod commands;
pub mod config;
pub mod device_login;
pub mod http;
pub mod identity;
pub mod listener;
pub mod metrics;
pub mod notify;
pub mod oidc_login;
pub mod policy_hook;
pub mod request_view;
pub mod sessions;
pub mod signer;
pub mod startup;
pub mod store;
pub mod workflow;
