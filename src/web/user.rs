//! A user's page (`/u/<name>`, a user of another PDS by handle or DID): their repositories,
//! stars and storage (usage and quota), and the storage line the settings page shows its owner.

use http::{Response, StatusCode};
use maud::html;

use super::{Cx, PAGE, Site, display_name, visible};
use crate::atproto::Did;
use crate::http::body::Body;
use crate::http::human_bytes;

/// `1.2 MiB of 50.0 GiB` (or `1.2 MiB, no limit`): what `did`'s manifests use and may.
pub(super) fn standing(site: Site<'_>, did: &Did) -> anyhow::Result<String> {
    let quota = site.appview.quota(did)?;
    let used = human_bytes(quota.used);
    Ok(match quota.limit {
        Some(limit) => format!("{used} of {}", human_bytes(limit)),
        None => format!("{used}, no limit"),
    })
}

/// The settings page's storage section: what `did`'s repositories use and may.
pub(super) fn storage_section(site: Site<'_>, did: &Did) -> anyhow::Result<maud::Markup> {
    let standing = standing(site, did)?;
    Ok(html! {
        h2 { "Storage" }
        p { "Your repositories use " (standing) " (each blob counted once, however many images share it)." }
    })
}

pub(super) fn page(cx: &Cx<'_>, name: &str) -> anyhow::Result<Option<Response<Body>>> {
    let site = cx.site;
    let appview = site.appview;
    let Ok(Some(did)) = appview.owner(name) else {
        return Ok(None);
    };
    // A user of another PDS goes by their handle (their DID without one).
    let (title, handle) = if let Some(account) = site.pds.accounts.get(&did)? {
        (account.name, account.handle)
    } else {
        let shown = appview.display_owner(did.as_str());
        (shown.clone(), shown)
    };
    let mut repos = Vec::new();
    let mut stars = Vec::new();
    let mut more = false;
    let mut storage = None;
    if visible(cx)? {
        storage = Some(standing(site, &did)?);
        let (keys, rest) = appview.index().repos_of(&did, PAGE)?;
        more = rest;
        for key in keys {
            repos.push(display_name(site, &key));
        }
        for key in appview.index().starred_by(&did, PAGE)? {
            if appview.index().repo_exists(&key)? && !appview.hidden(key.owner())? {
                stars.push(display_name(site, &key));
            }
        }
    }
    Ok(Some(super::page(
        StatusCode::OK,
        &title,
        cx,
        html! {
            h1 { (title) }
            dl {
                dt { "Handle" } dd { (handle) }
                dt { "DID" } dd { code { (did.as_str()) } }
                @if let Some(storage) = &storage { dt { "Storage" } dd { (storage) } }
            }
            h2 { "Repositories" }
            @if repos.is_empty() {
                p.muted { "None to show." }
            } @else {
                ul.repos {
                    @for name in &repos { li { a href={ "/r/" (name) } { (name) } } }
                }
                @if more { p.muted { "Only the first " (PAGE) " are shown." } }
            }
            h2 { "Stars" }
            @if stars.is_empty() {
                p.muted { "None yet." }
            } @else {
                ul.repos {
                    @for name in &stars { li { a href={ "/r/" (name) } { (name) } } }
                }
            }
        },
    )))
}
