//! The deadline of the request being served: set once when the request
//! arrives (a task-local the HTTP layer installs), read by every write it
//! makes, so that one request never waits longer than its deadline in total.

use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `f` with `deadline` as the deadline of every write it makes.
pub async fn scope<F: Future>(deadline: Instant, f: F) -> F::Output {
    DEADLINE.scope(deadline, f).await
}

/// The current request's deadline, or `now + default` outside a request
/// (background tasks, tests calling the workflow directly).
pub fn current(default: Duration) -> Instant {
    DEADLINE
        .try_with(|d| *d)
        .unwrap_or_else(|_| Instant::now() + default)
}
