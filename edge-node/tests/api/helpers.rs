//! Fixtures shared by every test: a node served on a free loopback port
//! from a fresh data directory, and a small JSON client.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use edge_node::auth::{Role, create_token};
use edge_node::store::{self, Clock, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct ManualClock {
    offset_ms: AtomicI64,
}

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            offset_ms: AtomicI64::new(0),
        })
    }

    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        jiff::Timestamp::now().as_millisecond() + self.offset_ms.load(Ordering::SeqCst)
    }
}

pub fn install_crypto() {
    // Both reqwest and rustls link a provider list; pick ring once.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("http client")
}

/// A running node and tokens for each role.
pub struct TestNode {
    pub dir: TempDir,
    pub base: String,
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub kiosk: String,
    pub staff: String,
    pub manager: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub const LOCATION: &str = "store-1";

pub fn init_dir(dir: &Path) {
    let location = shared::LocationId::parse(LOCATION).expect("location");
    store::init(
        dir,
        &location,
        "Europe/Berlin",
        jiff::Timestamp::now().as_millisecond(),
    )
    .expect("init");
}

pub fn token(dir: &Path, role: Role) -> String {
    let (conn, _) = store::open_admin(dir).expect("admin");
    create_token(&conn, role, 0).expect("token")
}

impl TestNode {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        init_dir(dir.path());
        let kiosk = token(dir.path(), Role::Kiosk);
        let staff = token(dir.path(), Role::Staff);
        let manager = token(dir.path(), Role::Manager);
        let clock = ManualClock::new();
        let store = Store::open(dir.path(), clock.clone()).expect("open");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(edge_node::run(store.clone(), listener, async move {
            let _ = stopped.await;
        }));
        Self {
            dir,
            base,
            store,
            clock,
            kiosk,
            staff,
            manager,
            http: client(),
            stop: Some(stop),
            served: Some(served),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.expect("join").expect("served");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        decode(response).await
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        decode(response).await
    }

    /// A stock resource with one pool of `capacity`; returns the pool id.
    pub async fn stock_pool(&self, slug: &str, capacity: i64) -> String {
        let slug = &format!("{LOCATION}:{slug}");
        let (status, _) = self
            .post(
                &self.manager,
                "/resources",
                json!({"name": slug, "kind": "stock", "id": slug}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, pool) = self
            .post(
                &self.manager,
                "/pools",
                json!({"resource_id": slug, "capacity": capacity, "id": slug}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{pool}");
        pool["id"].as_str().expect("pool id").to_owned()
    }

    pub async fn pool(&self, id: &str) -> Value {
        let (status, pool) = self.get(&self.kiosk, &format!("/pools/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{pool}");
        pool
    }

    pub async fn available(&self, pool: &str) -> i64 {
        self.pool(pool).await["available"]
            .as_i64()
            .expect("available")
    }

    /// Number of events in this node's log.
    pub async fn events(&self) -> u64 {
        let (status, body) = self.get(&self.kiosk, "/sync/status").await;
        assert_eq!(status, StatusCode::OK);
        body["backlog_events"].as_u64().expect("backlog")
    }
}

pub fn booking(pool: &str, quantity: i64) -> Value {
    json!({"lines": [{"pool_id": pool, "quantity": quantity}], "customer": {"name": "Ada Lovelace", "phone": "+49 30 1234"}})
}

pub async fn decode(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("response to be JSON ({e}), got {status}: {text:?}"));
    (status, value)
}

/// Asserts the JSON error shape with `code`.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Checks the log of the database at `path`: seq runs 1..=n without a gap,
/// each event points at the hash of the one before, and each stored hash is
/// the hash of the stored fields. Returns n.
pub fn verify_log(path: &Path) -> u64 {
    let conn = rusqlite::Connection::open(path).expect("open db");
    let mut stmt = conn
        .prepare("SELECT seq, id, epoch, prev, hash, at_ms, kind, body FROM events ORDER BY seq")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })
        .expect("query");
    let mut head = shared::ChainHead::EMPTY;
    for row in rows {
        let (seq, id, epoch, prev, hash, at_ms, kind, body) = row.expect("row");
        assert_eq!(seq as u64, head.seq + 1, "seq must have no gap");
        let event = shared::Event {
            origin: shared::ParticipantId::parse(LOCATION).expect("origin"),
            epoch,
            seq: seq as u64,
            id: id.parse().expect("uuid"),
            prev: shared::Hash::parse_hex(&prev).expect("prev"),
            at_ms,
            kind,
            body: serde_json::from_str(&body).expect("body json"),
        };
        assert_eq!(event.prev, head.hash, "event {seq} must follow the chain");
        assert_eq!(
            event.hash().to_hex(),
            hash,
            "event {seq} hash must match its fields"
        );
        event.typed().expect("every stored event has a known body");
        head = event.head();
    }
    head.seq
}

/// Adds a staff member or manager who signs in with `pin`.
pub fn add_user(dir: &Path, name: &str, role: Role, pin: &str) {
    let (conn, _) = store::open_admin(dir).expect("admin");
    edge_node::auth::add_user(&conn, name, role, pin, 0).expect("user");
}

/// A client for the LAN UI's forms: redirects are answers to look at, not
/// to follow.
pub fn form_client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// Posts the sign-in form as the node's own page would, with the cookies
/// in `cookie` (a device cookie, say); returns the answer.
pub async fn sign_in(
    node: &TestNode,
    http: &reqwest::Client,
    name: &str,
    pin: &str,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut request = http
        .post(format!("{}/signin", node.base))
        .header("origin", &node.base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name={name}&pin={pin}"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.expect("sign in")
}

/// The `NAME=value` pair of the cookie named `name` that `response` set.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}
