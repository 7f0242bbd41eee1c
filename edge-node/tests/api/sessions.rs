//! Sessions of the LAN UI: a sign-in replaces the session the browser
//! presented, and a live stream (server-sent events) ends with its session
//! however it ends, while an alive one streams as long as it likes.

use std::time::{Duration, Instant};

use edge_node::auth::{Role, STAFF_IDLE_TIMEOUT_MS};
use ops_kit::serve::HEADER_READ_TIMEOUT;
use reqwest::StatusCode;

use crate::helpers::{TestNode, add_user, form_client, set_cookie, sign_in};

/// Signs Alice in, presenting `cookie` if given; the new session cookie.
async fn alice(node: &TestNode, http: &reqwest::Client, cookie: Option<&str>) -> String {
    let response = sign_in(node, http, "Alice", "2468", cookie).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    set_cookie(&response, "edge_session").expect("a session")
}

/// The status of the staff page with `cookie`: 200 signed in, 303 not.
async fn staff_page(node: &TestNode, http: &reqwest::Client, cookie: &str) -> StatusCode {
    http.get(format!("{}/staff", node.base))
        .header("cookie", cookie)
        .send()
        .await
        .expect("staff")
        .status()
}

fn sessions_in(node: &TestNode) -> i64 {
    rusqlite::Connection::open(node.store.path())
        .expect("open")
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .expect("count")
}

#[tokio::test]
async fn signing_in_again_replaces_the_session_the_browser_presented() {
    let node = TestNode::start().await;
    add_user(node.dir.path(), "Alice", Role::Staff, "2468");
    let http = form_client();
    let first = alice(&node, &http, None).await;
    let second = alice(&node, &http, Some(&first)).await;
    assert_ne!(first, second);
    assert_eq!(
        staff_page(&node, &http, &first).await,
        StatusCode::SEE_OTHER
    );
    let api = http
        .get(node.url("/bookings"))
        .header("cookie", &first)
        .send()
        .await
        .expect("api");
    assert_eq!(
        api.status(),
        StatusCode::UNAUTHORIZED,
        "the old cookie is dead"
    );
    assert_eq!(staff_page(&node, &http, &second).await, StatusCode::OK);
    assert_eq!(sessions_in(&node), 1, "the old session's row is gone");
    // Another browser signing in leaves this one signed in.
    let elsewhere = alice(&node, &http, None).await;
    assert_eq!(staff_page(&node, &http, &second).await, StatusCode::OK);
    assert_eq!(staff_page(&node, &http, &elsewhere).await, StatusCode::OK);
    assert_eq!(sessions_in(&node), 2);
    node.stop().await;
}

/// A live stream of the UI, read by hand.
struct Stream(reqwest::Response);

impl Stream {
    async fn open(node: &TestNode, cookie: &str) -> Self {
        let response = node
            .http
            .get(format!("{}/events", node.base))
            .header("cookie", cookie)
            .send()
            .await
            .expect("events");
        assert_eq!(response.status(), StatusCode::OK);
        Self(response)
    }

    /// The next chunk, or `None` once the server ended the stream; panics
    /// if nothing comes within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<String> {
        match tokio::time::timeout(limit, self.0.chunk()).await {
            Ok(Ok(Some(bytes))) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Ok(Ok(None) | Err(_)) => None,
            Err(_) => panic!("the stream neither sent nor ended within {limit:?}"),
        }
    }

    /// Reads until the stream ends; how long that took. Panics if it is
    /// still going after `limit`.
    async fn ended_within(&mut self, limit: Duration) -> Duration {
        let since = Instant::now();
        while self.next(limit).await.is_some() {
            assert!(since.elapsed() < limit, "the stream kept going");
        }
        since.elapsed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_ends_at_sign_out_and_when_its_session_is_replaced() {
    let node = TestNode::start().await;
    add_user(node.dir.path(), "Alice", Role::Staff, "2468");
    let http = form_client();

    let cookie = alice(&node, &http, None).await;
    let mut stream = Stream::open(&node, &cookie).await;
    let first = stream.next(Duration::from_secs(5)).await.expect("an event");
    assert!(first.contains("event: status"), "{first}");
    let out = http
        .post(format!("{}/signout", node.base))
        .header("cookie", &cookie)
        .header("origin", &node.base)
        .send()
        .await
        .expect("sign out");
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let took = stream.ended_within(Duration::from_secs(2)).await;
    assert!(
        took < Duration::from_secs(2),
        "ended {took:?} after sign-out"
    );
    let again = node
        .http
        .get(format!("{}/events", node.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("events");
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);

    let old = alice(&node, &http, None).await;
    let mut stream = Stream::open(&node, &old).await;
    stream.next(Duration::from_secs(5)).await.expect("an event");
    let new = alice(&node, &http, Some(&old)).await;
    stream.ended_within(Duration::from_secs(2)).await;
    // The new session streams.
    let mut fresh = Stream::open(&node, &new).await;
    assert!(fresh.next(Duration::from_secs(5)).await.is_some());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_outlasts_the_header_timeout_and_ends_with_the_idle_timeout() {
    let node = TestNode::start().await;
    add_user(node.dir.path(), "Alice", Role::Staff, "2468");
    let http = form_client();
    let cookie = alice(&node, &http, None).await;
    let mut stream = Stream::open(&node, &cookie).await;
    let opened = Instant::now();
    // A stream is an answer, not a slow request: no timeout cuts it.
    while opened.elapsed() < HEADER_READ_TIMEOUT + Duration::from_secs(2) {
        let chunk = stream.next(Duration::from_secs(5)).await;
        assert!(
            chunk.is_some(),
            "the stream ended after {:?}",
            opened.elapsed()
        );
    }
    // Nobody touches the session for longer than its idle timeout.
    node.clock.advance_ms(STAFF_IDLE_TIMEOUT_MS + 1000);
    stream.ended_within(Duration::from_secs(6)).await;
    assert_eq!(
        staff_page(&node, &http, &cookie).await,
        StatusCode::SEE_OTHER
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_live_stream_open_stops_at_once() {
    let node = TestNode::start().await;
    add_user(node.dir.path(), "Alice", Role::Staff, "2468");
    let http = form_client();
    let cookie = alice(&node, &http, None).await;
    let mut stream = Stream::open(&node, &cookie).await;
    stream.next(Duration::from_secs(5)).await.expect("an event");
    let asked = Instant::now();
    node.stop().await;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "stopping waited {:?} for the stream",
        asked.elapsed()
    );
    stream.ended_within(Duration::from_secs(2)).await;
}
