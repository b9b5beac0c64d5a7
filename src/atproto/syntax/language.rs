//! BCP 47 language tags, as lexicon's `language` string format checks them.

const GRANDFATHERED: &[&str] = &[
    "en-gb-oed",
    "i-ami",
    "i-bnn",
    "i-default",
    "i-enochian",
    "i-hak",
    "i-klingon",
    "i-lux",
    "i-mingo",
    "i-navajo",
    "i-pwn",
    "i-tao",
    "i-tay",
    "i-tsu",
    "sgn-be-fr",
    "sgn-be-nl",
    "sgn-ch-de",
    "art-lojban",
    "cel-gaulish",
    "no-bok",
    "no-nyn",
    "zh-guoyu",
    "zh-hakka",
    "zh-min",
    "zh-min-nan",
    "zh-xiang",
];

fn alpha(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic())
}

fn alnum(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn private_use(subtags: &[&str]) -> bool {
    !subtags.is_empty() && subtags.iter().all(|t| alnum(t, 1, 8))
}

/// Parses a tag; `Err(())` for bad syntax, `Ok(false)` for good syntax with a repeated variant
/// or extension singleton, `Ok(true)` for a valid tag.
fn parse(tag: &str) -> Result<bool, ()> {
    if GRANDFATHERED.contains(&tag.to_ascii_lowercase().as_str()) {
        return Ok(true);
    }
    let subtags: Vec<&str> = tag.split('-').collect();
    let first = subtags.first().copied().unwrap_or("");
    if first.eq_ignore_ascii_case("x") {
        return if private_use(&subtags[1..]) {
            Ok(true)
        } else {
            Err(())
        };
    }
    // The primary language subtag is written in lowercase (2 or 3 letters).
    if !(alpha(first, 2, 3) && first.bytes().all(|b| b.is_ascii_lowercase())) {
        return Err(());
    }
    let mut i = 1;
    let mut extlangs = 0;
    while extlangs < 3 && subtags.get(i).is_some_and(|t| alpha(t, 3, 3)) {
        i += 1;
        extlangs += 1;
    }
    if subtags.get(i).is_some_and(|t| alpha(t, 4, 4)) {
        i += 1;
    }
    if subtags
        .get(i)
        .is_some_and(|t| alpha(t, 2, 2) || (t.len() == 3 && t.bytes().all(|b| b.is_ascii_digit())))
    {
        i += 1;
    }
    let mut valid = true;
    let mut variants: Vec<String> = Vec::new();
    while let Some(t) = subtags.get(i) {
        let is_variant =
            alnum(t, 5, 8) || (t.len() == 4 && t.as_bytes()[0].is_ascii_digit() && alnum(t, 4, 4));
        if !is_variant {
            break;
        }
        let lower = t.to_ascii_lowercase();
        if variants.contains(&lower) {
            valid = false;
        }
        variants.push(lower);
        i += 1;
    }
    let mut singletons: Vec<u8> = Vec::new();
    while let Some(t) = subtags.get(i) {
        if t.len() != 1 || !t.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(());
        }
        let s = t.as_bytes()[0].to_ascii_lowercase();
        if s == b'x' {
            return if private_use(&subtags[i + 1..]) {
                Ok(valid)
            } else {
                Err(())
            };
        }
        if singletons.contains(&s) {
            valid = false;
        }
        singletons.push(s);
        i += 1;
        let start = i;
        while subtags.get(i).is_some_and(|t| alnum(t, 2, 8)) {
            i += 1;
        }
        if i == start {
            return Err(());
        }
    }
    Ok(valid)
}

/// Whether `tag` has BCP 47 syntax (a lowercase primary language subtag, optional extlang,
/// script, region, variants, extensions and private use; or a grandfathered tag).
#[must_use]
pub fn is_valid_language_syntax(tag: &str) -> bool {
    parse(tag).is_ok()
}

/// Whether `tag` is a valid BCP 47 tag: good syntax and no variant or extension singleton
/// repeated (RFC 5646 §2.2.9).
#[must_use]
pub fn is_valid_language(tag: &str) -> bool {
    parse(tag) == Ok(true)
}
