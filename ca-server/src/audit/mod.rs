//! The audit trail around the hash chain (`tpa_core::audit`): signed
//! checkpoints of the chain head and the sinks that stream every event out.

pub mod checkpoint;
pub mod sinks;
