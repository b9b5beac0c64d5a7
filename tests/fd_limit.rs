//! The accept loop survives running out of file descriptors (`EMFILE`): it backs off and serves
//! the waiting client once descriptors are free again. Alone in its test binary: it lowers the
//! process's open-file limit.

mod inproc;

use std::time::Duration;

use atcr::server::ServerLimits;
use inproc::TestServer;
use rustix::process::{Resource, getrlimit, setrlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn accept_survives_running_out_of_descriptors() {
    let s = TestServer::start_with_limits(ServerLimits::default()).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let saved = getrlimit(Resource::Nofile);
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let mut lowered = saved;
    lowered.current = Some(open + 16);
    setrlimit(Resource::Nofile, lowered).unwrap();
    let mut fillers = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        fillers.push(f);
    }
    // One descriptor for the client; none is left for the server's accept.
    fillers.pop();
    let mut client = tokio::net::TcpStream::connect(&addr).await.unwrap();
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Several failed accepts (each backs off) while the descriptors stay exhausted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(fillers);
    setrlimit(Resource::Nofile, saved).unwrap();

    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the waiting client was never served");
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // And the server goes on accepting.
    atcr::tls::install_crypto_provider();
    let r = reqwest::get(s.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
}
