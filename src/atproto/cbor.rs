//! Canonical DAG-CBOR for the atproto data model.
//!
//! Encoding always produces the canonical form (shortest integer and length heads, map keys
//! sorted by length then bytes, CIDs as tag 42). Decoding accepts only that form and only the
//! types of the data model: anything else (floats, `undefined`, other tags, indefinite lengths,
//! non-text map keys, unsorted or duplicate keys, non-minimal heads, trailing bytes) is an
//! error, so that every accepted block re-encodes to the same bytes and the same CID.

use std::collections::BTreeMap;

use super::cid::Cid;
use super::data::{DataError, Value};

/// How deep arrays and maps may nest when decoding (guards the stack against hostile input).
pub const MAX_DEPTH: usize = 128;

pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= 0xff {
        out.extend_from_slice(&[m | 0x18, arg as u8]);
    } else if arg <= 0xffff {
        out.push(m | 0x19);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= 0xffff_ffff {
        out.push(m | 0x1a);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 0x1b);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

pub(crate) fn write_text(out: &mut Vec<u8>, s: &str) {
    write_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

pub(crate) fn write_link(out: &mut Vec<u8>, cid: &Cid) {
    out.extend_from_slice(&[0xd8, 42]);
    let mut bytes = Vec::with_capacity(37);
    bytes.push(0);
    cid.write_bytes(&mut bytes);
    write_bytes(out, &bytes);
}

pub(crate) fn write_int(out: &mut Vec<u8>, i: i64) {
    if i >= 0 {
        write_head(out, 0, i.unsigned_abs());
    } else {
        write_head(out, 1, (-1 - i).unsigned_abs());
    }
}

/// The canonical order of map keys: shorter first, then bytewise.
pub(crate) fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Appends the canonical DAG-CBOR encoding of `value` to `out`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(0xf6),
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Integer(i) => write_int(out, *i),
        Value::String(s) => write_text(out, s),
        Value::Bytes(b) => write_bytes(out, b),
        Value::Link(cid) => write_link(out, cid),
        Value::Array(items) => {
            write_head(out, 4, items.len() as u64);
            for item in items {
                encode_into(item, out);
            }
        }
        Value::Map(map) => {
            write_head(out, 5, map.len() as u64);
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| key_order(a.0, b.0));
            for (k, v) in entries {
                write_text(out, k);
                encode_into(v, out);
            }
        }
    }
}

/// The canonical DAG-CBOR encoding of `value`.
#[must_use]
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Decodes one complete DAG-CBOR block in canonical form, and checks the data model rules
/// (`$type` strings, blob objects).
pub fn decode(bytes: &[u8]) -> Result<Value, DataError> {
    decode_at_most(bytes, usize::MAX)
}

/// [`decode`], refusing input of more than `items` data items: a decoded item costs ≈50 bytes
/// of memory against one byte of input at the least, so bytes from the network are decoded
/// with a bound on what they may cost.
pub fn decode_at_most(bytes: &[u8], items: usize) -> Result<Value, DataError> {
    let mut d = Decoder {
        buf: bytes,
        pos: 0,
        items,
    };
    let v = d.value(0)?;
    if d.pos != bytes.len() {
        return Err(DataError::Cbor("trailing bytes after the value"));
    }
    v.check_data_model()?;
    Ok(v)
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Data items that may still be decoded.
    items: usize,
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DataError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(DataError::Cbor("unexpected end of input"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn head(&mut self) -> Result<(u8, u8, u64), DataError> {
        let b = self.take(1)?[0];
        let (major, info) = (b >> 5, b & 0x1f);
        let (arg, min) = match info {
            0..=23 => (u64::from(info), 0),
            24 => (u64::from(self.take(1)?[0]), 24),
            25 => {
                let s = self.take(2)?;
                (u64::from(u16::from_be_bytes([s[0], s[1]])), 0x100)
            }
            26 => {
                let s = self.take(4)?;
                (
                    u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]])),
                    0x1_0000,
                )
            }
            27 => {
                let s = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                (u64::from_be_bytes(a), 0x1_0000_0000)
            }
            31 => return Err(DataError::Cbor("indefinite lengths are not allowed")),
            _ => return Err(DataError::Cbor("reserved additional information")),
        };
        if major == 7 && info >= 24 {
            return Err(DataError::Cbor(
                "floats and extended simple values are not allowed",
            ));
        }
        if arg < min {
            return Err(DataError::Cbor("integer or length not in shortest form"));
        }
        Ok((major, info, arg))
    }

    fn len(&self, arg: u64) -> Result<usize, DataError> {
        usize::try_from(arg)
            .ok()
            .filter(|&n| n <= self.buf.len() - self.pos)
            .ok_or(DataError::Cbor("length exceeds input"))
    }

    fn text(&mut self, arg: u64) -> Result<String, DataError> {
        let n = self.len(arg)?;
        let s = self.take(n)?;
        std::str::from_utf8(s)
            .map(str::to_owned)
            .map_err(|_| DataError::Cbor("text string is not UTF-8"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DataError> {
        if depth > MAX_DEPTH {
            return Err(DataError::Cbor("nested too deeply"));
        }
        self.items = self
            .items
            .checked_sub(1)
            .ok_or(DataError::Cbor("too many data items"))?;
        let (major, info, arg) = self.head()?;
        match major {
            0 => i64::try_from(arg)
                .map(Value::Integer)
                .map_err(|_| DataError::Cbor("integer out of 64-bit signed range")),
            1 => i64::try_from(arg)
                .map(|a| Value::Integer(-1 - a))
                .map_err(|_| DataError::Cbor("integer out of 64-bit signed range")),
            2 => {
                let n = self.len(arg)?;
                Ok(Value::Bytes(self.take(n)?.to_vec()))
            }
            3 => self.text(arg).map(Value::String),
            4 => {
                let n = self.len(arg)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            5 => {
                let n = self.len(arg)?;
                let mut map = BTreeMap::new();
                let mut prev: Option<String> = None;
                for _ in 0..n {
                    let (kmajor, _, karg) = self.head()?;
                    if kmajor != 3 {
                        return Err(DataError::Cbor("map keys must be text strings"));
                    }
                    let key = self.text(karg)?;
                    if let Some(p) = &prev
                        && key_order(p, &key) != std::cmp::Ordering::Less
                    {
                        return Err(DataError::Cbor(
                            "map keys not in canonical order or repeated",
                        ));
                    }
                    let v = self.value(depth + 1)?;
                    prev = Some(key.clone());
                    map.insert(key, v);
                }
                Ok(Value::Map(map))
            }
            6 => {
                if arg != 42 {
                    return Err(DataError::Cbor("only tag 42 (CID) is allowed"));
                }
                let (bmajor, _, barg) = self.head()?;
                if bmajor != 2 {
                    return Err(DataError::Cbor("tag 42 must wrap a byte string"));
                }
                let n = self.len(barg)?;
                let bytes = self.take(n)?;
                match bytes.split_first() {
                    Some((0, cid)) => Ok(Value::Link(
                        Cid::from_bytes(cid)
                            .map_err(|_| DataError::Cbor("invalid CID in tag 42"))?,
                    )),
                    _ => Err(DataError::Cbor("tag 42 bytes must start with 0x00")),
                }
            }
            _ => match info {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 => Ok(Value::Null),
                _ => Err(DataError::Cbor("simple value not in the data model")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_input_is_decoded_within_an_item_budget() {
        // 100,000 one-byte integers in one array: 100 KB of input, ≈5 MB decoded.
        let mut many = vec![0x9a];
        many.extend_from_slice(&100_000u32.to_be_bytes());
        many.extend(std::iter::repeat_n(0x01, 100_000));
        assert!(decode(&many).is_ok());
        assert!(
            decode_at_most(&many, 100_000).is_err(),
            "the array counts too"
        );
        assert!(decode_at_most(&many, 100_001).is_ok());
        assert!(Value::from_untrusted_cbor(&many).is_err());
        let small = encode(&Value::Array(vec![Value::Integer(1); 10]));
        assert!(Value::from_untrusted_cbor(&small).is_ok());
    }

    fn rejects(hex_in: &str) {
        assert!(
            decode(&hex::decode(hex_in).unwrap()).is_err(),
            "{hex_in} accepted"
        );
    }

    #[test]
    fn rejects_non_canonical() {
        rejects("1817"); // 23 in two bytes
        rejects("190017"); // non-minimal
        rejects("fb3ff0000000000000"); // float
        rejects("f7"); // undefined
        rejects("9f01ff"); // indefinite array
        rejects("a2616201616101"); // keys out of order
        rejects("a2616101616101"); // duplicate key
        rejects("a10101"); // integer key
        rejects("c11a514b67b0"); // tag 1
        rejects("0101"); // trailing bytes
        rejects("1bffffffffffffffff"); // beyond i64
        rejects("62c328"); // bad utf-8
        rejects("a165247479706501"); // $type not a string
    }

    #[test]
    fn integers() {
        for i in [
            0i64,
            23,
            24,
            255,
            256,
            65535,
            65536,
            -1,
            -24,
            -25,
            i64::MAX,
            i64::MIN,
        ] {
            let v = Value::Integer(i);
            assert_eq!(decode(&encode(&v)).unwrap(), v);
        }
    }
}
