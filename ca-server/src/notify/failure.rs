//! A failed delivery and its class, which decides what the delivery loop
//! does next ([`super::delivery`]): a retryable failure (no answer, 5xx,
//! 408, 429) is retried with backoff; a refusal (any other 4xx) would be
//! refused again, but order and completeness matter more than one stuck
//! item, so it is retried at the longest backoff and made visible (a warning
//! each time, [`refusing`]); an item that can never be built (a stored
//! payload that does not parse) is skipped, with an error log and an audit
//! event (`delivery.skipped`).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

/// The longest `Retry-After` honoured.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What kind of failure, for what the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Worth retrying with backoff: no answer, 5xx, 408, 429.
    Retryable,
    /// The receiver refuses this item or TPA's credentials (4xx other than
    /// 408/429): retried at the longest backoff, loudly, until an operator
    /// fixes the receiver or the configuration.
    Refused,
    /// The item can never be built (or, for a ticket comment, the system
    /// refuses that comment for good): skipped, audited.
    Unbuildable,
}

/// A failed delivery: why, how long the receiver asked us to wait, and its class.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: String,
    pub retry_after: Option<Duration>,
    pub class: FailureClass,
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Self {
            error,
            retry_after: None,
            class: FailureClass::Retryable,
        }
    }
}

impl Failure {
    /// A failure whose receiver asked to wait `seconds` (at most an hour,
    /// like every `Retry-After`).
    pub(crate) fn retry_after(error: String, seconds: Option<u64>) -> Self {
        Self {
            retry_after: seconds.map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER)),
            ..Self::from(error)
        }
    }

    /// The receiver refused the item (or our credentials) for good.
    pub(crate) fn refused(error: String) -> Self {
        Self {
            class: FailureClass::Refused,
            ..Self::from(error)
        }
    }

    /// The item can never be built (its stored payload is bad).
    pub(crate) fn unbuildable(error: String) -> Self {
        Self {
            class: FailureClass::Unbuildable,
            ..Self::from(error)
        }
    }

    /// A request that got no answer (the error without its URL, which can
    /// carry a token).
    pub(crate) fn unsent(e: &reqwest::Error) -> Self {
        format!("request failed: {}", super::without_url(e)).into()
    }
}

/// The class of an HTTP status that is not a success: 4xx other than 408
/// and 429 is a refusal; the rest may pass on a retry.
pub(crate) fn class_of(status: u16) -> FailureClass {
    if (400..500).contains(&status) && status != 408 && status != 429 {
        FailureClass::Refused
    } else {
        FailureClass::Retryable
    }
}

/// Success for a 2xx answer; otherwise the status, its class and the
/// answer's `Retry-After` (in seconds, at most an hour).
pub(crate) fn answered(response: &reqwest::Response) -> Result<(), Failure> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    Err(Failure {
        class: class_of(status.as_u16()),
        ..Failure::retry_after(format!("HTTP {status}"), retry_after)
    })
}

/// The sinks of this process whose last attempt was refused: `(kind, name)`.
static REFUSING: Mutex<BTreeSet<(&'static str, String)>> = Mutex::new(BTreeSet::new());

/// The sinks of this process stuck on a refused item (`(kind, name)`, e.g.
/// `("webhook", "chat")`): a health signal for `/metrics` (a sink whose
/// receiver refuses an item does not move until someone acts).
pub fn refusing() -> Vec<(&'static str, String)> {
    REFUSING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .cloned()
        .collect()
}

/// Records whether `name`'s last attempt was refused.
pub(crate) fn set_refusing(kind: &'static str, name: &str, refused: bool) {
    let mut set = REFUSING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if refused {
        set.insert((kind, name.to_owned()));
    } else {
        set.remove(&(kind, name.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 17: a receiver's 4xx (but 408 and 429) is a refusal that a
    // retry will not fix; 5xx, 408 and 429 are worth a retry.
    #[test]
    fn four_hundreds_but_timeouts_and_rate_limits_are_refusals() {
        for status in [400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(class_of(status), FailureClass::Refused, "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(class_of(status), FailureClass::Retryable, "{status}");
        }
    }
}
