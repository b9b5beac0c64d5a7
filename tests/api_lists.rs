//! Tag lists and the catalog over real HTTP: lexical order, `n`/`last` pages, the page cap.

mod inproc;

use atcr::hold::Permission;
use inproc::{OCI_MANIFEST, TestServer, expect_error, header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn list(s: &TestServer, path: &str) -> (String, Value) {
    let r = s.req(Method::GET, path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    let link = header(&r, "link");
    (
        link,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn tag_list_and_catalog_pagination() {
    let s = TestServer::start().await;
    let (_, body) = s.push_image("t/p/q", "a", &[], json!({})).await;
    for tag in ["d", "b", "c", "e"] {
        s.put_manifest("t/p/q", tag, OCI_MANIFEST, &body).await;
    }
    let r = s
        .req(Method::GET, "/v2/t/p/q/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "link"), "");
    let list: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        list,
        json!({"name": "t/p/q", "tags": ["a", "b", "c", "d", "e"]})
    );

    let r = s
        .req(Method::GET, "/v2/t/p/q/tags/list?n=2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/t/p/q/tags/list?n=2&last=b>; rel=\"next\""
    );
    let list: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(list["tags"], json!(["a", "b"]));
    let r = s
        .req(Method::GET, "/v2/t/p/q/tags/list?n=2&last=d")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "link"), "");
    let list: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(list["tags"], json!(["e"]));
    let r = s
        .req(Method::GET, "/v2/t/p/q/tags/list?n=0")
        .send()
        .await
        .unwrap();
    let list: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(list["tags"], json!([]));
    let r = s
        .req(Method::GET, "/v2/t/p/q/tags/list?n=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = s
        .req(Method::GET, "/v2/t/p/nothing/tags/list")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;

    for repo in ["t/z", "t/m", "t/a/b"] {
        s.push_image(repo, "t", &[], json!({})).await;
    }
    let r = s.req(Method::GET, "/v2/_catalog?n=2").send().await.unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/_catalog?n=2&last=t%2Fm>; rel=\"next\""
    );
    let list: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(list["repositories"], json!(["t/a/b", "t/m"]));
    let r = s
        .req(Method::GET, "/v2/_catalog?n=2&last=t/m")
        .send()
        .await
        .unwrap();
    let list: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(list["repositories"], json!(["t/p/q", "t/z"]));
}

#[tokio::test]
async fn catalog_is_lexical_by_name_across_owners() {
    let mut s = TestServer::start().await;
    let t = s.user.clone();
    s.push_image("t/m", "1", &[], json!({})).await;
    // Owners' DIDs are random: their order says nothing of their names' order.
    for owner in ["zoe", "amy", "mo"] {
        let did = s
            .app
            .pds
            .create_account(owner, "pw-of-someone", false)
            .await
            .unwrap()
            .did;
        s.app
            .hold
            .add_crew(
                &did,
                "write",
                &[Permission::BlobRead, Permission::BlobWrite],
            )
            .await
            .unwrap();
        s.user = did;
        for repo in ["b", "a/x"] {
            s.push_image(&format!("{owner}/{repo}"), "1", &[], json!({}))
                .await;
        }
    }
    s.user = t;
    let all = [
        "amy/a/x", "amy/b", "mo/a/x", "mo/b", "t/m", "zoe/a/x", "zoe/b",
    ];
    let (link, body) = list(&s, "/v2/_catalog").await;
    assert_eq!((link.as_str(), &body["repositories"]), ("", &json!(all)));

    // Pages of 3 follow the same order, each Link naming the last name shown.
    let mut path = "/v2/_catalog?n=3".to_owned();
    let mut seen = Vec::new();
    loop {
        let (link, body) = list(&s, &path).await;
        let page: Vec<String> = serde_json::from_value(body["repositories"].clone()).unwrap();
        assert!(page.len() <= 3);
        seen.extend(page);
        let Some(next) = link.strip_prefix('<').and_then(|l| l.split_once('>')) else {
            break;
        };
        path = next.0.to_owned();
    }
    assert_eq!(seen, all);
    let (link, body) = list(&s, "/v2/_catalog?n=2&last=mo/b").await;
    assert_eq!(body["repositories"], json!(["t/m", "zoe/a/x"]));
    assert_eq!(link, "</v2/_catalog?n=2&last=zoe%2Fa%2Fx>; rel=\"next\"");
}

#[tokio::test]
async fn pages_hold_at_most_a_thousand() {
    let s = TestServer::start().await;
    let (_, body) = s.push_image("t/many", "t0000", &[], json!({})).await;
    for i in 1..=1000 {
        s.put_manifest("t/many", &format!("t{i:04}"), OCI_MANIFEST, &body)
            .await;
    }
    // 1001 tags: no n, or n past the cap, gives 1000 and a Link to the rest.
    for query in ["", "?n=5000"] {
        let (link, body) = list(&s, &format!("/v2/t/many/tags/list{query}")).await;
        let tags = body["tags"].as_array().unwrap();
        assert_eq!(tags.len(), 1000);
        assert_eq!(
            (tags[0].as_str(), tags[999].as_str()),
            (Some("t0000"), Some("t0999"))
        );
        assert_eq!(
            link,
            "</v2/t/many/tags/list?n=1000&last=t0999>; rel=\"next\""
        );
    }
    let (link, body) = list(&s, "/v2/t/many/tags/list?n=1000&last=t0999").await;
    assert_eq!((link.as_str(), &body["tags"]), ("", &json!(["t1000"])));
}
