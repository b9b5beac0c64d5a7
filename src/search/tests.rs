//! Relevance on a fixed corpus: the expected top results for a set of queries.

use super::*;

const NOW: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

fn repo(name: &str, description: &str) -> RepoDoc {
    let owner = name.split('/').next().unwrap_or_default().to_owned();
    RepoDoc {
        key: format!("did:plc:{owner}/{name}"),
        name: name.to_owned(),
        handle: Some(format!("{owner}.atcr.test")),
        owner,
        description: description.to_owned(),
        tags: vec!["latest".into()],
        platforms: vec!["linux/amd64".into()],
        pushed: NOW - 10 * DAY,
        ..RepoDoc::default()
    }
}

fn corpus() -> Vec<RepoDoc> {
    vec![
        RepoDoc {
            stars: 10,
            tags: vec!["latest".into(), "1.25".into()],
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            ..repo("alice/nginx-proxy", "Reverse proxy with TLS termination")
        },
        repo("bob/nginx", "A web server build"),
        RepoDoc {
            tags: vec!["16".into(), "15".into()],
            ..repo(
                "carol/postgres",
                "PostgreSQL database server with nightly backups",
            )
        },
        RepoDoc {
            platforms: vec!["linux/arm64/v8".into()],
            ..repo("dave/redis-cache", "In-memory key-value cache")
        },
        RepoDoc {
            readme: "# Web\n\nThe storefront application, written in TypeScript. <b>not bold</b>"
                .into(),
            tags: vec!["v2".into()],
            ..repo("erin/web-frontend", "")
        },
        RepoDoc {
            annotations: vec!["Acme Corp".into(), "Apache-2.0".into()],
            ..repo(
                "frank/ml/pytorch-train",
                "Training images for machine learning models",
            )
        },
        repo("alice/tools", "Debugging utilities: curl, dig, tcpdump"),
        repo("gina/prometheus-exporter", "Exports metrics for monitoring"),
        RepoDoc {
            pushed: NOW - 900 * DAY,
            ..repo("old/nginx-legacy", "Deprecated web server image")
        },
    ]
}

fn index(docs: &[RepoDoc]) -> Search {
    let search = Search::in_memory().unwrap();
    search.update(docs, &[], 1, false).unwrap();
    search
}

fn names(search: &Search, q: &str) -> Vec<String> {
    search
        .search(q, 0, NOW)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.name)
        .collect()
}

#[test]
fn expected_top_results() {
    let s = index(&corpus());
    let nginx = names(&s, "nginx");
    assert_eq!(nginx.len(), 3, "{nginx:?}");
    assert_eq!(nginx[2], "old/nginx-legacy", "old and unstarred ranks last");
    assert_eq!(
        names(&s, "ngnix").len(),
        3,
        "one typo (transposition) still finds nginx"
    );
    assert_eq!(names(&s, "nginc")[..1].len(), 1, "one typo (substitution)");
    assert_eq!(names(&s, "postg"), ["carol/postgres"], "prefix of a name");
    assert_eq!(
        names(&s, "database"),
        ["carol/postgres"],
        "description words"
    );
    assert_eq!(names(&s, "databases"), ["carol/postgres"], "stemmed");
    assert_eq!(
        names(&s, "pytorch"),
        ["frank/ml/pytorch-train"],
        "path component"
    );
    assert_eq!(
        names(&s, "ml"),
        ["frank/ml/pytorch-train"],
        "middle path component"
    );
    assert_eq!(names(&s, "machine learning"), ["frank/ml/pytorch-train"]);
    assert_eq!(
        names(&s, "acme"),
        ["frank/ml/pytorch-train"],
        "annotation value"
    );
    assert_eq!(
        names(&s, "apache-2.0"),
        ["frank/ml/pytorch-train"],
        "license"
    );
    assert_eq!(
        names(&s, "storefront"),
        ["erin/web-frontend"],
        "README text"
    );
    assert_eq!(names(&s, "tcpdump"), ["alice/tools"]);
    assert_eq!(
        names(&s, "tls proxy"),
        ["alice/nginx-proxy"],
        "every word must match"
    );
    assert!(names(&s, "tls postgres").is_empty());
    assert_eq!(names(&s, "carol"), ["carol/postgres"], "owner name");
    assert_eq!(
        names(&s, "erin.atcr.test"),
        ["erin/web-frontend"],
        "owner handle"
    );
    let mut alice = names(&s, "owner:alice");
    alice.sort();
    assert_eq!(
        alice,
        ["alice/nginx-proxy", "alice/tools"],
        "owner filter alone"
    );
    assert_eq!(names(&s, "owner:alice nginx"), ["alice/nginx-proxy"]);
    assert!(names(&s, "owner:alice cache").is_empty());
    let mut arm = names(&s, "platform:arm64");
    arm.sort();
    assert_eq!(
        arm,
        ["alice/nginx-proxy", "dave/redis-cache"],
        "platform part"
    );
    assert_eq!(names(&s, "platform:linux/arm64/v8"), ["dave/redis-cache"]);
    assert_eq!(names(&s, "tag:16"), ["carol/postgres"], "tag filter");
    assert_eq!(names(&s, "1.25"), ["alice/nginx-proxy"], "a tag as a word");
    assert!(names(&s, "").is_empty());
    assert!(names(&s, "zzzzqqq").is_empty());
}

#[test]
fn snippets_highlight_and_escape() {
    let s = index(&corpus());
    let r = s.search("storefront", 0, NOW).unwrap();
    let html = &r.hits[0].snippet_html;
    assert!(html.contains("<b>storefront</b>"), "{html}");
    let r = s.search("bold", 0, NOW).unwrap();
    let html = &r.hits[0].snippet_html;
    assert!(
        html.contains("&lt;b&gt;"),
        "markup in a README is escaped: {html}"
    );
    for q in [
        "<script>alert(1)</script>",
        "owner:",
        "tag:",
        ":::",
        "\"unclosed",
        "*",
    ] {
        s.search(q, 0, NOW).unwrap();
    }
    s.search(&"long ".repeat(2000), 0, NOW).unwrap();
}

#[test]
fn a_snippet_never_repeats_the_description() {
    let s = index(&[
        repo("carol/postgres", "PostgreSQL database server"),
        RepoDoc {
            readme: "PostgreSQL database server\n\nWith nightly backups of the database.".into(),
            ..repo("dave/pg", "PostgreSQL database server")
        },
    ]);
    let r = s.search("database", 0, NOW).unwrap();
    assert_eq!(r.hits.len(), 2);
    for hit in &r.hits {
        assert_eq!(hit.description, "PostgreSQL database server");
        assert!(
            !hit.snippet_html.contains("PostgreSQL"),
            "the description is shown once, not again in the snippet: {hit:?}"
        );
    }
    let dave = r.hits.iter().find(|h| h.name == "dave/pg").unwrap();
    assert!(
        dave.snippet_html
            .contains("nightly backups of the <b>database</b>"),
        "the rest of the README still gives a snippet: {dave:?}"
    );
}

#[test]
fn stars_and_recency_break_ties() {
    let twins = |a: RepoDoc, b: RepoDoc| names(&index(&[a, b]), "widget");
    let w = |name: &str| repo(name, "A widget");
    assert_eq!(
        twins(
            w("x/widget"),
            RepoDoc {
                stars: 50,
                ..w("y/widget")
            }
        )[0],
        "y/widget"
    );
    assert_eq!(
        twins(
            RepoDoc {
                pushed: NOW - 400 * DAY,
                ..w("x/widget")
            },
            RepoDoc {
                pushed: NOW,
                ..w("y/widget")
            }
        )[0],
        "y/widget"
    );
}

#[test]
fn pages_updates_and_removals() {
    let docs: Vec<RepoDoc> = (0..25)
        .map(|i| repo(&format!("svc/service-{i:02}"), "A backend service"))
        .collect();
    let s = index(&docs);
    let first = s.search("service", 0, NOW).unwrap();
    assert_eq!((first.total, first.hits.len()), (25, PAGE_SIZE));
    let second = s.search("service", PAGE_SIZE, NOW).unwrap();
    assert_eq!(second.hits.len(), 5);
    assert!(
        second
            .hits
            .iter()
            .all(|h| !first.hits.iter().any(|f| f.key == h.key))
    );

    // An update replaces the document; a removal takes it out.
    let changed = RepoDoc {
        description: "Now a frontend".into(),
        ..docs[0].clone()
    };
    s.update(&[changed], &[docs[1].key.clone()], 7, false)
        .unwrap();
    assert_eq!(
        s.search("service", 0, NOW).unwrap().total,
        24,
        "its name still says service"
    );
    assert_eq!(names(&s, "frontend"), ["svc/service-00"]);
    assert_eq!(s.len(), 24);
    assert_eq!(s.cursor(), Some(7));
    s.update(&[], &[], 9, true).unwrap();
    assert!(s.is_empty());
}

#[test]
fn reopens_and_rebuilds_what_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search");
    let (s, fresh) = Search::open(&path).unwrap();
    assert!(fresh);
    s.update(&corpus(), &[], 3, false).unwrap();
    drop(s);
    let (s, fresh) = Search::open(&path).unwrap();
    assert!(!fresh);
    assert_eq!(s.cursor(), Some(3));
    assert_eq!(names(&s, "postgres"), ["carol/postgres"]);
    drop(s);
    std::fs::write(path.join("meta.json"), "garbage").unwrap();
    let (s, fresh) = Search::open(&path).unwrap();
    assert!(fresh && s.is_empty());
}

#[test]
fn keeps_one_writer_between_writes_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search");
    let (s, _) = Search::open(&path).unwrap();
    let second_writer = || {
        Index::open_in_dir(&path)
            .unwrap()
            .writer_with_num_threads::<TantivyDocument>(1, WRITER_BYTES)
            .map(drop)
    };
    s.update(&corpus()[..4], &[], 1, false).unwrap();
    // The writer stays open (and holds the index's writer lock) between writes…
    assert!(second_writer().is_err());
    s.update(&corpus()[4..], &[], 2, false).unwrap();
    let all = corpus().len() as u64;
    assert_eq!((s.len(), s.cursor()), (all, Some(2)));
    // …until it is closed; the next write opens another.
    s.close_writer().unwrap();
    second_writer().unwrap();
    s.update(&[], &["did:plc:bob/bob/nginx".to_owned()], 3, false)
        .unwrap();
    assert_eq!(s.len(), all - 1);

    // A rebuild takes the open writer; one dropped unfinished changes nothing.
    let mut bulk = s.bulk().unwrap();
    bulk.add(&corpus()[0]).unwrap();
    drop(bulk);
    assert_eq!(s.len(), all - 1);
    let mut bulk = s.bulk().unwrap();
    bulk.add(&corpus()[0]).unwrap();
    bulk.finish(4).unwrap();
    assert_eq!((s.len(), s.cursor()), (1, Some(4)));
    assert!(second_writer().is_err());
    s.update(&corpus()[1..3], &[], 5, false).unwrap();
    assert_eq!(s.len(), 3);
}
