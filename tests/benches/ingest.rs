//! Ingest at one hub from several stores at once, durable on both sides:
//! `STORES` (8) stores are enrolled to one hub; with the hub down each
//! takes `BENCH_EVENTS` events (default 20,000 each); then the hub starts
//! and all of them replay at once. We time, at the hub, from the first
//! event applied to the last (all stores' events per second), and until
//! every store's backlog is 0 counted from the hub's start.
//!
//! Three hubs side by side in one run: the real binary on SQLite
//! (`synchronous = FULL`, one commit per pushed batch), on a PostgreSQL
//! cluster started for the bench with its defaults (`fsync = on`,
//! `synchronous_commit = on`) as one process, and as two processes on that
//! database with the stores split between them. The stores run in this
//! process (the same library the binary runs), each with its own database
//! and sync client, so the bench can see their commits. `BENCH_PG=0` leaves
//! PostgreSQL out.
//!
//! `cargo bench -p e2e --bench ingest`

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::bench::{cli, fill, hub_heads, seed_pool};
use e2e::postgres::TempPostgres;
use e2e::{Served, env_or, free_port};
use edge_node::store::{Store, SystemClock, queries};
use serde_json::json;

const HUB: &str = env!("CARGO_BIN_EXE_e2e-sync-hub");
const EDGE: &str = env!("CARGO_BIN_EXE_e2e-edge-node");

/// Stores pushing into the hub at once.
const STORES: usize = 8;
/// Concurrent writers filling each store while the hub is down.
const FILLERS_PER_STORE: u64 = 16;
/// How often the bench looks at the hub's and the stores' progress.
const POLL_EVERY: Duration = Duration::from_millis(5);
/// How long the replay may take before the bench gives up.
const REPLAY_LIMIT: Duration = Duration::from_secs(1_800);

/// The pool each store books into: ids are global, so each store's own.
fn pool_id(store: usize) -> String {
    format!("ingest{store}:pool")
}

/// Where the hub under test keeps its state.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite,
    Postgres { url: String, processes: usize },
}

impl Backend {
    fn label(&self) -> String {
        match self {
            Backend::Sqlite => "SQLite hub".into(),
            Backend::Postgres { processes: 1, .. } => "PostgreSQL, 1 hub process".into(),
            Backend::Postgres { processes, .. } => format!("PostgreSQL, {processes} hub processes"),
        }
    }

    fn processes(&self) -> usize {
        match self {
            Backend::Sqlite => 1,
            Backend::Postgres { processes, .. } => *processes,
        }
    }

    /// `--database-url URL`, or nothing for SQLite.
    fn flags(&self) -> Vec<String> {
        match self {
            Backend::Sqlite => Vec::new(),
            Backend::Postgres { url, .. } => vec!["--database-url".into(), url.clone()],
        }
    }
}

/// What one run measured.
struct Figures {
    label: String,
    total: u64,
    hub_up: Duration,
    first_at: Duration,
    rate: f64,
    backlog_zero_at: Duration,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let events = env_or("BENCH_EVENTS", 20_000);
    let mut backends = vec![Backend::Sqlite];
    let pg = (env_or("BENCH_PG", 1) != 0).then(|| TempPostgres::start().expect("start PostgreSQL"));
    if let Some(pg) = &pg {
        for processes in [1, 2] {
            let url = pg
                .create_database(&format!("ingest_{processes}"))
                .expect("create a database");
            backends.push(Backend::Postgres { url, processes });
        }
    }
    let figures: Vec<Figures> = backends.iter().map(|b| run(b, events)).collect();

    println!(
        "\ningest: {STORES} stores replaying at once into one hub over loopback; SQLite FULL at the stores; \
         the hub on SQLite FULL or PostgreSQL with fsync = on and synchronous_commit = on; same disk:\n"
    );
    print!("| measurement |");
    for f in &figures {
        print!(" {} |", f.label);
    }
    println!();
    println!("|---|{}", "---|".repeat(figures.len()));
    let row = |name: &str, cell: &dyn Fn(&Figures) -> String| {
        print!("| {name} |");
        for f in &figures {
            print!(" {} |", cell(f));
        }
        println!();
    };
    row("events replayed (all stores)", &|f| f.total.to_string());
    row("hub process start to listening", &|f| {
        format!("{:.0} ms", f.hub_up.as_secs_f64() * 1e3)
    });
    row("hub start to first event applied", &|f| {
        format!("{:.0} ms", f.first_at.as_secs_f64() * 1e3)
    });
    row("ingest throughput (first to last event at the hub)", &|f| {
        format!("{:.0} events/s", f.rate)
    });
    row("hub start to every store's backlog 0", &|f| {
        format!("{:.2} s", f.backlog_zero_at.as_secs_f64())
    });
    if let Some(base) = figures.first() {
        row("throughput against the SQLite hub", &|f| {
            format!("{:.2}x", f.rate / base.rate)
        });
    }
    for f in &figures {
        let machine = json!({
            "bench": "ingest",
            "hub": f.label,
            "stores": STORES,
            "events": f.total,
            "hub_up_ms": f.hub_up.as_secs_f64() * 1e3,
            "first_event_ms": f.first_at.as_secs_f64() * 1e3,
            "events_per_second": f.rate,
            "backlog_zero_s": f.backlog_zero_at.as_secs_f64(),
        });
        println!("BENCH_JSON {machine}");
    }
}

/// Starts hub process `i` of `backend`; the ones after the first get the
/// first one's key, as every process of one hub must.
fn serve_hub(backend: &Backend, dirs: &[std::path::PathBuf], ports: &[u16], i: usize) -> Served {
    if i > 0 {
        let key = dirs[i].join("hub.key");
        if !key.exists() {
            std::fs::create_dir_all(&dirs[i]).expect("hub dir");
            std::fs::copy(dirs[0].join("hub.key"), &key).expect("copy the hub key");
        }
    }
    let flags = backend.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Served::start(
        std::path::Path::new(HUB),
        &dirs[i],
        &format!("127.0.0.1:{}", ports[i]),
        &flags,
        &[("RUST_LOG", "warn")],
    )
}

/// The sum of the heads the hub holds of the bench's locations.
async fn heads(backend: &Backend, dir: &std::path::Path) -> u64 {
    match backend {
        Backend::Sqlite => hub_heads(dir, "ingest%"),
        Backend::Postgres { url, .. } => {
            let Ok(client) = e2e::postgres::connect(url).await else {
                return 0;
            };
            client
                .query_one(
                    "SELECT COALESCE(SUM(head_seq), 0)::bigint FROM locations WHERE id LIKE 'ingest%'",
                    &[],
                )
                .await
                .map_or(0, |row| row.get::<_, i64>(0) as u64)
        }
    }
}

fn run(backend: &Backend, events: u64) -> Figures {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let processes = backend.processes();
    let hub_dirs: Vec<_> = (0..processes)
        .map(|i| root.path().join(format!("hub{i}")))
        .collect();
    let hub_dir = &hub_dirs[0];
    let ports: Vec<u16> = (0..processes).map(|_| free_port()).collect();
    let flags = backend.flags();
    let admin = |args: &[&str]| {
        let all: Vec<&str> = flags
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
            .collect();
        cli(HUB, hub_dir, &all)
    };
    admin(&["init"]);
    admin(&["api-key", "create", "--name", "bench"]);
    let tokens: Vec<String> = (0..STORES)
        .map(|i| {
            let (id, name) = (format!("ingest{i}"), format!("Ingest {i}"));
            admin(&[
                "location",
                "add",
                "--id",
                &id,
                "--name",
                &name,
                "--timezone",
                "UTC",
            ])
        })
        .collect();
    let edge_dirs: Vec<_> = (0..STORES)
        .map(|i| root.path().join(format!("edge{i}")))
        .collect();
    let hubs: Vec<Served> = (0..processes)
        .map(|i| serve_hub(backend, &hub_dirs, &ports, i))
        .collect();
    // The stores are split between the hub processes.
    for (i, (dir, token)) in edge_dirs.iter().zip(&tokens).enumerate() {
        let hub_url = format!("http://127.0.0.1:{}", ports[i % processes]);
        cli(EDGE, dir, &["enroll", "--hub", &hub_url, "--token", token]);
    }
    // The stores' listeners are bound while the hub still holds its port,
    // so that none of them is given that port once the hub has let it go.
    let listeners: Vec<std::net::TcpListener> = (0..STORES)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            listener
        })
        .collect();
    drop(hubs);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut stores = Vec::new();
        let mut served = Vec::new();
        let mut stops = Vec::new();
        for (i, (dir, listener)) in edge_dirs.iter().zip(listeners).enumerate() {
            let store = Store::open(dir, Arc::new(SystemClock::default())).expect("open");
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            served.push(tokio::spawn(edge_node::run(
                store.clone(),
                listener,
                async move {
                    let _ = stopped.await;
                },
            )));
            stops.push(stop);
            seed_pool(&store, &pool_id(i)).await;
            stores.push(store);
        }
        let filled = Instant::now();
        let fills: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let store = store.clone();
                tokio::spawn(async move {
                    fill(
                        &store,
                        events.saturating_sub(2),
                        &pool_id(i),
                        FILLERS_PER_STORE,
                    )
                    .await
                })
            })
            .collect();
        for f in fills {
            f.await.expect("fill");
        }
        let totals: Vec<u64> = stores.iter().map(|s| *s.head_seq().borrow()).collect();
        let total: u64 = totals.iter().sum();
        eprintln!(
            "{STORES} stores took {total} events in {:.1} s with the hub down",
            filled.elapsed().as_secs_f64()
        );

        let started = Instant::now();
        let _hubs: Vec<Served> = (0..processes)
            .map(|i| serve_hub(backend, &hub_dirs, &ports, i))
            .collect();
        let hub_up = started.elapsed();
        let mut first_at = None;
        loop {
            let heads = heads(backend, hub_dir).await;
            if heads > 0 && first_at.is_none() {
                first_at = Some(started.elapsed());
            }
            if heads >= total {
                break;
            }
            assert!(started.elapsed() < REPLAY_LIMIT, "replay took too long");
            tokio::time::sleep(POLL_EVERY).await;
        }
        let all_at = started.elapsed();
        for (store, &head) in stores.iter().zip(&totals) {
            loop {
                let row = store.read(queries::sync_row).await.expect("sync row");
                if row.acked_seq >= head {
                    break;
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
        let backlog_zero_at = started.elapsed();
        let first_at = first_at.unwrap_or(all_at);
        let replay = all_at
            .saturating_sub(first_at)
            .max(Duration::from_millis(1));
        for stop in stops {
            let _ = stop.send(());
        }
        for s in served {
            let _ = s.await;
        }
        let rate = total as f64 / replay.as_secs_f64();
        eprintln!("{}: {rate:.0} events/s", backend.label());
        Figures {
            label: backend.label(),
            total,
            hub_up,
            first_at,
            rate,
            backlog_zero_at,
        }
    })
}
