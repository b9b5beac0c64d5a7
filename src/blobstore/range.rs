//! HTTP `Range: bytes=…` requests against a blob of known size (RFC 9110 §14).

use std::ops::Range;

/// A satisfiable byte range of a blob, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    #[must_use]
    pub fn len(self) -> u64 {
        self.end - self.start
    }

    #[must_use]
    pub fn is_empty(self) -> bool {
        self.end == self.start
    }

    #[must_use]
    pub fn as_range(self) -> Range<u64> {
        self.start..self.end
    }

    /// The `Content-Range` value for a 206 answer.
    #[must_use]
    pub fn content_range(self, size: u64) -> String {
        format!("bytes {}-{}/{size}", self.start, self.end - 1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The header is not a byte-range request this server understands; RFC 9110 says to ignore
    /// it and send the whole representation.
    #[error("range header ignored")]
    Ignored,
    /// The header is well formed but no byte of it lies inside the blob (416).
    #[error("range not satisfiable")]
    Unsatisfiable,
}

impl ByteRange {
    /// Parses a single-range `Range` header value for a blob of `size` bytes.
    ///
    /// Multiple ranges are not served (the whole blob is, as RFC 9110 permits).
    pub fn parse(header: &str, size: u64) -> Result<ByteRange, RangeError> {
        let spec = header
            .trim()
            .strip_prefix("bytes=")
            .ok_or(RangeError::Ignored)?;
        if spec.contains(',') {
            return Err(RangeError::Ignored);
        }
        let (first, last) = spec.trim().split_once('-').ok_or(RangeError::Ignored)?;
        let number = |s: &str| -> Result<u64, RangeError> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RangeError::Ignored);
            }
            s.parse().map_err(|_| RangeError::Ignored)
        };
        if first.is_empty() {
            let suffix = number(last)?;
            if suffix == 0 || size == 0 {
                return Err(RangeError::Unsatisfiable);
            }
            return Ok(ByteRange {
                start: size.saturating_sub(suffix),
                end: size,
            });
        }
        let start = number(first)?;
        let end = if last.is_empty() {
            size
        } else {
            let last = number(last)?;
            if last < start {
                return Err(RangeError::Ignored);
            }
            last.saturating_add(1).min(size)
        };
        if start >= size {
            return Err(RangeError::Unsatisfiable);
        }
        Ok(ByteRange { start, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)]
    fn r(start: u64, end: u64) -> Result<ByteRange, RangeError> {
        Ok(ByteRange { start, end })
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(ByteRange::parse("bytes=0-9", 100), r(0, 10));
        assert_eq!(ByteRange::parse("bytes=90-", 100), r(90, 100));
        assert_eq!(ByteRange::parse("bytes=-10", 100), r(90, 100));
        assert_eq!(ByteRange::parse("bytes=-1000", 100), r(0, 100));
        assert_eq!(ByteRange::parse("bytes=50-1000", 100), r(50, 100));
        assert_eq!(ByteRange::parse("bytes=99-99", 100), r(99, 100));
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(
            ByteRange::parse("bytes=100-", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            ByteRange::parse("bytes=100-200", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            ByteRange::parse("bytes=-0", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            ByteRange::parse("bytes=0-0", 0),
            Err(RangeError::Unsatisfiable)
        );
        for ignored in [
            "items=0-1",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=0-1,3-4",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(
                ByteRange::parse(ignored, 100),
                Err(RangeError::Ignored),
                "{ignored}"
            );
        }
    }

    #[test]
    fn ranges_at_the_u64_limit_do_not_wrap() {
        const MAX: &str = "18446744073709551615";
        assert_eq!(ByteRange::parse(&format!("bytes=0-{MAX}"), 100), r(0, 100));
        assert_eq!(ByteRange::parse(&format!("bytes=-{MAX}"), 100), r(0, 100));
        assert_eq!(
            ByteRange::parse(&format!("bytes={MAX}-{MAX}"), 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            ByteRange::parse(&format!("bytes=0-{MAX}0"), 100),
            Err(RangeError::Ignored)
        );
        let whole = ByteRange::parse(&format!("bytes=0-{MAX}"), u64::MAX).unwrap();
        assert_eq!(whole.len(), u64::MAX);
    }

    #[test]
    fn content_range_is_inclusive() {
        assert_eq!(
            ByteRange { start: 0, end: 10 }.content_range(100),
            "bytes 0-9/100"
        );
    }
}
