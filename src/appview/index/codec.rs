//! The compact binary encoding of the index's largest values: manifest records (with their
//! page summaries) and what each record put in. JSON spelled every field name, every media type
//! and every digest in hex; at 1,000,000 tags that was most of `index.redb`.
//!
//! The layout is positional: fields in a fixed order, lengths and numbers as LEB128 varints,
//! SHA-256 digests as their 32 bytes, and the media types and annotation keys nearly every
//! manifest uses as one-byte codes (anything else is written out). There is no per-field
//! versioning: a change of layout bumps [`FORMAT`], and an index of another format is rebuilt
//! from the repositories at open (the values are derived).

use std::collections::BTreeMap;

use super::Social;
use super::{IndexError, ManifestRecord};
use crate::appview::summary::{ConfigSummary, ManifestSummary, Part};
use crate::blobstore::{Algorithm, Digest};

/// The layout of the encoded values and keys; kept in the index's `meta` table. 3: keys hold
/// repository and DID ids and digests as bytes.
pub(super) const FORMAT: u64 = 3;

/// Values written out in full when they are not in a table (code 0).
const MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.empty.v1+json",
    "application/vnd.in-toto+json",
    "application/vnd.dev.cosign.simplesigning.v1+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.cncf.helm.config.v1+json",
    "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
    "application/spdx+json",
    "application/vnd.cyclonedx+json",
];

const ANNOTATION_KEYS: &[&str] = &[
    "org.opencontainers.image.created",
    "org.opencontainers.image.authors",
    "org.opencontainers.image.url",
    "org.opencontainers.image.documentation",
    "org.opencontainers.image.source",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.vendor",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.ref.name",
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.base.digest",
    "org.opencontainers.image.base.name",
];

const SHA256_PREFIX: &str = "sha256:";

/// Appends values to a buffer.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn uint(&mut self, mut n: u64) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }

    fn flag(&mut self, on: bool) {
        self.0.push(u8::from(on));
    }

    fn str(&mut self, s: &str) {
        self.uint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    /// One of `table` as its position plus one, anything else as 0 and the string.
    fn coded(&mut self, table: &[&str], s: &str) {
        if let Some(i) = table.iter().position(|t| *t == s) {
            self.uint(i as u64 + 1);
        } else {
            self.uint(0);
            self.str(s);
        }
    }

    /// A lowercase-hex SHA-256 digest as 1 and its 32 bytes; anything else as 0 and the string.
    fn digest(&mut self, digest: &str) {
        if let Some(raw) = digest.strip_prefix(SHA256_PREFIX).and_then(hex32) {
            self.0.push(1);
            self.0.extend_from_slice(&raw);
        } else {
            self.0.push(0);
            self.str(digest);
        }
    }

    fn opt_str(&mut self, s: Option<&str>) {
        self.flag(s.is_some());
        if let Some(s) = s {
            self.str(s);
        }
    }

    fn strs(&mut self, list: &[String]) {
        self.uint(list.len() as u64);
        for s in list {
            self.str(s);
        }
    }

    fn map(&mut self, map: &BTreeMap<String, String>, keys: &[&str]) {
        self.uint(map.len() as u64);
        for (k, v) in map {
            self.coded(keys, k);
            self.str(v);
        }
    }
}

/// Reads values back; any shortfall or bad value is [`IndexError::Undecodable`].
struct Reader<'a>(&'a [u8]);

fn bad(what: &'static str) -> IndexError {
    IndexError::Undecodable(what)
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, IndexError> {
        let (&b, rest) = self.0.split_first().ok_or(bad("value cut short"))?;
        self.0 = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], IndexError> {
        if self.0.len() < n {
            return Err(bad("value cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn uint(&mut self) -> Result<u64, IndexError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(bad("number too long"))
    }

    fn len(&mut self) -> Result<usize, IndexError> {
        let n = usize::try_from(self.uint()?).map_err(|_| bad("length too large"))?;
        if n > self.0.len() {
            return Err(bad("length past the end"));
        }
        Ok(n)
    }

    fn flag(&mut self) -> Result<bool, IndexError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad("flag neither 0 nor 1")),
        }
    }

    fn str(&mut self) -> Result<String, IndexError> {
        let n = self.len()?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| bad("string not UTF-8"))
    }

    fn coded(&mut self, table: &[&str]) -> Result<String, IndexError> {
        match usize::try_from(self.uint()?).map_err(|_| bad("code too large"))? {
            0 => self.str(),
            i => table
                .get(i - 1)
                .map(|s| (*s).to_owned())
                .ok_or(bad("unknown code")),
        }
    }

    fn digest(&mut self) -> Result<String, IndexError> {
        match self.byte()? {
            1 => {
                let raw = self.take(32)?;
                let mut s = String::with_capacity(SHA256_PREFIX.len() + 64);
                s.push_str(SHA256_PREFIX);
                for b in raw {
                    s.push(char::from(HEX[usize::from(b >> 4)]));
                    s.push(char::from(HEX[usize::from(b & 0xf)]));
                }
                Ok(s)
            }
            0 => self.str(),
            _ => Err(bad("unknown digest form")),
        }
    }

    fn typed_digest(&mut self) -> Result<Digest, IndexError> {
        self.digest()?.parse().map_err(|_| bad("invalid digest"))
    }

    fn opt_str(&mut self) -> Result<Option<String>, IndexError> {
        Ok(if self.flag()? {
            Some(self.str()?)
        } else {
            None
        })
    }

    fn strs(&mut self) -> Result<Vec<String>, IndexError> {
        let n = self.len()?;
        (0..n).map(|_| self.str()).collect()
    }

    fn map(&mut self, keys: &[&str]) -> Result<BTreeMap<String, String>, IndexError> {
        let n = self.len()?;
        (0..n)
            .map(|_| Ok((self.coded(keys)?, self.str()?)))
            .collect()
    }

    fn end(&self) -> Result<(), IndexError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(bad("bytes after the value"))
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex32(hex: &str) -> Option<[u8; 32]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The byte naming SHA-512 in a digest key (SHA-256 needs none: see [`digest_key`]).
const SHA512_TAG: u8 = 2;

/// A digest as keys hold it: a SHA-256 digest as its 32 bytes; any other as a byte naming its
/// algorithm and then its bytes (SHA-512: 65 bytes). Equal digests give equal keys, so a
/// digest is still one element of a key that range scans match exactly.
#[must_use]
pub(super) fn digest_key(digest: &Digest) -> Vec<u8> {
    // A parsed digest's hex is always valid, of its algorithm's length.
    let raw = hex::decode(digest.hex()).unwrap_or_default();
    match digest.algorithm() {
        Algorithm::Sha256 => raw,
        Algorithm::Sha512 => {
            let mut key = Vec::with_capacity(1 + raw.len());
            key.push(SHA512_TAG);
            key.extend_from_slice(&raw);
            key
        }
    }
}

/// The digest of a key made by [`digest_key`].
pub(super) fn digest_of_key(key: &[u8]) -> Result<Digest, IndexError> {
    let text = match (key.len(), key.first()) {
        (32, _) => format!("sha256:{}", hex::encode(key)),
        (65, Some(&SHA512_TAG)) => format!("sha512:{}", hex::encode(&key[1..])),
        _ => return Err(bad("unknown digest key")),
    };
    text.parse().map_err(|_| bad("invalid digest key"))
}

/// Sorts after the key of every digest (33 bytes of `0xff`: longer than a SHA-256 key, and
/// above the algorithm byte of any other): the end of a range over all digests.
pub(super) const AFTER_DIGESTS: &[u8] = &[0xff; 33];

impl ManifestRecord {
    /// The record in the index's encoding.
    #[must_use]
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.coded(MEDIA_TYPES, &self.media_type);
        w.uint(self.size);
        w.flag(self.artifact_type.is_some());
        if let Some(t) = &self.artifact_type {
            w.coded(MEDIA_TYPES, t);
        }
        w.flag(self.subject.is_some());
        if let Some(s) = &self.subject {
            w.digest(s.as_str());
        }
        w.uint(self.created);
        w.flag(self.summary.is_some());
        if let Some(s) = &self.summary {
            write_summary(&mut w, s);
        }
        w.0
    }

    /// A record from [`ManifestRecord::encode`]'s bytes.
    pub(super) fn decode(bytes: &[u8]) -> Result<ManifestRecord, IndexError> {
        let mut r = Reader(bytes);
        let record = ManifestRecord {
            media_type: r.coded(MEDIA_TYPES)?,
            size: r.uint()?,
            artifact_type: if r.flag()? {
                Some(r.coded(MEDIA_TYPES)?)
            } else {
                None
            },
            subject: if r.flag()? {
                Some(r.typed_digest()?)
            } else {
                None
            },
            created: r.uint()?,
            summary: if r.flag()? {
                Some(Box::new(read_summary(&mut r)?))
            } else {
                None
            },
        };
        r.end()?;
        Ok(record)
    }
}

fn write_summary(w: &mut Writer, s: &ManifestSummary) {
    w.map(&s.annotations, ANNOTATION_KEYS);
    w.strs(&s.platforms);
    for parts in [&s.parts, &s.children] {
        w.uint(parts.len() as u64);
        for p in parts {
            w.coded(MEDIA_TYPES, &p.media_type);
            w.digest(&p.digest);
            w.uint(p.size);
            w.opt_str(p.platform.as_deref());
        }
    }
    w.flag(s.config.is_some());
    if let Some(c) = &s.config {
        w.opt_str(c.created.as_deref());
        for list in [&c.entrypoint, &c.cmd, &c.env, &c.exposed_ports] {
            w.strs(list);
        }
        w.opt_str(c.user.as_deref());
        w.opt_str(c.working_dir.as_deref());
        w.map(&c.labels, ANNOTATION_KEYS);
    }
}

fn read_summary(r: &mut Reader<'_>) -> Result<ManifestSummary, IndexError> {
    let annotations = r.map(ANNOTATION_KEYS)?;
    let platforms = r.strs()?;
    let mut read_parts = || -> Result<Vec<Part>, IndexError> {
        let n = r.len()?;
        (0..n)
            .map(|_| {
                Ok(Part {
                    media_type: r.coded(MEDIA_TYPES)?,
                    digest: r.digest()?,
                    size: r.uint()?,
                    platform: r.opt_str()?,
                })
            })
            .collect()
    };
    let parts = read_parts()?;
    let children = read_parts()?;
    let config = if r.flag()? {
        Some(ConfigSummary {
            created: r.opt_str()?,
            entrypoint: r.strs()?,
            cmd: r.strs()?,
            env: r.strs()?,
            exposed_ports: r.strs()?,
            user: r.opt_str()?,
            working_dir: r.opt_str()?,
            labels: r.map(ANNOTATION_KEYS)?,
        })
    } else {
        None
    };
    Ok(ManifestSummary {
        annotations,
        platforms,
        parts,
        children,
        config,
    })
}

/// Bits of the flags byte that opens an encoded [`StoredEntry`].
const HAS_DIGEST: u8 = 1;
const HAS_TAG: u8 = 2;
const STAR: u8 = 4;
const PAGE: u8 = 8;
const HAS_LAYER: u8 = 16;
const HAS_REPO: u8 = 32;

/// A [`super::RecordEntry`] as the `records` table holds it: its repository and its layer record's
/// user as their ids (see `ids`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoredEntry {
    pub repo: Option<u64>,
    pub digest: Option<Digest>,
    pub tag: Option<String>,
    pub social: Option<Social>,
    /// The user's DID id and the manifest record key (see [`super::LayerOf`]).
    pub layer: Option<(u32, String)>,
}

impl StoredEntry {
    /// The entry in the index's encoding.
    #[must_use]
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut flags = 0;
        for (on, bit) in [
            (self.repo.is_some(), HAS_REPO),
            (self.digest.is_some(), HAS_DIGEST),
            (self.tag.is_some(), HAS_TAG),
            (self.layer.is_some(), HAS_LAYER),
        ] {
            if on {
                flags |= bit;
            }
        }
        flags |= match self.social {
            Some(Social::Star) => STAR,
            Some(Social::Page) => PAGE,
            None => 0,
        };
        let mut w = Writer(vec![flags]);
        if let Some(repo) = self.repo {
            w.uint(repo);
        }
        if let Some(d) = &self.digest {
            w.digest(d.as_str());
        }
        if let Some(t) = &self.tag {
            w.str(t);
        }
        if let Some((user, rkey)) = &self.layer {
            w.uint(u64::from(*user));
            w.str(rkey);
        }
        w.0
    }

    /// An entry from [`StoredEntry::encode`]'s bytes.
    pub(super) fn decode(bytes: &[u8]) -> Result<StoredEntry, IndexError> {
        let mut r = Reader(bytes);
        let flags = r.byte()?;
        if flags & !(HAS_DIGEST | HAS_TAG | STAR | PAGE | HAS_LAYER | HAS_REPO) != 0
            || flags & (STAR | PAGE) == STAR | PAGE
        {
            return Err(bad("unknown record entry flags"));
        }
        let entry = StoredEntry {
            repo: if flags & HAS_REPO != 0 {
                Some(r.uint()?)
            } else {
                None
            },
            digest: if flags & HAS_DIGEST != 0 {
                Some(r.typed_digest()?)
            } else {
                None
            },
            tag: if flags & HAS_TAG != 0 {
                Some(r.str()?)
            } else {
                None
            },
            social: match flags & (STAR | PAGE) {
                STAR => Some(Social::Star),
                PAGE => Some(Social::Page),
                _ => None,
            },
            layer: if flags & HAS_LAYER != 0 {
                let user = u32::try_from(r.uint()?).map_err(|_| bad("DID id too large"))?;
                Some((user, r.str()?))
            } else {
                None
            },
        };
        r.end()?;
        Ok(entry)
    }
}

/// The collections whose records the index keeps, as one-byte codes in the keys of `records`
/// (a collection not among them is written out).
const COLLECTIONS: &[&str] = &[
    super::MANIFEST_COLLECTION,
    super::TAG_COLLECTION,
    super::STAR_COLLECTION,
    super::PAGE_COLLECTION,
    super::LAYER_COLLECTION,
];

/// A collection as the keys of `records` hold it: one byte for the ones the index keeps, else
/// its name (an NSID is longer than one byte, so the two never meet).
#[must_use]
pub(super) fn collection_key(collection: &str) -> Vec<u8> {
    match COLLECTIONS.iter().position(|c| *c == collection) {
        Some(i) => vec![u8::try_from(i + 1).unwrap_or(u8::MAX)],
        None => collection.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests;
