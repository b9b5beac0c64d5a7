//! `atcr index rebuild` through the binary: after a push with skopeo, the daemon stopped, the
//! index rebuilt from the records, the registry serves the same tags and manifests.

mod common;

use common::clients::{Clients, curl, required};
use common::{Server, images};

#[test]
fn index_rebuild_keeps_what_the_registry_serves() {
    if !required(&["skopeo", "curl"]) {
        return;
    }
    let mut srv = Server::start();
    let c = Clients::new();
    let local = images::single_image(
        &c.path("src"),
        "t",
        &[images::random_layer(images::fresh_seed(), 2048)],
    );
    for tag in ["1", "2"] {
        srv.must(&mut c.skopeo_copy(
            &local.reference(),
            &format!("docker://{}/admin/app:{tag}", srv.host_port()),
            &[],
        ));
    }
    let answers = |srv: &Server| {
        [
            "/v2/_catalog",
            "/v2/admin/app/tags/list",
            "/v2/admin/app/manifests/2",
        ]
        .iter()
        .map(|p| {
            let r = curl(
                "GET",
                &format!("{}{p}", srv.base_url()),
                &[("Accept", images::OCI_MANIFEST)],
                None,
            );
            (r.status, r.text())
        })
        .collect::<Vec<_>>()
    };
    let before = answers(&srv);
    assert!(before.iter().all(|(s, _)| *s == 200), "{before:?}");

    assert!(srv.stop(), "atcr serve did not stop cleanly");
    let out = srv.cli(&["index", "rebuild"], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("1 manifests, 2 tags"),
        "atcr index rebuild printed {stdout:?}"
    );
    srv.restart_same_port();
    assert_eq!(answers(&srv), before);
}
