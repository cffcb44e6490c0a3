//! `tpa-bastion`: the verified jump host in front of production hosts.
//!
//! It admits only TPA user certificates (checked by [`tpa_core::verify_user_cert`]
//! for the SSH username of the attempt), forwards only `direct-tcpip` channels to
//! hosts that are both approved in the certificate and in its inventory, cuts
//! each connection when its certificate expires, its request's window ends or
//! the CA's revocation feed reports it revoked, and delivers a session record
//! per forward to the CA (through a local spool), and reports every refusal to
//! the CA's audit trail (coalesced and bounded).

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod admission;
pub mod auth;
pub mod ca_client;
pub mod config;
pub mod events;
pub mod feed;
pub mod forward;
pub mod host_key;
pub mod recorder;
pub mod refusals;
pub mod server;
pub mod socket;
pub mod trust;

pub use auth::{Grant, Rejection, Trust};
pub use config::BastionConfig;
pub use events::{ConnectionEnd, Event, EventSink, Fanout, ForwardEnd, NoSink};
pub use server::Bastion;
