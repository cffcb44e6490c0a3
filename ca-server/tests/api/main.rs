//! Integration tests of `ca-server`, as one test binary: a real data directory
//! made by `init`, real SQLite files, real `ssh-keygen`, the real `tpa-ca`
//! binary, and the server on 127.0.0.1 port 0.

mod approval_snapshot;
mod audit_sinks;
mod audit_verify;
mod auditor;
mod auth;
mod bastion_api;
mod batch;
mod cli;
mod cli_consent;
mod device;
mod faults;
mod flood;
mod free_text;
mod helpers;
mod http;
mod issuance;
mod json_errors;
mod metrics;
mod oidc;
mod oidc_claims;
mod oidc_people;
mod policy_explain;
mod postgres_cli;
#[path = "../support/postgres_server.rs"]
mod postgres_server;
mod report;
mod requests;
mod requests_http;
mod revocation;
mod storage;
mod web;
mod webhooks;
