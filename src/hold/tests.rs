use super::*;
use crate::blobstore::BlobStore;
use crate::pds::PdsSettings;

fn did(s: &str) -> Did {
    s.parse().unwrap()
}

fn crew(member: &str, permissions: &[&str]) -> CrewMember {
    CrewMember {
        member: did(member),
        role: "test".into(),
        permissions: permissions.iter().map(|&p| p.to_owned()).collect(),
        rkey: member.parse().unwrap(),
        cid: Value::Null.cid(),
        added_at: "2025-01-01T00:00:00Z".into(),
    }
}

#[test]
fn permission_matrix() {
    use Permission::{BlobRead as R, BlobWrite as W, CrewAdmin as A};
    let owner = did("did:plc:owner");
    let captain = |public| Captain {
        owner: owner.clone(),
        public,
        allow_all_crew: false,
        enable_bluesky_posts: false,
        deployed_at: "2025-01-01T00:00:00Z".into(),
        region: None,
        successor: None,
    };
    let read = crew("did:plc:reader", &["blob:read"]);
    // `blob:write` alone: it implies reading.
    let write = crew("did:plc:writer", &["blob:write"]);
    // `crew:admin` alone grants no blob access on a private hold.
    let admin = crew("did:plc:admin", &["crew:admin"]);
    let stranger = did("did:plc:stranger");
    let who: [(&str, Option<&Did>, Option<&CrewMember>); 6] = [
        ("anonymous", None, None),
        ("owner", Some(&owner), None),
        ("crew read", Some(&read.member), Some(&read)),
        ("crew write", Some(&write.member), Some(&write)),
        ("crew admin", Some(&admin.member), Some(&admin)),
        ("stranger", Some(&stranger), None),
    ];
    // Per caller: [public hold: read, write, admin], [private hold: read, write, admin].
    let expected: [[[bool; 3]; 2]; 6] = [
        [[true, false, false], [false, false, false]],
        [[true, true, true], [true, true, true]],
        [[true, false, false], [true, false, false]],
        [[true, true, false], [true, true, false]],
        [[true, false, true], [false, false, true]],
        [[true, false, false], [false, false, false]],
    ];
    for ((name, caller, record), rows) in who.iter().zip(expected) {
        for (public, row) in [true, false].into_iter().zip(rows) {
            for (want, expect) in [R, W, A].into_iter().zip(row) {
                assert_eq!(
                    permitted(&captain(public), *record, *caller, want),
                    expect,
                    "{name}, public {public}, {want}"
                );
            }
        }
    }
    // Someone else's crew record grants nothing.
    assert!(!permitted(
        &captain(false),
        Some(&write),
        Some(&stranger),
        W
    ));
    assert!(!permitted(&captain(false), Some(&write), None, R));
}

#[test]
fn permissions_and_roles_parse() {
    for p in Permission::ALL {
        assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
    }
    assert!("blob:delete".parse::<Permission>().is_err());
    assert_eq!(role_permissions("read"), Some(&[Permission::BlobRead][..]));
    assert_eq!(role_permissions("admin").map(<[_]>::len), Some(3));
    assert_eq!(role_permissions("captain"), None);
}

async fn hold() -> (tempfile::TempDir, Hold) {
    let dir = tempfile::tempdir().unwrap();
    let pds = Pds::open(
        dir.path(),
        PdsSettings::localhost(4000),
        BlobStore::memory().unwrap(),
    )
    .await
    .unwrap();
    (dir, Hold::new(Arc::new(pds)))
}

fn head_rev(hold: &Hold) -> crate::atproto::Tid {
    hold.pds
        .repos
        .store()
        .head(&hold.pds.node_did)
        .unwrap()
        .unwrap()
        .rev
}

#[tokio::test]
async fn ensure_captain_writes_once() {
    let (_dir, hold) = hold().await;
    assert!(matches!(hold.captain(), Err(HoldError::NoCaptain)));
    assert!(matches!(
        hold.allows(None, Permission::BlobRead),
        Err(HoldError::NoCaptain)
    ));
    let first = hold.ensure_captain().await.unwrap();
    assert_eq!(first.owner, hold.pds.node_did);
    assert!(first.public && !first.allow_all_crew && !first.enable_bluesky_posts);
    let rev = head_rev(&hold);
    let again = hold.ensure_captain().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(head_rev(&hold), rev, "no second commit");
    // A second Hold over the same PDS (a restart) reads the record, and writes nothing.
    let other = Hold::new(hold.pds.clone());
    assert_eq!(other.ensure_captain().await.unwrap(), first);
    assert_eq!(head_rev(&hold), rev);
}

#[tokio::test]
async fn crew_is_matched_on_the_member_field() {
    let (_dir, hold) = hold().await;
    hold.ensure_captain().await.unwrap();
    let alice = did("did:plc:alice");
    let node = hold.pds.node_did.clone();
    // Another implementation's record: a TID key.
    let foreign = |perms: &[&str]| WriteOp::Create {
        collection: nsid(CREW),
        rkey: None,
        value: json_value(&serde_json::json!({
            "member": alice.as_str(),
            "role": "read",
            "permissions": perms,
            "addedAt": "2025-01-01T00:00:00Z",
        }))
        .unwrap(),
    };
    hold.pds
        .repos
        .apply_writes(
            &node,
            vec![foreign(&["blob:read"])],
            None,
            Validation::Require,
        )
        .await
        .unwrap();
    let m = hold.member(&alice).unwrap().unwrap();
    assert_ne!(m.rkey.as_str(), alice.as_str());
    assert_eq!(m.permissions, ["blob:read"]);

    // Replacing the membership drops the foreign record and writes one under the DID.
    let added = hold
        .add_crew(
            &alice,
            "write",
            &[Permission::BlobRead, Permission::BlobWrite],
        )
        .await
        .unwrap();
    assert_eq!(added.rkey.as_str(), alice.as_str());
    let crew = hold.crew().unwrap();
    assert_eq!(crew.len(), 1);
    assert_eq!(crew[0], added);
    assert_eq!(crew[0].role, "write");
    // Adding again replaces the record in place.
    let again = hold
        .add_crew(&alice, "read", &[Permission::BlobRead])
        .await
        .unwrap();
    assert_eq!(again.rkey, added.rkey);
    assert_eq!(hold.crew().unwrap().len(), 1);

    // Two records for alice (ours and a foreign one) and one for bob: removing alice deletes
    // both of hers in one commit and keeps bob's.
    let bob = did("did:plc:bob");
    hold.add_crew(&bob, "read", &[Permission::BlobRead])
        .await
        .unwrap();
    hold.pds
        .repos
        .apply_writes(
            &node,
            vec![foreign(&["blob:write"])],
            None,
            Validation::Require,
        )
        .await
        .unwrap();
    assert_eq!(hold.crew().unwrap().len(), 3);
    let seq = hold.pds.store().last_seq().unwrap();
    assert!(hold.remove_crew(&alice).await.unwrap());
    assert_eq!(hold.pds.store().last_seq().unwrap(), seq + 1);
    let crew = hold.crew().unwrap();
    assert_eq!(crew.len(), 1);
    assert_eq!(crew[0].member, bob);
    assert!(!hold.remove_crew(&alice).await.unwrap());
    assert_eq!(hold.pds.store().last_seq().unwrap(), seq + 1);
}

#[tokio::test]
async fn a_did_that_is_no_record_key_gets_a_tid() {
    let (_dir, hold) = hold().await;
    hold.ensure_captain().await.unwrap();
    let web = did("did:web:localhost%3A5000");
    let m = hold
        .add_crew(&web, "read", &[Permission::BlobRead])
        .await
        .unwrap();
    assert_eq!(m.rkey.as_str().len(), 13, "{}", m.rkey);
    let again = hold
        .add_crew(&web, "write", &[Permission::BlobWrite])
        .await
        .unwrap();
    let crew = hold.crew().unwrap();
    assert_eq!(crew.len(), 1);
    assert_eq!(crew[0], again);
}

#[tokio::test]
async fn the_snapshot_follows_the_repository() {
    let (_dir, hold) = hold().await;
    hold.ensure_captain().await.unwrap();
    let bob = did("did:plc:bob");
    assert!(hold.allows(None, Permission::BlobRead).unwrap());
    assert!(!hold.allows(Some(&bob), Permission::BlobWrite).unwrap());
    let rev = head_rev(&hold);
    assert_eq!(hold.cached().unwrap().head.rev, rev);

    hold.add_crew(&bob, "write", &[Permission::BlobWrite])
        .await
        .unwrap();
    assert!(hold.allows(Some(&bob), Permission::BlobWrite).unwrap());
    assert!(!hold.allows(Some(&bob), Permission::CrewAdmin).unwrap());

    let before = hold.captain().unwrap();
    let captain = hold
        .set_captain(None, Some(false), Some(true))
        .await
        .unwrap();
    assert!(!captain.public && captain.allow_all_crew);
    assert_eq!(captain.owner, before.owner);
    assert_eq!(captain.deployed_at, before.deployed_at);
    assert!(!hold.allows(None, Permission::BlobRead).unwrap());
    assert!(hold.allows(Some(&bob), Permission::BlobRead).unwrap());

    // A write that bypasses the Hold is seen too: the tag is the repository's revision.
    hold.pds
        .repos
        .apply_writes(
            &hold.pds.node_did,
            vec![WriteOp::Delete {
                collection: nsid(CREW),
                rkey: bob.as_str().parse().unwrap(),
                swap_record: None,
            }],
            None,
            Validation::Require,
        )
        .await
        .unwrap();
    assert!(!hold.allows(Some(&bob), Permission::BlobWrite).unwrap());
    assert_eq!(hold.cached().unwrap().head.rev, head_rev(&hold));

    hold.set_captain(Some(bob.clone()), None, None)
        .await
        .unwrap();
    assert!(hold.allows(Some(&bob), Permission::CrewAdmin).unwrap());
}

/// Writes `records` (collection, key, JSON) to `did`'s repository, checking only the data model.
async fn put_records(
    hold: &Hold,
    did: &Did,
    records: &[(&'static str, String, serde_json::Value)],
) {
    let writes = records
        .iter()
        .map(|(collection, key, value)| WriteOp::Create {
            collection: nsid(collection),
            rkey: Some(key.parse().unwrap()),
            value: json_value(value).unwrap(),
        })
        .collect();
    hold.pds
        .repos
        .apply_writes(did, writes, None, crate::pds::repo::Validation::Skip)
        .await
        .unwrap();
}

/// A layer record of `owner`'s manifest `digest` in repository `app`, written at `at`.
fn layer_of(owner: &Did, digest: &str, blob: &str, at: &str) -> serde_json::Value {
    let key = crate::atproto::atcr::manifest_rkey("app", digest);
    serde_json::json!({
        "$type": layers::LAYER,
        "digest": blob,
        "size": 1,
        "mediaType": "application/octet-stream",
        "manifest": format!("at://{owner}/io.atcr.manifest/{key}"),
        "repository": "app",
        "manifestDigest": digest,
        "userDid": owner.as_str(),
        "createdAt": at,
    })
}

#[tokio::test]
async fn collection_judges_only_manifests_gone_under_any_key_and_old_enough() {
    let (_dir, hold) = hold().await;
    hold.ensure_captain().await.unwrap();
    let alice = hold
        .pds
        .create_account("alice", "alice-pw!", false)
        .await
        .unwrap()
        .did;
    let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let (kept, gone, young) = (digest('a'), digest('b'), digest('c'));
    // `kept`'s manifest record exists under a key of another registry's making (the digest's
    // hex), not the one atcr derives; `gone`'s and `young`'s exist nowhere.
    put_records(
        &hold,
        &alice,
        &[(
            "io.atcr.manifest",
            kept["sha256:".len()..].to_owned(),
            serde_json::json!({
                "$type": "io.atcr.manifest",
                "repository": "app",
                "digest": kept,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "schemaVersion": 2,
                "createdAt": "2020-01-01T00:00:00Z",
            }),
        )],
    )
    .await;
    let old = "2020-01-01T00:00:00Z";
    let now = Datetime::now();
    let blob = digest('d');
    let node = hold.pds.node_did.clone();
    put_records(
        &hold,
        &node,
        &[
            (
                layers::LAYER,
                "3kaaaaaaaaaa2".into(),
                layer_of(&alice, &kept, &blob, old),
            ),
            (
                layers::LAYER,
                "3kaaaaaaaaab2".into(),
                layer_of(&alice, &gone, &blob, old),
            ),
            // Written a moment ago: the registry may be about to commit it, whatever the grace.
            (
                layers::LAYER,
                "3kaaaaaaaaac2".into(),
                layer_of(&alice, &young, &blob, now.as_str()),
            ),
        ],
    )
    .await;
    let report = hold
        .collect(crate::pds::accounts::now_secs(), 0, false)
        .await
        .unwrap();
    assert_eq!(report.manifests_checked, 2, "{report:?}");
    assert_eq!(report.manifests_gone, 1, "{report:?}");
    assert_eq!(report.layers_removed, 1, "{report:?}");
    let mut left = Vec::new();
    hold.each_layer(|l| left.push(l.manifest_digest.unwrap()))
        .unwrap();
    left.sort();
    assert_eq!(left, vec![kept, young]);
}

#[tokio::test]
async fn uploads_recorded_before_the_hold_first_collected_are_never_released() {
    let (_dir, hold) = hold().await;
    let store = hold.pds.store().clone();
    let node = hold.pds.node_did.clone();
    let meta = |created| crate::pds::store::BlobMeta {
        mime_type: "application/octet-stream".into(),
        size: 5,
        created,
    };
    let cid = |c: char| {
        uploads::raw_cid(
            &format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap(),
        )
        .unwrap()
    };
    // Uploaded by an earlier version, before this one first started the hold.
    store
        .put_blob_meta(&node, cid('a'), meta(1_000))
        .await
        .unwrap();
    hold.ensure_captain().await.unwrap();
    let now = crate::pds::accounts::now_secs();
    store
        .put_blob_meta(&node, cid('b'), meta(now))
        .await
        .unwrap();
    let report = hold.collect(now, 0, false).await.unwrap();
    assert_eq!(
        (report.blobs_released, report.bytes_released),
        (1, 5),
        "{report:?}"
    );
    assert!(store.blob_meta(&node, &cid('a')).unwrap().is_some());
    assert!(store.blob_meta(&node, &cid('b')).unwrap().is_none());
    // Starting again moves nothing: the first start stands.
    hold.ensure_captain().await.unwrap();
    assert_eq!(hold.collect(now, 0, false).await.unwrap().blobs_released, 0);
    assert!(store.blob_meta(&node, &cid('a')).unwrap().is_some());
}
