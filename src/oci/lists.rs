//! Paginated lists: tags, the catalog, and referrers.

use http::header::{CONTENT_TYPE, LINK};
use http::{Response, StatusCode};
use serde_json::json;

use super::endpoint::Page;
use super::error::{ErrorCode, OciError};
use super::manifest::OCI_INDEX;
use super::name::RepoName;
use super::registry::{OCI_FILTERS_APPLIED, Registry, Repo, finish, response};
use crate::blobstore::Digest;
use crate::server::body::{self, Body};

/// Without `n`, lists are returned whole, up to this many entries (then a `Link` follows).
const DEFAULT_PAGE: usize = 10_000;

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
    let n = page.n.unwrap_or(DEFAULT_PAGE);
    let (items, more) = items;
    let mut builder = response(StatusCode::OK).header(CONTENT_TYPE, "application/json");
    if let Some(last) = items.last().filter(|_| more && n > 0) {
        builder = builder.header(LINK, link(path, n, last));
    }
    let mut value = extra;
    value[key] = json!(items);
    finish(builder, body::json(&value))
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
        let items = self.index.tags(
            name.key(),
            page.last.as_deref(),
            page.n.unwrap_or(DEFAULT_PAGE),
        )?;
        paged(
            &format!("/v2/{name}/tags/list"),
            page,
            items,
            "tags",
            json!({ "name": name.to_string() }),
        )
    }

    pub(super) fn catalog(&self, page: &Page) -> Result<Response<Body>, OciError> {
        // The index orders repositories by owner DID; `last` is a name as users write it.
        let last = page.last.as_deref().map(|last| {
            last.parse::<RepoName>()
                .ok()
                .and_then(|n| self.appview.locate(&n).ok())
                .map_or_else(|| last.to_owned(), |loc| loc.key)
        });
        let (keys, more) = self
            .index
            .repos(last.as_deref(), page.n.unwrap_or(DEFAULT_PAGE))?;
        let names = keys
            .iter()
            .map(|k| self.appview.display_name(k))
            .collect::<Result<Vec<_>, _>>()?;
        paged(
            "/v2/_catalog",
            page,
            (names, more),
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
