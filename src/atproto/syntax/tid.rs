//! Timestamp identifiers: the record keys and commit revisions of atproto.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::SyntaxError;

const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// A TID: 13 characters of base32-sortable encoding a 64-bit integer whose top bit is zero,
/// made of 53 bits of microseconds since the Unix epoch and a 10-bit clock identifier.
/// TIDs sort lexically in time order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tid(String);

string_newtype!(Tid, check_tid);

fn check_tid(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("tid", reason));
    if s.len() != 13 {
        return err("must be 13 characters");
    }
    if !s.bytes().all(|b| ALPHABET.contains(&b)) {
        return err("not base32-sortable");
    }
    if !s.as_bytes()[0].is_ascii_digit() && s.as_bytes()[0] > b'j' {
        return err("top bit is set");
    }
    Ok(())
}

impl Tid {
    /// The TID of a timestamp (microseconds since the Unix epoch, 53 bits kept) and a clock
    /// identifier (10 bits kept).
    #[must_use]
    pub fn from_parts(micros: u64, clock_id: u16) -> Tid {
        let v = ((micros & ((1 << 53) - 1)) << 10) | u64::from(clock_id & 0x3ff);
        Tid::from_u64(v)
    }

    fn from_u64(v: u64) -> Tid {
        let mut out = [0u8; 13];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 60 - 5 * i;
            *slot = ALPHABET[((v >> shift) & 31) as usize];
        }
        Tid(out.iter().map(|&b| char::from(b)).collect())
    }

    /// The integer this TID encodes.
    #[must_use]
    pub fn to_u64(&self) -> u64 {
        self.0.bytes().fold(0u64, |acc, b| {
            let digit = ALPHABET.iter().position(|&a| a == b).unwrap_or(0) as u64;
            (acc << 5) | digit
        })
    }

    /// Microseconds since the Unix epoch.
    #[must_use]
    pub fn timestamp_micros(&self) -> u64 {
        self.to_u64() >> 10
    }

    /// The 10-bit clock identifier.
    #[must_use]
    pub fn clock_id(&self) -> u16 {
        (self.to_u64() & 0x3ff) as u16
    }

    /// A new TID from the process-wide clock: see [`TidClock::next`].
    #[must_use]
    pub fn now() -> Tid {
        static CLOCK: std::sync::OnceLock<TidClock> = std::sync::OnceLock::new();
        CLOCK.get_or_init(TidClock::random).next()
    }
}

/// A TID generator: strictly increasing TIDs even if the system clock stalls or steps back,
/// tagged with one clock identifier.
#[derive(Debug)]
pub struct TidClock {
    clock_id: u16,
    last: Mutex<u64>,
}

impl TidClock {
    /// A generator with a given clock identifier (10 bits kept).
    #[must_use]
    pub fn new(clock_id: u16) -> Self {
        Self {
            clock_id: clock_id & 0x3ff,
            last: Mutex::new(0),
        }
    }

    /// A generator with a random clock identifier, as each process should use.
    #[must_use]
    pub fn random() -> Self {
        Self::new(rand::random::<u16>())
    }

    /// The next TID: the current time in microseconds, or one more than the last TID's time
    /// if the clock has not moved past it.
    pub fn next(&self) -> Tid {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let micros = now.max(*last + 1);
        *last = micros;
        Tid::from_parts(micros, self.clock_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_parts() {
        let t = Tid::from_parts(1_700_000_000_000_000, 513);
        assert_eq!(t.timestamp_micros(), 1_700_000_000_000_000);
        assert_eq!(t.clock_id(), 513);
        assert_eq!(t.as_str().parse::<Tid>().unwrap(), t);
        assert_eq!(Tid::from_parts(0, 0).as_str(), "2222222222222");
    }

    #[test]
    fn monotonic() {
        let clock = TidClock::new(7);
        let mut prev = clock.next();
        for _ in 0..10_000 {
            let next = clock.next();
            assert!(next > prev);
            assert_eq!(next.clock_id(), 7);
            prev = next;
        }
        assert!(Tid::now() < Tid::now());
    }
}
