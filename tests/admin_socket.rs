//! `atcr user|hold|crew` while the daemon runs: they act through its admin socket, and fall
//! back to opening the state themselves when no daemon answers.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;

use common::Server;
use common::clients::token;

fn ok(srv: &Server, args: &[&str], stdin: &str) -> String {
    let out = srv.cli(args, stdin);
    assert!(
        out.status.success(),
        "atcr {args:?}: {}\n--- server log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.log_tail()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn administration_acts_through_the_running_daemon() {
    let mut srv = Server::start();
    let socket = srv.data_dir().join("admin.sock");
    let meta = std::fs::metadata(&socket).expect("the daemon made no admin socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // While the daemon holds the state, user/crew/hold commands go through it.
    let added = ok(
        &srv,
        &["user", "add", "carol", "--password-stdin"],
        "carol-pw\n",
    );
    assert!(added.starts_with("carol.atcr.test\tdid:plc:"), "{added}");
    let did = added.trim().split('\t').nth(1).unwrap().to_owned();
    assert!(ok(&srv, &["user", "list"], "").contains("carol\tcarol.atcr.test\tdid:plc:"));
    let crew = ok(&srv, &["crew", "list"], "");
    assert!(
        crew.contains(&format!(
            "{did}\tcarol.atcr.test\twrite\tblob:read,blob:write"
        )),
        "{crew}"
    );
    assert!(ok(&srv, &["hold", "show"], "").contains("crew\t2"));
    // The daemon knows the new account at once.
    let host = srv.host_port();
    assert!(
        token(&host, "carol", "carol-pw", &[]).is_some(),
        "no token for carol"
    );
    ok(
        &srv,
        &["user", "passwd", "carol", "--password-stdin"],
        "carol-new\n",
    );
    assert!(token(&host, "carol", "carol-pw", &[]).is_none());
    assert!(token(&host, "carol", "carol-new", &[]).is_some());
    ok(&srv, &["crew", "add", "carol", "--role", "read"], "");
    assert!(
        ok(&srv, &["crew", "list"], "")
            .contains(&format!("{did}\tcarol.atcr.test\tread\tblob:read\n"))
    );

    // Errors come back as the command's own: the daemon answered, so nothing is said about
    // the socket.
    let out = srv.cli(
        &["user", "add", "carol", "--password-stdin"],
        "other-password\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: handle already taken: carol.atcr.test")
            && !err.contains("no answer"),
        "{out:?}"
    );
    let out = srv.cli(&["crew", "remove", "nobody"], "");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no local user"),
        "{out:?}"
    );

    // Something that is not a request gets an error reply, and the daemon carries on.
    let mut raw = UnixStream::connect(&socket).unwrap();
    raw.write_all(b"{\"op\":\"drop_tables\"}").unwrap();
    raw.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    raw.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("not an administration request"), "{reply}");
    // A password too short for the command line is refused by the daemon too.
    for op in [
        r#"{"op":"user_add","name":"erin","password":"7-chars","admin":false}"#,
        r#"{"op":"user_passwd","name":"carol","password":"7-chars"}"#,
    ] {
        let mut raw = UnixStream::connect(&socket).unwrap();
        raw.write_all(op.as_bytes()).unwrap();
        raw.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = String::new();
        raw.read_to_string(&mut reply).unwrap();
        assert!(
            reply.contains("error") && reply.contains("at least 8 characters"),
            "{op}: {reply}"
        );
    }
    assert!(!ok(&srv, &["user", "list"], "").contains("erin"));
    assert!(token(&host, "carol", "carol-new", &[]).is_some());
    assert!(
        srv.log_tail().contains("op=\"user add\""),
        "{}",
        srv.log_tail()
    );
    assert!(
        !srv.log_tail().contains("carol-pw"),
        "a password reached the log"
    );

    // A crash leaves the socket file behind; commands then open the state themselves.
    srv.kill9();
    assert!(socket.exists());
    assert!(ok(&srv, &["user", "list"], "").contains("carol"));
    ok(&srv, &["user", "remove", "carol"], "");
    // The next start replaces the stale socket, and a clean stop removes it.
    srv.restart();
    assert!(!ok(&srv, &["user", "list"], "").contains("carol"));
    assert!(srv.stop(), "atcr serve did not stop cleanly");
    assert!(!socket.exists(), "the socket outlived the daemon");
}

/// `atcr gc` goes through the running daemon (which keeps serving), and opens the state itself
/// once the daemon is stopped.
#[test]
fn gc_runs_through_the_daemon_and_offline() {
    let mut srv = Server::start_with(&[("ATCR_GC_GRACE_SECS", "0")]);
    let dry = ok(&srv, &["gc", "--dry-run"], "");
    assert!(dry.starts_with("would delete 0 of "), "{dry}");
    let done = ok(&srv, &["gc"], "");
    assert!(done.starts_with("deleted 0 of "), "{done}");
    assert!(
        srv.log_tail().contains("garbage collection finished"),
        "the daemon ran it"
    );
    assert!(srv.stop());
    let offline = ok(&srv, &["gc", "--dry-run"], "");
    assert!(offline.starts_with("would delete 0 of "), "{offline}");
}

/// A dry run through the daemon also says what the retention rules would delete now, and
/// deletes nothing.
#[test]
fn gc_dry_run_lists_what_retention_would_delete() {
    let srv = Server::start_with(&[
        ("ATCR_RETENTION_INTERVAL_SECS", "86400"),
        ("ATCR_RETENTION_DRY_RUN", "true"),
        (
            "ATCR_RETENTION_RULES",
            r#"[{ repositories = "admin/*", keep_newest = 1 }]"#,
        ),
    ]);
    let base = srv.base_url();
    let old = common::clients::push_with_curl(&base, "admin/app", "old", b"old layer");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let _new = common::clients::push_with_curl(&base, "admin/app", "new", b"new layer");
    let dry = ok(&srv, &["gc", "--dry-run"], "");
    assert!(
        dry.contains(
            "retention would delete from admin/app: 1 tags (old) and 0 untagged manifests"
        ),
        "{dry}"
    );
    let again = ok(&srv, &["gc", "--dry-run"], "");
    assert!(
        again.contains("1 tags (old)"),
        "the dry run deleted: {again}"
    );
    assert_eq!(
        common::clients::head_digest(&srv, "admin/app", "old"),
        old.manifest
    );
}
