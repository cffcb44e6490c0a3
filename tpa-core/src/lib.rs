//! TPA's shared rules: identifiers, durations, the certificate template and
//! user-certificate verification.
//!
//! This crate does no I/O and never reads the clock: `now` is always a parameter
//! (clippy's `disallowed-methods` enforces the latter). The CA, the bastion and
//! the CLI depend on it so that the rules cannot drift between them.

pub mod api;
pub mod audit;
pub mod cert_options;
pub mod duration;
pub mod explain;
pub mod grant;
pub mod host;
pub mod host_bounds;
pub mod identifiers;
pub mod identity;
pub mod krl;
pub mod login_phrase;
pub mod oncall;
pub mod request;
pub mod role;
pub mod serial;
pub mod subject_key;
pub mod template;
pub mod text;
pub mod verify;

pub use cert_options::{CriticalOptions, Extension, Extensions, ForceCommand, SourceAddresses};
pub use duration::HumanDuration;
pub use grant::{Grant, GrantConflict};
pub use host::{BastionAddress, HostName, HostPattern};
pub use host_bounds::{DomainSuffix, PatternTooBroad};
pub use identifiers::{IdentifierError, Principal, RequestId, RoleName, Username};
pub use identity::{GroupName, Identity, People, User};
pub use login_phrase::login_phrase;
pub use oncall::{AutomatedApproval, OnCallNotApplicable, OnCallRule, VerifiedEmail};
pub use request::{
    AccessRequest, Approval, ApproveOutcome, Approvers, DecisionRefusal, IssueRefusal, Narrowing,
    RequestState, Revalidation, Voided, Window,
};
pub use role::{
    ApprovalPath, ApprovalStage, AutoApprove, BreakGlass, CheckedRequest, HostGroup, Policy,
    PolicyRefusal, RequestInput, Role, TicketPattern,
};
pub use serial::CertSerial;
pub use subject_key::{SubjectKey, SubjectKeyError};
pub use template::{ApprovedScope, CertOrigin, CertTemplate, TemplateError};
pub use text::{FreeText, TextError, TextField};
pub use verify::{CertRejection, Revocations, TrustedCas, VerifiedUserCert, verify_user_cert};

/// Re-exported so that every crate uses the one pinned `ssh-key`.
pub use ssh_key;
