//! Test plumbing shared by TPA's suites, so that tests speak the domain
//! (`app.login("bob")`, `app.submit(…)`, `f.approve(&bob(), &id)`) and no
//! test module imports another's helpers.
//!
//! Without features: process guards, free ports and bounded waits (what the
//! bastion bench needs). With `app`: the CA in-process ([`TestApp`] over a
//! [`DataDir`]), the workflow without HTTP ([`Fixture`]), an HTTP client on
//! reqwest, keys, the OpenID provider and a browser.

mod balancer;
mod process;

pub use balancer::Balancer;
pub use process::{Guard, free_port, run, run_with_timeout, wait_for_port};

#[cfg(feature = "app")]
mod app;
#[cfg(feature = "app")]
mod conn;
#[cfg(feature = "app")]
mod consent;
#[cfg(feature = "app")]
mod data_dir;
#[cfg(feature = "app")]
mod engine;
#[cfg(feature = "app")]
mod fixture;
#[cfg(feature = "app")]
mod http;
#[cfg(feature = "app")]
mod keys;
/// The PostgreSQL test server (initdb + postgres as `nobody`), shared with
/// ca-server's own tests.
#[cfg(feature = "app")]
#[path = "../../ca-server/tests/support/postgres_server.rs"]
pub mod postgres_server;
#[cfg(feature = "app")]
mod sql;
#[cfg(feature = "app")]
pub mod sso;
#[cfg(feature = "app")]
mod web;

#[cfg(feature = "app")]
pub use app::{
    HOTFIX, PW, TestApp, spawn_app, spawn_app_at, spawn_app_bound, spawn_app_in, spawn_app_over,
    spawn_app_with, spawn_team_app, spawn_team_app_with,
};
#[cfg(feature = "app")]
pub use conn::TestConn;
#[cfg(feature = "app")]
pub use consent::{ConsentPage, consent_at, decide, hidden, open_consent, post_decision};
#[cfg(feature = "app")]
pub use data_dir::{DataDir, chmod, write_private};
#[cfg(feature = "app")]
pub use engine::{move_to_postgres, move_to_postgres_on, postgres_requested};
#[cfg(feature = "app")]
pub use fixture::{APPROVERS, Fixture, alice, bob, carol, hotfix, now, user, valid_input};
#[cfg(feature = "app")]
pub use http::{Response, http_request, http_send, http_send_blocking, http_send_from};
#[cfg(feature = "app")]
pub use keys::{ed25519_public_key, hash_password, ssh_keygen};
#[cfg(feature = "app")]
pub use sql::{AuditRow, audit_rows, count};
#[cfg(feature = "app")]
pub use web::{WebSession, form_encode};
