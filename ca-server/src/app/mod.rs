//! The running CA: its shared state ([`AppState`]), background tasks, the
//! `/healthz` checks and the `/metrics` exposition.

pub mod availability;
pub mod metrics;
mod state;
pub mod tasks;

pub use state::AppState;
