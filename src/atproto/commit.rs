//! Signed repository commits (version 3) and whole-repository verification.

use thiserror::Error;

use super::blockstore::BlockStore;
use super::cbor::{write_bytes, write_head, write_int, write_link, write_text};
use super::cid::Cid;
use super::crypto::{CryptoError, Keypair, PublicKey};
use super::data::{DataError, Value};
use super::mst::{Mst, MstError, WalkItem};
use super::syntax::{Did, Tid};

/// Why a commit or a repository did not verify.
#[derive(Debug, Error)]
pub enum CommitError {
    /// The commit block is not valid DAG-CBOR.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The commit block is DAG-CBOR but not a version-3 commit.
    #[error("malformed commit: {0}")]
    Malformed(&'static str),
    /// The signature does not verify with the given key.
    #[error(transparent)]
    Signature(#[from] CryptoError),
    /// The tree is missing blocks or is malformed.
    #[error(transparent)]
    Mst(#[from] MstError),
    /// A record block is missing.
    #[error("record block {0} is missing")]
    MissingRecord(Cid),
    /// A block whose bytes do not hash to its CID.
    #[error("block {0} does not match its CID")]
    HashMismatch(Cid),
}

/// The signed fields of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedCommit {
    /// The repository's DID.
    pub did: Did,
    /// Always 3 for commits this crate writes.
    pub version: u8,
    /// The MST root.
    pub data: Cid,
    /// The revision, a TID that increases with every commit.
    pub rev: Tid,
    /// The previous commit; `None` (encoded as `null`) in version 3.
    pub prev: Option<Cid>,
}

/// A signed commit: the root block of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The signed fields.
    pub unsigned: UnsignedCommit,
    /// The signature over the unsigned commit's DAG-CBOR (64-byte compact, low-S).
    pub sig: Vec<u8>,
}

fn write_opt_link(out: &mut Vec<u8>, cid: Option<&Cid>) {
    match cid {
        Some(c) => write_link(out, c),
        None => out.push(0xf6),
    }
}

impl UnsignedCommit {
    /// A version-3 commit of `data` at `rev`.
    #[must_use]
    pub fn new(did: Did, data: Cid, rev: Tid) -> Self {
        Self {
            did,
            version: 3,
            data,
            rev,
            prev: None,
        }
    }

    fn encode(&self, sig: Option<&[u8]>) -> Vec<u8> {
        // Keys in canonical order: did, rev, sig, data, prev, version.
        let mut out = Vec::with_capacity(200);
        write_head(&mut out, 5, if sig.is_some() { 6 } else { 5 });
        write_text(&mut out, "did");
        write_text(&mut out, self.did.as_str());
        write_text(&mut out, "rev");
        write_text(&mut out, self.rev.as_str());
        if let Some(sig) = sig {
            write_text(&mut out, "sig");
            write_bytes(&mut out, sig);
        }
        write_text(&mut out, "data");
        write_link(&mut out, &self.data);
        write_text(&mut out, "prev");
        write_opt_link(&mut out, self.prev.as_ref());
        write_text(&mut out, "version");
        write_int(&mut out, i64::from(self.version));
        out
    }

    /// The DAG-CBOR bytes that are signed.
    #[must_use]
    pub fn to_cbor(&self) -> Vec<u8> {
        self.encode(None)
    }

    /// Signs the commit (deterministic: same key and fields give the same signature).
    #[must_use]
    pub fn sign(self, key: &Keypair) -> Commit {
        let sig = key.sign(&self.to_cbor()).to_vec();
        Commit {
            unsigned: self,
            sig,
        }
    }
}

impl Commit {
    /// The commit block's DAG-CBOR bytes.
    #[must_use]
    pub fn to_cbor(&self) -> Vec<u8> {
        self.unsigned.encode(Some(&self.sig))
    }

    /// The commit block's CID (what a repository's head points at).
    #[must_use]
    pub fn cid(&self) -> Cid {
        Cid::for_cbor(&self.to_cbor())
    }

    /// Decodes a commit block: exactly the fields `did`, `version` (3), `data`, `rev`, `prev`
    /// and `sig`.
    pub fn from_cbor(bytes: &[u8]) -> Result<Commit, CommitError> {
        let bad = CommitError::Malformed;
        // Bounded like any bytes from the network: commits of other PDSes are read too.
        let value = Value::from_untrusted_cbor(bytes)?;
        let m = value.as_map().ok_or(bad("not a map"))?;
        if m.len() != 6 {
            return Err(bad(
                "expected exactly did, version, data, rev, prev and sig",
            ));
        }
        let did = m
            .get("did")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Did>().ok())
            .ok_or(bad("did is not a DID"))?;
        if m.get("version") != Some(&Value::Integer(3)) {
            return Err(bad("version is not 3"));
        }
        let Some(Value::Link(data)) = m.get("data") else {
            return Err(bad("data is not a link"));
        };
        let rev = m
            .get("rev")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Tid>().ok())
            .ok_or(bad("rev is not a TID"))?;
        let prev = match m.get("prev") {
            Some(Value::Null) => None,
            Some(Value::Link(c)) => Some(*c),
            _ => return Err(bad("prev is neither null nor a link")),
        };
        let Some(Value::Bytes(sig)) = m.get("sig") else {
            return Err(bad("sig is not bytes"));
        };
        let unsigned = UnsignedCommit {
            did,
            version: 3,
            data: *data,
            rev,
            prev,
        };
        Ok(Commit {
            unsigned,
            sig: sig.clone(),
        })
    }

    /// Checks the signature with the repository's signing key.
    pub fn verify(&self, key: &PublicKey) -> Result<(), CommitError> {
        Ok(key.verify(&self.unsigned.to_cbor(), &self.sig)?)
    }
}

/// What [`verify_repo`] checked.
#[derive(Debug, Clone)]
pub struct VerifiedRepo {
    /// The commit.
    pub commit: Commit,
    /// How many records the tree holds.
    pub records: usize,
    /// How many MST nodes the tree has.
    pub nodes: usize,
}

/// Verifies a whole repository from its commit: the commit block hashes to `commit_cid` and is
/// signed by `key`; then every MST node is read and checked (hash, canonical structure, key
/// heights, keys strictly increasing) and every record block is present, hashes to its CID and
/// is valid data-model DAG-CBOR (of at most `UNTRUSTED_ITEMS` items). Streams through the tree:
/// memory stays at one path.
pub fn verify_repo(
    store: &dyn BlockStore,
    commit_cid: Cid,
    key: &PublicKey,
) -> Result<VerifiedRepo, CommitError> {
    let bytes = store
        .get(&commit_cid)
        .map_err(MstError::from)?
        .ok_or(MstError::MissingBlock(commit_cid))?;
    if !commit_cid.matches(&bytes) {
        return Err(CommitError::HashMismatch(commit_cid));
    }
    let commit = Commit::from_cbor(&bytes)?;
    commit.verify(key)?;
    let mst = Mst::load(store, commit.unsigned.data)?;
    let (mut records, mut nodes) = (0usize, 0usize);
    let mut last_key: Option<String> = None;
    let mut failure: Option<CommitError> = None;
    mst.walk(store, &mut |item| {
        match item {
            WalkItem::Node { .. } => nodes += 1,
            WalkItem::Leaf { key, value } => {
                if last_key.as_deref().is_some_and(|k| k >= key) {
                    return Err(MstError::InvalidNode("keys out of order across nodes"));
                }
                last_key = Some(key.to_owned());
                records += 1;
                match store.get(&value)? {
                    None => failure = Some(CommitError::MissingRecord(value)),
                    Some(b) if !value.matches(&b) => {
                        failure = Some(CommitError::HashMismatch(value));
                    }
                    Some(b) => {
                        // Bounded: the repositories verified whole are other PDSes' exports.
                        if let Err(e) = Value::from_untrusted_cbor(&b) {
                            failure = Some(e.into());
                        }
                    }
                }
                if failure.is_some() {
                    return Err(MstError::Conflict("record check failed"));
                }
            }
        }
        Ok(())
    })
    .map_err(|e| failure.take().unwrap_or(CommitError::Mst(e)))?;
    Ok(VerifiedRepo {
        commit,
        records,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atproto::crypto::Algorithm;

    #[test]
    fn sign_decode_verify() {
        let key = Keypair::generate(Algorithm::P256);
        let c = UnsignedCommit::new(
            "did:web:example.com".parse().unwrap(),
            Cid::for_cbor(b"\xa0"),
            Tid::from_parts(1, 1),
        )
        .sign(&key);
        let back = Commit::from_cbor(&c.to_cbor()).unwrap();
        assert_eq!(back, c);
        back.verify(&key.public_key()).unwrap();
        let mut forged = back.clone();
        forged.unsigned.rev = Tid::from_parts(2, 1);
        assert!(forged.verify(&key.public_key()).is_err());
        let mut v2 = c.unsigned.clone();
        v2.version = 2;
        let v2 = Commit {
            unsigned: v2,
            sig: c.sig.clone(),
        };
        assert!(Commit::from_cbor(&v2.to_cbor()).is_err());
    }
}
