//! Connections that send too little: a client that trickles a request head
//! (slowloris) or says nothing is closed after the header read timeout, and
//! a node asked to stop with such connections, or with a request stuck in
//! flight, stops within its shutdown grace.

use std::time::{Duration, Instant};

use ops_kit::serve::{HEADER_READ_TIMEOUT, SHUTDOWN_GRACE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestNode;

/// Slack for a loaded two-core machine on either side of a timeout.
const SLACK: Duration = Duration::from_secs(3);

/// Opens a connection to `base` and sends `bytes` (maybe nothing).
async fn connect(base: &str, bytes: &[u8]) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

/// Reads until the server closes the connection; how long that took, from
/// `since`.
async fn closed_after(mut stream: TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    let limit = HEADER_READ_TIMEOUT + SHUTDOWN_GRACE + SLACK;
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_or_says_nothing_is_closed_after_the_header_read_timeout() {
    let node = TestNode::start().await;
    let opened = Instant::now();
    let half_line = connect(&node.base, b"GET /healthz HT").await;
    let silent = connect(&node.base, b"").await;
    let headers_unfinished = connect(
        &node.base,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n",
    )
    .await;
    // Meanwhile the node answers everyone else.
    let (status, _) = node.get(&node.kiosk, "/sync/status").await;
    assert_eq!(status, 200);
    let (half_line, silent, headers_unfinished) = tokio::join!(
        closed_after(half_line, opened),
        closed_after(silent, opened),
        closed_after(headers_unfinished, opened),
    );
    for (what, took) in [
        ("half a request line", half_line),
        ("nothing", silent),
        ("headers without their end", headers_unfinished),
    ] {
        assert!(
            took >= HEADER_READ_TIMEOUT - Duration::from_millis(500)
                && took <= HEADER_READ_TIMEOUT + SLACK,
            "a client that sent {what} was closed after {took:?}"
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_asked_to_stop_with_stuck_connections_stops_within_its_grace() {
    let node = TestNode::start().await;
    let _half_line = connect(&node.base, b"GET /healthz HT").await;
    // A request whose body never comes: in flight until the grace ends.
    let request = format!(
        "POST /api/v1/bookings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"lines\": [",
        node.kiosk
    );
    let _stuck = connect(&node.base, request.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    tokio::time::timeout(SHUTDOWN_GRACE + SLACK, node.stop())
        .await
        .expect("the node stops within its shutdown grace");
    let took = asked.elapsed();
    assert!(
        took >= SHUTDOWN_GRACE - Duration::from_millis(500),
        "the stuck request had its grace: stopped after {took:?}"
    );
}
