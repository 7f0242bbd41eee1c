//! The inbox: events of the hub's log addressed to this node, applied each
//! exactly once, in order. Each is checked as every receiver checks what
//! it pulls ([`shared::authz::check`] over what this store knows), then
//! applied: its effect is recorded in our own log (our decision on a
//! request, units credited, or what we observed of others), carrying the
//! hub seq it came from, and the pull cursor moves in the same transaction.
//! The catalog of others and locations joining are only learned (kept in
//! the state tables, not our log) until our log names what they created:
//! what every store hears of must not be copied into every store's log.
//!
//! An event that fails the checks or cannot be applied here is set aside
//! (an `inbox_set_aside` event of our own log, which the hub receives and
//! shows, and the manager sees) and the events behind it are applied as
//! usual: one bad event never stops a store's sync. Only a fault of the
//! store itself (a database that is busy or failing) stops the batch, to
//! be tried again.

use shared::booking::{self, Action};
use shared::limits::REASON_MAX_CHARS;
use shared::protocol::InboxEvent;
use shared::{BookingState, Event, EventBody, ParticipantId};

use super::facts::StoreFacts;
use super::ops::{emit, fits, granted_to, observe, pool_row};
use super::{StoreError, StoreResult, WriteCtx, queries};

pub fn apply_inbox(ctx: &mut WriteCtx<'_>, events: &[InboxEvent]) -> StoreResult<usize> {
    let row = queries::sync_row(ctx.conn())?;
    let mut applied = 0;
    for inbox in events {
        if inbox.hub_seq <= row.pull_cursor {
            continue;
        }
        let learn_only = inbox.hub_seq <= row.relearn_until;
        match ctx.attempt(|ctx| apply_hub_event(ctx, inbox, learn_only))? {
            Ok(()) => {}
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => set_aside(ctx, inbox, &e)?,
        }
        ctx.conn()
            .prepare_cached(
                "UPDATE sync_state SET pull_cursor = max(pull_cursor, ?1) WHERE id = 1",
            )?
            .execute([inbox.hub_seq as i64])?;
        applied += 1;
    }
    Ok(applied)
}

/// One event of the hub's log: the hub's own word, or another
/// participant's event the hub relays. With `learn_only` (an event our log
/// took in before a rebuild), only what is learned and not logged.
fn apply_hub_event(
    ctx: &mut WriteCtx<'_>,
    inbox: &InboxEvent,
    learn_only: bool,
) -> StoreResult<()> {
    if inbox.event.origin != ParticipantId::Hub || inbox.event.seq != inbox.hub_seq {
        return Err(StoreError::Invalid(format!(
            "inbox event {} is not from the hub's log",
            inbox.hub_seq
        )));
    }
    let event = match inbox.event.typed() {
        Ok(EventBody::Relayed { event }) => *event,
        Ok(_) => inbox.event.clone(),
        Err(e) => {
            return Err(StoreError::Invalid(format!(
                "a body that does not read: {e}"
            )));
        }
    };
    if learn_only && !learned(&event.kind) {
        return Ok(());
    }
    apply_one(ctx, inbox.hub_seq, event)
}

/// Kinds a store learns from the inbox without logging them.
fn learned(kind: &str) -> bool {
    matches!(
        kind,
        "resource_created" | "pool_created" | "location_joined"
    )
}

/// Records in our log that the inbox event at `inbox.hub_seq` was set aside.
fn set_aside(ctx: &mut WriteCtx<'_>, inbox: &InboxEvent, error: &StoreError) -> StoreResult<()> {
    let event = match inbox.event.typed() {
        Ok(EventBody::Relayed { event }) => *event,
        _ => inbox.event.clone(),
    };
    // Only what a person can read goes into the record: the refused event
    // may carry anything.
    let readable = |text: &str, max: usize| -> String {
        text.chars()
            .filter(|c| !booking::is_hidden(*c))
            .take(max)
            .collect()
    };
    let reason = readable(&error.to_string(), REASON_MAX_CHARS);
    tracing::warn!(
        event.hub_seq = inbox.hub_seq,
        event.origin = %event.origin,
        event.kind = %readable(&event.kind, 100),
        %reason,
        "set an inbox event aside"
    );
    emit(
        ctx,
        EventBody::InboxSetAside {
            hub_seq: inbox.hub_seq,
            origin: event.origin.to_string(),
            kind: readable(&event.kind, 100),
            reason,
        },
    )?;
    Ok(())
}

/// Whether `body` from `from` is one we took in already: a request we
/// decided, or catalog we know (both can reach us again after a reset).
fn already_applied(
    ctx: &WriteCtx<'_>,
    from: &ParticipantId,
    body: &EventBody,
) -> StoreResult<bool> {
    let me = ctx.node().participant();
    Ok(match body {
        EventBody::BookingCreated {
            id,
            owner,
            state: BookingState::Requested,
            ..
        } if *owner == me => queries::booking(ctx.conn(), id)?.is_some(),
        EventBody::ResourceCreated { id, .. } => {
            queries::resource(ctx.conn(), id)?.is_some_and(|r| r.owner == *from)
        }
        EventBody::PoolCreated { id, .. } => {
            queries::pool_row_of(ctx.conn(), id)?.is_some_and(|p| p.owner == *from)
        }
        _ => false,
    })
}

/// One event of another participant, from the hub's log at `hub_seq`.
fn apply_one(ctx: &mut WriteCtx<'_>, hub_seq: u64, event: Event) -> StoreResult<()> {
    let me = ctx.node().participant();
    let from = event.origin.clone();
    let body = event
        .typed()
        .map_err(|e| StoreError::Invalid(format!("a body that does not read: {e}")))?;
    if already_applied(ctx, &from, &body)? {
        return Ok(());
    }
    let facts = StoreFacts {
        conn: ctx.conn(),
        me: &me,
    };
    if let Err(denied) = shared::authz::check(&event, &body, &facts)? {
        return Err(StoreError::Invalid(format!(
            "refused {} from {from}: {denied}",
            event.kind
        )));
    }
    match body {
        // A request for our capacity: decided at once, in this transaction.
        EventBody::BookingCreated {
            id,
            owner,
            requested_by,
            channel,
            lines,
            customer,
            state: BookingState::Requested,
            expires_at_ms,
            hold_seconds,
            ..
        } if owner == me => {
            let decision = booking::decide_request(
                ctx.now_ms(),
                expires_at_ms,
                hold_seconds,
                fits(ctx, &lines)?,
            );
            let (expires_at_ms, reason) = match &decision {
                booking::OwnerDecision::Hold { expires_at_ms } => (Some(*expires_at_ms), None),
                booking::OwnerDecision::Confirm => (None, None),
                booking::OwnerDecision::Reject { reason }
                | booking::OwnerDecision::Expire { reason } => {
                    (expires_at_ms, Some(reason.clone()))
                }
            };
            let state = decision.state();
            emit(
                ctx,
                EventBody::BookingCreated {
                    id,
                    owner,
                    requested_by,
                    charged_to: me,
                    channel,
                    lines,
                    customer,
                    state,
                    expires_at_ms,
                    hold_seconds: None,
                    reason,
                },
            )?;
            if state == BookingState::Held {
                ctx.hold_changed();
            }
        }
        // The requester gave up on a booking charged to us: its word wins,
        // except over goods already handed over.
        EventBody::BookingExpired { id, .. } => {
            let Some(current) = queries::booking(ctx.conn(), &id)? else {
                return Ok(());
            };
            if current.charged_to == me && current.requested_by == from {
                if booking::transition(current.state, Action::RequesterGaveUp).is_ok() {
                    emit(
                        ctx,
                        EventBody::BookingExpired {
                            id,
                            reason: "the requester gave up before the decision reached it".into(),
                        },
                    )?;
                }
            } else if current.charged_to != me {
                observe(ctx, hub_seq, event)?;
            }
        }
        // The owner wants units of ours back: we give what we have unused.
        EventBody::AllotmentRecalled {
            pool,
            from: grantee,
            units,
        } if grantee == me => {
            if let Some(row) = queries::pool_row_of(ctx.conn(), &pool)? {
                let give = units.min(row.holding().available());
                if give > 0 {
                    emit(
                        ctx,
                        EventBody::AllotmentReturned {
                            pool,
                            units: give,
                            hub_seq: Some(hub_seq),
                        },
                    )?;
                }
            }
        }
        EventBody::BookingCancelRequested { id } => {
            if let Some(current) = queries::booking(ctx.conn(), &id)?
                && current.charged_to == me
                && current.requested_by == from
                && booking::transition(current.state, Action::Cancel).is_ok()
            {
                emit(ctx, EventBody::BookingCancelled { id, by: None })?;
            }
        }
        EventBody::AllotmentGranted { pool, to, units } if to == me => {
            emit(
                ctx,
                EventBody::AllotmentCredited {
                    pool,
                    from,
                    units,
                    hub_seq,
                },
            )?;
        }
        EventBody::AllotmentReturned { pool, units, .. } if pool_row(ctx, &pool)?.owner == me => {
            let granted = granted_to(ctx, &pool, &from)?;
            let units = units.min(granted);
            if units <= 0 {
                return Ok(());
            }
            emit(
                ctx,
                EventBody::AllotmentCredited {
                    pool,
                    from,
                    units,
                    hub_seq,
                },
            )?;
        }
        // The hub tells every location who joined, this one included.
        EventBody::LocationJoined { location, .. } if me.as_str() == location.as_str() => {}
        // What others decided or did with bookings we requested or own.
        EventBody::BookingCreated { .. }
        | EventBody::BookingConfirmed { .. }
        | EventBody::BookingCancelled { .. }
        | EventBody::BookingFulfilled { .. } => observe(ctx, hub_seq, event)?,
        // The catalog of others and who joined: learned, not copied into
        // our log, which takes a pool in only once it names it.
        EventBody::ResourceCreated { .. }
        | EventBody::PoolCreated { .. }
        | EventBody::LocationJoined { .. } => ctx.learn(hub_seq, &event)?,
        _ => {}
    }
    Ok(())
}
