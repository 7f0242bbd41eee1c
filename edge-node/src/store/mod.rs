//! The edge node's durable local store: one SQLite file in WAL mode with
//! `synchronous = FULL`, one writer thread that commits concurrent requests
//! together (group commit), and a small pool of read connections.
//!
//! Handlers never touch SQL: they call the operations in [`ops`] through
//! [`Store::write`] and the queries in [`queries`] through [`Store::read`].

pub mod backup;
pub mod error;
pub mod facts;
mod inbox;
pub mod ops;
pub mod project;
pub mod queries;
pub mod rebuild;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use rusqlite_migration::{M, Migrations};
use shared::{LocationId, ParticipantId};
use tokio::sync::{Notify, watch};

pub use error::{StoreError, StoreResult};
pub use writer::WriteCtx;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "edge.db";

/// Read connections kept open. Reads are short indexed lookups; four lets
/// the LAN UI, the API and the sweeper read at once on a two-core box without
/// holding many WAL read marks.
const READERS: usize = 4;

/// Prepared statements kept per connection. rusqlite keeps 16 by default;
/// taking a booking or applying an inbox event runs more distinct
/// statements than that, and a cache smaller than the working set evicts
/// each statement just before it is needed again, so every write would
/// parse its SQL afresh.
const STATEMENT_CACHE: usize = 256;
/// How long a connection waits for a lock held by another process (the
/// admin commands) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, oldest first. Append-only: a shipped migration is never edited.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!(
        "../../../migrations/edge-node/0001_initial.sql"
    )),
    M::up(include_str!("../../../migrations/edge-node/0002_sync.sql")),
    M::up(include_str!("../../../migrations/edge-node/0003_users.sql")),
    M::up(include_str!(
        "../../../migrations/edge-node/0004_locations.sql"
    )),
    M::up(include_str!(
        "../../../migrations/edge-node/0005_booking_rows.sql"
    ))
    .foreign_key_check(),
    M::up(include_str!(
        "../../../migrations/edge-node/0006_inbox_set_aside.sql"
    )),
    M::up(include_str!(
        "../../../migrations/edge-node/0007_sign_in_devices.sql"
    ))
    .foreign_key_check(),
    M::up(include_str!(
        "../../../migrations/edge-node/0008_learned_catalog.sql"
    )),
    M::up(include_str!(
        "../../../migrations/edge-node/0009_no_shows_and_history.sql"
    )),
];

/// A source of wall-clock time. Injectable so tests can run a node whose
/// clock is off, as real store PCs sometimes are.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The system clock, shifted by a fixed offset (zero in production).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock {
    pub offset_ms: i64,
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        jiff::Timestamp::now().as_millisecond() + self.offset_ms
    }
}

/// Settings of a running store.
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    /// How long past a request's `expires_at` we wait for the owner's
    /// decision before giving up (30 s by default); also
    /// the scale of the clock-offset alert (half of it).
    pub skew_margin_ms: i64,
    /// The sync protocol this node says it speaks when it pulls; older
    /// than [`shared::protocol::PROTOCOL`] only to test upgrades.
    pub sync_protocol: u32,
    /// How long a kiosk waits without a touch before it clears what a
    /// customer left on screen.
    pub kiosk_idle_seconds: i64,
}

/// The kiosk's idle reset by default: long enough to type a name and
/// phone, short enough that the next customer does not find them.
pub const KIOSK_IDLE_SECONDS: i64 = 90;

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            skew_margin_ms: shared::limits::SKEW_MARGIN_MS,
            sync_protocol: shared::protocol::PROTOCOL,
            kiosk_idle_seconds: KIOSK_IDLE_SECONDS,
        }
    }
}

/// Who this node is, read from the `node` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub location: LocationId,
    pub timezone: String,
    pub epoch: u32,
    /// The hub this node syncs with; `None` for a standalone node.
    pub hub: Option<HubBinding>,
}

/// What enrollment bound this node to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubBinding {
    pub url: String,
    pub public_key: String,
}

impl NodeInfo {
    pub fn participant(&self) -> ParticipantId {
        ParticipantId::Location(self.location.clone())
    }
}

/// Opens a connection with the pragmas every connection needs, and reads
/// each back: a pragma SQLite silently ignores would otherwise weaken
/// durability without anyone noticing.
pub(crate) fn open_connection(path: &Path, flags: OpenFlags) -> StoreResult<Connection> {
    // No mutex of SQLite's own around each call: a connection is used by
    // one thread at a time (rusqlite's `Connection` is not `Sync`), as
    // rusqlite's own default flags assume.
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL: readers never block the writer and the writer never blocks readers.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Setup(format!(
            "SQLite refused WAL mode (journal_mode is {mode})"
        )));
    }
    // FULL: the WAL is fsynced at every commit, so an acknowledged booking
    // survives power loss, not only a process crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    if sync != 2 {
        return Err(StoreError::Setup(format!(
            "SQLite refused synchronous = FULL (it is {sync})"
        )));
    }
    // Savepoint journals stay in memory: the writer takes one for most
    // requests, and a temporary file for each would cost more than the work
    // itself.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    set_foreign_keys(&conn, true)?;
    Ok(conn)
}

/// The schema version this binary brings a database to.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATIONS)
}

/// Brings the schema up to date, refusing a database written by a newer
/// binary: running old code on a newer schema could corrupt it.
pub(crate) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Setup(format!(
            "this database has schema version {version}, but this edge-node binary only knows \
             versions up to {known}: it was written by a newer edge-node. Install that version \
             or newer; the database was left untouched"
        )));
    }
    // Rebuilding a table (create, copy, drop, rename) is how SQLite changes
    // a constraint; with foreign keys on, dropping the old table would
    // touch every row that refers to it. Migrations that rebuild check the
    // keys themselves before their transaction commits.
    set_foreign_keys(conn, false)?;
    let migrated = migrations()
        .to_latest(conn)
        .map_err(|e| StoreError::Setup(format!("migrating the database failed: {e}")));
    let restored = set_foreign_keys(conn, true);
    // The migration's own failure is the one worth reporting.
    migrated.and(restored)
}

fn set_foreign_keys(conn: &Connection, on: bool) -> StoreResult<()> {
    conn.pragma_update(None, "foreign_keys", on)?;
    let now: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    if now != on {
        return Err(StoreError::Setup(format!(
            "SQLite refused foreign_keys = {}",
            if on { "ON" } else { "OFF" }
        )));
    }
    Ok(())
}

pub(crate) fn read_node(conn: &Connection) -> StoreResult<Option<NodeInfo>> {
    type Row = (String, String, u32, Option<String>, Option<String>);
    conn.query_row(
        "SELECT location_id, timezone, epoch, hub_url, hub_public_key FROM node WHERE id = 1",
        [],
        |r| -> rusqlite::Result<Row> {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        },
    )
    .optional()?
    .map(|(location, timezone, epoch, url, public_key)| {
        Ok(NodeInfo {
            location: LocationId::parse(&location)
                .map_err(|e| StoreError::Corrupt(format!("node location: {e}")))?,
            timezone,
            epoch,
            hub: url
                .zip(public_key)
                .map(|(url, public_key)| HubBinding { url, public_key }),
        })
    })
    .transpose()
}

/// Makes `data_dir` an edge node for `location`. Refuses a directory that
/// already holds one.
pub fn init(
    data_dir: &Path,
    location: &LocationId,
    timezone: &str,
    now_ms: i64,
) -> StoreResult<NodeInfo> {
    jiff::tz::TimeZone::get(timezone)
        .map_err(|_| StoreError::Invalid(format!("unknown IANA time zone {timezone:?}")))?;
    create_private_dir(data_dir)?;
    let path = data_dir.join(DB_FILE);
    let mut conn = open_connection(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )?;
    migrate(&mut conn)?;
    if let Some(existing) = read_node(&conn)? {
        return Err(StoreError::Conflict(format!(
            "{} already holds the edge node of location {}",
            data_dir.display(),
            existing.location
        )));
    }
    conn.execute(
        "INSERT INTO node (id, location_id, timezone, epoch, created_at_ms) VALUES (1, ?1, ?2, 0, ?3)",
        rusqlite::params![location.as_str(), timezone, now_ms],
    )?;
    Ok(NodeInfo {
        location: location.clone(),
        timezone: timezone.to_owned(),
        epoch: 0,
        hub: None,
    })
}

/// Creates the data directory readable by its owner only: it holds customer
/// data and, once enrolled, the device's private key.
pub fn create_private_dir(dir: &Path) -> StoreResult<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Setup(format!("cannot create {}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::Setup(format!("cannot restrict {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Opens the database of an initialized data directory for a one-off admin
/// command, while a server may be running on it.
pub fn open_admin(data_dir: &Path) -> StoreResult<(Connection, NodeInfo)> {
    let path = data_dir.join(DB_FILE);
    if !path.exists() {
        return Err(StoreError::NotInitialized(data_dir.display().to_string()));
    }
    let mut conn = open_connection(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    migrate(&mut conn)?;
    let node = read_node(&conn)?
        .ok_or_else(|| StoreError::NotInitialized(data_dir.display().to_string()))?;
    Ok((conn, node))
}

/// File that marks a data directory as in use by a server, so `enroll` and
/// `reset`, which change who the node is, never run under a live one.
pub const LOCK_FILE: &str = "edge-node.lock";

/// Takes the data directory's exclusive lock, held until the file drops.
pub fn lock_data_dir(data_dir: &Path) -> StoreResult<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(LOCK_FILE))
        .map_err(|e| StoreError::Setup(format!("cannot open the lock file: {e}")))?;
    file.try_lock().map_err(|_| {
        StoreError::Conflict(format!(
            "{} is in use by a running edge-node; stop it first",
            data_dir.display()
        ))
    })?;
    Ok(file)
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    _lock: std::fs::File,
    writer: writer::WriterHandle,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    node: NodeInfo,
    clock: Arc<dyn Clock>,
    settings: StoreSettings,
    /// Woken after a commit that created or moved a hold's expiry.
    holds_changed: Arc<Notify>,
    /// The seq of the newest committed event of this node's log.
    head_seq: watch::Receiver<u64>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store of an initialized data directory and starts its
    /// writer thread.
    pub fn open(data_dir: &Path, clock: Arc<dyn Clock>) -> StoreResult<Self> {
        Self::open_with(data_dir, clock, StoreSettings::default())
    }

    pub fn open_with(
        data_dir: &Path,
        clock: Arc<dyn Clock>,
        settings: StoreSettings,
    ) -> StoreResult<Self> {
        let path = data_dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::NotInitialized(data_dir.display().to_string()));
        }
        let lock = lock_data_dir(data_dir)?;
        let mut conn = open_connection(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        migrate(&mut conn)?;
        let node = read_node(&conn)?
            .ok_or_else(|| StoreError::NotInitialized(data_dir.display().to_string()))?;
        let readers = (0..READERS)
            .map(|_| open_connection(&path, OpenFlags::SQLITE_OPEN_READ_ONLY))
            .collect::<StoreResult<Vec<_>>>()?;
        let holds_changed = Arc::new(Notify::new());
        let (writer, head_seq) =
            writer::spawn(conn, node.clone(), clock.clone(), holds_changed.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                _lock: lock,
                writer,
                readers: Mutex::new(readers),
                path,
                node,
                clock,
                settings,
                holds_changed,
                head_seq,
            }),
        })
    }

    pub fn node(&self) -> &NodeInfo {
        &self.inner.node
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    pub fn settings(&self) -> StoreSettings {
        self.inner.settings
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    /// The data directory this store lives in.
    pub fn data_dir(&self) -> &Path {
        self.inner.path.parent().unwrap_or(Path::new("."))
    }

    /// Resolves when a hold was created or its expiry moved.
    pub fn holds_changed(&self) -> Arc<Notify> {
        self.inner.holds_changed.clone()
    }

    /// Follows the head of this node's committed log.
    pub fn head_seq(&self) -> watch::Receiver<u64> {
        self.inner.head_seq.clone()
    }

    /// Runs `work` in the writer's next group commit and answers once the
    /// transaction holding it has committed. A failing `work` is rolled back
    /// to its own savepoint without touching the other requests of the batch.
    pub async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.inner.writer.submit(work, true).await
    }

    /// Like [`Store::write`], for work that checks everything it can refuse
    /// before its first write, so a refusal leaves nothing to undo: it runs
    /// without a savepoint of its own, which saves the writer a statement
    /// pair and a copy of every page it touches. Should it fail after
    /// writing all the same (a database error), the whole batch rolls back
    /// and every request in it fails; none was acknowledged.
    ///
    /// Such work places bookings and reads pools through
    /// [`WriteCtx::pool_standing`]: the units its bookings take are written
    /// to the pools table once per batch, before any other work runs.
    pub async fn write_checked_first<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.inner.writer.submit(work, false).await
    }

    /// Runs `query` on a read connection, off the async threads.
    pub async fn read<T, F>(&self, query: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(query))
            .await
            .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }

    /// Runs `query` on a read connection on the calling thread.
    pub fn read_blocking<T>(
        &self,
        query: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let conn = self.take_reader()?;
        let result = query(&conn);
        let mut pool = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pool.len() < READERS {
            pool.push(conn);
        }
        result
    }

    fn take_reader(&self) -> StoreResult<Connection> {
        let pooled = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match pooled {
            Some(conn) => Ok(conn),
            // All busy: a short-lived extra connection beats waiting.
            None => open_connection(&self.inner.path, OpenFlags::SQLITE_OPEN_READ_ONLY),
        }
    }
}
