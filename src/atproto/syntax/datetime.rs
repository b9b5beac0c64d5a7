//! Datetimes in the strict RFC 3339 / ISO 8601 intersection atproto requires.

use super::SyntaxError;

/// A datetime string as lexicon's `datetime` format accepts it:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, uppercase `T` and `Z`, no `-00:00`, a real
/// calendar date, and not before year 0 once normalized to UTC. The string is kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Datetime {
    text: String,
    /// Microseconds since the Unix epoch, in UTC.
    micros: i64,
}

const KIND: &str = "datetime";

fn digits(s: &[u8], at: usize, n: usize) -> Option<i64> {
    let part = s.get(at..at + n)?;
    part.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

fn expect(s: &[u8], at: usize, c: u8) -> Result<(), SyntaxError> {
    if s.get(at) == Some(&c) {
        Ok(())
    } else {
        Err(SyntaxError::new(KIND, "not YYYY-MM-DDTHH:MM:SS"))
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Short names follow the grammar (y, m, d, h, …).
#[allow(clippy::many_single_char_names)]
fn parse(s: &str) -> Result<i64, SyntaxError> {
    let err = |reason| SyntaxError::new(KIND, reason);
    let b = s.as_bytes();
    if b.len() > 64 {
        return Err(err("too long"));
    }
    let shape = err("not YYYY-MM-DDTHH:MM:SS");
    let year = digits(b, 0, 4).ok_or(shape.clone())?;
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2).ok_or(shape.clone())?;
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2).ok_or(shape.clone())?;
    expect(b, 10, b'T')?;
    let hour = digits(b, 11, 2).ok_or(shape.clone())?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2).ok_or(shape.clone())?;
    expect(b, 16, b':')?;
    let second = digits(b, 17, 2).ok_or(shape)?;
    let mut i = 19;
    let mut frac_micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 6 {
                frac_micros = frac_micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err(err("empty fraction"));
        }
        for _ in (i - start)..6 {
            frac_micros *= 10;
        }
    }
    let offset_minutes = match &b[i..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let tz = [*h1, *h2, *m1, *m2];
            let h = digits(&tz, 0, 2).ok_or(err("bad offset"))?;
            let m = digits(&tz, 2, 2).ok_or(err("bad offset"))?;
            if *sign == b'-' && h == 0 && m == 0 {
                return Err(err("-00:00 is not allowed"));
            }
            if h > 23 || m > 59 {
                return Err(err("bad offset"));
            }
            let total = h * 60 + m;
            if *sign == b'-' { -total } else { total }
        }
        _ => return Err(err("timezone must be Z or ±HH:MM")),
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(err("no such date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(err("no such time"));
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    if secs < days_from_civil(0, 1, 1) * 86_400 {
        return Err(err("before year 0"));
    }
    Ok(secs * 1_000_000 + frac_micros)
}

impl Datetime {
    /// The instant, in microseconds since the Unix epoch (UTC).
    #[must_use]
    pub fn timestamp_micros(&self) -> i64 {
        self.micros
    }

    /// The string as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A UTC instant in the preferred form, `YYYY-MM-DDTHH:MM:SS.mmmZ` (milliseconds).
    #[must_use]
    pub fn from_unix_micros(micros: i64) -> Datetime {
        let secs = micros.div_euclid(1_000_000);
        let millis = micros.rem_euclid(1_000_000) / 1000;
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let text = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        );
        Datetime {
            text,
            micros: micros - micros.rem_euclid(1000),
        }
    }

    /// The current time in the preferred form.
    #[must_use]
    pub fn now() -> Datetime {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Self::from_unix_micros(micros)
    }
}

impl std::str::FromStr for Datetime {
    type Err = SyntaxError;
    fn from_str(s: &str) -> Result<Self, SyntaxError> {
        let micros = parse(s)?;
        Ok(Self {
            text: s.to_owned(),
            micros,
        })
    }
}

impl std::fmt::Display for Datetime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialOrd for Datetime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Datetime {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.micros
            .cmp(&other.micros)
            .then_with(|| self.text.cmp(&other.text))
    }
}

string_newtype_serde!(Datetime);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let d = Datetime::from_unix_micros(1_767_225_600_000_000);
        assert_eq!(d.as_str(), "2026-01-01T00:00:00.000Z");
        let p: Datetime = d.as_str().parse().unwrap();
        assert_eq!(p.timestamp_micros(), d.timestamp_micros());
        let p: Datetime = "2026-01-01T01:00:00.5+01:00".parse().unwrap();
        assert_eq!(p.timestamp_micros(), 1_767_225_600_500_000);
        assert!("2024-02-29T00:00:00Z".parse::<Datetime>().is_ok());
        assert!("2023-02-29T00:00:00Z".parse::<Datetime>().is_err());
    }
}
