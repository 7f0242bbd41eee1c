//! Write operations. Each runs inside the writer's transaction through
//! [`super::Store::write`], changes state and appends the matching event in
//! the same transaction (the outbox), or fails and leaves nothing behind.

use rusqlite::{OptionalExtension, params};
use shared::booking::{self, Action, validate_request};
use shared::event::ResourceKind;
use shared::limits::{
    HOLD_SECONDS_MAX, IDEMPOTENCY_RETENTION_MS, POOL_CAPACITY_MAX, REQUEST_TTL_DEFAULT_S,
    REQUEST_TTL_MAX_S, RESOURCE_NAME_MAX_CHARS,
};
use shared::protocol::{CreateBooking, ErrorBody};
use shared::{
    BookingId, BookingState, Channel, Event, EventBody, ParticipantId, PoolId, ResourceId,
};

use super::queries::{self, BookingView, PoolRow, PoolView, ResourceView};
use super::writer::exec;
use super::{StoreError, StoreResult, WriteCtx};

pub use super::inbox::apply_inbox;

/// Applies `body` to the state tables and appends it to the log, in the
/// current transaction: the one way a write operation changes anything.
pub(crate) fn emit(ctx: &mut WriteCtx<'_>, body: EventBody) -> StoreResult<u64> {
    log_learned(ctx, &body)?;
    ctx.project(&body)?;
    ctx.append(body)
}

/// Writes into our log, as observed, the catalog of others that `body`
/// names and that we only learned so far (migration 0008), so that our
/// log alone rebuilds every pool it names.
fn log_learned(ctx: &mut WriteCtx<'_>, body: &EventBody) -> StoreResult<()> {
    let pools = super::project::named_pools(body);
    if pools.is_empty() {
        return Ok(());
    }
    for (hub_seq, event) in super::project::take_learned(ctx.conn(), &pools)? {
        observe(ctx, hub_seq, event)?;
    }
    Ok(())
}

/// Records in our log another participant's event, from the hub's log at
/// `hub_seq`.
pub(super) fn observe(ctx: &mut WriteCtx<'_>, hub_seq: u64, event: Event) -> StoreResult<()> {
    emit(
        ctx,
        EventBody::Observed {
            hub_seq,
            event: Box::new(event),
        },
    )?;
    Ok(())
}

pub(super) fn pool_row(ctx: &WriteCtx<'_>, id: &PoolId) -> StoreResult<PoolRow> {
    queries::pool_row_of(ctx.conn(), id)?.ok_or_else(|| StoreError::not_found("pool", id))
}

fn require_owner(ctx: &WriteCtx<'_>, row: &PoolRow, what: &str) -> StoreResult<()> {
    if row.owner != ctx.node().participant() {
        return Err(StoreError::Conflict(format!(
            "pool {} is owned by {}; only its owner can {what}",
            row.id, row.owner
        )));
    }
    Ok(())
}

/// Refuses a client-chosen catalog id outside this location's namespace:
/// ids are global, and one another store might also choose would stop our
/// log at the hub.
fn check_namespace(ctx: &WriteCtx<'_>, what: &str, id: &str) -> StoreResult<()> {
    let location = &ctx.node().location;
    if shared::ids::in_namespace_of(location, id) {
        return Ok(());
    }
    let slug = id.split_once(':').map_or(id, |(_, rest)| rest);
    Err(StoreError::Invalid(format!(
        "{what} id {id} is not in this location's namespace: ids are global, so choose \
         {location}:{slug}, or leave id out for a generated one"
    )))
}

/// `POST /resources`.
#[derive(Debug, Clone)]
pub struct NewResource {
    pub id: Option<ResourceId>,
    pub name: String,
    pub kind: ResourceKind,
}

pub fn create_resource(ctx: &mut WriteCtx<'_>, new: NewResource) -> StoreResult<ResourceView> {
    if let Some(id) = &new.id {
        check_namespace(ctx, "resource", id.as_str())?;
    }
    let name = new.name.trim().to_owned();
    if name.is_empty() {
        return Err(StoreError::Invalid("name must not be empty".into()));
    }
    if name.chars().count() > RESOURCE_NAME_MAX_CHARS {
        return Err(StoreError::Invalid(format!(
            "name is longer than {RESOURCE_NAME_MAX_CHARS} characters"
        )));
    }
    if booking::has_hidden_characters(&name) {
        return Err(StoreError::Invalid(
            "name must not contain control or text-direction characters".into(),
        ));
    }
    let id = new.id.unwrap_or_else(ResourceId::generate);
    if queries::resource(ctx.conn(), &id)?.is_some() {
        return Err(StoreError::Conflict(format!(
            "resource {id} already exists"
        )));
    }
    let owner = ctx.node().participant();
    emit(
        ctx,
        EventBody::ResourceCreated {
            id: id.clone(),
            owner,
            name,
            kind: new.kind,
        },
    )?;
    queries::resource(ctx.conn(), &id)?
        .ok_or_else(|| StoreError::Internal("resource vanished".into()))
}

/// `POST /pools`.
#[derive(Debug, Clone)]
pub struct NewPool {
    pub id: Option<PoolId>,
    pub resource_id: ResourceId,
    pub capacity: i64,
    pub starts_at_ms: Option<i64>,
    pub ends_at_ms: Option<i64>,
}

pub fn create_pool(ctx: &mut WriteCtx<'_>, new: NewPool) -> StoreResult<PoolView> {
    if let Some(id) = &new.id {
        check_namespace(ctx, "pool", id.as_str())?;
    }
    if !(0..=POOL_CAPACITY_MAX).contains(&new.capacity) {
        return Err(StoreError::Invalid(format!(
            "capacity must be between 0 and {POOL_CAPACITY_MAX}"
        )));
    }
    let resource = queries::resource(ctx.conn(), &new.resource_id)?
        .ok_or_else(|| StoreError::not_found("resource", &new.resource_id))?;
    let me = ctx.node().participant();
    if resource.owner != me {
        return Err(StoreError::Conflict(format!(
            "resource {} is owned by {}; only its owner can add pools",
            resource.id, resource.owner
        )));
    }
    match (resource.kind, new.starts_at_ms, new.ends_at_ms) {
        (ResourceKind::Stock, None, None) => {
            let existing: i64 = ctx.conn().query_row(
                "SELECT count(*) FROM pools WHERE resource_id = ?1",
                [resource.id.as_str()],
                |r| r.get(0),
            )?;
            if existing > 0 {
                return Err(StoreError::Conflict(format!(
                    "stock resource {} already has its pool; adjust it instead",
                    resource.id
                )));
            }
        }
        (ResourceKind::Stock, _, _) => {
            return Err(StoreError::Invalid(
                "a stock pool has no starts_at or ends_at".into(),
            ));
        }
        (ResourceKind::Slot, Some(starts), Some(ends)) if starts < ends => {}
        (ResourceKind::Slot, Some(_), Some(_)) => {
            return Err(StoreError::Invalid(
                "starts_at must be before ends_at".into(),
            ));
        }
        (ResourceKind::Slot, _, _) => {
            return Err(StoreError::Invalid(
                "a slot pool needs both starts_at and ends_at".into(),
            ));
        }
    }
    let id = new.id.unwrap_or_else(PoolId::generate);
    if queries::pool_row_of(ctx.conn(), &id)?.is_some() {
        return Err(StoreError::Conflict(format!("pool {id} already exists")));
    }
    emit(
        ctx,
        EventBody::PoolCreated {
            id: id.clone(),
            resource_id: resource.id,
            owner: me,
            capacity: new.capacity,
            starts_at_ms: new.starts_at_ms,
            ends_at_ms: new.ends_at_ms,
        },
    )?;
    pool_view(ctx, &id)
}

fn pool_view(ctx: &WriteCtx<'_>, id: &PoolId) -> StoreResult<PoolView> {
    queries::pool(ctx.conn(), id)?.ok_or_else(|| StoreError::not_found("pool", id))
}

/// `POST /pools/{id}/adjust`: restock or shrinkage, by the owner only. A
/// decrease below what is booked is allowed (it is what happened) and shows
/// as `overbooked`.
pub fn adjust_pool(ctx: &mut WriteCtx<'_>, id: &PoolId, delta: i64) -> StoreResult<PoolView> {
    let row = pool_row(ctx, id)?;
    require_owner(ctx, &row, "adjust its stock")?;
    if delta == 0 {
        return Err(StoreError::Invalid("delta must not be 0".into()));
    }
    let capacity = row.capacity.checked_add(delta).unwrap_or(-1);
    if !(0..=POOL_CAPACITY_MAX).contains(&capacity) {
        return Err(StoreError::Invalid(format!(
            "capacity {} {delta:+} would leave the range 0..={POOL_CAPACITY_MAX}",
            row.capacity
        )));
    }
    let mut holding = row.holding();
    holding.adjust(delta);
    emit(
        ctx,
        EventBody::PoolAdjusted {
            pool: id.clone(),
            delta,
        },
    )?;
    if holding.overbooked() {
        tracing::warn!(pool = %id, available = holding.available(), "pool is overbooked after a stock decrease");
    }
    pool_view(ctx, id)
}

/// `POST /pools/{id}/allotments`: the owner escrows `units` to another
/// participant, debited here at once.
pub fn grant_allotment(
    ctx: &mut WriteCtx<'_>,
    id: &PoolId,
    to: &ParticipantId,
    units: i64,
) -> StoreResult<PoolView> {
    let row = pool_row(ctx, id)?;
    require_owner(ctx, &row, "grant allotments")?;
    if *to == ctx.node().participant() {
        return Err(StoreError::Invalid(
            "an owner cannot grant units to itself".into(),
        ));
    }
    if !(1..=POOL_CAPACITY_MAX).contains(&units) {
        return Err(StoreError::Invalid(format!(
            "units must be between 1 and {POOL_CAPACITY_MAX}"
        )));
    }
    // Units granted to a location that never enrolls could never be sold,
    // returned or taken back: grant only to those the hub introduced.
    if let ParticipantId::Location(location) = to {
        let known = queries::known_locations(ctx.conn())?;
        if !known.iter().any(|k| k.id == *location) {
            let names: Vec<&str> = known.iter().map(|k| k.id.as_str()).collect();
            return Err(StoreError::Invalid(if names.is_empty() {
                format!(
                    "{location} is not a location this store knows: no other location has \
                     enrolled with the hub yet (units can go to hub)"
                )
            } else {
                format!(
                    "{location} is not a location this store knows; known: hub, {}",
                    names.join(", ")
                )
            }));
        }
    }
    let mut holding = row.holding();
    holding
        .give(units)
        .map_err(|e| StoreError::InsufficientCapacity {
            pool: id.clone(),
            requested: e.requested,
            available: e.available,
        })?;
    emit(
        ctx,
        EventBody::AllotmentGranted {
            pool: id.clone(),
            to: to.clone(),
            units,
        },
    )?;
    pool_view(ctx, id)
}

/// A booking to place against this node's own allotments.
#[derive(Debug, Clone)]
pub struct NewBooking {
    pub request: CreateBooking,
    pub channel: Channel,
}

/// Places a booking. Against units charged to this node (its own pools,
/// or an allotment it received) it is `held` with a `hold_seconds` expiry or
/// `confirmed` at once, or refused with `insufficient_capacity` when the
/// pools are ours. For another participant's pools that our allotment does
/// not cover, it becomes a `requested` booking routed to their owner, which
/// decides it (docs/ARCHITECTURE.md, section 4).
pub fn create_booking(ctx: &mut WriteCtx<'_>, new: NewBooking) -> StoreResult<BookingView> {
    let CreateBooking {
        mut lines,
        customer,
        hold_seconds,
        request_ttl_seconds,
    } = new.request;
    validate_request(&lines, &customer)?;
    // One order everywhere: the log, the view and the database read back.
    lines.sort_by(|a, b| a.pool_id.cmp(&b.pool_id));
    if let Some(seconds) = hold_seconds
        && !(1..=HOLD_SECONDS_MAX).contains(&seconds)
    {
        return Err(StoreError::Invalid(format!(
            "hold_seconds must be between 1 and {HOLD_SECONDS_MAX}"
        )));
    }
    if let Some(ttl) = request_ttl_seconds
        && !(1..=REQUEST_TTL_MAX_S).contains(&ttl)
    {
        return Err(StoreError::Invalid(format!(
            "request_ttl_seconds must be between 1 and {REQUEST_TTL_MAX_S}"
        )));
    }
    let me = ctx.node().participant();
    let now = ctx.now_ms();
    let mut owner: Option<ParticipantId> = None;
    let mut shortfall: Option<StoreError> = None;
    for line in &lines {
        let row = ctx
            .pool_standing(&line.pool_id)?
            .ok_or_else(|| StoreError::not_found("pool", &line.pool_id))?;
        match &owner {
            None => owner = Some(row.owner.clone()),
            Some(o) if *o != row.owner => {
                return Err(StoreError::Invalid(
                    "a booking's pools must all have one owner".into(),
                ));
            }
            Some(_) => {}
        }
        if row.ends_at_ms.is_some_and(|end| end <= now) {
            return Err(StoreError::Conflict(format!(
                "slot {} has already ended",
                line.pool_id
            )));
        }
        if let Err(e) = { row.holding }.reserve(line.quantity) {
            shortfall.get_or_insert(StoreError::InsufficientCapacity {
                pool: line.pool_id.clone(),
                requested: e.requested,
                available: e.available,
            });
        }
    }
    let owner = owner.ok_or(StoreError::BookingInput(
        booking::BookingInputError::NoLines,
    ))?;
    let id = BookingId::generate();
    let (state, charged_to, expires_at_ms, request_hold) = match shortfall {
        None => match hold_seconds {
            Some(seconds) => (
                BookingState::Held,
                me.clone(),
                Some(now + seconds * 1000),
                None,
            ),
            None => (BookingState::Confirmed, me.clone(), None, None),
        },
        Some(e) if owner == me => return Err(e),
        Some(_) => {
            let ttl = request_ttl_seconds.unwrap_or(REQUEST_TTL_DEFAULT_S);
            (
                BookingState::Requested,
                owner.clone(),
                Some(now + ttl * 1000),
                hold_seconds,
            )
        }
    };
    let view = BookingView {
        id,
        code: id.short_code(),
        state,
        lines,
        customer,
        channel: new.channel,
        owner,
        requested_by: me,
        charged_to,
        expires_at: expires_at_ms.map(queries::ts),
        reason: None,
        created_at: queries::ts(now),
        updated_at: queries::ts(now),
    };
    emit(
        ctx,
        EventBody::BookingCreated {
            id,
            owner: view.owner.clone(),
            requested_by: view.requested_by.clone(),
            charged_to: view.charged_to.clone(),
            channel: view.channel,
            lines: view.lines.clone(),
            customer: view.customer.clone(),
            state,
            expires_at_ms,
            hold_seconds: request_hold,
            reason: None,
        },
    )?;
    // As the projection did: units are taken from pools charged to us (the
    // requester, here).
    ctx.booked(
        &view.lines,
        state.consumes_units() && view.charged_to == view.requested_by,
    );
    if matches!(state, BookingState::Held | BookingState::Requested) {
        ctx.hold_changed();
    }
    // What a read would return, built without reading it back.
    debug_assert_eq!(
        Some(&view),
        queries::booking(ctx.conn(), &id).ok().flatten().as_ref()
    );
    Ok(view)
}

fn booking_view(ctx: &WriteCtx<'_>, id: &BookingId) -> StoreResult<BookingView> {
    queries::booking(ctx.conn(), id)?.ok_or_else(|| StoreError::not_found("booking", id))
}

/// 201 for a booking made, 202 for a request its owner has yet to decide.
pub fn created_status(view: &BookingView) -> u16 {
    if view.state == BookingState::Requested {
        202
    } else {
        201
    }
}

/// The answer to a request that carried an `Idempotency-Key`, as first
/// given: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub status: u16,
    pub body: String,
    /// Whether this is a repeat of an answer given before.
    pub replayed: bool,
}

/// [`create_booking`] under an idempotency key: the first request's answer,
/// success or refusal, is committed with its effect and given again to every
/// later request with the same key and body.
pub fn create_booking_idempotent(
    ctx: &mut WriteCtx<'_>,
    key: &str,
    request_hash: &str,
    new: NewBooking,
) -> StoreResult<Recorded> {
    let earlier: Option<(String, i64, String)> = ctx
        .conn()
        .prepare_cached(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE key = ?1",
        )?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((hash, status, body)) = earlier {
        if hash != request_hash {
            return Err(StoreError::IdempotencyMismatch);
        }
        return Ok(Recorded {
            status: u16::try_from(status).map_err(|_| StoreError::Corrupt("status".into()))?,
            body,
            replayed: true,
        });
    }
    exec(ctx.conn(), "SAVEPOINT booking")?;
    let (status, body) = match create_booking(ctx, new) {
        Ok(view) => {
            exec(ctx.conn(), "RELEASE booking")?;
            (
                created_status(&view),
                serde_json::to_string(&view).map_err(|e| StoreError::Internal(e.to_string()))?,
            )
        }
        // Our own faults are not answers: nothing is recorded and the whole
        // job rolls back, so a retry with the key runs afresh.
        Err(e) if e.is_internal() => return Err(e),
        Err(e) => {
            exec(ctx.conn(), "ROLLBACK TO booking")?;
            exec(ctx.conn(), "RELEASE booking")?;
            let body = ErrorBody::new(e.code(), e.to_string());
            (
                e.status(),
                serde_json::to_string(&body).map_err(|e| StoreError::Internal(e.to_string()))?,
            )
        }
    };
    ctx.conn()
        .prepare_cached(
            "INSERT INTO idempotency_keys (key, request_hash, status, response, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![key, request_hash, status, body, ctx.now_ms()])?;
    Ok(Recorded {
        status,
        body,
        replayed: false,
    })
}

/// Confirm, cancel, fulfil or mark as a no-show a booking charged to this
/// node; `by` names the signed-in staff member, for the booking's history.
pub fn transition(
    ctx: &mut WriteCtx<'_>,
    id: &BookingId,
    action: Action,
    by: Option<String>,
) -> StoreResult<BookingView> {
    let current = booking_view(ctx, id)?;
    let me = ctx.node().participant();
    // The customer pays and collects at the store: its staff confirm and
    // fulfil what the website sold from the hub's allotment too. Cancelling
    // releases units, so it belongs to whoever they are charged to.
    let may = current.charged_to == me
        || (matches!(action, Action::Fulfil | Action::Confirm | Action::NoShow)
            && current.owner == me);
    if !may {
        return Err(StoreError::Conflict(format!(
            "booking {id} is charged to {}; only it can {} the booking",
            current.charged_to,
            action.verb()
        )));
    }
    if current.state == BookingState::Held
        && current.expires_at_ms().is_some_and(|at| at <= ctx.now_ms())
    {
        return Err(StoreError::Conflict(format!(
            "the hold on booking {id} has expired"
        )));
    }
    let next = booking::transition(current.state, action)
        .map_err(|source| StoreError::InvalidTransition { id: *id, source })?;
    if action == Action::NoShow {
        require_started(ctx, &current)?;
    }
    let id = *id;
    let body = match action {
        Action::Confirm => EventBody::BookingConfirmed { id, by },
        Action::Cancel => EventBody::BookingCancelled { id, by },
        Action::Fulfil => EventBody::BookingFulfilled { id, by },
        Action::NoShow => EventBody::BookingNoShow { id, by },
        other => {
            return Err(StoreError::Invalid(format!(
                "{} is not something staff do to a booking",
                other.verb()
            )));
        }
    };
    debug_assert_ne!(current.state, next);
    if current.state == BookingState::Held {
        ctx.hold_changed();
    }
    emit(ctx, body)?;
    booking_view(ctx, &id)
}

/// A no-show is a booking for a time that has begun: every line's pool is a
/// slot whose start has passed.
fn require_started(ctx: &WriteCtx<'_>, booking: &BookingView) -> StoreResult<()> {
    let now = ctx.now_ms();
    for line in &booking.lines {
        let started = queries::pool_row_of(ctx.conn(), &line.pool_id)?
            .and_then(|p| p.starts_at_ms)
            .is_some_and(|start| start <= now);
        if !started {
            return Err(StoreError::Conflict(format!(
                "booking {} is not for a slot that has started; a no-show can be marked once it has",
                booking.id
            )));
        }
    }
    Ok(())
}

/// Holds expired in one job at most, so one sweep never stalls the writer.
pub const EXPIRE_BATCH_MAX: usize = 256;

/// Expires what is due: holds charged to this node whose `expires_at` has
/// passed (freeing their units), and requests of ours that had no decision
/// by `expires_at + skew_margin_ms` (the requester's expiry, which wins
/// wherever it arrives). Returns how many; the sweeper calls again while
/// that is the batch maximum. (The `state IN` term lets SQLite use the
/// partial index of pending bookings.)
pub fn expire_due(ctx: &mut WriteCtx<'_>, skew_margin_ms: i64) -> StoreResult<usize> {
    let me = ctx.node().participant();
    let now = ctx.now_ms();
    let due: Vec<(String, String)> = {
        let mut stmt = ctx.conn().prepare_cached(
            "SELECT id, state FROM bookings
             WHERE state IN ('requested', 'held')
               AND ((state = 'held' AND charged_to = ?1 AND expires_at_ms <= ?2)
                 OR (state = 'requested' AND requested_by = ?1 AND charged_to != ?1
                     AND expires_at_ms < ?2 - ?3))
             ORDER BY expires_at_ms LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![me.as_str(), now, skew_margin_ms, EXPIRE_BATCH_MAX as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (raw, state) in &due {
        let id =
            BookingId::parse(raw).map_err(|_| StoreError::Corrupt(format!("booking id {raw}")))?;
        let reason = if state == "held" {
            "the hold was not confirmed in time"
        } else {
            "the owner did not decide the request in time"
        };
        ctx.hold_changed();
        emit(
            ctx,
            EventBody::BookingExpired {
                id,
                reason: reason.into(),
            },
        )?;
    }
    Ok(due.len())
}

/// Forgets idempotency records older than the retention promise.
pub fn purge_idempotency_keys(ctx: &mut WriteCtx<'_>) -> StoreResult<usize> {
    Ok(ctx
        .conn()
        .prepare_cached("DELETE FROM idempotency_keys WHERE created_at_ms < ?1")?
        .execute([ctx.now_ms() - IDEMPOTENCY_RETENTION_MS])?)
}

/// What one sync exchange learned, to be recorded in `sync_state`.
#[derive(Debug, Clone, Default)]
pub struct SyncUpdate {
    pub acked_seq: Option<u64>,
    pub state: Option<&'static str>,
    /// `Some(None)` clears the error.
    pub error: Option<Option<String>>,
    pub pushed: bool,
    pub pulled: bool,
    pub clock_offset_ms: Option<i64>,
}

pub fn record_sync(ctx: &mut WriteCtx<'_>, update: SyncUpdate) -> StoreResult<()> {
    let now = ctx.now_ms();
    let (clear_error, error) = match update.error {
        Some(None) => (true, None),
        Some(Some(message)) => (false, Some(message)),
        None => (false, None),
    };
    ctx.conn()
        .prepare_cached(
            "UPDATE sync_state SET
                acked_seq = max(acked_seq, coalesce(?1, acked_seq)),
                state = coalesce(?2, state),
                error = CASE WHEN ?3 THEN NULL ELSE coalesce(?4, error) END,
                last_push_at_ms = CASE WHEN ?5 THEN ?7 ELSE last_push_at_ms END,
                last_pull_at_ms = CASE WHEN ?6 THEN ?7 ELSE last_pull_at_ms END,
                clock_offset_ms = coalesce(?8, clock_offset_ms),
                updated_at_ms = ?7
             WHERE id = 1",
        )?
        .execute(params![
            update.acked_seq.map(|s| s as i64),
            update.state,
            clear_error,
            error,
            update.pushed,
            update.pulled,
            now,
            update.clock_offset_ms
        ])?;
    Ok(())
}

/// The hub told us our acknowledged head is lower than we recorded (it
/// lost nothing it acknowledged, so this only follows a gap answer).
pub fn rewind_acked(ctx: &mut WriteCtx<'_>, acked_seq: u64) -> StoreResult<()> {
    ctx.conn()
        .prepare_cached("UPDATE sync_state SET acked_seq = ?1 WHERE id = 1")?
        .execute([acked_seq as i64])?;
    Ok(())
}

/// The owner asks `from` to give back up to `units` of its allotment.
/// Units of `pool` this node, as owner, granted to `grantee` and has not had
/// back.
pub(super) fn granted_to(
    ctx: &WriteCtx<'_>,
    pool: &PoolId,
    grantee: &ParticipantId,
) -> StoreResult<i64> {
    Ok(ctx
        .conn()
        .prepare_cached(
            "SELECT coalesce(sum(units), 0) FROM allotments WHERE pool_id = ?1 AND grantee = ?2",
        )?
        .query_row(params![pool.as_str(), grantee.as_str()], |r| r.get(0))?)
}

pub fn recall_allotment(
    ctx: &mut WriteCtx<'_>,
    id: &PoolId,
    from: &ParticipantId,
    units: i64,
) -> StoreResult<PoolView> {
    let row = pool_row(ctx, id)?;
    require_owner(ctx, &row, "take back allotments")?;
    if !(1..=POOL_CAPACITY_MAX).contains(&units) {
        return Err(StoreError::Invalid(format!(
            "units must be between 1 and {POOL_CAPACITY_MAX}"
        )));
    }
    let granted = granted_to(ctx, id, from)?;
    if granted == 0 {
        return Err(StoreError::Conflict(format!(
            "{from} holds no units of pool {id}"
        )));
    }
    emit(
        ctx,
        EventBody::AllotmentRecalled {
            pool: id.clone(),
            from: from.clone(),
            units: units.min(granted),
        },
    )?;
    pool_view(ctx, id)
}

/// `POST /pools/{id}/return`: a grantee gives unused units of its
/// allotment back to the owner, debited here at once.
pub fn return_allotment(ctx: &mut WriteCtx<'_>, id: &PoolId, units: i64) -> StoreResult<PoolView> {
    let row = pool_row(ctx, id)?;
    if row.owner == ctx.node().participant() {
        return Err(StoreError::Invalid(
            "the owner holds its units already; only a grantee returns units".into(),
        ));
    }
    if !(1..=POOL_CAPACITY_MAX).contains(&units) {
        return Err(StoreError::Invalid(format!(
            "units must be between 1 and {POOL_CAPACITY_MAX}"
        )));
    }
    row.holding()
        .give(units)
        .map_err(|e| StoreError::InsufficientCapacity {
            pool: id.clone(),
            requested: e.requested,
            available: e.available,
        })?;
    emit(
        ctx,
        EventBody::AllotmentReturned {
            pool: id.clone(),
            units,
            hub_seq: None,
        },
    )?;
    pool_view(ctx, id)
}

/// Whether our own allotment covers every line (without taking anything).
pub(super) fn fits(ctx: &WriteCtx<'_>, lines: &[shared::Line]) -> StoreResult<Result<(), String>> {
    for line in lines {
        let Some(row) = queries::pool_row_of(ctx.conn(), &line.pool_id)? else {
            return Ok(Err(format!("pool {} is unknown here", line.pool_id)));
        };
        if row.ends_at_ms.is_some_and(|end| end <= ctx.now_ms()) {
            return Ok(Err(format!("slot {} has already ended", line.pool_id)));
        }
        if let Err(e) = row.holding().reserve(line.quantity) {
            return Ok(Err(format!(
                "insufficient_capacity: pool {} has {} of {} units left",
                line.pool_id, e.available, e.requested
            )));
        }
    }
    Ok(Ok(()))
}

/// What a manager decides about an event a reset set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// Book it again now, against today's availability.
    Reenter,
    /// Leave it out for good.
    Discard,
}

/// Settles quarantined event `id`: a booking re-entered becomes a new
/// booking made by staff; either way the event is no longer pending.
pub fn review_quarantined(ctx: &mut WriteCtx<'_>, id: &str, review: Review) -> StoreResult<()> {
    let (kind, body): (String, String) = ctx
        .conn()
        .query_row(
            "SELECT kind, body FROM quarantine WHERE id = ?1 AND status = 'pending'",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|_| StoreError::not_found("quarantined event", id))?;
    let status = match review {
        Review::Reenter => {
            let body: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let Ok(EventBody::BookingCreated {
                lines, customer, ..
            }) = EventBody::from_parts(&kind, &body)
            else {
                return Err(StoreError::Invalid(
                    "only bookings can be re-entered".into(),
                ));
            };
            let request = CreateBooking {
                lines,
                customer,
                hold_seconds: None,
                request_ttl_seconds: None,
            };
            create_booking(
                ctx,
                NewBooking {
                    request,
                    channel: Channel::Staff,
                },
            )?;
            "reentered"
        }
        Review::Discard => "discarded",
    };
    ctx.conn().execute(
        "UPDATE quarantine SET status = ?2 WHERE id = ?1",
        rusqlite::params![id, status],
    )?;
    Ok(())
}
