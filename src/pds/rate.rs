//! A per-client-address rate limit: at most `limit` events per address in each fixed window.
//! An IPv6 client counts by its /64 (one host usually has the whole /64 to pick from).

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
    seen: Mutex<Seen>,
}

/// The addresses seen (window start, events), and when expired windows were last swept.
#[derive(Debug)]
struct Seen {
    by_address: HashMap<IpAddr, (Instant, u32)>,
    swept: Option<Instant>,
}

/// `address` as it counts: an IPv6 address by its /64.
fn counted_as(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        IpAddr::V4(_) => address,
    }
}

impl PerAddress {
    #[must_use]
    pub fn new(limit: u32, window: Duration) -> PerAddress {
        PerAddress {
            limit,
            window,
            seen: Mutex::new(Seen {
                by_address: HashMap::new(),
                swept: None,
            }),
        }
    }

    /// Counts one event from `address` at `now`; false when the address is over its limit
    /// (the event is then not counted).
    pub fn allow(&self, address: IpAddr, now: Instant) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Swept at most once a second: many addresses must not make every event a full scan.
        let due = seen
            .swept
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if seen.by_address.len() > SWEEP_ABOVE && due {
            let window = self.window;
            seen.by_address
                .retain(|_, (start, _)| now.duration_since(*start) < window);
            seen.swept = Some(now);
        }
        let (start, count) = seen
            .by_address
            .entry(counted_as(address))
            .or_insert((now, 0));
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

    #[test]
    fn an_ipv6_client_counts_by_its_slash_64() {
        let rate = PerAddress::new(1, Duration::from_mins(1));
        let t = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(rate.allow(ip("2001:db8:1:2::1"), t));
        assert!(!rate.allow(ip("2001:db8:1:2:ffff::9"), t));
        assert!(rate.allow(ip("2001:db8:1:3::1"), t));
        // An IPv4 client seen through an IPv6 socket is the IPv4 client.
        assert!(rate.allow(ip("192.0.2.1"), t));
        assert!(!rate.allow(ip("::ffff:192.0.2.1"), t));
    }
}
