//! One-time enrollment tokens.

use serde_json::json;
use shared::signing::SigningKey;

use crate::world::World;

async fn enroll(world: &World, token: &str) -> (u16, serde_json::Value) {
    enroll_at(world.http.clone(), world.hub_url(), token.to_owned()).await
}

async fn enroll_at(http: reqwest::Client, hub: String, token: String) -> (u16, serde_json::Value) {
    let key = SigningKey::generate().expect("key");
    e2e::post(
        &http,
        &format!("{hub}/v1/sync/enroll"),
        "",
        &json!({"token": token, "public_key": key.public_key_b64(), "head_seq": 0}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_works_once() {
    let mut world = World::new();
    world.start_hub();
    let token = world.add_location("store-1");
    let (status, body) = enroll(&world, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["location"], "store-1");
    assert!(body["hub_public_key"].is_string());
    let (status, body) = enroll(&world, &token).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already used"))
    );
    let (status, _) = enroll(&world, "enroll_made-up").await;
    assert_eq!(status, 401);
    world.kill_hub();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused() {
    let mut world = World::new();
    world.start_hub();
    let token = world.add_location("store-1");
    // A day later.
    rusqlite::Connection::open(world.hub_dir.path().join("hub.db"))
        .expect("hub db")
        .execute(
            "UPDATE enrollment_tokens SET expires_at_ms = ?1",
            [jiff::Timestamp::now().as_millisecond() - 1],
        )
        .expect("age the token");
    let (status, body) = enroll(&world, &token).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired"))
    );
    world.kill_hub();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_uses_of_a_token_have_exactly_one_winner() {
    let mut world = World::new();
    world.start_hub();
    for round in 0..5 {
        let token = world.add_location(&format!("store-{round}"));
        let attempts: Vec<_> = (0..8)
            .map(|_| enroll_at(world.http.clone(), world.hub_url(), token.clone()))
            .collect();
        let results = futures_join_all(attempts).await;
        let winners = results.iter().filter(|(status, _)| *status == 200).count();
        let losers = results.iter().filter(|(status, _)| *status == 401).count();
        assert_eq!((winners, losers), (1, 7), "round {round}: {results:?}");
    }
    world.kill_hub();
}

async fn futures_join_all<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_hub_address_is_named_with_its_fix_and_changes_nothing() {
    let mut world = World::new();
    world.start_hub();
    let token = world.add_location("store-1");
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("store");
    let port = world.port;

    // No scheme: refused before anything is made.
    let said = e2e::run_failing(
        &world.bins.edge,
        &store_dir,
        &[
            "enroll",
            "--hub",
            &format!("127.0.0.1:{port}"),
            "--token",
            &token,
        ],
    );
    assert!(said.contains(&format!("http://127.0.0.1:{port}")), "{said}");
    assert!(
        !store_dir.exists(),
        "no data directory for a refused address"
    );

    // A port nothing listens on.
    let closed = e2e::free_port();
    let said = e2e::run_failing(
        &world.bins.edge,
        &store_dir,
        &[
            "enroll",
            "--hub",
            &format!("http://127.0.0.1:{closed}"),
            "--token",
            &token,
        ],
    );
    assert!(said.contains("nothing answers"), "{said}");
    assert!(said.contains("port"), "{said}");

    // A store's own address instead of the hub's.
    let other = tempfile::tempdir().expect("tempdir");
    e2e::run(
        &world.bins.edge,
        other.path(),
        &[
            "init",
            "--location",
            "elsewhere",
            "--timezone",
            "Europe/Berlin",
        ],
    );
    let served = e2e::Served::start(&world.bins.edge, other.path(), "127.0.0.1:0", &[], &[]);
    let said = e2e::run_failing(
        &world.bins.edge,
        &store_dir,
        &["enroll", "--hub", &served.base, "--token", &token],
    );
    assert!(said.contains("not as a hub"), "{said}");

    // The token was not spent by any of that.
    e2e::run(
        &world.bins.edge,
        &store_dir,
        &["enroll", "--hub", &world.hub_url(), "--token", &token],
    );
    served.kill();
    world.kill_hub();
}
