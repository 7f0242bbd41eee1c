//! What an event does to the hub's view (docs/ARCHITECTURE.md, sections 5
//! to 7), as rules over a [`Working`] set: the view's rows, the ledgers,
//! the relays to the participants concerned, the hub's own acts, and the
//! webhook deliveries a change of state calls for. Every backend runs
//! these; none writes a rule of its own.

use shared::authz::{self, Denied};
use shared::event::ChainHead;
use shared::{BookingId, BookingState, Event, EventBody, LocationId, ParticipantId, PoolId};

use crate::error::{StorageError, StorageResult};
use crate::ledger::{self, Entry};
use crate::plan::{self, DeviceLog, Refusal};
use crate::working::{
    BookingRow, DeviceStatus, EVERYONE, NewDelivery, NewEvent, PoolRow, ResourceRow, SetAside,
    Working,
};

/// What applying one event to the view set in motion.
#[derive(Debug, Default)]
struct Effects {
    relays: Vec<(LocationId, Event)>,
    /// Events every location takes in (catalog), relayed once to everyone.
    everyone: Vec<Event>,
    changed: Vec<BookingId>,
    /// Units the hub gives back to a pool's owner, who asked for them.
    hub_returns: Vec<(PoolId, i64, LocationId)>,
}

impl Effects {
    fn relay(&mut self, to: &ParticipantId, origin: &ParticipantId, event: &Event) {
        if let ParticipantId::Location(location) = to
            && to != origin
            && !self
                .relays
                .iter()
                .any(|(l, e)| l == location && e.id == event.id)
        {
            self.relays.push((location.clone(), event.clone()));
        }
    }
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub acked: shared::protocol::HeadRef,
    pub applied: usize,
    /// Bookings whose state changed in the view.
    pub changed: Vec<BookingId>,
}

/// A batch of a location's log with each body parsed once (`None` where it
/// does not parse: the plan refuses it before any rule reads it).
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<Event>,
    pub bodies: Vec<Option<EventBody>>,
}

impl Batch {
    pub fn new(events: Vec<Event>) -> Self {
        let bodies = events.iter().map(|e| e.typed().ok()).collect();
        Self { events, bodies }
    }
}

/// Names what [`push`] reads for `batch` of `location`'s log.
pub fn want_push(w: &mut Working, location: &LocationId, batch: &Batch) {
    w.want_location(location);
    let origin = ParticipantId::Location(location.clone());
    if let (Some(first), Some(last)) = (batch.events.first(), batch.events.last()) {
        w.want_hashes(location, first.seq, last.seq);
    }
    for body in batch.bodies.iter().flatten() {
        w.want_event(&origin, body);
    }
}

/// Applies a batch of `location`'s own log (its head signature already
/// verified): the chain rules of [`plan`], then for each new event the
/// checks of [`authz::check`], storing it and what it does to the view.
/// Nothing of a refused batch may be saved.
pub fn push(
    w: &mut Working,
    location: &LocationId,
    batch: Batch,
    head_signature: &str,
    now_ms: i64,
) -> StorageResult<Pushed> {
    let Batch { events, bodies } = batch;
    let events = &events[..];
    let device = w
        .location(location)?
        .ok_or_else(|| StorageError::not_found("location", location))?
        .clone();
    if device.status == DeviceStatus::Quarantined {
        return Err(Refusal::Quarantined(device.quarantine_reason.unwrap_or_default()).into());
    }
    if device.public_key.is_none() {
        return Err(StorageError::Unauthorized(format!(
            "{location} is not enrolled"
        )));
    }
    let log = DeviceLog {
        origin: location.clone(),
        head: device.head,
        epoch: device.epoch,
        epoch_start_seq: device.epoch_start_seq,
    };
    let planned = plan::plan_parsed(&log, events, bodies, |seq| {
        w.stored_hashes.get(&seq).copied()
    })?;
    let first_new = planned.first_new;
    let mut head = log.head;
    let mut changed = Vec::new();
    for (event, checked) in events[first_new..].iter().zip(planned.new) {
        let body = checked.body;
        if let Err(denied) = authz::check(event, &body, &*w)? {
            tracing::warn!(%location, event.seq = event.seq, event.kind = %event.kind, %denied, "refused an event");
            return Err(match denied {
                Denied::Forbidden(why) => Refusal::Forbidden(format!("event {}: {why}", event.seq)),
                Denied::Invalid(why) => Refusal::BadEvent(format!("event {}: {why}", event.seq)),
            }
            .into());
        }
        w.store_event(NewEvent {
            event: event.clone(),
            hash: checked.hash,
            body: checked.canonical_body,
            recipient: None,
            received_at_ms: now_ms,
        });
        let effects = apply(w, event, &body)?;
        changed.extend(effects.changed.iter().copied());
        settle(w, effects, now_ms)?;
        head = ChainHead {
            seq: event.seq,
            hash: checked.hash,
        };
    }
    if first_new < events.len() {
        let row = w.location_mut(location)?;
        row.head = head;
        row.head_signature = Some(head_signature.to_owned());
    }
    Ok(Pushed {
        acked: head.into(),
        applied: events.len() - first_new,
        changed,
    })
}

/// What a push leaves the device's readings at: `backlog_before` (what it
/// said it had waiting) less what it sent.
pub fn record_backlog(
    w: &mut Working,
    location: &LocationId,
    remaining: u64,
    now_ms: i64,
) -> StorageResult<()> {
    let row = w.location_mut(location)?;
    row.backlog_events = Some(remaining);
    if remaining == 0 {
        row.synced_at_ms = Some(now_ms);
    }
    Ok(())
}

/// Quarantines a device whose log forked at `seq`.
pub fn quarantine(w: &mut Working, location: &LocationId, seq: u64) -> StorageResult<()> {
    let row = w.location_mut(location)?;
    row.status = DeviceStatus::Quarantined;
    row.quarantine_reason = Some(format!(
        "its log forked at seq {seq}; run `edge-node reset` on the store"
    ));
    Ok(())
}

/// Starts a new epoch after the hub's head and lifts a quarantine; returns
/// `(epoch, epoch_start_seq, head)`.
pub fn reset(
    w: &mut Working,
    location: &LocationId,
) -> StorageResult<(u32, u64, shared::protocol::HeadRef)> {
    let row = w.location_mut(location)?;
    row.epoch += 1;
    row.epoch_start_seq = row.head.seq + 1;
    row.status = DeviceStatus::Active;
    row.quarantine_reason = None;
    Ok((row.epoch, row.epoch_start_seq, row.head.into()))
}

/// Appends to the hub's own log, addressed to `recipient` (one location or
/// [`EVERYONE`]).
pub fn append_hub(
    w: &mut Working,
    recipient: Option<&str>,
    body: EventBody,
    now_ms: i64,
) -> StorageResult<Event> {
    let event = Event::next(w.hub_head()?, ParticipantId::Hub, 0, now_ms, body);
    let (hash, canonical) = event.sealed();
    w.store_event(NewEvent {
        event: event.clone(),
        hash,
        body: canonical,
        recipient: recipient.map(str::to_owned),
        received_at_ms: now_ms,
    });
    Ok(event)
}

/// The hub's own act: appends `body` to its log addressed to `recipient`,
/// applies it to the view and settles its effects; returns the bookings
/// whose state changed.
pub fn hub_act(
    w: &mut Working,
    recipient: Option<&LocationId>,
    body: EventBody,
    now_ms: i64,
) -> StorageResult<Vec<BookingId>> {
    let event = append_hub(w, recipient.map(LocationId::as_str), body.clone(), now_ms)?;
    let mut effects = apply(w, &event, &body)?;
    // The hub addresses its own events itself.
    effects.relays.clear();
    let changed = effects.changed.clone();
    settle(w, effects, now_ms)?;
    Ok(changed)
}

/// Tells every location that `joined` enrolled: a participant each may
/// grant units to. One event, whatever the size of the fleet; a new store
/// learns of the others (and their catalog) from the same stream.
pub fn introduce(w: &mut Working, joined: &LocationId, now_ms: i64) -> StorageResult<()> {
    let name = w
        .location(joined)?
        .ok_or_else(|| StorageError::not_found("location", joined))?
        .name
        .clone();
    append_hub(
        w,
        Some(EVERYONE),
        EventBody::LocationJoined {
            location: joined.clone(),
            name,
        },
        now_ms,
    )?;
    Ok(())
}

/// The hub gives back `units` of its allotment of `pool` to the owner;
/// returns the owner.
pub fn return_hub_allotment(
    w: &mut Working,
    pool: &PoolId,
    units: i64,
    now_ms: i64,
) -> StorageResult<LocationId> {
    let row = w
        .pool(pool)?
        .ok_or_else(|| StorageError::not_found("pool", pool))?;
    let mut holding = shared::Holding {
        allotted: row.hub_allotted,
        used: row.hub_used,
    };
    holding.give(units).map_err(|e| {
        StorageError::InsufficientCapacity(format!(
            "the hub holds {} unused units of {pool}",
            e.available
        ))
    })?;
    let ParticipantId::Location(owner) = row.owner.clone() else {
        return Err(StorageError::Conflict(format!(
            "pool {pool} is owned by the hub itself"
        )));
    };
    if let Some(row) = w.pool_mut(pool)? {
        row.hub_allotted = holding.allotted;
        row.updated_at_ms = now_ms;
    }
    // The view's allotment rows follow from the event itself.
    hub_act(
        w,
        Some(&owner),
        EventBody::AllotmentReturned {
            pool: pool.clone(),
            units,
            hub_seq: None,
        },
        now_ms,
    )?;
    Ok(owner)
}

/// Changes what the pools of a booking's lines have used by `sign` × each
/// line's quantity (and the hub's own use, when the hub is charged).
fn view_used(w: &mut Working, id: &BookingId, sign: i64) -> StorageResult<()> {
    let booking = w
        .booking(id)?
        .ok_or_else(|| StorageError::not_found("booking", id))?;
    let hub_charged = booking.charged_to == ParticipantId::Hub;
    let lines = booking.lines.clone();
    for line in lines {
        if let Some(pool) = w.pool_mut(&line.pool_id)? {
            pool.used += sign * line.quantity;
            if hub_charged {
                pool.hub_used += sign * line.quantity;
            }
        }
    }
    Ok(())
}

/// Moves the view's copy of a booking to `incoming`, by the same rule a
/// requester follows (the requester's expiry wins over anything but
/// fulfilment), so the view and webhooks never flip back and forth.
/// Returns whether the state changed.
fn merge_state(
    w: &mut Working,
    id: &BookingId,
    incoming: BookingState,
    reason: Option<&str>,
    expires_at_ms: Option<i64>,
    decided_by: Option<&ParticipantId>,
    at_ms: i64,
) -> StorageResult<bool> {
    let Some(current) = w.booking(id)?.map(|b| b.state) else {
        return Ok(false);
    };
    let Some(next) = shared::booking::requester_adopts(current, incoming) else {
        return Ok(false);
    };
    match (current.consumes_units(), next.consumes_units()) {
        (true, false) => view_used(w, id, -1)?,
        (false, true) => view_used(w, id, 1)?,
        _ => {}
    }
    let row = w.booking_mut(id)?;
    row.state = next;
    if let Some(reason) = reason {
        row.reason = Some(reason.to_owned());
    }
    if let Some(expires) = expires_at_ms {
        row.expires_at_ms = Some(expires);
    }
    if let Some(by) = decided_by {
        row.decided_by = Some(by.clone());
    }
    row.updated_at_ms = at_ms;
    Ok(true)
}

/// Writes what an event changes in the ledgers.
fn apply_ledger(w: &mut Working, entries: Vec<Entry>) -> StorageResult<()> {
    for entry in entries {
        match entry {
            Entry::Allotted {
                pool,
                holder,
                units,
            } => w.holding_mut(&pool, &holder)?.allotted += units,
            Entry::Used {
                pool,
                holder,
                units,
            } => w.holding_mut(&pool, &holder)?.used += units,
            Entry::InFlight {
                pool,
                from,
                to,
                units,
            } => *w.in_flight_mut(&pool, &from, &to)? += units,
            Entry::ChargedState { booking, state } => {
                if w.booking(&booking)?.is_some() {
                    w.booking_mut(&booking)?.charged_state = state;
                }
            }
        }
    }
    Ok(())
}

/// Applies one event of `event.origin`'s log to the view and says what it
/// sets in motion.
fn apply(w: &mut Working, event: &Event, body: &EventBody) -> StorageResult<Effects> {
    let origin = &event.origin;
    let at_ms = event.at_ms;
    let mut effects = Effects::default();
    // Read before the view changes: the ledgers move from what was.
    let entries = ledger::entries(origin, body, &*w)?;
    match body {
        EventBody::ResourceCreated {
            id,
            owner,
            name,
            kind,
        } => {
            w.insert_resource(
                id,
                ResourceRow {
                    owner: owner.clone(),
                    name: name.clone(),
                    kind: *kind,
                    has_pools: false,
                    created_at_ms: at_ms,
                },
            )?;
            effects.everyone.push(event.clone());
        }
        EventBody::PoolCreated {
            id,
            resource_id,
            owner,
            capacity,
            starts_at_ms,
            ends_at_ms,
        } => {
            w.insert_pool(
                id,
                PoolRow {
                    resource_id: resource_id.clone(),
                    owner: owner.clone(),
                    capacity: *capacity,
                    starts_at_ms: *starts_at_ms,
                    ends_at_ms: *ends_at_ms,
                    used: 0,
                    hub_allotted: 0,
                    hub_used: 0,
                    updated_at_ms: at_ms,
                },
            )?;
            effects.everyone.push(event.clone());
        }
        EventBody::PoolAdjusted { pool, delta } => {
            if let Some(row) = w.pool_mut(pool)? {
                row.capacity += delta;
                row.updated_at_ms = at_ms;
            }
        }
        EventBody::AllotmentGranted { pool, to, units } => {
            if *to == ParticipantId::Hub
                && let Some(row) = w.pool_mut(pool)?
            {
                // The grant reached its grantee: the hub credits its own holding.
                row.hub_allotted += units;
                row.updated_at_ms = at_ms;
            }
            effects.relay(to, origin, event);
        }
        EventBody::AllotmentReturned { pool, .. } => {
            if let Some(owner) = w.pool(pool)?.map(|p| p.owner.clone()) {
                effects.relay(&owner, origin, event);
            }
        }
        EventBody::BookingCreated {
            id,
            owner,
            requested_by,
            charged_to,
            channel,
            lines,
            customer,
            state,
            expires_at_ms,
            reason,
            ..
        } => match w.booking(id)?.map(|b| b.requested_by.clone()) {
            None => {
                w.insert_booking(
                    *id,
                    BookingRow {
                        owner: owner.clone(),
                        requested_by: requested_by.clone(),
                        charged_to: charged_to.clone(),
                        charged_state: BookingState::Requested,
                        channel: *channel,
                        state: *state,
                        lines: lines.clone(),
                        customer: customer.clone(),
                        expires_at_ms: *expires_at_ms,
                        reason: reason.clone(),
                        decided_by: (*state != BookingState::Requested).then(|| origin.clone()),
                        created_at_ms: at_ms,
                        updated_at_ms: at_ms,
                    },
                );
                if state.consumes_units() {
                    view_used(w, id, 1)?;
                }
                effects.changed.push(*id);
                // A request goes to the owner; a sale from an allotment is
                // news for the owner, whose staff hand the goods over.
                effects.relay(owner, origin, event);
            }
            Some(requester) => {
                // The owner's decision on a request.
                if merge_state(
                    w,
                    id,
                    *state,
                    reason.as_deref(),
                    *expires_at_ms,
                    Some(origin),
                    at_ms,
                )? {
                    effects.changed.push(*id);
                }
                effects.relay(&requester, origin, event);
            }
        },
        EventBody::BookingConfirmed { id, .. }
        | EventBody::BookingCancelled { id, .. }
        | EventBody::BookingFulfilled { id, .. }
        | EventBody::BookingNoShow { id, .. }
        | EventBody::BookingExpired { id, .. } => {
            let (incoming, reason) = match body {
                EventBody::BookingConfirmed { .. } => (BookingState::Confirmed, None),
                EventBody::BookingCancelled { .. } => (BookingState::Cancelled, None),
                EventBody::BookingFulfilled { .. } => (BookingState::Fulfilled, None),
                EventBody::BookingNoShow { .. } => (BookingState::NoShow, None),
                EventBody::BookingExpired { reason, .. } => {
                    (BookingState::Expired, Some(reason.as_str()))
                }
                _ => unreachable!("matched above"),
            };
            let known = w
                .booking(id)?
                .ok_or_else(|| StorageError::not_found("booking", id))?;
            let parties = [
                known.owner.clone(),
                known.requested_by.clone(),
                known.charged_to.clone(),
            ];
            if merge_state(w, id, incoming, reason, None, None, at_ms)? {
                effects.changed.push(*id);
            }
            for party in &parties {
                effects.relay(party, origin, event);
            }
        }
        EventBody::BookingCancelRequested { id } => {
            if let Some(charged) = w.booking(id)?.map(|b| b.charged_to.clone()) {
                effects.relay(&charged, origin, event);
            }
        }
        EventBody::AllotmentRecalled { pool, from, units } => match (from, origin) {
            (ParticipantId::Hub, ParticipantId::Location(owner)) => {
                let row = w
                    .pool(pool)?
                    .ok_or_else(|| StorageError::not_found("pool", pool))?;
                let give = (*units).min(row.hub_allotted - row.hub_used);
                if give > 0 {
                    effects
                        .hub_returns
                        .push((pool.clone(), give, owner.clone()));
                }
            }
            _ => effects.relay(from, origin, event),
        },
        EventBody::InboxSetAside {
            hub_seq,
            origin: author,
            kind,
            reason,
        } => {
            if let ParticipantId::Location(location) = origin {
                w.set_aside.push(SetAside {
                    location: location.clone(),
                    hub_seq: *hub_seq,
                    origin: author.clone(),
                    kind: kind.clone(),
                    reason: reason.clone(),
                    at_ms,
                });
            }
            tracing::warn!(
                location = %origin,
                event.hub_seq = hub_seq,
                event.kind = %kind,
                reason = %reason,
                "a store set an inbox event aside"
            );
        }
        // A participant's records of what reached it: the view has it
        // from the source already (credits move only the ledgers).
        EventBody::AllotmentCredited { .. }
        | EventBody::Observed { .. }
        | EventBody::Relayed { .. }
        | EventBody::LocationJoined { .. } => {}
    }
    apply_ledger(w, entries)?;
    Ok(effects)
}

/// Appends the relays and webhook deliveries `effects` call for.
fn settle(w: &mut Working, effects: Effects, now_ms: i64) -> StorageResult<()> {
    for (pool, units, owner) in effects.hub_returns {
        if let Some(row) = w.pool_mut(&pool)? {
            row.hub_allotted -= units;
            row.updated_at_ms = now_ms;
        }
        hub_act(
            w,
            Some(&owner),
            EventBody::AllotmentReturned {
                pool,
                units,
                hub_seq: None,
            },
            now_ms,
        )?;
    }
    for event in effects.everyone {
        append_hub(
            w,
            Some(EVERYONE),
            EventBody::Relayed {
                event: Box::new(event),
            },
            now_ms,
        )?;
    }
    for (to, event) in effects.relays {
        append_hub(
            w,
            Some(to.as_str()),
            EventBody::Relayed {
                event: Box::new(event),
            },
            now_ms,
        )?;
    }
    for id in effects.changed {
        if !w.changed.contains(&id) {
            w.changed.push(id);
        }
        enqueue_webhooks(w, &id, now_ms)?;
    }
    Ok(())
}

/// Queues one delivery per webhook of the booking as it is now.
fn enqueue_webhooks(w: &mut Working, id: &BookingId, now_ms: i64) -> StorageResult<()> {
    let hooks = w.webhooks()?.to_vec();
    if hooks.is_empty() {
        return Ok(());
    }
    let booking = w
        .booking(id)?
        .ok_or_else(|| StorageError::not_found("booking", id))?
        .public(*id);
    for webhook in hooks {
        let event_id = uuid::Uuid::now_v7().to_string();
        let payload = serde_json::json!({
            "event_id": event_id,
            "type": "booking.state_changed",
            "at": crate::working::timestamp(now_ms),
            "booking": booking,
        });
        w.deliveries.push(NewDelivery {
            webhook,
            event_id,
            booking: *id,
            payload: payload.to_string(),
            due_at_ms: now_ms,
        });
    }
    Ok(())
}
