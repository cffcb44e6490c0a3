//! Integration tests of `ca-server`, as one test binary: a real data directory
//! made by `init`, real SQLite files, real `ssh-keygen`, the real `tpa-ca`
//! binary, and the server on 127.0.0.1 port 0.

mod alert_leases;
mod alert_windows;
mod alerts;
mod approval_snapshot;
mod audit_sinks;
mod audit_verify;
mod auditor;
mod auth;
mod bastion_api;
mod batch;
mod cli;
mod cli_consent;
mod delivery_leases;
mod device;
mod fake_http;
mod fake_provider;
mod faults;
mod flood;
mod free_text;
mod helpers;
mod http;
mod integrations_command;
mod issuance;
mod json_errors;
mod ldap_command;
mod ldap_fakes;
mod ldap_flow;
mod ldap_input;
mod metrics;
mod migrate_store;
mod oidc;
mod oidc_claims;
mod oidc_people;
mod on_call;
mod on_call_bad_input;
mod policy_explain;
mod policy_hook;
mod postgres_cli;
mod postgres_issuance_race;
mod postgres_serve;
#[path = "../support/postgres_server.rs"]
mod postgres_server;
mod report;
mod requests;
mod requests_http;
mod revocation;
mod slapd;
mod storage;
mod ticket_bad_input;
mod ticket_end;
mod tickets;
mod web;
mod webhooks;
