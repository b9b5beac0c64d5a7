//! Pins: the in-process lock between requests that make a blob reachable and the garbage
//! collector's sweep.
//!
//! A request that is about to rely on stored blobs (a manifest `PUT` checking its references, an
//! upload finishing into an existing object, a cross-repository mount) pins their digests first
//! and keeps the pin until the index holds what makes them reachable (the manifest's references)
//! or links them again. The sweep *claims* a digest before it re-checks and removes the blob's
//! index entries, and releases it only after the object is deleted. A claim skips pinned digests;
//! a pin waits while its digest is claimed. So for every digest either the pin comes first (the
//! sweep leaves the blob alone) or the claim does (the request reads the index after the sweep is
//! done with the blob, and finds it gone or kept). See `docs/registry.md`, "Garbage collection".
//!
//! Every clone of a [`super::BlobStore`] shares its `Pins`, so the registry's requests, the
//! PDS's and the hold's uploads and the collector meet on one set (one process per store: the
//! index's and the PDS's redb files admit one).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use crate::blobstore::Digest;

#[derive(Default)]
struct PinState {
    /// Digest → how many requests pin it.
    pinned: HashMap<Digest, usize>,
    /// Digests the sweep is deleting.
    claimed: HashSet<Digest>,
}

/// The node's pins and claims (shared by every clone of a [`super::BlobStore`]).
#[derive(Default)]
pub struct Pins {
    state: Mutex<PinState>,
    released: tokio::sync::Notify,
}

/// Pinned digests; dropping it unpins them.
#[must_use = "the digests are unpinned when this is dropped"]
pub struct PinGuard {
    pins: Arc<Pins>,
    digests: Vec<Digest>,
}

impl Pins {
    fn state(&self) -> std::sync::MutexGuard<'_, PinState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pins `digests`, first waiting for any the sweep has claimed to be released.
    pub async fn pin(self: &Arc<Self>, digests: impl IntoIterator<Item = Digest>) -> PinGuard {
        let mut digests: Vec<Digest> = digests.into_iter().collect();
        digests.sort();
        digests.dedup();
        loop {
            // Registered before the check, so a release between the check and the wait wakes it.
            let released = self.released.notified();
            {
                let mut state = self.state();
                if !digests.iter().any(|d| state.claimed.contains(d)) {
                    for d in &digests {
                        *state.pinned.entry(d.clone()).or_default() += 1;
                    }
                    break;
                }
            }
            released.await;
        }
        PinGuard {
            pins: self.clone(),
            digests,
        }
    }

    /// Claims for deletion those of `digests` nobody pins (or has claimed); returns them. The
    /// caller must [`Pins::release`] them.
    pub fn claim(&self, digests: impl IntoIterator<Item = Digest>) -> Vec<Digest> {
        let mut state = self.state();
        let mut out = Vec::new();
        for d in digests {
            if !state.pinned.contains_key(&d) && state.claimed.insert(d.clone()) {
                out.push(d);
            }
        }
        out
    }

    /// Ends claims: pins waiting for them go on.
    pub fn release(&self, digests: &[Digest]) {
        {
            let mut state = self.state();
            for d in digests {
                state.claimed.remove(d);
            }
        }
        self.released.notify_waiters();
    }

    /// Whether `digest` is pinned right now (tests).
    #[must_use]
    pub fn is_pinned(&self, digest: &Digest) -> bool {
        self.state().pinned.contains_key(digest)
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut state = self.pins.state();
        for d in &self.digests {
            if let Some(n) = state.pinned.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    state.pinned.remove(d);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(s: &str) -> Digest {
        Digest::of(crate::blobstore::Algorithm::Sha256, s.as_bytes())
    }

    #[tokio::test]
    async fn a_claim_skips_pinned_digests_and_a_pin_waits_for_a_claim() {
        let pins = Arc::new(Pins::default());
        let (a, b) = (digest("a"), digest("b"));
        let guard = pins.pin([a.clone()]).await;
        assert_eq!(pins.claim([a.clone(), b.clone()]), std::slice::from_ref(&b));
        // A second claim of a claimed digest gets nothing.
        assert!(pins.claim([b.clone()]).is_empty());
        drop(guard);
        assert!(!pins.is_pinned(&a));

        let waiter = {
            let pins = pins.clone();
            let b = b.clone();
            tokio::spawn(async move { pins.pin([b]).await })
        };
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "a pin waits while its digest is claimed"
        );
        assert!(!pins.is_pinned(&b));
        pins.release(std::slice::from_ref(&b));
        let guard = waiter.await.unwrap();
        assert!(pins.is_pinned(&b));
        assert!(pins.claim([b.clone()]).is_empty(), "pinned: not claimable");
        drop(guard);
        assert_eq!(pins.claim([b.clone()]), [b]);
    }
}
