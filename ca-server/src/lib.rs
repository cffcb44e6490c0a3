//! The TPA certificate authority: configuration, CA key, storage, audit trail,
//! the issuance workflow and the HTTP server. `main.rs` only parses arguments
//! and calls [`commands::run`].

pub mod alerts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod http;
pub mod integrations;
pub mod listener;
pub mod notify;
pub mod policy_hook;
pub mod refusal;
pub mod server;
pub mod signer;
pub mod store;
pub mod workflow;
