//! Connection handling against misbehaving clients: idle sockets, an HTTP/2 preface and
//! nothing more, slow bodies, more connections than allowed, bodies sent to a refusing endpoint.
//! Timeouts are configured short; every wait is bounded, and only states are asserted.

mod inproc;

use std::time::Duration;

use atcr::server::ServerLimits;
use inproc::{TestServer, header};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The bound on every wait: far above the configured timeouts, so only a hole makes it.
const BOUND: Duration = Duration::from_secs(20);

fn limits() -> ServerLimits {
    ServerLimits {
        idle_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        header_read_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    }
}

async fn connect(s: &TestServer) -> TcpStream {
    TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes; returns what it sent. Panics if it does not close in time.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    got
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let s = TestServer::start_with_limits(limits()).await;
    let mut silent = connect(&s).await;
    assert!(read_to_close(&mut silent).await.is_empty());
    // A few bytes, never a full request head.
    let mut partial = connect(&s).await;
    partial.write_all(b"GET /v2/ HT").await.unwrap();
    read_to_close(&mut partial).await;
}

#[tokio::test]
async fn an_h2c_preface_alone_is_closed() {
    let s = TestServer::start_with_limits(limits()).await;
    let mut h2 = connect(&s).await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    read_to_close(&mut h2).await;
    // The preface and the client's SETTINGS, then silence: an HTTP/2 connection with no stream.
    let mut h2 = connect(&s).await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    read_to_close(&mut h2).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let s = TestServer::start_with_limits(limits()).await;
    let mut c = connect(&s).await;
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut c).await;
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
}

#[tokio::test]
async fn a_stalled_body_is_cut_off() {
    let s = TestServer::start_with_limits(ServerLimits {
        // The connection is busy with the request: only the body timeout can end it.
        idle_timeout: BOUND * 2,
        ..limits()
    })
    .await;
    let r = s
        .req(Method::POST, "/v2/t/slow/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    let token = s.token_for(&Method::PATCH, &location);
    let mut c = connect(&s).await;
    c.write_all(
        format!(
            "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n0123456789"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let got = String::from_utf8_lossy(&read_to_close(&mut c).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    // Nothing of the stalled chunk was kept.
    let r = s.req(Method::GET, &location).send().await.unwrap();
    assert_eq!(header(&r, "range"), "0-0");
}

/// With room for N connections, N + k idle ones hold up a fresh request only until the idle
/// ones are closed; the server keeps accepting afterwards.
#[tokio::test]
async fn more_idle_connections_than_allowed_do_not_stop_the_server() {
    const N: usize = 4;
    let s = TestServer::start_with_limits(ServerLimits {
        max_connections: N,
        ..limits()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..N + 3 {
        idle.push(connect(&s).await);
    }
    // Fresh connections each time: a pooled one may be the server's to close as idle just as
    // the client reuses it (a race every keep-alive client handles by retrying).
    atcr::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(BOUND)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Every idle connection, the ones that waited in the backlog too, is closed in the end.
    for c in &mut idle {
        read_to_close(c).await;
    }
    for _ in 0..3 {
        let r = client.get(s.url("/v2/")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
}

/// A 2 MB body sent to an endpoint that refuses without reading it: the client reads the whole
/// answer instead of a connection reset.
#[tokio::test]
async fn a_refused_large_body_still_gets_its_answer() {
    let s = TestServer::start_with_limits(limits()).await;
    for path in [
        "/nothing/here",
        "/v2/t/r/blobs/uploads/",
        "/xrpc/no.such.method",
    ] {
        let mut c = connect(&s).await;
        let body = vec![b'x'; 2 << 20];
        c.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let (mut rd, mut wr) = c.into_split();
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&body).await;
            wr
        });
        let mut got = Vec::new();
        let read = tokio::time::timeout(BOUND, async {
            let mut buf = [0u8; 4096];
            loop {
                let n = rd.read(&mut buf).await.expect("the answer was reset");
                got.extend_from_slice(&buf[..n]);
                if n == 0 || answer_complete(&got) {
                    return;
                }
            }
        })
        .await;
        assert!(read.is_ok(), "{path}: no answer");
        let text = String::from_utf8_lossy(&got);
        assert!(answer_complete(&got), "{path}: incomplete answer {text}");
        assert!(
            text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 501"),
            "{path}: {text}"
        );
        writer.abort();
    }
}

/// Whether `got` holds a full response head and its `Content-Length` body.
fn answer_complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    body.len() >= length && length > 0
}

/// A client that asks for a blob and stops reading it: the response's writes make no progress,
/// and after the idle timeout the server drops the connection (and the file it was sending)
/// instead of holding it and its slot forever. A client that reads the same blob gets it whole.
#[tokio::test]
async fn a_client_that_stops_reading_a_blob_is_cut_off() {
    let s = TestServer::start_with_limits(limits()).await;
    // Far larger than what loopback socket buffers hold.
    let data = inproc::bytes(7, 48 << 20);
    let digest = s.push_blob("t/big", &data).await;
    let path = format!("/v2/t/big/blobs/{digest}");
    let token = s.token_for(&Method::GET, &path);
    let mut c = connect(&s).await;
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 1024];
    let n = c.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &head[..n]);
    // Read nothing for three idle timeouts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = read_to_close(&mut c).await;
    assert!(
        n + got.len() < data.len(),
        "the whole blob was sent to a client that stopped reading ({} bytes)",
        n + got.len()
    );
    let whole = s.req(Method::GET, &path).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert!(whole.bytes().await.unwrap()[..] == data[..]);
}
