//! What clients can make the node log: nothing that forges a line, no control characters, and no
//! ERROR for the client's own mistakes (an unknown method, hanging up).
//!
//! One process-wide subscriber captures every line (spawned and blocking tasks included), so the
//! tests of this file share it and look only at what their own requests caused.

mod pds_node;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pds_node::Node;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line so far, as the binary would write them (no colours, debug level).
fn log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

fn text() -> String {
    String::from_utf8_lossy(&log().0.lock().unwrap()).into_owned()
}

const FORGED: &str = "2026-12-05T00:00:00.000000Z  WARN atcr::admin: forged";

#[tokio::test]
async fn a_method_name_cannot_forge_a_log_line() {
    log();
    let node = Node::start().await;
    let path =
        "/xrpc/x%0a2026-12-05T00:00:00.000000Z%20%20WARN%20atcr::admin:%20forged%00%1b[31m%0d";
    let r = node
        .client
        .get(format!("{}{path}", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_IMPLEMENTED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "MethodNotImplemented");

    let text = text();
    assert!(
        text.contains("forged"),
        "the refusal is logged (escaped): {text}"
    );
    for line in text.lines() {
        assert!(!line.starts_with(FORGED), "forged line: {line:?}");
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "control character in {line:?}"
        );
        assert!(
            !(line.contains(" ERROR ") && line.contains("forged")),
            "an unknown method is no error: {line:?}"
        );
    }
}

/// A client hanging up while `getRepo` streams is no failure of the node's.
#[tokio::test]
async fn a_client_leaving_get_repo_is_not_an_error() {
    log();
    let node = Node::start().await;
    let session = node.login("alice", "alice-pw").await;
    let token = session["accessJwt"].as_str().unwrap();
    let did = session["did"].as_str().unwrap().to_owned();
    // Well over what the socket buffers and the export's channel hold, so the export is still
    // writing when the client leaves.
    let text = "x".repeat(500_000);
    for _ in 0..30 {
        let (s, v) = node
            .post(
                "com.atproto.repo.createRecord",
                Some(token),
                json!({"repo": did, "collection": "app.test.big", "record": {"text": text}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = node.base.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET /xrpc/com.atproto.sync.getRepo?did={did} HTTP/1.1\r\nHost: x\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    drop(stream);

    let went_away = tokio::time::timeout(Duration::from_secs(20), async {
        while !self::text().contains("client went away during a repository export") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let text = self::text();
    assert!(
        went_away.is_ok(),
        "the export never saw the client leave: {text}"
    );
    assert!(
        !text.contains("repository export failed"),
        "a client leaving is logged as an error: {text}"
    );
}
