//! The hub's schema on PostgreSQL, and what every hub process does to a
//! database before it uses it: open a pool, bring the schema up to date
//! (refusing a database written by a newer sync-hub), and check that the
//! database belongs to a hub with this process's key.
//!
//! Several hub processes may share one database and start at once, so the
//! migration runner serialises them with an advisory lock. What the hub
//! reads and writes there belongs to the PostgreSQL backend, not here.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::{Client, NoTls};

/// The migrations in order, each applied in full or not at all. A
/// migration's version is its place in this list, from 1. Append-only: a
/// database records what it has applied, so an edited migration would
/// never run again where it already ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sync-hub/postgres/0001_initial.sql"),
    include_str!("../../../migrations/sync-hub/postgres/0002_operations.sql"),
    include_str!("../../../migrations/sync-hub/postgres/0003_fenced.sql"),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The key of the advisory lock migrations take: fixed, so every hub
/// process takes the same lock, and spelling `sync-hub` in ASCII, so it is
/// unlikely to be another application's key in a shared database.
/// Advisory locks are per database: hubs on different databases of one
/// server do not wait for each other.
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"sync-hub");

/// The `hub_meta` key under which the hub's public key is recorded.
const HUB_PUBLIC_KEY: &str = "hub_public_key";

/// How long opening one connection may take (TCP, start-up, trust or
/// password check): a server that has not answered by then is down or
/// unreachable, and a caller is better told so than left waiting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a free pooled connection before it gets an
/// error instead: longer than any one transaction of the hub should take,
/// short enough that a request stuck behind a stalled database fails
/// within a client's patience.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of getting a database ready for the hub. The first two are
/// refusals for the operator to act on, with the action in the message;
/// the others are failures of PostgreSQL or of reaching it, with what was
/// being done and PostgreSQL's own message in the text (tokio-postgres
/// keeps the server's message out of its `Display`), and the error itself
/// kept as the source for the log.
#[derive(Debug, thiserror::Error)]
pub enum PgSchemaError {
    #[error(
        "this hub database has schema version {found}, but this sync-hub binary only knows \
         versions up to {known}: it was written by a newer sync-hub; the database was left untouched"
    )]
    Newer { found: i64, known: i64 },
    #[error(
        "this database belongs to a hub with another key (recorded {recorded}, this process has \
         {this}): copy hub.key from the first hub process's data directory to every process"
    )]
    OtherHubKey { recorded: String, this: String },
    #[error("{doing}: {}", describe(.source))]
    Postgres {
        doing: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The URL is not printed: it may hold a password.
    #[error("the PostgreSQL URL does not parse: {}", describe(.0))]
    InvalidUrl(#[source] tokio_postgres::Error),
    #[error("a PostgreSQL pool needs room for at least one connection")]
    EmptyPool,
    #[error("building the PostgreSQL pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("connecting to PostgreSQL: {}", describe_pool(.0))]
    Connect(#[source] PoolError),
}

impl PgSchemaError {
    fn postgres(doing: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let doing = doing.into();
        move |source| Self::Postgres { doing, source }
    }
}

/// tokio-postgres's message with the server's (or the I/O error's) after
/// it.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.to_string();
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn describe_pool(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

/// A pool of at most `max_size` connections to `url` (a `postgres://` URL
/// or a `key=value` connection string), without TLS: the hub reaches its
/// database over loopback or a private network. Opens one connection
/// before it returns, so an unreachable database fails at start-up rather
/// than at the first request.
pub async fn pool(url: &str, max_size: usize) -> Result<Pool, PgSchemaError> {
    if max_size == 0 {
        return Err(PgSchemaError::EmptyPool);
    }
    let mut config: tokio_postgres::Config = url.parse().map_err(PgSchemaError::InvalidUrl)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // A pooled connection is reused unless it has closed; a query
            // per checkout to prove it alive would cost a round trip on
            // every request.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()?;
    drop(pool.get().await.map_err(PgSchemaError::Connect)?);
    Ok(pool)
}

/// Brings the schema up to [`SCHEMA_VERSION`] in one transaction: all the
/// missing migrations or none. Hub processes that start at once queue on
/// an advisory lock; each after the first finds nothing left to apply. A
/// database whose version is newer than this binary's is refused and left
/// as it was: old code on a newer schema could corrupt it.
pub async fn migrate(client: &mut Client) -> Result<(), PgSchemaError> {
    let tx = client.transaction().await.map_err(PgSchemaError::postgres(
        "starting the migration transaction",
    ))?;
    // Released when the transaction ends, committed or not.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(PgSchemaError::postgres("waiting for the migration lock"))?;
    // One row per migration applied: the version is the highest.
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version       BIGINT PRIMARY KEY,
             applied_at_ms BIGINT NOT NULL
         )",
    )
    .await
    .map_err(PgSchemaError::postgres("making the schema_version table"))?;
    let found: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await
        .map_err(PgSchemaError::postgres("reading the schema version"))?
        .get(0);
    if found > SCHEMA_VERSION {
        tx.rollback().await.map_err(PgSchemaError::postgres(
            "rolling back the migration transaction",
        ))?;
        return Err(PgSchemaError::Newer {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip_while(|(v, _)| *v <= found) {
        tx.batch_execute(sql)
            .await
            .map_err(PgSchemaError::postgres(format!(
                "applying migration {version:04}"
            )))?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at_ms)
             VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)",
            &[&version],
        )
        .await
        .map_err(PgSchemaError::postgres(format!(
            "recording migration {version:04}"
        )))?;
    }
    tx.commit()
        .await
        .map_err(PgSchemaError::postgres("committing the migrations"))
}

/// Records the hub's public key (base64) if the database has none yet,
/// and refuses a database recorded for another key: hub processes sharing
/// a database must sign as one hub, or edge nodes would see two hub logs.
/// Run after [`migrate`].
pub async fn check_hub_key(client: &Client, public_key_b64: &str) -> Result<(), PgSchemaError> {
    // Whichever process gets here first records its key; the others read
    // it back.
    client
        .execute(
            "INSERT INTO hub_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&HUB_PUBLIC_KEY, &public_key_b64],
        )
        .await
        .map_err(PgSchemaError::postgres("recording the hub's public key"))?;
    let recorded: String = client
        .query_one(
            "SELECT value FROM hub_meta WHERE key = $1",
            &[&HUB_PUBLIC_KEY],
        )
        .await
        .map_err(PgSchemaError::postgres("reading the hub's public key"))?
        .get(0);
    if recorded == public_key_b64 {
        Ok(())
    } else {
        Err(PgSchemaError::OtherHubKey {
            recorded,
            this: public_key_b64.to_owned(),
        })
    }
}
