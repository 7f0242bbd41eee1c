//! Running the hub for real: a backup taken while stores push restores to
//! a hub that serves the same fleet.

use std::time::Duration;

use e2e::{Served, get};

use crate::world::{Store, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_backup_taken_while_a_store_pushes_serves_the_same_fleet() {
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store.start(&world);
    store.stock(&world, "store-1:beans", 100_000).await;
    let before = store.book_many(&world, "store-1:beans", 200, 4).await;
    store.synced(&world, Duration::from_secs(30)).await;
    let head_before = world.hub_head("store-1");

    // The store goes on booking (and pushing) while the backup runs.
    let booking = {
        let (world_http, base, token) = (world.http.clone(), store.base(), store.token.clone());
        tokio::spawn(async move {
            for i in 0..300 {
                let body = serde_json::json!({"lines": [{"pool_id": "store-1:beans", "quantity": 1}],
                                              "customer": {"name": format!("during {i}")}});
                let (status, made) = e2e::post(
                    &world_http,
                    &format!("{base}/api/v1/bookings"),
                    &token,
                    &body,
                )
                .await;
                assert_eq!(status, 201, "{made}");
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let copy_dir = tempfile::tempdir().expect("tempdir");
    let said = world.hub_command(&[
        "backup",
        "--to",
        copy_dir.path().join("hub.db").to_str().expect("path"),
    ]);
    assert!(said.contains("keep"), "{said}");
    booking.await.expect("bookings during the backup");
    store.synced(&world, Duration::from_secs(30)).await;

    // A hub started on the copy (with the hub's key) serves the fleet as
    // it was at the copy: the store's log up to then, its bookings, the
    // same API key.
    std::fs::copy(
        world.hub_dir.path().join("hub.key"),
        copy_dir.path().join("hub.key"),
    )
    .expect("the key goes with the backup");
    let restored = Served::start(&world.bins.hub, copy_dir.path(), "127.0.0.1:0", &[], &[]);
    let (status, locations) = get(
        &world.http,
        &format!("{}/v1/locations", restored.base),
        &world.api_key,
    )
    .await;
    assert_eq!(status, 200, "{locations}");
    let copied: Vec<(String, u64)> = {
        let conn = rusqlite::Connection::open(copy_dir.path().join("hub.db")).expect("copy");
        let mut stmt = conn
            .prepare("SELECT id, head_seq FROM locations")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    let head_copied = copied
        .iter()
        .find(|(id, _)| id == "store-1")
        .map(|(_, h)| *h)
        .expect("store-1 in the copy");
    assert!(
        head_copied >= head_before,
        "everything synced before is in the copy"
    );
    assert!(
        head_copied <= world.hub_head("store-1"),
        "and nothing the hub did not have"
    );
    for id in before.iter().step_by(40) {
        let (status, booking) = get(
            &world.http,
            &format!("{}/v1/bookings/{id}", restored.base),
            &world.api_key,
        )
        .await;
        assert_eq!(status, 200, "{booking}");
        assert_eq!(booking["state"], "confirmed");
    }
    // The copy's log of the store is the hub's, event for event.
    let events = |path: &std::path::Path| -> Vec<String> {
        let conn = rusqlite::Connection::open(path).expect("db");
        let mut stmt = conn
            .prepare("SELECT hash FROM events WHERE origin = 'store-1' AND seq <= ?1 ORDER BY seq")
            .expect("prepare");
        stmt.query_map([head_copied as i64], |r| r.get(0))
            .expect("query")
            .map(|h| h.expect("hash"))
            .collect()
    };
    let copy_log = events(&copy_dir.path().join("hub.db"));
    assert_eq!(copy_log.len() as u64, head_copied, "no gap in the copy");
    assert_eq!(copy_log, events(&world.hub_dir.path().join("hub.db")));
    restored.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_answers_without_credentials_and_turns_503_when_the_schema_is_not_this_binarys() {
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store.start(&world);
    let http = e2e::http();
    let status = |url: String| {
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .expect("readyz")
                .status()
                .as_u16()
        }
    };
    let hub = format!("{}/readyz", world.hub_url());
    let edge = format!("{}/readyz", store.base());
    assert_eq!(status(hub.clone()).await, 200);
    assert_eq!(status(edge.clone()).await, 200);

    // Someone downgrades the schema under the running servers.
    for path in [
        world.hub_dir.path().join("hub.db"),
        store.path().join("edge.db"),
    ] {
        let conn = rusqlite::Connection::open(&path).expect("db");
        conn.busy_timeout(Duration::from_secs(5)).expect("busy");
        conn.pragma_update(None, "user_version", 1)
            .expect("downgrade");
    }
    assert_eq!(status(hub).await, 503);
    let answer = http.get(&edge).send().await.expect("readyz");
    assert_eq!(answer.status().as_u16(), 503);
    let body: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_ready");
    // The process itself still answers.
    assert_eq!(status(format!("{}/healthz", store.base())).await, 200);
}

#[test]
fn admin_commands_on_a_directory_without_a_hub_say_which_directory_and_make_none() {
    let bins = crate::world::bins();
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("typo");
    for args in [
        &[
            "location",
            "add",
            "--id",
            "berlin",
            "--name",
            "Berlin",
            "--timezone",
            "Europe/Berlin",
        ][..],
        &["api-key", "create", "--name", "website"][..],
        &["backup", "--to", "/tmp/never-written.db"][..],
    ] {
        let said = e2e::run_failing(&bins.hub, &missing, args);
        assert!(said.contains("--data-dir"), "{args:?}: {said}");
        assert!(!missing.exists(), "{args:?} made {}", missing.display());
    }
    // `init` makes one, and then the same command works.
    e2e::run(&bins.hub, &missing, &["init"]);
    assert!(missing.join("hub.db").exists());
    e2e::run(
        &bins.hub,
        &missing,
        &["api-key", "create", "--name", "website"],
    );
}
