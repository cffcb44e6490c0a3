//! The outbox bell: rung after a commit that queued something, it wakes
//! every delivery loop of this process at once instead of at its next poll.
//!
//! A generation counter in a `tokio::sync::watch` channel rather than a
//! `Notify`: each loop's [`BellListener`] remembers the last generation it
//! saw, so a ring that comes between a loop's read of its queue and its
//! pause is kept and ends the pause at once (`Notify::notify_waiters` only
//! wakes tasks already waiting, and `notify_one` wakes only one loop).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Wakes every delivery loop (cheap to clone; all clones ring the same bell).
#[derive(Debug, Clone)]
pub struct OutboxBell(Arc<watch::Sender<u64>>);

impl Default for OutboxBell {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl OutboxBell {
    /// Rings the bell: every listener's next (or current) pause ends.
    pub fn ring(&self) {
        self.0
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// A listener that hears the rings from now on.
    pub fn listener(&self) -> BellListener {
        BellListener(self.0.subscribe())
    }
}

/// One loop's ear on the bell.
#[derive(Debug)]
pub struct BellListener(watch::Receiver<u64>);

impl BellListener {
    /// A loop's pause between two steps: `wait`, cut short by a ring since
    /// the last pause (or during this one) or by a change of `shutdown`.
    pub async fn pause(&mut self, wait: Duration, shutdown: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // Err only when every bell is gone: then there is nothing to hear.
            _ = self.0.changed() => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{Instant, timeout};

    const LONG: Duration = Duration::from_secs(60);

    // issue 15: a ring between a loop's check of its queue and its pause
    // (lost with `Notify::notify_waiters`) ends the pause at once.
    #[tokio::test]
    async fn a_ring_before_the_pause_is_not_lost() {
        let bell = OutboxBell::default();
        let mut listener = bell.listener();
        let (_stop, mut shutdown) = watch::channel(false);
        bell.ring();
        timeout(Duration::from_secs(5), listener.pause(LONG, &mut shutdown))
            .await
            .expect("the ring before the pause ends it");
        // The ring is heard once: the next pause waits its time.
        let started = Instant::now();
        listener
            .pause(Duration::from_millis(200), &mut shutdown)
            .await;
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    // issue 15: one ring wakes every loop, waiting or not yet waiting
    // (`Notify::notify_one` would wake only one).
    #[tokio::test]
    async fn one_ring_wakes_every_listener() {
        let bell = OutboxBell::default();
        let (_stop, shutdown) = watch::channel(false);
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let (mut listener, mut shutdown) = (bell.listener(), shutdown.clone());
            waiting.push(tokio::spawn(async move {
                listener.pause(LONG, &mut shutdown).await
            }));
        }
        let mut late = bell.listener();
        tokio::time::sleep(Duration::from_millis(50)).await;
        bell.clone().ring();
        for task in waiting {
            timeout(Duration::from_secs(5), task)
                .await
                .expect("every waiting listener wakes")
                .unwrap();
        }
        timeout(
            Duration::from_secs(5),
            late.pause(LONG, &mut shutdown.clone()),
        )
        .await
        .expect("a listener that was not yet waiting hears it too");
    }

    #[tokio::test]
    async fn shutdown_ends_a_pause() {
        let bell = OutboxBell::default();
        let mut listener = bell.listener();
        let (stop, mut shutdown) = watch::channel(false);
        let pause = tokio::spawn(async move { listener.pause(LONG, &mut shutdown).await });
        stop.send(true).unwrap();
        timeout(Duration::from_secs(5), pause)
            .await
            .unwrap()
            .unwrap();
    }
}
