//! A per-client-address rate limit: at most `limit` events per address in each fixed window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses remembered before expired windows are swept.
const SWEEP_ABOVE: usize = 4096;

#[derive(Debug)]
pub struct PerAddress {
    limit: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl PerAddress {
    #[must_use]
    pub fn new(limit: u32, window: Duration) -> PerAddress {
        PerAddress {
            limit,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event from `address` at `now`; false when the address is over its limit
    /// (the event is then not counted).
    pub fn allow(&self, address: IpAddr, now: Instant) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() > SWEEP_ABOVE {
            seen.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let (start, count) = seen.entry(address).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            (*start, *count) = (now, 0);
        }
        if *count >= self.limit {
            return false;
        }
        *count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_address_per_window() {
        let rate = PerAddress::new(2, Duration::from_mins(1));
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let t = Instant::now();
        assert!(rate.allow(a, t));
        assert!(rate.allow(a, t));
        assert!(!rate.allow(a, t));
        assert!(rate.allow(b, t));
        assert!(rate.allow(a, t + Duration::from_mins(1)));
    }
}
