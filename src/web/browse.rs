//! Finding things: the search page, manifest pages, README rendering and stars.

use http::{Response, StatusCode};
use maud::{Markup, PreEscaped, html};

use super::{Cx, PAGE, date, display_name, page, short, visible};
use crate::appview::summary::ManifestSummary;
use crate::http::body::Body;
use crate::http::human_bytes;
use crate::search::PAGE_SIZE;

/// The search page: `/search?q=…&page=N`.
pub(super) fn search(cx: &Cx<'_>, query: Option<&str>) -> anyhow::Result<Option<Response<Body>>> {
    let params: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let q = param("q").unwrap_or_default().trim().to_owned();
    let page_no: usize = param("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| (1..=500).contains(p))
        .unwrap_or(1);
    let results = if q.is_empty() || !visible(cx)? {
        crate::search::Results::default()
    } else {
        cx.site
            .appview
            .search()
            .search(&q, (page_no - 1) * PAGE_SIZE, crate::pds::now_secs())?
    };
    let link = |n: usize| {
        let mut s = form_urlencoded::Serializer::new(String::from("/search?"));
        s.append_pair("q", &q).append_pair("page", &n.to_string());
        s.finish()
    };
    let last_page = results.total.div_ceil(PAGE_SIZE).max(1);
    Ok(Some(page(
        StatusCode::OK,
        if q.is_empty() { "Search" } else { &q },
        cx,
        html! {
            h1 { "Search" }
            (search_box(&q))
            @if q.is_empty() {
                p.muted { "Words match repository names (and their beginnings, with a typo allowed), owners, descriptions, READMEs, annotations, tags and platforms. Filters: " code { "owner:alice" } ", " code { "platform:arm64" } ", " code { "tag:latest" } "." }
            } @else if results.hits.is_empty() {
                p.muted { "Nothing found for " strong { (q) } "." }
            } @else {
                p.muted { (count(results.total, "repository", "repositories")) @if last_page > 1 { " · page " (page_no) " of " (last_page) } }
                ol.results {
                    @for hit in &results.hits {
                        li {
                            a.name href={ "/r/" (hit.name) } { (hit.name) }
                            span.muted.meta {
                                @if hit.stars > 0 { "★ " (hit.stars) " · " }
                                @if hit.pushed > 0 { "pushed " (date(hit.pushed)) }
                            }
                            @if !hit.description.is_empty() { p.description { (hit.description) } }
                            @if !hit.snippet_html.is_empty() {
                                // Tantivy escapes the text and adds only <b> around matches.
                                p.snippet { (PreEscaped(&hit.snippet_html)) }
                            }
                        }
                    }
                }
                nav.pages {
                    @if page_no > 1 { a rel="prev" href=(link(page_no - 1)) { "← Previous" } }
                    @if page_no < last_page { a rel="next" href=(link(page_no + 1)) { "Next →" } }
                }
            }
        },
    )))
}

/// The search form every listing page carries.
pub(super) fn search_box(q: &str) -> Markup {
    html! {
        form.search method="get" action="/search" role="search" {
            input type="search" name="q" value=(q) placeholder="Search repositories" aria-label="Search repositories";
            button type="submit" { "Search" }
        }
    }
}

/// Renders a README (Markdown) to HTML. Raw HTML in it is shown as text, never passed
/// through, and links keep only `http`, `https` and relative targets.
pub(super) fn readme(text: &str) -> Markup {
    use pulldown_cmark::{Event, Options, Parser, Tag};
    let safe = |url: &str| {
        let lower = url.trim().to_ascii_lowercase();
        !lower.contains(':')
            || lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("mailto:")
    };
    let events = Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(
        |event| match event {
            Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) if !safe(&dest_url) => Event::Start(Tag::Link {
                link_type,
                dest_url: "#".into(),
                title,
                id,
            }),
            // Images would load from anywhere (the CSP blocks them anyway): show their text.
            Event::Start(Tag::Image { .. }) => Event::Text("[image: ".into()),
            Event::End(pulldown_cmark::TagEnd::Image) => Event::Text("]".into()),
            e => e,
        },
    );
    let mut html_out = String::new();
    pulldown_cmark::html::push_html(&mut html_out, events);
    PreEscaped(html_out)
}

/// A manifest page: `/r/<repository>@<digest>`.
pub(super) fn manifest(
    cx: &Cx<'_>,
    name: &str,
    digest: &str,
) -> anyhow::Result<Option<Response<Body>>> {
    let appview = cx.site.appview;
    let Ok(repo_name) = name.parse::<crate::oci::name::RepoName>() else {
        return Ok(None);
    };
    let Ok(digest) = digest.parse::<crate::oci::digest::Digest>() else {
        return Ok(None);
    };
    let Ok(located) = appview.locate(&repo_name) else {
        return Ok(None);
    };
    let index = appview.index();
    if !visible(cx)? {
        return Ok(None);
    }
    let Some(record) = index.manifest(&located.key, &digest)? else {
        return Ok(None);
    };
    let shown = display_name(cx.site, &located.key);
    let referrers = index.referrers(&located.key, &digest)?;
    let (tags, _) = index.tag_details(&located.key, PAGE)?;
    let tags: Vec<&str> = tags
        .iter()
        .filter(|t| t.digest == digest)
        .map(|t| t.tag.as_str())
        .collect();
    let summary = record.summary.as_deref().cloned().unwrap_or_default();
    let host = &cx.host;
    let title = format!("{shown}@{}", short(digest.as_str()));
    Ok(Some(page(
        StatusCode::OK,
        &title,
        cx,
        html! {
            h1 { a href={ "/r/" (shown) } { (shown) } "@" span.digest { (short(digest.as_str())) } }
            (super::pull_commands(cx, &format!("{host}/{shown}@{digest}")))
            dl {
                dt { "Digest" } dd { code { (digest.as_str()) } }
                dt { "Media type" } dd { (record.media_type) }
                @if let Some(t) = record.artifact_type.as_deref().filter(|t| !is_image_config(t)) {
                    dt { "Artifact type" } dd { (t) }
                }
                dt { "Manifest size" } dd { (human_bytes(record.size)) }
                @if !tags.is_empty() { dt { "Tags" } dd { (tags.join(", ")) } }
                @if !summary.platforms.is_empty() { dt { "Platforms" } dd { (summary.platforms.join(", ")) } }
                @if record.created > 0 { dt { "Pushed" } dd { (date(record.created)) } }
                @if let Some(subject) = &record.subject {
                    dt { "Refers to" }
                    dd { a href={ "/r/" (shown) "@" (subject.as_str()) } { (short(subject.as_str())) } }
                }
            }
            (details(&shown, &summary))
            h2 { "Referrers" }
            @if referrers.is_empty() {
                p.muted { "No signatures, SBOMs or other artifacts refer to this manifest." }
            } @else {
                table {
                    thead { tr { th { "Artifact" } th { "Digest" } th.optional { "Size" } } }
                    tbody {
                        @for r in &referrers {
                            @let d = r["digest"].as_str().unwrap_or_default();
                            tr {
                                td { (r["artifactType"].as_str().or(r["mediaType"].as_str()).unwrap_or("?")) }
                                td.digest { a href={ "/r/" (shown) "@" (d) } { (short(d)) } }
                                td.optional { (human_bytes(r["size"].as_u64().unwrap_or(0))) }
                            }
                        }
                    }
                }
            }
        },
    )))
}

/// Layers, platforms, config and annotations of a manifest.
fn details(shown: &str, s: &ManifestSummary) -> Markup {
    html! {
        @if !s.children.is_empty() {
            h2 { "Platforms" }
            table {
                thead { tr { th { "Platform" } th { "Manifest" } th.optional { "Size" } } }
                tbody {
                    @for c in &s.children {
                        tr {
                            td { (c.platform.as_deref().unwrap_or("(attestation or unknown)")) }
                            td.digest { a href={ "/r/" (shown) "@" (c.digest) } { (short(&c.digest)) } }
                            td.optional { (human_bytes(c.size)) }
                        }
                    }
                }
            }
        }
        @if let Some(c) = &s.config {
            h2 { "Configuration" }
            dl {
                @if let Some(v) = &c.created { dt { "Built" } dd { (v) } }
                @if !c.entrypoint.is_empty() { dt { "Entrypoint" } dd { code { (c.entrypoint.join(" ")) } } }
                @if !c.cmd.is_empty() { dt { "Command" } dd { code { (c.cmd.join(" ")) } } }
                @if let Some(v) = &c.user { dt { "User" } dd { code { (v) } } }
                @if let Some(v) = &c.working_dir { dt { "Working directory" } dd { code { (v) } } }
                @if !c.exposed_ports.is_empty() { dt { "Exposed ports" } dd { (c.exposed_ports.join(", ")) } }
                @if !c.env.is_empty() {
                    dt { "Environment" }
                    dd { @for e in &c.env { code { (e) } br; } }
                }
            }
            @if !c.labels.is_empty() {
                h2 { "Labels" }
                (pairs(c.labels.iter()))
            }
        }
        @if !s.parts.is_empty() {
            h2 { "Blobs" }
            table {
                thead { tr { th { "Digest" } th { "Size" } th.optional { "Media type" } } }
                tbody {
                    @for p in &s.parts {
                        tr {
                            td.digest title=(p.digest) { (short(&p.digest)) }
                            td { (human_bytes(p.size)) }
                            td.optional { (p.media_type) }
                        }
                    }
                }
            }
            p.muted { "In all " (human_bytes(s.parts.iter().map(|p| p.size).sum())) "." }
        }
        @if !s.annotations.is_empty() {
            h2 { "Annotations" }
            (pairs(s.annotations.iter()))
        }
    }
}

fn pairs<'a>(items: impl Iterator<Item = (&'a String, &'a String)>) -> Markup {
    html! {
        table.pairs {
            tbody { @for (k, v) in items { tr { td { code { (k) } } td { (v) } } } }
        }
    }
}

/// `POST /r/<repository>/star` (`on=1` stars, anything else unstars) for a signed-in viewer.
pub(super) async fn star(
    cx: &Cx<'_>,
    viewer: &super::Viewer,
    name: &str,
    on: bool,
) -> anyhow::Result<Option<Response<Body>>> {
    let appview = cx.site.appview;
    let Ok(repo_name) = name.parse::<crate::oci::name::RepoName>() else {
        return Ok(None);
    };
    let Ok(located) = appview.locate(&repo_name) else {
        return Ok(None);
    };
    if !visible(cx)? || !appview.index().repo_exists(&located.key)? {
        return Ok(None);
    }
    match appview.set_star(&viewer.did, &located, on).await {
        Ok(()) => {}
        // A user of another PDS whose session there ended (its refresh refused, revoked):
        // asked to sign in again, and brought back here.
        Err(crate::appview::AppViewError::RemoteSession(_)) => {
            let back = format!("/r/{}", display_name(cx.site, &located.key));
            let why = "Your session at your PDS has ended; sign in again.";
            return Ok(Some(super::signin::signin_page(cx, Some(why), Some(&back))));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Some(super::redirect(
        &format!("/r/{}", display_name(cx.site, &located.key)),
        None,
    )))
}

/// Whether `media_type` is an image's config: a manifest whose artifact type is only that is
/// a plain image, not an artifact.
fn is_image_config(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.config.v1+json"
            | "application/vnd.docker.container.image.v1+json"
    )
}

/// "1 repository", "2 repositories".
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
