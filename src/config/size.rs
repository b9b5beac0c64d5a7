//! Byte sizes as people write them: `50GiB`, `500 MB`, `1.5G`, `1048576`.

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a size: a number with an optional unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), like 50GiB or 500MB"
)]
pub struct SizeError(pub String);

/// Parses a byte size: a number (a decimal fraction allowed) and an optional unit, decimal
/// (`kB`, `MB`, `GB`, `TB`, powers of 1000; `K`, `M`, `G`, `T` alike) or binary (`KiB`, `MiB`,
/// `GiB`, `TiB`, powers of 1024), case-insensitive, spaces allowed between. Fractions of a byte
/// are dropped; sizes past 2⁶⁴ are refused.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let bad = || SizeError(text.to_owned());
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let multiplier: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000u128.pow(2),
        "g" | "gb" => 1000u128.pow(3),
        "t" | "tb" => 1000u128.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > 9 || fraction.contains('.') {
        return Err(bad());
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| bad())?);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad())?
    };
    let bytes = whole
        .checked_mul(multiplier)
        .and_then(|w| w.checked_add(fraction * multiplier / scale))
        .ok_or_else(bad)?;
    u64::try_from(bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        for (text, bytes) in [
            ("0", 0),
            ("1048576", 1 << 20),
            ("50GiB", 50 << 30),
            ("50 gib", 50 << 30),
            ("500MB", 500_000_000),
            ("500M", 500_000_000),
            ("1.5GiB", 3 << 29),
            ("1.5 kB", 1500),
            (" 2TiB ", 2 << 40),
            ("10b", 10),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn nonsense_and_overflow_are_refused() {
        for text in [
            "",
            "GiB",
            "-1",
            "1.2.3",
            "5 parsecs",
            "1e9",
            "99999999999TiB",
            ". MB",
        ] {
            let e = parse_size(text).unwrap_err();
            assert!(e.to_string().contains("not a size"), "{text}: {e}");
        }
    }
}
