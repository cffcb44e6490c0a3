//! Connection slots: who may hold one, and who gives theirs up when a flood
//! of idle connections arrives.
//!
//! Connections still authenticating and authenticated ones have separate
//! budgets, so idle connections that never authenticate cannot take the
//! places of sessions (issue 13). Among unauthenticated connections, a new one
//! is never refused: when the budget (or its address's share) is full, the
//! least advanced, then oldest, unauthenticated connection gives up its slot.
//! "Least advanced" ranks a silent connection (or one that sent a partial
//! version line) below one whose version line arrived, and that below one
//! that finished its key exchange: a legitimate client sends its version line
//! as soon as it connects and finishes the key exchange within milliseconds,
//! while a slowloris connection costs nothing only as long as it does
//! neither. So a flood of them, however fast it reconnects, evicts itself
//! while a real client is authenticating.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// How far an unauthenticated connection has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// TCP accepted; no complete version line yet.
    Connected,
    /// The client's version line arrived; key exchange not finished.
    Identified,
    /// Key exchange done; the client is authenticating.
    KeyExchanged,
}

/// The budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Unauthenticated connections at once.
    pub unauthenticated: usize,
    /// Unauthenticated connections from one client address at once.
    pub unauthenticated_per_address: usize,
    /// Authenticated connections at once.
    pub authenticated: usize,
}

/// Why an authenticated connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the bastion already serves {0} authenticated connections (limits.max_connections)")]
pub struct Full(pub usize);

/// The slots of the whole bastion.
#[derive(Debug)]
pub struct Admission {
    budgets: Budgets,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Unauthenticated connections by admission number.
    pending: HashMap<u64, Pending>,
    /// (stage, admission number) of every pending connection: the first is
    /// the next to evict.
    order: BTreeSet<(Stage, u64)>,
    /// The same, per client address.
    by_address: HashMap<IpAddr, BTreeSet<(Stage, u64)>>,
    authenticated: usize,
}

/// What admission can ask a connection about its progress, at the moment it
/// must choose whom to evict (the connection's task may not have run yet).
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// Whether the client's version line has arrived.
    fn identified(&self) -> bool;
}

#[derive(Debug)]
struct Pending {
    address: IpAddr,
    stage: Stage,
    evicted: Arc<Notify>,
    progress: Arc<dyn Progress>,
}

/// How many connections one admission may find further along than their
/// stage says (and move up) before it evicts regardless: bounds the work.
const MAX_PROMOTIONS: usize = 64;

impl State {
    /// Removes a pending connection; true if it was there.
    fn remove(&mut self, id: u64) -> bool {
        let Some(p) = self.pending.remove(&id) else {
            return false;
        };
        self.order.remove(&(p.stage, id));
        if let Some(set) = self.by_address.get_mut(&p.address) {
            set.remove(&(p.stage, id));
            if set.is_empty() {
                self.by_address.remove(&p.address);
            }
        }
        true
    }

    fn evict(&mut self, id: u64) {
        if let Some(p) = self.pending.get(&id) {
            p.evicted.notify_one();
        }
        self.remove(id);
    }

    fn set_stage(&mut self, id: u64, stage: Stage) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let (address, old) = (p.address, p.stage);
        if old >= stage {
            return;
        }
        p.stage = stage;
        self.order.remove(&(old, id));
        self.order.insert((stage, id));
        if let Some(set) = self.by_address.get_mut(&address) {
            set.remove(&(old, id));
            set.insert((stage, id));
        }
    }

    /// The next connection to evict, among all (`address` None) or one
    /// address's: the first by (stage, age), after moving up connections
    /// whose version line has arrived meanwhile.
    fn victim(&mut self, address: Option<IpAddr>) -> Option<u64> {
        let mut promotions = 0;
        loop {
            let first = match address {
                None => self.order.first(),
                Some(a) => self.by_address.get(&a).and_then(BTreeSet::first),
            };
            let &(stage, id) = first?;
            let identified = stage == Stage::Connected
                && promotions < MAX_PROMOTIONS
                && self
                    .pending
                    .get(&id)
                    .is_some_and(|p| p.progress.identified());
            if !identified {
                return Some(id);
            }
            promotions += 1;
            self.set_stage(id, Stage::Identified);
        }
    }
}

impl Admission {
    /// Slots under `budgets` (each at least 1).
    pub fn new(budgets: Budgets) -> Arc<Self> {
        Arc::new(Self {
            budgets,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent between statements: a panic elsewhere
        // while holding the lock cannot leave it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new unauthenticated connection from `address`, evicting
    /// whichever connection must give up its slot for it.
    pub fn admit(self: &Arc<Self>, address: IpAddr, progress: Arc<dyn Progress>) -> Ticket {
        let mut s = self.state();
        let same_address = s.by_address.get(&address).map_or(0, BTreeSet::len);
        if same_address >= self.budgets.unauthenticated_per_address
            && let Some(id) = s.victim(Some(address))
        {
            s.evict(id);
        }
        if s.pending.len() >= self.budgets.unauthenticated
            && let Some(id) = s.victim(None)
        {
            s.evict(id);
        }
        let id = s.next;
        s.next += 1;
        let evicted = Arc::new(Notify::new());
        s.pending.insert(
            id,
            Pending {
                address,
                stage: Stage::Connected,
                evicted: evicted.clone(),
                progress,
            },
        );
        s.order.insert((Stage::Connected, id));
        s.by_address
            .entry(address)
            .or_default()
            .insert((Stage::Connected, id));
        Ticket {
            admission: self.clone(),
            id,
            evicted,
            authenticated: false,
        }
    }

    /// Unauthenticated and authenticated connections holding a slot now.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state();
        (s.pending.len(), s.authenticated)
    }
}

/// One connection's slot; given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    evicted: Arc<Notify>,
    authenticated: bool,
}

impl Ticket {
    /// Records that the connection got as far as `stage` (never backwards).
    pub fn advance(&self, stage: Stage) {
        self.admission.state().set_stage(self.id, stage);
    }

    /// Moves the connection to the authenticated budget, when it has room.
    /// A connection evicted meanwhile gets no slot either.
    pub fn authenticate(&mut self) -> Result<(), Full> {
        let mut s = self.admission.state();
        let limit = self.admission.budgets.authenticated;
        if s.authenticated >= limit || !s.pending.contains_key(&self.id) {
            return Err(Full(limit));
        }
        s.remove(self.id);
        s.authenticated += 1;
        self.authenticated = true;
        Ok(())
    }

    /// Completes when the connection has been evicted (never, once authenticated).
    pub async fn evicted(&self) {
        if self.authenticated {
            std::future::pending::<()>().await;
        }
        self.evicted.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.admission.state();
        if self.authenticated {
            s.authenticated = s.authenticated.saturating_sub(1);
        } else {
            s.remove(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn admission(
        unauthenticated: usize,
        per_address: usize,
        authenticated: usize,
    ) -> Arc<Admission> {
        Admission::new(Budgets {
            unauthenticated,
            unauthenticated_per_address: per_address,
            authenticated,
        })
    }

    /// A connection whose version line is `line`'s value.
    #[derive(Debug, Default)]
    struct Line(std::sync::atomic::AtomicBool);

    impl Progress for Line {
        fn identified(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    impl Admission {
        fn admit_silent(self: &Arc<Self>, address: IpAddr) -> Ticket {
            self.admit(address, Arc::new(Line::default()))
        }
    }

    #[tokio::test]
    async fn a_version_line_the_bastion_has_not_read_yet_counts() {
        // Issue 13: under load, a real client was evicted before the bastion
        // got to read the version line it had already sent.
        let a = admission(2, 10, 10);
        let line = Arc::new(Line::default());
        let client = a.admit(ip(1), line.clone());
        let idle = a.admit_silent(ip(2));
        line.0.store(true, std::sync::atomic::Ordering::Relaxed);
        let _newer = a.admit_silent(ip(3));
        assert!(!is_evicted(&client).await);
        assert!(is_evicted(&idle).await);
    }

    async fn is_evicted(t: &Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(20), t.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_full_budget_evicts_the_oldest_connection_that_has_not_exchanged_keys() {
        // Issue 13: idle connections filled every slot and refused real clients.
        let a = admission(3, 10, 10);
        let first = a.admit_silent(ip(1));
        let second = a.admit_silent(ip(2));
        let third = a.admit_silent(ip(3));
        first.advance(Stage::KeyExchanged);
        third.advance(Stage::Identified);
        let fourth = a.admit_silent(ip(4));
        assert!(
            !is_evicted(&first).await,
            "a connection past key exchange went first"
        );
        assert!(is_evicted(&second).await);
        assert!(
            !is_evicted(&third).await,
            "a connection whose version line arrived went first"
        );
        assert_eq!(a.counts(), (3, 0));
        // A stage never goes backwards.
        third.advance(Stage::Connected);
        // A flood that keeps reconnecting evicts itself, not `first` or `third`.
        let mut flood = vec![fourth];
        for _ in 0..100 {
            flood.push(a.admit_silent(ip(9)));
        }
        assert!(is_evicted(&flood[0]).await);
        assert!(!is_evicted(&first).await);
        assert!(!is_evicted(&third).await);
        assert_eq!(a.counts(), (3, 0));
    }

    #[tokio::test]
    async fn one_address_is_held_to_its_share() {
        let a = admission(100, 2, 10);
        let other = a.admit_silent(ip(2));
        let x1 = a.admit_silent(ip(1));
        let x2 = a.admit_silent(ip(1));
        let x3 = a.admit_silent(ip(1));
        assert!(is_evicted(&x1).await);
        assert!(!is_evicted(&x2).await);
        assert!(!is_evicted(&x3).await);
        assert!(!is_evicted(&other).await);
        assert_eq!(a.counts(), (3, 0));
    }

    #[tokio::test]
    async fn authenticated_connections_have_their_own_budget() {
        let a = admission(1, 1, 1);
        let mut one = a.admit_silent(ip(1));
        one.authenticate().unwrap();
        assert_eq!(a.counts(), (0, 1));
        // Unauthenticated floods cannot evict an authenticated connection.
        let mut two = a.admit_silent(ip(1));
        let _three = a.admit_silent(ip(1));
        assert!(!is_evicted(&one).await);
        assert!(is_evicted(&two).await);
        assert_eq!(
            two.authenticate(),
            Err(Full(1)),
            "an evicted connection got a slot"
        );
        let mut four = a.admit_silent(ip(2));
        assert_eq!(four.authenticate(), Err(Full(1)));
        drop(one);
        four = a.admit_silent(ip(2));
        four.authenticate().unwrap();
        assert_eq!(a.counts(), (0, 1));
        drop(four);
        drop(two);
        assert_eq!(a.counts(), (0, 0));
    }
}
