use std::sync::Arc;

use super::*;
use crate::appview::index::Index;
use crate::pds::store::RemoteUser;
use crate::pds::{Pds, PdsSettings};
use crate::search::Search;

async fn appview() -> (tempfile::TempDir, AppView) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = crate::blobstore::BlobStore::memory().unwrap();
    let pds = Pds::open(dir.path(), PdsSettings::localhost(4000), blobs)
        .await
        .unwrap();
    let search = Arc::new(Search::in_memory().unwrap());
    let appview = AppView::new(Arc::new(pds), Index::in_memory().unwrap(), search).unwrap();
    (dir, appview)
}

/// Hosts are followed by how many users with images they host, then by how many with stars
/// only: strangers who only star cannot crowd out a team's PDS. Users without records here
/// open no connection.
#[tokio::test]
async fn hosts_with_pushers_come_before_hosts_of_stars_only() {
    let (_dir, appview) = appview().await;
    let store = appview.pds.store();
    let users = [
        ("a", "https://stars.example", Some("io.atcr.sailor.star")),
        ("b", "https://stars.example", Some("io.atcr.sailor.star")),
        ("c", "https://team.example", Some("io.atcr.tag")),
        ("d", "https://lone.example", Some("io.atcr.sailor.star")),
        ("e", "https://silent.example", None),
    ];
    for (name, pds, collection) in users {
        let did: Did = format!("did:plc:{}", name.repeat(24)).parse().unwrap();
        let user = RemoteUser {
            handle: None,
            pds: pds.to_owned(),
        };
        store.remember_remote_user(&did, user).await.unwrap();
        if let Some(collection) = collection {
            let record = Some(serde_json::json!({}));
            let write = (collection.to_owned(), "k".to_owned(), record);
            store.mirror_remote(&did, vec![write]).await.unwrap();
        }
    }
    assert_eq!(
        appview.remote_hosts().unwrap(),
        [
            "https://team.example",
            "https://stars.example",
            "https://lone.example"
        ]
    );
    // A user the operator vouches for (the hold's crew) puts their host first, whatever the
    // others hold.
    let crew: Did = format!("did:plc:{}", "d".repeat(24)).parse().unwrap();
    appview.vouch_for(Box::new(move |did| did == &crew));
    assert_eq!(appview.remote_hosts().unwrap()[0], "https://lone.example");
}
