//! Failed-login accounting: per account and per client address, a few free failures, then a
//! wait that doubles with each further failure.
//!
//! An attempt counts as a failure from the moment it starts (and is taken back when it
//! succeeds), so many attempts sent at once are held to the same allowance as attempts sent one
//! after the other. Pure bookkeeping: time is passed in, so tests need no clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures an account may have before it has to wait.
pub const ACCOUNT_FREE_FAILURES: u32 = 5;
/// Failures a client address may have before it has to wait (several people may share one).
pub const CLIENT_FREE_FAILURES: u32 = 20;
/// The first wait; each further failure doubles it.
const FIRST_WAIT: Duration = Duration::from_secs(30);
/// The longest wait.
const MAX_WAIT: Duration = Duration::from_mins(15);
/// Failures are forgotten this long after the last one (longer than the longest wait, so
/// waiting it out does not reset the count).
const FORGET_AFTER: Duration = Duration::from_hours(1);
/// Entries kept per table; beyond it, forgotten ones go, then the oldest.
const CAPACITY: usize = 10_000;

/// What failures are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An account (its DID), or an identifier no account has (lowercased): unknown names are
    /// limited like known ones, so the answers do not tell them apart.
    Account(String),
    /// A client address; IPv6 by its /64, which one client usually holds whole.
    Client(IpAddr),
}

impl Subject {
    #[must_use]
    pub fn client(ip: IpAddr) -> Subject {
        match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                Subject::Client(IpAddr::from(octets))
            }
            IpAddr::V6(v6) => Subject::Client(v6.to_ipv4_mapped().map_or(ip, IpAddr::V4)),
            IpAddr::V4(_) => Subject::Client(ip),
        }
    }

    fn free_failures(&self) -> u32 {
        match self {
            Subject::Account(_) => ACCOUNT_FREE_FAILURES,
            Subject::Client(_) => CLIENT_FREE_FAILURES,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    until: Instant,
}

/// The failure counts.
#[derive(Debug, Default)]
pub struct Limiter {
    entries: HashMap<Subject, Entry>,
}

impl Limiter {
    /// Starts an attempt for all `subjects`: `Err(wait)` if one of them must wait (nothing is
    /// counted then), else the attempt is counted as a failure until [`Limiter::succeeded`].
    pub fn begin(&mut self, subjects: &[Subject], now: Instant) -> Result<(), Duration> {
        let wait = subjects
            .iter()
            .filter_map(|s| self.live(s, now))
            .map(|e| e.until.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        if !wait.is_zero() {
            return Err(wait);
        }
        for s in subjects {
            self.make_room(now);
            let entry = self.live(s, now).unwrap_or(Entry {
                failures: 0,
                last: now,
                until: now,
            });
            let failures = entry.failures.saturating_add(1);
            let until = match failures.checked_sub(s.free_failures()) {
                Some(over) if over > 0 => now + wait_after(over),
                _ => now,
            };
            self.entries.insert(
                s.clone(),
                Entry {
                    failures,
                    last: now,
                    until,
                },
            );
        }
        Ok(())
    }

    /// The attempt begun for `subjects` succeeded: the account's failures are cleared, the
    /// attempt is no longer counted against the client.
    pub fn succeeded(&mut self, subjects: &[Subject]) {
        for s in subjects {
            match s {
                Subject::Account(_) => {
                    self.entries.remove(s);
                }
                Subject::Client(_) => {
                    if let Some(e) = self.entries.get_mut(s) {
                        e.failures = e.failures.saturating_sub(1);
                    }
                }
            }
        }
    }

    /// The attempt begun for `subjects` was never decided (the node was too busy to check
    /// it): it is not counted against anyone.
    pub fn abandoned(&mut self, subjects: &[Subject]) {
        for s in subjects {
            if let Some(e) = self.entries.get_mut(s) {
                e.failures = e.failures.saturating_sub(1);
            }
        }
    }

    /// How many subjects are tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn live(&self, s: &Subject, now: Instant) -> Option<Entry> {
        self.entries
            .get(s)
            .copied()
            .filter(|e| now.saturating_duration_since(e.last) < FORGET_AFTER)
    }

    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < CAPACITY {
            return;
        }
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last) < FORGET_AFTER);
        if self.entries.len() >= CAPACITY
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(s, _)| s.clone())
        {
            self.entries.remove(&oldest);
        }
    }
}

/// The wait after `over` failures beyond the free ones (`over` ≥ 1).
fn wait_after(over: u32) -> Duration {
    let doublings = (over - 1).min(16);
    FIRST_WAIT.saturating_mul(1 << doublings).min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Subject {
        Subject::Account("did:plc:alice".into())
    }

    #[test]
    fn an_account_waits_after_its_free_failures_and_the_wait_grows() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let client = Subject::client("10.0.0.1".parse().unwrap());
        let both = [alice(), client.clone()];
        for _ in 0..=ACCOUNT_FREE_FAILURES {
            l.begin(&both, t0).unwrap();
        }
        let wait = l.begin(&both, t0).unwrap_err();
        assert_eq!(wait, FIRST_WAIT);
        // After the wait, one more failure: twice as long.
        let t1 = t0 + FIRST_WAIT;
        l.begin(&both, t1).unwrap();
        assert_eq!(l.begin(&both, t1).unwrap_err(), FIRST_WAIT * 2);
        // Another account from the same client is not held up by alice's failures.
        let bob = [Subject::Account("did:plc:bob".into()), client];
        l.begin(&bob, t1).unwrap();
        // The longest wait is bounded.
        assert_eq!(wait_after(40), MAX_WAIT);
    }

    #[test]
    fn success_clears_the_account_and_failures_are_forgotten() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..ACCOUNT_FREE_FAILURES {
            l.begin(&[alice()], t0).unwrap();
        }
        l.succeeded(&[alice()]);
        // An attempt that was never decided does not count.
        l.begin(&[alice()], t0).unwrap();
        l.abandoned(&[alice()]);
        for _ in 0..ACCOUNT_FREE_FAILURES {
            l.begin(&[alice()], t0).unwrap();
        }
        l.begin(&[alice()], t0).unwrap();
        assert!(l.begin(&[alice()], t0).is_err());
        assert!(l.begin(&[alice()], t0 + FORGET_AFTER).is_ok());
    }

    #[test]
    fn a_client_address_is_limited_across_accounts() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let client = Subject::client("2001:db8::1".parse().unwrap());
        // Its neighbours in the same /64 count as the same client.
        let neighbour = Subject::client("2001:db8::ffff".parse().unwrap());
        assert_eq!(client, neighbour);
        for i in 0..=CLIENT_FREE_FAILURES {
            let account = Subject::Account(format!("user{i}"));
            l.begin(&[account, client.clone()], t0).unwrap();
        }
        let fresh = Subject::Account("someone-else".into());
        assert!(l.begin(&[fresh, neighbour], t0).is_err());
    }

    #[test]
    fn the_tables_stay_bounded() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..CAPACITY + 50 {
            l.begin(&[Subject::Account(format!("user{i}"))], t0)
                .unwrap();
        }
        assert!(l.len() <= CAPACITY);
    }
}
