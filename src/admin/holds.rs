//! `atcr hold add|list|remove`: the holds on other machines this registry may send blobs to
//! (see [`crate::hold::trusted`]). A running daemon changes its own list; with it stopped the
//! file is changed here and read at the next start.

use anyhow::{Context, bail};

use super::Node;
use crate::atproto::Did;

/// `atcr hold add DID [--endpoint URL]`.
pub(super) async fn add(
    node: &Node<'_>,
    did: &str,
    endpoint: Option<&str>,
) -> anyhow::Result<String> {
    let trusted = trusted(node)?;
    let did: Did = did
        .parse()
        .with_context(|| format!("{did:?} is not a DID"))?;
    if did == node.hold.pds().node_did {
        bail!("{did} is this node: its own hold needs no adding");
    }
    let hold = trusted.add(did, endpoint).await?;
    Ok(format!("trusted {}\t{}", hold.did, hold.endpoint))
}

/// `atcr hold list`: one line per trusted hold, DID and endpoint (nothing when there is none).
pub(super) fn list(node: &Node<'_>) -> anyhow::Result<String> {
    let lines: Vec<String> = trusted(node)?
        .list()
        .into_iter()
        .map(|h| format!("{}\t{}", h.did, h.endpoint))
        .collect();
    Ok(lines.join("\n"))
}

/// `atcr hold remove DID`: blobs already sent there stay there, unreachable from this node.
pub(super) fn remove(node: &Node<'_>, did: &str) -> anyhow::Result<String> {
    let did: Did = did
        .parse()
        .with_context(|| format!("{did:?} is not a DID"))?;
    if !trusted(node)?.remove(&did)? {
        bail!("{did} is not a trusted hold");
    }
    Ok(format!("no longer trusting {did}"))
}

fn trusted<'a>(node: &Node<'a>) -> anyhow::Result<&'a crate::hold::trusted::Trusted> {
    node.trusted
        .context("the list of trusted holds is not open here")
}
