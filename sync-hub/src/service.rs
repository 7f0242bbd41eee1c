//! The hub's operations as handlers, the sweeper and the CLI call them:
//! each names the rows it reads, runs the rules of [`crate::view`],
//! [`crate::routing`] and [`crate::enrollment`] over them in one write
//! transaction of whichever backend serves, and says what it did. The same
//! calls, and so the same rules, whatever the backend.

use shared::protocol::{EnrollRequest, HeadRef};
use shared::{BookingId, Event, LocationId, PoolId};

use crate::enrollment::{self, Enrolled};
use crate::error::{StorageError, StorageResult};
use crate::plan::Refusal;
use crate::routing::{self, Placed, WebOrder};
use crate::storage::{HubStorage, PoolSummary};
use crate::view::{self, Batch, Pushed};
use crate::working::{Working, timestamp};

impl dyn HubStorage {
    /// Runs `work` over `working` in one write transaction.
    pub async fn run<T, F>(&self, working: Working, work: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Working) -> StorageResult<T> + Send + 'static,
    {
        let out = self
            .transact(
                working,
                Box::new(move |w| work(w).map(|t| Box::new(t) as Box<dyn std::any::Any + Send>)),
            )
            .await?;
        out.downcast::<T>()
            .map(|t| *t)
            .map_err(|_| StorageError::backend("a transaction returned another type than its work"))
    }

    pub async fn enroll(
        &self,
        request: &EnrollRequest,
        token_hash: &str,
        now_ms: i64,
    ) -> StorageResult<Enrolled> {
        let mut working = Working::new();
        enrollment::want_enroll(&mut working, token_hash);
        let (request, token_hash) = (request.clone(), token_hash.to_owned());
        self.run(working, move |w| {
            enrollment::enroll(w, &request, &token_hash, now_ms)
        })
        .await
    }

    /// Applies a batch of the location's own log, its head signature
    /// verified by the caller. `backlog_before` is what the device said it
    /// had waiting before this batch, so the hub can record what remains. A
    /// fork quarantines the device, in a transaction of its own (the
    /// refused batch rolled back); a fenced push (an old copy of the device)
    /// is recorded for its alert.
    pub async fn push(
        &self,
        location: &LocationId,
        events: Vec<Event>,
        head_signature: &str,
        backlog_before: Option<u64>,
        now_ms: i64,
    ) -> StorageResult<Pushed> {
        let sent = events.len() as u64;
        let remaining = backlog_before.map(|before| before.saturating_sub(sent));
        let batch = Batch::new(events);
        let mut working = Working::new();
        view::want_push(&mut working, location, &batch);
        let (at, head_signature) = (location.clone(), head_signature.to_owned());
        let result = self
            .run(working, move |w| {
                let pushed = view::push(w, &at, batch, &head_signature, now_ms)?;
                if let Some(remaining) = remaining {
                    view::record_backlog(w, &at, remaining, now_ms)?;
                }
                Ok(pushed)
            })
            .await;
        match &result {
            Ok(_) => {
                if let Some(remaining) = remaining {
                    self.pushed(location, remaining, now_ms);
                }
            }
            Err(StorageError::Refused(Refusal::Fork { seq })) => {
                let seq = *seq;
                let mut working = Working::new();
                working.want_location(location);
                let at = location.clone();
                self.run(working, move |w| view::quarantine(w, &at, seq))
                    .await?;
                tracing::warn!(%location, seq, "fork detected; device quarantined");
            }
            Err(StorageError::Refused(Refusal::Fenced { .. })) => {
                // For the `fenced` alert; the refusal is the answer either way.
                if let Err(e) = self.note_fenced(location, now_ms).await {
                    tracing::warn!(%location, error = %e, "cannot record a fenced push");
                }
            }
            Err(_) => {}
        }
        result
    }

    /// Starts a new epoch after the hub's head and lifts a quarantine.
    pub async fn reset(&self, location: &LocationId) -> StorageResult<(u32, u64, HeadRef)> {
        let mut working = Working::new();
        working.want_location(location);
        let at = location.clone();
        self.run(working, move |w| view::reset(w, &at)).await
    }

    /// The hub gives back `units` of its allotment of `pool` to the owner.
    pub async fn return_hub_allotment(
        &self,
        pool: &PoolId,
        units: i64,
        now_ms: i64,
    ) -> StorageResult<LocationId> {
        let mut working = Working::new();
        working.want_pool(pool);
        let pool = pool.clone();
        self.run(working, move |w| {
            view::return_hub_allotment(w, &pool, units, now_ms)
        })
        .await
    }

    /// Takes a web order (see [`routing::place_web_order`]).
    pub async fn place_web_order(
        &self,
        order: WebOrder,
        unreachable_after_ms: i64,
        now_ms: i64,
    ) -> StorageResult<Placed> {
        let mut working = Working::new();
        routing::want_web_order(&mut working, &order);
        self.run(working, move |w| {
            routing::place_web_order(w, order, unreachable_after_ms, now_ms)
        })
        .await
    }

    /// Cancels what the website made (see [`routing::cancel`]).
    pub async fn cancel_booking(&self, id: &BookingId, now_ms: i64) -> StorageResult<Placed> {
        let mut working = Working::new();
        working.want_booking(id);
        let id = *id;
        self.run(working, move |w| routing::cancel(w, &id, now_ms))
            .await
    }

    /// Gives up on the hub's requests without a decision by `expires_at +
    /// skew_margin_ms` and expires the hub's holds (at most
    /// [`crate::working::EXPIRED_PER_SWEEP`] a call), and forgets Idempotency-Keys past
    /// their promise; returns the bookings whose state changed.
    pub async fn expire_due(
        &self,
        skew_margin_ms: i64,
        now_ms: i64,
    ) -> StorageResult<Vec<BookingId>> {
        let mut working = Working::new();
        working.want_due(now_ms, skew_margin_ms);
        let changed = self
            .run(working, move |w| {
                routing::expire_due(w, now_ms, skew_margin_ms)
            })
            .await?;
        Ok(changed)
    }

    /// A location's pools with what is available, as of the newest news
    /// from its owner; `stale` is left to the caller's threshold.
    pub async fn pool_summaries(&self, location: &LocationId) -> StorageResult<Vec<PoolSummary>> {
        let read = self.pools(location).await?;
        let as_of = match (read.synced_at_ms, read.last_event_at_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(read
            .pools
            .into_iter()
            .map(|(id, pool)| PoolSummary {
                id,
                resource_id: pool.resource_id.as_str().to_owned(),
                owner: pool.owner,
                capacity: pool.capacity,
                available: pool.capacity - pool.used,
                hub_available: pool.hub_allotted - pool.hub_used,
                starts_at: pool.starts_at_ms.map(timestamp),
                ends_at: pool.ends_at_ms.map(timestamp),
                as_of: as_of.map(timestamp),
                stale: false,
                owner_last_seen_at_ms: read.last_seen_at_ms,
                owner_backlog_events: read.backlog_events,
            })
            .collect())
    }
}
