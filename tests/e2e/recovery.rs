//! A store PC restored from an old backup, and a replaced store PC.

use std::time::Duration;

use e2e::{eventually, last_line, run, run_failing};
use serde_json::Value;

use crate::world::{Store, World, assert_hub_mirrors};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_restored_from_an_old_backup_is_quarantined_and_reset_keeps_everything() {
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store.start(&world);
    store.stock(&world, "store-1:beans", 100).await;
    store.book_many(&world, "store-1:beans", 5, 1).await;
    store.synced(&world, Duration::from_secs(30)).await;

    // The nightly backup.
    let backup = store.path().join("backup.db");
    store
        .db()
        .execute("VACUUM INTO ?1", [backup.to_str().expect("path")])
        .expect("vacuum into");

    // A day of business after the backup, all synced.
    let after_backup = store.book_many(&world, "store-1:beans", 7, 1).await;
    store.synced(&world, Duration::from_secs(30)).await;
    let hub_had = world.hub_head("store-1");

    // The disk dies; the PC is restored from the backup and serves again.
    store.kill();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(store.path().join(format!("edge.db{suffix}")));
    }
    std::fs::copy(&backup, store.path().join("edge.db")).expect("restore backup");
    store.start(&world);
    let (_, lost) = store
        .api_get(&world, &format!("/bookings/{}", after_backup[0]))
        .await;
    assert_eq!(lost["error"]["code"], "not_found", "the backup predates it");

    // A walk-in books at the counter: the store keeps working offline-first.
    let divergent = store.book_many(&world, "store-1:beans", 1, 1).await;

    // The fork is detected on the first sync, never merged.
    let status = eventually(
        Duration::from_secs(30),
        "the fork to be detected",
        || async {
            let status = store.status(&world).await;
            (status["state"] == "error").then_some(status)
        },
    )
    .await;
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("reset")),
        "{status}"
    );
    eventually(
        Duration::from_secs(30),
        "the hub to quarantine the store",
        || async {
            let (_, locations) = world.public("/v1/locations").await;
            (locations["locations"][0]["status"] == "quarantined").then_some(())
        },
    )
    .await;
    assert_eq!(
        world.hub_head("store-1"),
        hub_had,
        "the hub took nothing from the fork"
    );

    // Reset while serving is refused; stopped, it recovers.
    let refused = run_failing(&world.bins.edge, store.path(), &["reset"]);
    assert!(refused.contains("in use"), "{refused}");
    store.kill();
    // A copy of the PC as it is now, before the reset: an old copy that
    // someone starts again later.
    let old_copy = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(store.path()).expect("data dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), old_copy.path().join(entry.file_name())).expect("copy");
        }
    }
    let out = run(&world.bins.edge, store.path(), &["reset"]);
    assert!(
        out.contains("1 events of ours quarantined") || out.contains("quarantined"),
        "{out}"
    );

    store.start(&world);
    // Everything the hub acknowledged is back at the store...
    for id in &after_backup {
        let (status, booking) = store.api_get(&world, &format!("/bookings/{id}")).await;
        assert_eq!(
            (status, booking["state"].as_str()),
            (200, Some("confirmed")),
            "{booking}"
        );
    }
    // ...and the walk-in's booking waits in the quarantine for staff.
    let (status, quarantine) = store.api_get(&world, "/quarantine").await;
    assert_eq!(status, 200);
    let events = quarantine["events"].as_array().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "booking_created" && e["body"]["id"] == divergent[0].as_str()),
        "{quarantine}"
    );
    let (_, gone) = store
        .api_get(&world, &format!("/bookings/{}", divergent[0]))
        .await;
    assert_eq!(
        gone["error"]["code"], "not_found",
        "quarantined, not silently merged"
    );

    // It syncs again under its new epoch, and new work flows.
    store.book_many(&world, "store-1:beans", 3, 1).await;
    store.synced(&world, Duration::from_secs(30)).await;
    assert_hub_mirrors(&world, &store);
    let (_, locations) = world.public("/v1/locations").await;
    assert_eq!(locations["locations"][0]["status"], "active");
    assert_eq!(locations["locations"][0]["epoch"], 2);

    // The old copy comes back: its pushes are fenced, and the hub tells its
    // operators with one `fenced` alert, however often the copy retries.
    let mut old = Store {
        location: "store-1".into(),
        dir: old_copy,
        token: store.token.clone(),
        served: None,
        env: Vec::new(),
        args: Vec::new(),
    };
    old.start(&world);
    eventually(
        Duration::from_secs(30),
        "a fenced alert at the hub",
        || async {
            let open = world.hub_rows(
                "SELECT key FROM alerts WHERE cleared_at_ms IS NULL AND kind = 'fenced'",
                &[],
            );
            (!open.is_empty()).then_some(open)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let raised = world.hub_rows("SELECT key FROM alerts WHERE kind = 'fenced'", &[]);
    assert_eq!(raised.len(), 1, "{raised:?}");
    let (_, locations) = world.public("/v1/locations").await;
    assert!(
        locations["locations"][0]["fenced_at"].is_string(),
        "{locations}"
    );
    // The store itself is untouched by its old copy.
    assert_eq!(locations["locations"][0]["status"], "active");
    assert_eq!(locations["locations"][0]["epoch"], 2);
    old.kill();
}

async fn snapshot(world: &World, store: &Store) -> (Value, Value) {
    let (_, bookings) = store.api_get(world, "/bookings?limit=500").await;
    let (_, pools) = store.api_get(world, "/pools").await;
    (bookings, pools)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replacement_pc_rebuilds_the_same_bookings_and_availability_from_the_hub() {
    let mut world = World::new();
    world.start_hub();
    let mut original = Store::enroll(&world, "store-1");
    original.start(&world);
    original.stock(&world, "store-1:beans", 40).await;
    original.stock(&world, "store-1:cups", 9).await;
    let ids = original.book_many(&world, "store-1:beans", 12, 3).await;
    original.book_many(&world, "store-1:cups", 4, 2).await;
    let (status, _) = original
        .api_post(
            &world,
            &format!("/bookings/{}/cancel", ids[0]),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = original
        .api_post(
            &world,
            "/pools/store-1:beans/allotments",
            &serde_json::json!({"to": "hub", "units": 5}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = original
        .api_post(
            &world,
            "/pools/store-1:cups/adjust",
            &serde_json::json!({"delta": 3}),
        )
        .await;
    assert_eq!(status, 200);
    original.synced(&world, Duration::from_secs(30)).await;
    let before = snapshot(&world, &original).await;
    original.kill();

    // The PC is replaced: a new token for the location, an empty disk.
    let token = world.add_location("store-1");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        &world.bins.edge,
        dir.path(),
        &[
            "enroll",
            "--hub",
            &world.hub_url(),
            "--token",
            &token,
            "--restore",
        ],
    );
    assert!(out.contains("rebuilt from"), "{out}");
    let manager = last_line(&run(
        &world.bins.edge,
        dir.path(),
        &["token", "create", "--role", "manager"],
    ));
    let mut replacement = Store {
        location: "store-1".into(),
        dir,
        token: manager,
        served: None,
        env: Vec::new(),
        args: Vec::new(),
    };
    replacement.start(&world);
    let after = snapshot(&world, &replacement).await;
    assert_eq!(after.0, before.0, "the same bookings");
    assert_eq!(after.1, before.1, "the same availability");

    replacement.book_many(&world, "store-1:beans", 2, 1).await;
    replacement.synced(&world, Duration::from_secs(30)).await;
    assert_hub_mirrors(&world, &replacement);

    // The old PC, should it come back, is fenced.
    original.start(&world);
    let status = eventually(
        Duration::from_secs(30),
        "the old PC to be refused",
        || async {
            let status = original.status(&world).await;
            (status["state"] == "error").then_some(status)
        },
    )
    .await;
    assert!(status["error"].is_string(), "{status}");
}
