//! `edge-node backup` while the store takes bookings: the copy is one
//! moment of the database, and a store started on it serves that moment.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use edge_node::store::Store;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ManualClock, TestNode, booking, verify_log};

const BIN: &str = env!("CARGO_BIN_EXE_edge-node");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_load_restores_the_same_bookings_and_an_intact_chain() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 1_000_000).await;
    // Sixteen clients book without pause for as long as the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let (http, url, token, pool, stop) = (
                node.http.clone(),
                node.url("/bookings"),
                node.kiosk.clone(),
                pool.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut made = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut body = booking(&pool, 1);
                    body["customer"]["name"] = json!(format!("client {c} #{made}"));
                    let status = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .expect("book")
                        .status();
                    assert_eq!(status, StatusCode::CREATED);
                    made += 1;
                }
                made
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let copy_dir = tempfile::tempdir().expect("tempdir");
    let copy = copy_dir.path().join("edge.db");
    let out = tokio::task::spawn_blocking({
        let (dir, copy) = (node.dir.path().to_owned(), copy.clone());
        move || {
            Command::new(BIN)
                .arg("--data-dir")
                .arg(dir)
                .args(["backup", "--to"])
                .arg(copy)
                .output()
                .expect("backup runs")
        }
    })
    .await
    .expect("join");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut made = 0;
    for client in clients {
        made += client.await.expect("client");
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("backed up"), "{said}");

    // The copy's log is intact, and the original's log holds it as a prefix:
    // the same events, hash for hash, up to the moment of the copy.
    let copied_head = verify_log(&copy);
    let original_head = verify_log(&node.dir.path().join("edge.db"));
    assert!(copied_head > 2, "the copy has the bookings made before it");
    assert!(
        copied_head < original_head,
        "bookings went on during the backup: {copied_head} < {original_head}"
    );
    let hashes = |path: &std::path::Path| -> Vec<String> {
        let conn = rusqlite::Connection::open(path).expect("db");
        let mut stmt = conn
            .prepare("SELECT hash FROM events WHERE seq <= ?1 ORDER BY seq")
            .expect("prepare");
        stmt.query_map([copied_head as i64], |r| r.get(0))
            .expect("query")
            .map(|h| h.expect("hash"))
            .collect()
    };
    assert_eq!(hashes(&copy), hashes(&node.dir.path().join("edge.db")));
    assert!(made > 0);

    // A store started on the copy serves those bookings as the original does.
    let bookings_in = |path: &std::path::Path| -> Vec<(String, String)> {
        let conn = rusqlite::Connection::open(path).expect("db");
        let mut stmt = conn
            .prepare(
                "SELECT id, state FROM bookings WHERE id IN (SELECT body ->> 'id' FROM events
                 WHERE kind = 'booking_created' AND seq <= ?1) ORDER BY id",
            )
            .expect("prepare");
        stmt.query_map([copied_head as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .map(|b| b.expect("booking"))
            .collect()
    };
    let restored = bookings_in(&copy);
    assert_eq!(restored, bookings_in(&node.dir.path().join("edge.db")));
    let store = Store::open(copy_dir.path(), ManualClock::new()).expect("a store on the copy");
    let sample = restored[restored.len() / 2].0.clone();
    let id = shared::BookingId::parse(&sample).expect("id");
    let view = store
        .read(move |conn| edge_node::store::queries::booking(conn, &id))
        .await
        .expect("read")
        .expect("the booking is in the restored store");
    assert_eq!(view.state.as_str(), "confirmed");
    assert_eq!(
        store
            .read(edge_node::store::queries::log_stats)
            .await
            .expect("stats")
            .head_seq,
        copied_head
    );
}

#[test]
fn a_backup_of_a_directory_without_a_store_says_so_and_writes_nothing() {
    let empty = tempfile::tempdir().expect("tempdir");
    let to = empty.path().join("copy.db");
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(empty.path())
        .args(["backup", "--to"])
        .arg(&to)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("edge-node init"), "{said}");
    assert!(!to.exists());
    assert!(!empty.path().join("edge.db").exists(), "no database made");
}
