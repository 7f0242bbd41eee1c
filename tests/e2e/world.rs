//! A hub and its stores, as real processes over real files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::{Bins, Served, free_port, get, http, last_line, post, run};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The two commands; `E2E_BINS=DIR` runs copies in DIR instead (a long
/// run can then go on while the tree is rebuilt).
pub fn bins() -> Bins {
    match std::env::var_os("E2E_BINS") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            Bins {
                edge: dir.join("e2e-edge-node"),
                hub: dir.join("e2e-sync-hub"),
            }
        }
        None => Bins {
            edge: PathBuf::from(env!("CARGO_BIN_EXE_e2e-edge-node")),
            hub: PathBuf::from(env!("CARGO_BIN_EXE_e2e-sync-hub")),
        },
    }
}

/// The hub, on a fixed port so stores find it again after a restart.
pub struct World {
    pub bins: Bins,
    pub hub_dir: TempDir,
    pub port: u16,
    pub hub: Option<Served>,
    pub api_key: String,
    pub http: reqwest::Client,
    /// Extra flags for `sync-hub serve`.
    pub hub_args: Vec<String>,
    /// Extra environment of `sync-hub serve` (`SYNC_HUB__...` settings).
    pub hub_env: Vec<(String, String)>,
    /// The PostgreSQL database the hub runs on; SQLite in `hub_dir` if none.
    pub database_url: Option<String>,
    /// Hub processes besides the first, sharing its database and its key.
    pub peers: Vec<Peer>,
}

/// A second (third, ...) hub process on the first one's database.
pub struct Peer {
    pub dir: TempDir,
    pub port: u16,
    pub served: Option<Served>,
}

/// One value of a row of the hub's database, whichever backend it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

impl Cell {
    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(i) => *i,
            other => panic!("{other:?} is not an integer"),
        }
    }

    pub fn opt_int(&self) -> Option<i64> {
        match self {
            Cell::Null => None,
            other => Some(other.int()),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            other => panic!("{other:?} is not text"),
        }
    }
}

impl World {
    pub fn new() -> Self {
        Self::on(None)
    }

    /// A hub on the PostgreSQL database at `database_url`, or on SQLite.
    pub fn on(database_url: Option<String>) -> Self {
        let bins = bins();
        let hub_dir = tempfile::tempdir().expect("tempdir");
        let mut world = Self {
            bins,
            hub_dir,
            port: free_port(),
            hub: None,
            api_key: String::new(),
            http: http(),
            hub_args: Vec::new(),
            hub_env: Vec::new(),
            database_url,
            peers: Vec::new(),
        };
        world.hub_command(&["init"]);
        world.api_key = last_line(&world.hub_command(&["api-key", "create", "--name", "tests"]));
        world
    }

    /// Runs a `sync-hub` administration command on this world's database.
    pub fn hub_command(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = Vec::new();
        if let Some(url) = &self.database_url {
            all.extend(["--database-url", url.as_str()]);
        }
        all.extend(args);
        run(&self.bins.hub, self.hub_dir.path(), &all)
    }

    /// Adds `count` more hub processes (not yet started) on this world's
    /// PostgreSQL database.
    pub fn add_peers(&mut self, count: usize) {
        assert!(
            count == 0 || self.database_url.is_some(),
            "peers share a PostgreSQL database"
        );
        for _ in 0..count {
            self.peers.push(Peer {
                dir: tempfile::tempdir().expect("tempdir"),
                port: free_port(),
                served: None,
            });
        }
    }

    /// How many hub processes this world has: the first and its peers.
    pub fn processes(&self) -> usize {
        1 + self.peers.len()
    }

    pub fn process_url(&self, i: usize) -> String {
        match i {
            0 => self.hub_url(),
            _ => format!("http://127.0.0.1:{}", self.peers[i - 1].port),
        }
    }

    pub fn process_running(&self, i: usize) -> bool {
        match i {
            0 => self.hub.is_some(),
            _ => self.peers[i - 1].served.is_some(),
        }
    }

    /// The hub processes that are running.
    pub fn running(&self) -> Vec<usize> {
        (0..self.processes())
            .filter(|i| self.process_running(*i))
            .collect()
    }

    /// Starts hub process `i`; a peer gets the first process's key, which
    /// exists once the first process has started.
    pub fn start_process(&mut self, i: usize) {
        if i == 0 {
            return self.start_hub();
        }
        let key = self.peers[i - 1].dir.path().join("hub.key");
        if !key.exists() {
            std::fs::copy(self.hub_dir.path().join("hub.key"), &key).expect("copy the hub key");
        }
        let listen = format!("127.0.0.1:{}", self.peers[i - 1].port);
        let args = self.serve_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let served = Served::start(
            &self.bins.hub,
            self.peers[i - 1].dir.path(),
            &listen,
            &args,
            &[],
        );
        self.peers[i - 1].served = Some(served);
    }

    /// SIGKILLs hub process `i` if it runs.
    pub fn kill_process(&mut self, i: usize) {
        let served = match i {
            0 => self.hub.take(),
            _ => self.peers[i - 1].served.take(),
        };
        if let Some(served) = served {
            served.kill();
        }
    }

    fn serve_args(&self) -> Vec<String> {
        let mut args = self.hub_args.clone();
        if let Some(url) = &self.database_url {
            args.extend(["--database-url".to_owned(), url.clone()]);
        }
        args
    }

    /// Rows of `sql` on the hub's database, SQLite or PostgreSQL; `$1`,
    /// `$2`... are bound to `params` in both.
    pub fn hub_rows(&self, sql: &str, params: &[&str]) -> Vec<Vec<Cell>> {
        let Some(url) = self.database_url.clone() else {
            let conn = self.hub_db();
            let mut stmt = conn.prepare(sql).expect("prepare");
            let width = stmt.column_count();
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    (0..width)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => Cell::Null,
                                rusqlite::types::ValueRef::Integer(i) => Cell::Int(i),
                                rusqlite::types::ValueRef::Text(t) => {
                                    Cell::Text(String::from_utf8_lossy(t).into_owned())
                                }
                                other => panic!("unexpected value {other:?}"),
                            })
                        })
                        .collect()
                })
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            return rows;
        };
        let (sql, params) = (
            sql.to_owned(),
            params.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        );
        // A runtime of its own in a thread of its own: callers may be on a
        // runtime, where blocking on another one panics.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let client = e2e::postgres::connect(&url).await.expect("connect");
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                let rows = client.query(&sql, &params).await.expect("query");
                rows.iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| {
                                use tokio_postgres::types::Type;
                                let ty = row.columns()[i].type_().clone();
                                if ty == Type::INT8 {
                                    row.get::<_, Option<i64>>(i).map_or(Cell::Null, Cell::Int)
                                } else if ty == Type::INT4 {
                                    row.get::<_, Option<i32>>(i)
                                        .map_or(Cell::Null, |v| Cell::Int(v.into()))
                                } else {
                                    row.get::<_, Option<String>>(i)
                                        .map_or(Cell::Null, Cell::Text)
                                }
                            })
                            .collect()
                    })
                    .collect()
            })
        })
        .join()
        .expect("query thread")
    }

    /// A hub that gives up on requests and takes stores for gone quickly,
    /// so expiry scenarios run in seconds.
    pub fn quick() -> Self {
        Self::quick_on(None)
    }

    /// [`World::quick`] on the PostgreSQL database at `database_url`, or
    /// on SQLite.
    pub fn quick_on(database_url: Option<String>) -> Self {
        let mut world = Self::on(database_url);
        world.hub_args = [
            "--skew-margin-ms",
            "1000",
            "--unreachable-after-ms",
            "1500",
            "--long-poll-max-ms",
            "1000",
        ]
        .map(String::from)
        .to_vec();
        world
    }

    pub fn hub_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn start_hub(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let args = self.serve_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .hub_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.hub = Some(Served::start(
            &self.bins.hub,
            self.hub_dir.path(),
            &listen,
            &args,
            &env,
        ));
    }

    pub fn kill_hub(&mut self) {
        if let Some(hub) = self.hub.take() {
            hub.kill();
        }
    }

    /// Adds a location; returns its enrollment token.
    pub fn add_location(&self, id: &str) -> String {
        last_line(&self.hub_command(&[
            "location",
            "add",
            "--id",
            id,
            "--name",
            id,
            "--timezone",
            "Europe/Berlin",
        ]))
    }

    pub fn hub_db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.hub_dir.path().join("hub.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("hub db")
    }

    /// The hub's head of `location`'s log.
    pub fn hub_head(&self, location: &str) -> u64 {
        self.hub_rows("SELECT head_seq FROM locations WHERE id = $1", &[location])
            .first()
            .map_or(0, |row| row[0].int() as u64)
    }

    pub async fn public(&self, path: &str) -> (u16, Value) {
        get(
            &self.http,
            &format!("{}{path}", self.hub_url()),
            &self.api_key,
        )
        .await
    }

    /// A web order through the public API.
    pub async fn order(&self, body: &Value, wait_ms: u64) -> (u16, Value) {
        post(
            &self.http,
            &format!("{}/v1/bookings?wait_ms={wait_ms}", self.hub_url()),
            &self.api_key,
            body,
        )
        .await
    }

    pub async fn hub_booking(&self, id: &str) -> Value {
        let (status, body) = self.public(&format!("/v1/bookings/{id}")).await;
        assert_eq!(status, 200, "the hub has no booking {id}: {body}");
        body
    }

    /// Whether the hub currently takes `location` for reachable.
    pub async fn reachable(&self, location: &str) -> bool {
        let (_, body) = self.public("/v1/locations").await;
        body["locations"]
            .as_array()
            .and_then(|all| all.iter().find(|l| l["id"] == location))
            .is_some_and(|l| l["reachable"] == true)
    }
}

/// One store: its data directory, a manager token, and maybe its server.
pub struct Store {
    pub location: String,
    pub dir: TempDir,
    pub token: String,
    pub served: Option<Served>,
    pub env: Vec<(String, String)>,
    /// Extra flags for `edge-node serve`.
    pub args: Vec<String>,
}

impl Store {
    /// A new store enrolled with the world's hub (which must be running).
    pub fn enroll(world: &World, location: &str) -> Self {
        Self::enroll_via(world, location, &world.hub_url())
    }

    /// A new store that reaches the hub at `hub_url` (a proxy, say).
    pub fn enroll_via(world: &World, location: &str, hub_url: &str) -> Self {
        let enrollment = world.add_location(location);
        let dir = tempfile::tempdir().expect("tempdir");
        run(
            &world.bins.edge,
            dir.path(),
            &["enroll", "--hub", hub_url, "--token", &enrollment],
        );
        let token = last_line(&run(
            &world.bins.edge,
            dir.path(),
            &["token", "create", "--role", "manager"],
        ));
        Self {
            location: location.to_owned(),
            dir,
            token,
            served: None,
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn start(&mut self, world: &World) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.served = Some(Served::start(
            &world.bins.edge,
            self.dir.path(),
            "127.0.0.1:0",
            &args,
            &env,
        ));
    }

    pub fn kill(&mut self) {
        if let Some(served) = self.served.take() {
            served.kill();
        }
    }

    pub fn base(&self) -> String {
        self.served.as_ref().expect("store is running").base.clone()
    }

    pub async fn api_get(&self, world: &World, path: &str) -> (u16, Value) {
        get(
            &world.http,
            &format!("{}/api/v1{path}", self.base()),
            &self.token,
        )
        .await
    }

    pub async fn api_post(&self, world: &World, path: &str, body: &Value) -> (u16, Value) {
        post(
            &world.http,
            &format!("{}/api/v1{path}", self.base()),
            &self.token,
            body,
        )
        .await
    }

    /// A stock item with one pool of `capacity`.
    pub async fn stock(&self, world: &World, id: &str, capacity: i64) {
        let (status, body) = self
            .api_post(
                world,
                "/resources",
                &json!({"name": id, "kind": "stock", "id": id}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = self
            .api_post(
                world,
                "/pools",
                &json!({"resource_id": id, "capacity": capacity, "id": id}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Places `count` bookings of one unit from `clients` concurrent
    /// clients; returns their ids in no particular order.
    pub async fn book_many(
        &self,
        world: &World,
        pool: &str,
        count: usize,
        clients: usize,
    ) -> Vec<String> {
        let base = self.base();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let http = world.http.clone();
                let url = format!("{base}/api/v1/bookings");
                let token = self.token.clone();
                let pool = pool.to_owned();
                let mine = count / clients + usize::from(c < count % clients);
                tokio::spawn(async move {
                    let mut ids = Vec::with_capacity(mine);
                    for i in 0..mine {
                        let body = json!({"lines": [{"pool_id": pool, "quantity": 1}],
                                          "customer": {"name": format!("guest {c}-{i}")}});
                        let (status, made) = post(&http, &url, &token, &body).await;
                        assert_eq!(status, 201, "{made}");
                        ids.push(made["id"].as_str().expect("id").to_owned());
                    }
                    ids
                })
            })
            .collect();
        let mut ids = Vec::with_capacity(count);
        for task in tasks {
            ids.extend(task.await.expect("client"));
        }
        ids
    }

    pub async fn booking(&self, world: &World, id: &str) -> Value {
        let (status, body) = self.api_get(world, &format!("/bookings/{id}")).await;
        assert_eq!(status, 200, "{} has no booking {id}: {body}", self.location);
        body
    }

    pub async fn available(&self, world: &World, pool: &str) -> i64 {
        let (_, pool) = self.api_get(world, &format!("/pools/{pool}")).await;
        pool["available"].as_i64().expect("available")
    }

    pub async fn status(&self, world: &World) -> Value {
        let (status, body) = self.api_get(world, "/sync/status").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until everything this store wrote is at the hub.
    pub async fn synced(&self, world: &World, limit: Duration) {
        let last = std::sync::Mutex::new(Value::Null);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let status = self.status(world).await;
            if status["backlog_events"] == 0 && status["state"] == "online" {
                return;
            }
            *last.lock().expect("lock") = status;
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: timed out waiting for the backlog to reach 0; last status {}",
                self.location,
                last.lock().expect("lock")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.dir.path().join("edge.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("edge db")
    }

    /// (seq, hash) of every event of this store's own log.
    pub fn log(&self) -> Vec<(i64, String)> {
        let conn = self.db();
        let mut stmt = conn
            .prepare("SELECT seq, hash FROM events ORDER BY seq")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }
}

/// (seq, hash) of every event of `location`'s log held by the hub.
pub fn hub_log(world: &World, location: &str) -> Vec<(i64, String)> {
    world
        .hub_rows(
            "SELECT seq, hash FROM events WHERE origin = $1 ORDER BY seq",
            &[location],
        )
        .iter()
        .map(|row| (row[0].int(), row[1].text()))
        .collect()
}

/// The hub holds exactly the store's log: same events, same order, no gap,
/// nothing twice; and its view has each booking once.
pub fn assert_hub_mirrors(world: &World, store: &Store) {
    let ours = store.log();
    let theirs = hub_log(world, &store.location);
    assert_eq!(theirs.len(), ours.len(), "hub holds every event once");
    for (i, (seq, hash)) in theirs.iter().enumerate() {
        assert_eq!(*seq, i as i64 + 1, "hub log has no gap");
        assert_eq!(
            (seq, hash),
            (&ours[i].0, &ours[i].1),
            "same event at seq {seq}"
        );
    }
    let edge_bookings: i64 = store
        .db()
        .query_row("SELECT count(*) FROM bookings", [], |r| r.get(0))
        .expect("count");
    let hub_bookings = world.hub_rows(
        "SELECT count(*) FROM view_bookings WHERE owner = $1",
        &[&store.location],
    )[0][0]
        .int();
    assert_eq!(
        hub_bookings, edge_bookings,
        "the hub's view has each booking once"
    );
}
