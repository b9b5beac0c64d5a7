//! Paginated lists: tags, the catalog, and referrers.

use std::collections::BTreeSet;

use http::header::{CONTENT_TYPE, LINK};
use http::{Response, StatusCode};
use serde_json::json;

use super::{OCI_FILTERS_APPLIED, Registry, Repo, finish, response};
use crate::blobstore::Digest;
use crate::http::body::{self, Body};
use crate::oci::endpoint::Page;
use crate::oci::error::{ErrorCode, OciError};
use crate::oci::manifest::OCI_INDEX;

/// The most entries one page of tags or of the catalog holds, as Distribution's default
/// `maxentries`. A larger `n` (or none) is served this many, with a `Link` to the rest: the spec
/// says a response SHOULD be limited to `n`, and lets a registry return fewer.
pub const MAX_PAGE: usize = 1000;

/// How many entries a page holds.
fn page_size(page: &Page) -> usize {
    page.n.map_or(MAX_PAGE, |n| n.min(MAX_PAGE))
}

fn link(path: &str, n: usize, last: &str) -> String {
    let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    format!("<{path}?n={n}&last={last}>; rel=\"next\"")
}

fn paged(
    path: &str,
    page: &Page,
    items: (Vec<String>, bool),
    key: &str,
    extra: serde_json::Value,
) -> Result<Response<Body>, OciError> {
    let n = page_size(page);
    let (items, more) = items;
    let mut builder = response(StatusCode::OK).header(CONTENT_TYPE, "application/json");
    if let Some(last) = items.last().filter(|_| more && n > 0) {
        builder = builder.header(LINK, link(path, n, last));
    }
    let mut value = extra;
    value[key] = json!(items);
    finish(builder, body::json(&value))
}

/// The first `n` names after `last`, in lexical order, from names that come in any order;
/// the flag says whether more follow. Holds at most `n + 1` names at a time.
#[derive(Debug)]
struct FirstAfter<'a> {
    last: Option<&'a str>,
    n: usize,
    kept: BTreeSet<String>,
}

impl<'a> FirstAfter<'a> {
    fn new(last: Option<&'a str>, n: usize) -> FirstAfter<'a> {
        FirstAfter {
            last,
            n,
            kept: BTreeSet::new(),
        }
    }

    fn offer(&mut self, name: String) {
        if self.last.is_some_and(|last| name.as_str() <= last) {
            return;
        }
        self.kept.insert(name);
        if self.kept.len() > self.n + 1 {
            self.kept.pop_last();
        }
    }

    fn finish(self) -> (Vec<String>, bool) {
        let more = self.kept.len() > self.n;
        (self.kept.into_iter().take(self.n).collect(), more)
    }
}

impl Registry {
    pub(super) fn list_tags(&self, name: &Repo, page: &Page) -> Result<Response<Body>, OciError> {
        if !self.index.repo_exists(name.key())? {
            return Err(OciError::new(
                ErrorCode::NameUnknown,
                "repository name not known to registry",
            )
            .with_detail(json!({ "name": name.to_string() })));
        }
        let items = self
            .index
            .tags(name.key(), page.last.as_deref(), page_size(page))?;
        paged(
            &format!("/v2/{name}/tags/list"),
            page,
            items,
            "tags",
            json!({ "name": name.to_string() }),
        )
    }

    /// Repository names as users write them (`<owner>/<path>`, the owner by short name when
    /// local), in lexical order of those names, whoever owns them.
    pub(super) fn catalog(&self, page: &Page) -> Result<Response<Body>, OciError> {
        let mut first = FirstAfter::new(page.last.as_deref(), page_size(page));
        // The index orders keys by owner DID: an owner's repositories come together.
        // `None`: the owner's repositories are hidden (see `AppView::hidden`).
        let mut owner: Option<(String, Option<String>)> = None;
        let mut failed = None;
        self.index.each_repo(|key| {
            let (did, path) = (key.owner(), key.path());
            let shown = match &owner {
                Some((d, shown)) if d == did => shown,
                _ => {
                    let shown = match self.appview.hidden(did) {
                        Ok(false) => Some(self.appview.display_owner(did)),
                        Ok(true) => None,
                        Err(e) => {
                            failed.get_or_insert(e);
                            None
                        }
                    };
                    &owner.insert((did.to_owned(), shown)).1
                }
            };
            if let Some(shown) = shown {
                first.offer(format!("{shown}/{path}"));
            }
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        paged(
            "/v2/_catalog",
            page,
            first.finish(),
            "repositories",
            json!({}),
        )
    }

    pub(super) fn referrers(
        &self,
        name: &Repo,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Response<Body>, OciError> {
        let mut manifests = self.index.referrers(name.key(), subject)?;
        let mut builder = response(StatusCode::OK).header(CONTENT_TYPE, OCI_INDEX);
        if let Some(wanted) = artifact_type {
            manifests.retain(|d| d.get("artifactType").and_then(|t| t.as_str()) == Some(wanted));
            builder = builder.header(OCI_FILTERS_APPLIED, "artifactType");
        }
        let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
        finish(builder, body::json(&index))
    }
}

#[cfg(test)]
mod tests {
    use super::FirstAfter;

    fn first(names: &[&str], last: Option<&str>, n: usize) -> (Vec<String>, bool) {
        let mut first = FirstAfter::new(last, n);
        for name in names {
            first.offer((*name).to_owned());
        }
        first.finish()
    }

    #[test]
    fn first_after_sorts_and_pages() {
        let names = ["zed/a", "bob/b", "alice/z", "bob/a", "did:plc:x/y"];
        let all = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            first(&names, None, 10),
            (
                all(&["alice/z", "bob/a", "bob/b", "did:plc:x/y", "zed/a"]),
                false
            )
        );
        assert_eq!(first(&names, None, 2), (all(&["alice/z", "bob/a"]), true));
        assert_eq!(
            first(&names, Some("bob/a"), 2),
            (all(&["bob/b", "did:plc:x/y"]), true)
        );
        assert_eq!(
            first(&names, Some("did:plc:x/y"), 2),
            (all(&["zed/a"]), false)
        );
        assert_eq!(first(&names, Some("zzz"), 2), (vec![], false));
        assert_eq!(first(&names, None, 0), (vec![], true));
    }
}
