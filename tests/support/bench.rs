//! What the benchmarks under `tests/benches/` share: running the two
//! commands, seeding a store with one large pool, filling it with bookings,
//! and reading figures back. Each bench is its own crate; this is the one
//! place these steps are written.

use std::path::Path;
use std::time::Duration;

use edge_node::store::Store;
use edge_node::store::ops::{self, NewBooking, NewPool, NewResource};
use serde_json::json;
use shared::protocol::CreateBooking;
use shared::{Channel, ResourceKind};

use crate::{Served, last_line, run};

/// Capacity of a bench pool: more units than any run books.
pub const BENCH_CAPACITY: i64 = 1_000_000_000;

/// Runs `bin --data-dir dir args`; returns the last line it printed.
pub fn cli(bin: &str, dir: &Path, args: &[&str]) -> String {
    last_line(&run(Path::new(bin), dir, args))
}

/// Adds location `id` (named `name`, in UTC) to the hub in `dir`; its
/// enrollment token.
pub fn add_location(hub: &str, dir: &Path, id: &str, name: &str) -> String {
    cli(
        hub,
        dir,
        &[
            "location",
            "add",
            "--id",
            id,
            "--name",
            name,
            "--timezone",
            "UTC",
        ],
    )
}

/// Starts `bin serve` on `dir` at `listen`, logging warnings only.
pub fn serve_quietly(bin: &str, dir: &Path, listen: &str) -> Served {
    Served::start(Path::new(bin), dir, listen, &[], &[("RUST_LOG", "warn")])
}

/// The `p` quantile of `sorted`, in milliseconds; NaN when there is none.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

/// The sum of the heads the hub in `dir` holds of the locations whose id
/// matches the SQL `LIKE` pattern `ids`; 0 while the database cannot be
/// read.
pub fn hub_heads(dir: &Path, ids: &str) -> u64 {
    rusqlite::Connection::open_with_flags(
        dir.join("hub.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .and_then(|c| {
        c.query_row(
            "SELECT COALESCE(SUM(head_seq), 0) FROM locations WHERE id LIKE ?1",
            [ids],
            |r| r.get::<_, i64>(0),
        )
    })
    .map(|s| s as u64)
    .unwrap_or(0)
}

/// Creates resource and pool `pool` (one id for both) in `store`.
pub async fn seed_pool(store: &Store, pool: &str) {
    let pool = pool.to_owned();
    store
        .write(move |ctx| {
            ops::create_resource(
                ctx,
                NewResource {
                    id: Some(pool.parse().expect("id")),
                    name: "Bench".into(),
                    kind: ResourceKind::Stock,
                },
            )?;
            ops::create_pool(
                ctx,
                NewPool {
                    id: Some(pool.parse().expect("id")),
                    resource_id: pool.parse().expect("id"),
                    capacity: BENCH_CAPACITY,
                    starts_at_ms: None,
                    ends_at_ms: None,
                },
            )
        })
        .await
        .expect("seed");
}

/// Creates the same resource and pool through a running node's LAN API.
pub async fn seed_pool_over_api(http: &reqwest::Client, edge: &str, manager: &str, pool: &str) {
    for (path, body) in [
        (
            "resources",
            json!({"name": "Bench", "kind": "stock", "id": pool}),
        ),
        (
            "pools",
            json!({"resource_id": pool, "capacity": BENCH_CAPACITY, "id": pool}),
        ),
    ] {
        let status = http
            .post(format!("{edge}/api/v1/{path}"))
            .bearer_auth(manager)
            .json(&body)
            .send()
            .await
            .expect("seed")
            .status();
        assert_eq!(status, 201);
    }
}

/// Books `events` single units of `pool` in `store`, `writers` at a time
/// (so group commit shares fsyncs among them, as at a busy store).
pub async fn fill(store: &Store, events: u64, pool: &str, writers: u64) {
    let tasks: Vec<_> = (0..writers)
        .map(|t| {
            let store = store.clone();
            let pool = pool.to_owned();
            tokio::spawn(async move {
                let mut n = t;
                while n < events {
                    let request: CreateBooking = serde_json::from_value(json!({
                        "lines": [{"pool_id": &pool, "quantity": 1}],
                        "customer": {"name": format!("Bench {n}")},
                    }))
                    .expect("request");
                    let new = NewBooking {
                        request,
                        channel: Channel::Kiosk,
                    };
                    store
                        .write(move |ctx| ops::create_booking(ctx, new))
                        .await
                        .expect("booked");
                    n += writers;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}
