//! Who may hold a firehose (`subscribeRepos`) connection: a bound on subscribers in total and per
//! client address, and how long one frame may take to leave before its subscriber is dropped.
//!
//! A subscriber that stops reading pins what the kernel has queued for it (megabytes per
//! socket); these bounds keep the sum small, and the send timeout frees it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Limits of the firehose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirehoseLimits {
    /// Subscribers at once, all addresses together.
    pub max_subscribers: usize,
    /// Subscribers at once from one client address.
    pub max_per_address: usize,
    /// A frame not written to the socket within this is a subscriber that does not read: it is
    /// disconnected.
    pub send_timeout: Duration,
}

/// Default of `pds.firehose_max_subscribers`.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 256;
/// Default of `pds.firehose_max_per_address`.
pub const DEFAULT_MAX_PER_ADDRESS: usize = 8;
/// Default of `pds.firehose_send_timeout_secs`.
pub const DEFAULT_SEND_TIMEOUT_SECS: u64 = 30;

impl Default for FirehoseLimits {
    fn default() -> Self {
        FirehoseLimits {
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            max_per_address: DEFAULT_MAX_PER_ADDRESS,
            send_timeout: Duration::from_secs(DEFAULT_SEND_TIMEOUT_SECS),
        }
    }
}

/// Why a subscriber was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too many firehose subscribers")]
    Total,
    #[error("too many firehose subscribers from this address")]
    PerAddress,
}

/// The subscribers connected now.
#[derive(Debug, Default)]
pub struct Subscribers {
    by_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One admitted subscriber; its place is freed when this drops.
#[derive(Debug)]
pub struct Slot {
    address: IpAddr,
    by_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Subscribers {
    /// Admits a subscriber from `address` if both bounds allow it.
    pub fn admit(&self, address: IpAddr, limits: &FirehoseLimits) -> Result<Slot, Refused> {
        let mut map = self
            .by_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.values().sum::<usize>() >= limits.max_subscribers {
            return Err(Refused::Total);
        }
        let count = map.entry(address).or_default();
        if *count >= limits.max_per_address {
            return Err(Refused::PerAddress);
        }
        *count += 1;
        Ok(Slot {
            address,
            by_address: self.by_address.clone(),
        })
    }

    /// Subscribers connected now.
    #[must_use]
    pub fn count(&self) -> usize {
        self.by_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .by_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = map.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_bounds_hold_and_slots_free_on_drop() {
        let limits = FirehoseLimits {
            max_subscribers: 3,
            max_per_address: 2,
            send_timeout: Duration::from_secs(1),
        };
        let s = Subscribers::default();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let a1 = s.admit(a, &limits).unwrap();
        let _a2 = s.admit(a, &limits).unwrap();
        assert_eq!(s.admit(a, &limits).unwrap_err(), Refused::PerAddress);
        let _b1 = s.admit(b, &limits).unwrap();
        assert_eq!(s.admit(b, &limits).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(s.count(), 2);
        let _b2 = s.admit(b, &limits).unwrap();
        assert_eq!(s.count(), 3);
    }
}
