//! The hub's connections that send too little: a client that trickles a
//! request head (slowloris) or says nothing is closed after the header read
//! timeout, a long poll still gets its full wait, and a hub stopped with
//! SIGTERM while such connections are open exits within its shutdown
//! grace.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ops_kit::serve::{HEADER_READ_TIMEOUT, SHUTDOWN_GRACE};

use crate::world::World;

/// Slack for a loaded two-core machine on either side of a timeout.
const SLACK: Duration = Duration::from_secs(3);

fn connect(world: &World, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", world.port)).expect("connect");
    stream.write_all(bytes).expect("write");
    stream
        .set_read_timeout(Some(HEADER_READ_TIMEOUT + SHUTDOWN_GRACE + SLACK))
        .expect("read timeout");
    stream
}

/// Reads until the hub closes the connection; how long that took from
/// `since`. Panics if it stayed open past every bound.
fn closed_after(mut stream: TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the hub kept the connection open for {:?}", since.elapsed())
            }
            Err(_) => return since.elapsed(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_or_says_nothing_is_closed_after_the_header_read_timeout() {
    let mut world = World::new();
    world.start_hub();
    let opened = Instant::now();
    let half_line = connect(&world, b"GET /healthz HT");
    let silent = connect(&world, b"");
    let closed = tokio::task::spawn_blocking(move || {
        [
            closed_after(half_line, opened),
            closed_after(silent, opened),
        ]
    });
    // A long poll outlasts nothing: it waits its full time and answers.
    let token = world.add_location("store-1");
    let key = shared::signing::SigningKey::generate().expect("key");
    let (status, body) = e2e::post(
        &world.http,
        &format!("{}/v1/sync/enroll", world.hub_url()),
        "",
        &serde_json::json!({"token": token, "public_key": key.public_key_b64(), "head_seq": 0}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let pull = |path: String| {
        let timestamp = jiff::Timestamp::now().as_millisecond();
        let nonce = shared::signing::nonce().expect("nonce");
        let signature = key.sign_b64(&shared::signing::request_message(
            "GET", &path, timestamp, &nonce, b"",
        ));
        world
            .http
            .get(format!("{}{path}", world.hub_url()))
            .header(shared::signing::HEADER_DEVICE, "store-1")
            .header(shared::signing::HEADER_TIMESTAMP, timestamp.to_string())
            .header(shared::signing::HEADER_NONCE, nonce)
            .header(shared::signing::HEADER_SIGNATURE, signature)
            .send()
    };
    // What is there already (the news that store-1 joined), then a poll
    // with nothing to answer.
    let first: serde_json::Value = pull("/v1/sync/pull?after=0&wait_ms=0&protocol=2".into())
        .await
        .expect("pull")
        .json()
        .await
        .expect("json");
    let after = first["events"]
        .as_array()
        .and_then(|e| e.last())
        .and_then(|e| e["hub_seq"].as_u64())
        .unwrap_or(0);
    let polled = Instant::now();
    let response = pull(format!(
        "/v1/sync/pull?after={after}&wait_ms=4000&protocol=2"
    ))
    .await
    .expect("long poll");
    assert_eq!(response.status(), 200);
    assert!(polled.elapsed() >= Duration::from_millis(3900), "it waited");

    for (what, took) in ["half a request line", "nothing"]
        .into_iter()
        .zip(closed.await.expect("join"))
    {
        assert!(
            took >= HEADER_READ_TIMEOUT - Duration::from_millis(500)
                && took <= HEADER_READ_TIMEOUT + SLACK,
            "a client that sent {what} was closed after {took:?}"
        );
    }
    world.kill_hub();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_stopped_with_stuck_connections_exits_within_its_grace() {
    let mut world = World::new();
    world.start_hub();
    let _half_line = connect(&world, b"GET /healthz HT");
    // A push whose body never comes: in flight until the grace ends.
    let _stuck = connect(
        &world,
        b"POST /v1/sync/push HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"origin\"",
    );
    std::thread::sleep(Duration::from_millis(300));
    let hub = world.hub.take().expect("hub");
    let took = hub
        .terminate(SHUTDOWN_GRACE + SLACK)
        .expect("the hub exits within its shutdown grace");
    assert!(
        took >= SHUTDOWN_GRACE - Duration::from_millis(500),
        "the stuck request had its grace: exited after {took:?}"
    );
}
