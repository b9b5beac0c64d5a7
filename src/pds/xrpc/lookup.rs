//! Which repository a call names: the `repo` (DID or handle) of `com.atproto.repo.*`, the `did`
//! of `com.atproto.sync.*`. A malformed name is the caller's error (400 `InvalidRequest`); a
//! well-formed one that names nothing here is 404 `RepoNotFound`.

use http::StatusCode;

use super::{Call, Caller, XrpcError};
use crate::atproto::{Did, Handle};
use crate::pds::Pds;
use crate::pds::store::RepoHead;

fn repo_not_found(ident: &dyn std::fmt::Display) -> XrpcError {
    XrpcError::new(
        StatusCode::NOT_FOUND,
        "RepoNotFound",
        format!("could not find repo: {ident}"),
    )
}

fn parse_did(ident: &str) -> Result<Did, XrpcError> {
    ident
        .parse::<Did>()
        .map_err(|e| XrpcError::invalid(format!("invalid DID: {e}")))
}

/// The DID an at-identifier (DID or handle) names, if a handle names one here. 400 unless it
/// is a DID or a handle.
fn identify(pds: &Pds, ident: &str) -> Result<Option<Did>, XrpcError> {
    if ident.starts_with("did:") {
        return parse_did(ident).map(Some);
    }
    ident
        .parse::<Handle>()
        .map_err(|e| XrpcError::invalid(format!("repo is neither a DID nor a handle: {e}")))?;
    Ok(pds.resolve_handle(ident)?)
}

/// Resolves a `repo` parameter (DID or handle) to a repository hosted here.
pub(crate) fn resolve_repo(pds: &Pds, ident: &str) -> Result<Did, XrpcError> {
    let did = identify(pds, ident)?.ok_or_else(|| repo_not_found(&ident))?;
    head(pds, &did)?;
    Ok(did)
}

fn head(pds: &Pds, did: &Did) -> Result<RepoHead, XrpcError> {
    pds.repos
        .store()
        .head(did)?
        .ok_or_else(|| repo_not_found(did))
}

/// The repository a write names, which must be the caller's: checked before whether it exists,
/// so a caller learns nothing about repositories that are not theirs (403 for any of them).
pub(crate) fn own_repo(pds: &Pds, caller: &Caller, ident: &str) -> Result<Did, XrpcError> {
    if identify(pds, ident)?.as_ref() != Some(&caller.did) {
        return Err(XrpcError::new(
            StatusCode::FORBIDDEN,
            "InvalidToken",
            "cannot write to another account's repository",
        ));
    }
    head(pds, &caller.did)?;
    Ok(caller.did.clone())
}

/// Whether the repository's account is still here: the node's own always, a user's until the
/// account is removed (its repository stays, deactivated).
pub(crate) fn is_active(pds: &Pds, did: &Did, head: &RepoHead) -> Result<bool, XrpcError> {
    Ok(head.active && (*did == pds.node_did || pds.accounts.get(did)?.is_some()))
}

/// The repository named by a sync method's `did` parameter (a DID; 400 otherwise) and its
/// head, if it may be served: a removed account's repository answers 400 `RepoDeactivated`, as
/// the reference PDS does for a deactivated one (that account has no session left, so no
/// exception for the repository's own account applies).
pub(crate) fn sync_repo(pds: &Pds, call: &Call) -> Result<(Did, RepoHead), XrpcError> {
    let (did, head) = sync_did(pds, call)?;
    if !is_active(pds, &did, &head)? {
        return Err(XrpcError::new(
            StatusCode::BAD_REQUEST,
            "RepoDeactivated",
            format!("repo has been deactivated: {did}"),
        ));
    }
    Ok((did, head))
}

/// The repository named by a sync method's `did` parameter and its head, active or not.
pub(crate) fn sync_did(pds: &Pds, call: &Call) -> Result<(Did, RepoHead), XrpcError> {
    let did = parse_did(call.required("did")?)?;
    let head = head(pds, &did)?;
    Ok((did, head))
}
