//! The single writer thread and its group commit.
//!
//! Requests queue on a bounded channel. The thread takes whatever is waiting
//! (up to [`BATCH_JOBS_MAX`]), runs each job inside its own savepoint of one
//! `BEGIN IMMEDIATE` transaction (jobs that check everything before their
//! first write, like bookings, run without one), commits once, and only then
//! answers every job of the batch. While one batch is being fsynced the next
//! one gathers in the channel, so the cost of an fsync is shared by everyone
//! who arrived during it, and no request is ever acknowledged before its
//! commit.
//!
//! Bookings running back to back in a batch read each pool once and write
//! the units they take to each pool once, before any other job of the batch
//! runs and before the commit.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use rusqlite::Connection;
use shared::event::ChainHead;
use shared::{Event, EventBody, Hash, Line, PoolId, SealedEvent};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use uuid::Uuid;

use super::project::{self, PoolDebts};
use super::queries::{self, PoolStanding};
use super::{Clock, NodeInfo, StoreError, StoreResult};

/// Requests waiting for the writer. Beyond this, callers wait for room
/// (backpressure) instead of growing memory without bound.
const QUEUE_JOBS_MAX: usize = 4096;

/// Jobs committed in one transaction. Bounds how long one transaction holds
/// the write lock and how much work one failed commit throws away.
const BATCH_JOBS_MAX: usize = 512;

/// What a job does inside the writer's transaction.
#[derive(Debug)]
pub struct WriteCtx<'a> {
    conn: &'a Connection,
    node: &'a NodeInfo,
    now_ms: i64,
    /// Head of this node's log including this batch's uncommitted events.
    head: ChainHead,
    holds_changed: bool,
    /// Pools bookings of this batch have read, as they stand after those
    /// bookings: the next booking of the same pool need not read it again.
    /// Trusted only while the connection has made no change since
    /// (`pools_seen_at` is its change count then), so any other write, or a
    /// rolled-back one, empties it.
    pools_seen: HashMap<PoolId, PoolStanding>,
    pools_seen_at: u64,
    /// Units bookings of this batch took from pools, written to the pools
    /// table once per pool (see [`Self::settle_pools`]).
    pool_debts: PoolDebts,
    /// Whether a new booking's units go to `pool_debts`: only while a job
    /// without a savepoint runs, which only places bookings.
    defer_pools: bool,
    /// A write the batch relies on failed part-way: only undoing the whole
    /// batch leaves a consistent database.
    poisoned: bool,
}

impl WriteCtx<'_> {
    /// What a booking needs to know of pool `id`, read once per batch.
    pub fn pool_standing(&mut self, id: &PoolId) -> StoreResult<Option<PoolStanding>> {
        if self.conn.total_changes() != self.pools_seen_at {
            self.pools_seen.clear();
        }
        if let Some(seen) = self.pools_seen.get(id) {
            debug_assert_eq!(
                Some(seen),
                queries::pool_standing_of(self.conn, id)
                    .ok()
                    .flatten()
                    .map(|mut row| {
                        row.holding.used += self.debt(id);
                        row
                    })
                    .as_ref(),
                "the pools a batch has seen stay what the database holds"
            );
            return Ok(Some(seen.clone()));
        }
        let mut standing = queries::pool_standing_of(self.conn, id)?;
        if let Some(standing) = &mut standing {
            standing.holding.used += self.debt(id);
            self.pools_seen.insert(id.clone(), standing.clone());
        }
        self.pools_seen_at = self.conn.total_changes();
        Ok(standing)
    }

    /// Units of pool `id` booked in this batch and not yet in its row.
    fn debt(&self, id: &PoolId) -> i64 {
        self.pool_debts
            .iter()
            .find(|(pool, _)| pool == id)
            .map_or(0, |(_, units)| *units)
    }

    /// Applies `body` to the state tables (the projection), deferring a new
    /// booking's units while bookings run back to back.
    pub(crate) fn project(&mut self, body: &EventBody) -> StoreResult<()> {
        let me = self.node.participant();
        if self.defer_pools && matches!(body, EventBody::BookingCreated { .. }) {
            return project::apply_deferring(
                self.conn,
                &me,
                body,
                self.now_ms,
                Some(&mut self.pool_debts),
            );
        }
        self.settle_pools()?;
        project::apply(self.conn, &me, body, self.now_ms)
    }

    /// Takes in another participant's catalog or a location joining,
    /// learned from the hub at `hub_seq`, without an event of our own
    /// ([`project::learn`]).
    pub(crate) fn learn(&mut self, hub_seq: u64, event: &shared::Event) -> StoreResult<()> {
        self.settle_pools()?;
        let me = self.node.participant();
        project::learn(self.conn, &me, hub_seq, event, self.now_ms)
    }

    /// Writes the units bookings of this batch took to the pools table:
    /// before anything but a booking runs, and before the commit.
    fn settle_pools(&mut self) -> StoreResult<()> {
        if self.pool_debts.is_empty() {
            return Ok(());
        }
        let seen_still_true = self.conn.total_changes() == self.pools_seen_at;
        if let Err(e) = project::settle(self.conn, &self.pool_debts, self.now_ms) {
            self.poisoned = true;
            return Err(e);
        }
        self.pool_debts.clear();
        // The rows now say what the pools seen already said.
        if seen_still_true {
            self.pools_seen_at = self.conn.total_changes();
        } else {
            self.pools_seen.clear();
        }
        Ok(())
    }

    /// Records that a booking whose lines are `lines` was just written and,
    /// if `consumes`, took its units from pools charged to this node, as
    /// the projection did in the database.
    pub fn booked(&mut self, lines: &[Line], consumes: bool) {
        if consumes {
            for line in lines {
                if let Some(seen) = self.pools_seen.get_mut(&line.pool_id) {
                    seen.holding.used += line.quantity;
                } else {
                    self.pools_seen.clear();
                    return;
                }
            }
        }
        self.pools_seen_at = self.conn.total_changes();
    }

    pub fn conn(&self) -> &Connection {
        self.conn
    }

    pub fn node(&self) -> &NodeInfo {
        self.node
    }

    /// The time of this batch, the same for every job in it.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Tells the expiry sweeper to look again once this batch commits.
    pub fn hold_changed(&mut self) {
        self.holds_changed = true;
    }

    /// Runs `work` in a savepoint of its own inside the current job: if it
    /// fails (or panics), its writes and events are undone and nothing
    /// else of the job, and its error is the inner one. The outer error
    /// means the transaction itself is gone and the job must fail.
    pub(crate) fn attempt<T>(
        &mut self,
        work: impl FnOnce(&mut Self) -> StoreResult<T>,
    ) -> StoreResult<StoreResult<T>> {
        // Units bookings noted for the pools are written outside the
        // savepoint, so undoing it cannot lose them.
        self.settle_pools()?;
        let (head_before, holds_before) = (self.head, self.holds_changed);
        exec(self.conn, "SAVEPOINT attempt")?;
        let outcome = catch_unwind(AssertUnwindSafe(|| work(self))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(StoreError::Internal(format!(
                "applying it panicked: {what}"
            )))
        });
        if self.conn.is_autocommit() {
            return Err(StoreError::Internal(
                "the database ended the transaction".into(),
            ));
        }
        if outcome.is_ok() {
            exec(self.conn, "RELEASE attempt")?;
        } else {
            exec(self.conn, "ROLLBACK TO attempt")?;
            exec(self.conn, "RELEASE attempt")?;
            self.head = head_before;
            self.holds_changed = holds_before;
            self.pools_seen.clear();
        }
        Ok(outcome)
    }

    /// Appends an event to this node's log, in the current transaction: the
    /// outbox. Returns its `seq`.
    pub fn append(&mut self, body: EventBody) -> StoreResult<u64> {
        let event = Event::seal_next(
            self.head,
            &self.node.participant(),
            self.node.epoch,
            self.now_ms,
            &body,
        );
        // Check before appending what receivers will check on arrival: the
        // stored body reads back as the body that was meant.
        debug_assert_eq!(
            serde_json::from_str(&event.body)
                .ok()
                .and_then(|json| EventBody::from_parts(&event.kind, &json).ok())
                .as_ref(),
            Some(&body),
            "{event:?}"
        );
        insert_own_event(self.conn, &event)?;
        self.head = ChainHead {
            seq: event.seq,
            hash: event.hash,
        };
        Ok(event.seq)
    }
}

/// Stores an event of this node's own log.
pub(crate) fn insert_own_event(conn: &Connection, event: &SealedEvent) -> StoreResult<()> {
    let (mut id, mut prev, mut own) = (Uuid::encode_buffer(), [0u8; 64], [0u8; 64]);
    conn.prepare_cached(
        "INSERT INTO events (seq, id, epoch, prev, hash, at_ms, kind, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(rusqlite::params![
        event.seq as i64,
        &*event.id.hyphenated().encode_lower(&mut id),
        event.epoch,
        event.prev.write_hex_str(&mut prev),
        event.hash.write_hex_str(&mut own),
        event.at_ms,
        event.kind,
        event.body,
    ])?;
    Ok(())
}

/// A queued unit of work with the channel its answer goes back on.
trait Job: Send {
    /// Runs the work; `true` if it succeeded and its savepoint is kept.
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> bool;
    /// Whether the work runs in a savepoint of its own.
    fn guarded(&self) -> bool;
    /// Why the work failed, once it has run and failed.
    fn failure(&self) -> Option<String>;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct TypedJob<T, F> {
    work: Option<F>,
    guarded: bool,
    outcome: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&mut WriteCtx<'_>) -> StoreResult<T> + Send,
{
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> bool {
        let Some(work) = self.work.take() else {
            unreachable!("a job runs once")
        };
        // A panicking job must not take the writer thread, and with it every
        // later write, down with it.
        let outcome = catch_unwind(AssertUnwindSafe(|| work(ctx))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = %what, "a write job panicked; rolled back");
            Err(StoreError::Internal(format!("write job panicked: {what}")))
        });
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn guarded(&self) -> bool {
        self.guarded
    }

    fn failure(&self) -> Option<String> {
        match &self.outcome {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        }
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let outcome = match (commit, self.outcome) {
            (Ok(()), Some(outcome)) => outcome,
            (Err(e), _) => Err(StoreError::Internal(format!("commit failed: {e}"))),
            (Ok(()), None) => Err(StoreError::Internal("job never ran".into())),
        };
        // The caller may have gone away (client disconnected); the write
        // stands regardless, as it would after any acknowledged commit.
        let _ = self.reply.send(outcome);
    }
}

#[derive(Clone)]
pub(super) struct WriterHandle {
    queue: mpsc::Sender<Box<dyn Job>>,
}

impl WriterHandle {
    pub(super) async fn submit<T, F>(&self, work: F, guarded: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            work: Some(work),
            guarded,
            outcome: None,
            reply,
        });
        self.queue.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

fn load_head(conn: &Connection) -> StoreResult<ChainHead> {
    let row: Option<(i64, String)> = rusqlite::OptionalExtension::optional(conn.query_row(
        "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    ))?;
    Ok(match row {
        None => ChainHead::EMPTY,
        Some((seq, hash)) => ChainHead {
            seq: seq as u64,
            hash: Hash::parse_hex(&hash)
                .ok_or_else(|| StoreError::Corrupt(format!("event {seq} has a bad hash")))?,
        },
    })
}

pub(super) fn spawn(
    conn: Connection,
    node: NodeInfo,
    clock: Arc<dyn Clock>,
    holds_changed: Arc<Notify>,
) -> StoreResult<(WriterHandle, watch::Receiver<u64>)> {
    let head = load_head(&conn)?;
    let (queue, jobs) = mpsc::channel(QUEUE_JOBS_MAX);
    let (head_tx, head_rx) = watch::channel(head.seq);
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            Writer {
                conn,
                node,
                clock,
                holds_changed,
                head,
                head_tx,
            }
            .run(jobs)
        })
        .map_err(|e| StoreError::Setup(format!("cannot start the writer thread: {e}")))?;
    Ok((WriterHandle { queue }, head_rx))
}

struct Writer {
    conn: Connection,
    node: NodeInfo,
    clock: Arc<dyn Clock>,
    holds_changed: Arc<Notify>,
    /// Head of the committed log.
    head: ChainHead,
    head_tx: watch::Sender<u64>,
}

impl Writer {
    fn run(mut self, mut jobs: mpsc::Receiver<Box<dyn Job>>) {
        let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(BATCH_JOBS_MAX);
        // Ends when every handle is dropped and the queue is drained.
        while let Some(first) = jobs.blocking_recv() {
            batch.push(first);
            while batch.len() < BATCH_JOBS_MAX {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
        }
        tracing::debug!("store writer stopped");
    }

    fn commit_batch(&mut self, batch: &mut Vec<Box<dyn Job>>) {
        let mut ctx = WriteCtx {
            conn: &self.conn,
            node: &self.node,
            now_ms: self.clock.now_ms(),
            head: self.head,
            holds_changed: false,
            pools_seen: HashMap::new(),
            pools_seen_at: self.conn.total_changes(),
            pool_debts: PoolDebts::new(),
            defer_pools: false,
            poisoned: false,
        };
        let started = std::time::Instant::now();
        let result = run_in_transaction(&mut ctx, batch);
        metrics::histogram!(crate::metrics::COMMIT_DURATION)
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!(crate::metrics::COMMIT_BATCH).record(batch.len() as f64);
        let holds_changed = ctx.holds_changed;
        let new_head = ctx.head;
        match &result {
            Ok(()) => {
                self.head = new_head;
                self.head_tx.send_if_modified(|seq| {
                    let moved = *seq != new_head.seq;
                    *seq = new_head.seq;
                    moved
                });
                if holds_changed {
                    self.holds_changed.notify_one();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "group commit failed");
                // Nothing of the batch is on disk; start again from what is.
                if let Ok(head) = load_head(&self.conn) {
                    self.head = head;
                }
            }
        }
        for job in batch.drain(..) {
            job.finish(result.as_ref().map(|_| ()));
        }
    }
}

/// Runs a statement without parameters through the statement cache: the
/// writer issues the same few transaction statements thousands of times a
/// second, and parsing them each time is measurable.
pub(crate) fn exec(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn run_in_transaction(ctx: &mut WriteCtx<'_>, batch: &mut [Box<dyn Job>]) -> StoreResult<()> {
    exec(ctx.conn, "BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        let ran = run_isolated(ctx, job.as_mut());
        if let Err(e) = ran.and_then(|()| poisoned(ctx)) {
            let _ = ctx.conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    if let Err(e) = ctx.settle_pools().and_then(|()| exec(ctx.conn, "COMMIT")) {
        let _ = ctx.conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    Ok(())
}

fn poisoned(ctx: &WriteCtx<'_>) -> StoreResult<()> {
    if ctx.poisoned {
        tracing::error!("a write of pool units failed part-way; rolling back its batch");
        return Err(StoreError::Internal(
            "a write failed part-way; its batch was rolled back".into(),
        ));
    }
    Ok(())
}

/// Runs one job in its own savepoint: its failure undoes its own writes and
/// its own events, nothing else.
fn run_isolated(ctx: &mut WriteCtx<'_>, job: &mut dyn Job) -> StoreResult<()> {
    let head_before = ctx.head;
    let holds_before = ctx.holds_changed;
    if !job.guarded() {
        // Checked before writing: a refusal wrote nothing. If it wrote
        // anyway, only rolling back the whole batch undoes it.
        let changes = ctx.conn.total_changes();
        ctx.defer_pools = true;
        let ok = job.run(ctx);
        ctx.defer_pools = false;
        if !ok {
            // SQLite ends the whole transaction itself on some errors (disk
            // full, I/O): later jobs must not run outside it.
            if ctx.conn.is_autocommit() || ctx.conn.total_changes() != changes {
                tracing::error!(
                    error = job.failure().unwrap_or_default(),
                    "a write failed part-way; rolling back its batch"
                );
                return Err(StoreError::Internal(
                    "a write failed part-way; its batch was rolled back".into(),
                ));
            }
            ctx.head = head_before;
            ctx.holds_changed = holds_before;
            ctx.pools_seen.clear();
        }
        return Ok(());
    }
    // Work with a savepoint of its own may read or change any pool: what
    // bookings before it took goes to the pools table first.
    ctx.settle_pools()?;
    exec(ctx.conn, "SAVEPOINT job")?;
    let ok = job.run(ctx);
    if ctx.conn.is_autocommit() {
        tracing::error!(
            error = job.failure().unwrap_or_default(),
            "the database ended the transaction; rolling back its batch"
        );
        return Err(StoreError::Internal(
            "the database ended the transaction; its batch was rolled back".into(),
        ));
    }
    if ok {
        exec(ctx.conn, "RELEASE job")?;
    } else {
        exec(ctx.conn, "ROLLBACK TO job")?;
        exec(ctx.conn, "RELEASE job")?;
        ctx.head = head_before;
        ctx.holds_changed = holds_before;
        // What the job's bookings noted of pools was rolled back with them;
        // the database's change count does not go back, so say so here.
        ctx.pools_seen.clear();
    }
    Ok(())
}
