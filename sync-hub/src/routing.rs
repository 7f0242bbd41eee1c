//! Bookings through the hub (docs/ARCHITECTURE.md, section 4), as rules over
//! a [`Working`] set: who decides a web order, what a cancellation asks of
//! whom, and when the hub gives up on its requests and holds.

use shared::{BookingId, BookingState, EventBody, LocationId, ParticipantId};

use crate::error::{StorageError, StorageResult};
use crate::view;
use crate::working::{DeviceStatus, HubBooking, IdempotencyRow, Working};

/// A web order as the public API took it.
#[derive(Debug, Clone)]
pub struct WebOrder {
    pub lines: Vec<shared::Line>,
    pub customer: shared::Customer,
    pub hold_seconds: Option<i64>,
    pub ttl_ms: i64,
    /// `(key, hash of the request)` when the caller sent an Idempotency-Key.
    pub idempotency: Option<(String, String)>,
}

/// What the hub did with a web order or a cancellation.
#[derive(Debug, Clone)]
pub struct Placed {
    pub booking: HubBooking,
    /// Whether this answers an earlier request with the same key.
    pub replayed: bool,
}

fn placed(w: &Working, id: BookingId, replayed: bool) -> StorageResult<Placed> {
    let booking = w
        .booking(&id)?
        .ok_or_else(|| StorageError::not_found("booking", id))?
        .public(id);
    Ok(Placed { booking, replayed })
}

/// Names what [`place_web_order`] reads.
pub fn want_web_order(w: &mut Working, order: &WebOrder) {
    for line in &order.lines {
        w.want_pool(&line.pool_id);
    }
    if let Some((key, _)) = &order.idempotency {
        w.want_idempotency(key);
    }
}

/// Whether the hub heard from `location` recently enough to leave it the
/// decision. A quarantined store still polls, but what it decides cannot
/// reach us: it does not count as reachable.
pub fn reachable(
    w: &Working,
    location: &LocationId,
    unreachable_after_ms: i64,
    now_ms: i64,
) -> StorageResult<bool> {
    Ok(w.location(location)?.is_some_and(|row| {
        row.status == DeviceStatus::Active
            && row
                .last_seen_at_ms
                .is_some_and(|at| now_ms - at <= unreachable_after_ms)
    }))
}

/// Takes a web order: routed to its owner when the owner is reachable,
/// else confirmed from the hub's own allotment, else routed to wait for
/// the owner until it expires. An Idempotency-Key seen before answers with
/// the booking it made.
pub fn place_web_order(
    w: &mut Working,
    order: WebOrder,
    unreachable_after_ms: i64,
    now_ms: i64,
) -> StorageResult<Placed> {
    if let Some((key, hash)) = &order.idempotency
        && let Some(Some(earlier)) = w.idempotency.get(key)
    {
        if earlier.request_hash != *hash {
            return Err(StorageError::IdempotencyMismatch);
        }
        return placed(w, earlier.booking, true);
    }
    let mut owner: Option<ParticipantId> = None;
    let mut fits_hub = true;
    for line in &order.lines {
        let pool = w
            .pool(&line.pool_id)?
            .ok_or_else(|| StorageError::not_found("pool", &line.pool_id))?;
        match &owner {
            None => owner = Some(pool.owner.clone()),
            Some(o) if *o != pool.owner => {
                return Err(StorageError::Invalid(
                    "a booking's pools must all have one owner".into(),
                ));
            }
            Some(_) => {}
        }
        if pool.ends_at_ms.is_some_and(|end| end <= now_ms) {
            return Err(StorageError::InvalidState(format!(
                "slot {} has already ended",
                line.pool_id
            )));
        }
        fits_hub &= shared::Holding {
            allotted: pool.hub_allotted,
            used: pool.hub_used,
        }
        .reserve(line.quantity)
        .is_ok();
    }
    let owner =
        owner.ok_or_else(|| StorageError::Invalid("a booking needs at least one line".into()))?;
    let ParticipantId::Location(location) = owner.clone() else {
        return Err(StorageError::Invalid(
            "pools owned by the hub itself are not sold yet".into(),
        ));
    };
    let id = BookingId::generate();
    let mut lines = order.lines;
    lines.sort_by(|a, b| a.pool_id.cmp(&b.pool_id));
    let reachable = reachable(w, &location, unreachable_after_ms, now_ms)?;
    // The owner decides when it can; the hub sells its allotment when the
    // owner cannot; otherwise the request waits for the owner.
    let body = if !reachable && fits_hub {
        let (state, expires_at_ms) = match order.hold_seconds {
            Some(seconds) => (BookingState::Held, Some(now_ms + seconds * 1000)),
            None => (BookingState::Confirmed, None),
        };
        EventBody::BookingCreated {
            id,
            owner,
            requested_by: ParticipantId::Hub,
            charged_to: ParticipantId::Hub,
            channel: shared::Channel::Web,
            lines,
            customer: order.customer,
            state,
            expires_at_ms,
            hold_seconds: None,
            reason: None,
        }
    } else {
        EventBody::BookingCreated {
            id,
            owner: owner.clone(),
            requested_by: ParticipantId::Hub,
            charged_to: owner,
            channel: shared::Channel::Web,
            lines,
            customer: order.customer,
            state: BookingState::Requested,
            expires_at_ms: Some(now_ms + order.ttl_ms),
            hold_seconds: order.hold_seconds,
            reason: None,
        }
    };
    // The new booking's row is not in the database: known to be absent.
    w.bookings.insert(id, None);
    view::hub_act(w, Some(&location), body, now_ms)?;
    if let Some((key, hash)) = order.idempotency {
        let row = IdempotencyRow {
            request_hash: hash,
            booking: id,
            created_at_ms: now_ms,
        };
        w.idempotency.insert(key.clone(), Some(row.clone()));
        w.new_idempotency.push((key, row));
    }
    placed(w, id, false)
}

/// A cancellation through the hub: of what the website made, and only
/// that. A request the owner has not decided expires; what the hub sold
/// from its allotment is cancelled by the hub; what the store holds is
/// asked of the store, which carries it out.
pub fn cancel(w: &mut Working, id: &BookingId, now_ms: i64) -> StorageResult<Placed> {
    let known = w
        .booking(id)?
        .ok_or_else(|| StorageError::not_found("booking", id))?
        .clone();
    if known.requested_by != ParticipantId::Hub {
        return Err(StorageError::InvalidState(format!(
            "booking {id} was not made through the website; the store that made it cancels it"
        )));
    }
    let recipient = |p: &ParticipantId| match p {
        ParticipantId::Location(l) => Some(l.clone()),
        ParticipantId::Hub => None,
    };
    let (body, to) = if known.state == BookingState::Requested {
        (
            EventBody::BookingExpired {
                id: *id,
                reason: "the customer withdrew the request before the owner decided".into(),
            },
            recipient(&known.owner),
        )
    } else if !matches!(known.state, BookingState::Held | BookingState::Confirmed) {
        return Err(StorageError::InvalidState(format!(
            "cannot cancel a booking that is {}",
            known.state
        )));
    } else if known.charged_to == ParticipantId::Hub {
        (
            EventBody::BookingCancelled { id: *id, by: None },
            recipient(&known.owner),
        )
    } else {
        (
            EventBody::BookingCancelRequested { id: *id },
            recipient(&known.charged_to),
        )
    };
    view::hub_act(w, to.as_ref(), body, now_ms)?;
    placed(w, *id, false)
}

/// Whether the hub gives up on `booking` at `now_ms`: its own request not
/// decided by `expires_at + skew_margin_ms` (the owner's clock may run
/// behind), or its own hold not confirmed by `expires_at`. Backends find
/// candidates with an index of the same condition.
pub fn due(
    booking: &crate::working::BookingRow,
    now_ms: i64,
    skew_margin_ms: i64,
) -> Option<&'static str> {
    let expires = booking.expires_at_ms?;
    match booking.state {
        BookingState::Requested
            if booking.requested_by == ParticipantId::Hub && expires < now_ms - skew_margin_ms =>
        {
            Some("the owner did not decide the request in time")
        }
        BookingState::Held if booking.charged_to == ParticipantId::Hub && expires <= now_ms => {
            Some("the hold was not confirmed in time")
        }
        _ => None,
    }
}

/// Expires what is due among the bookings the backend found, and forgets
/// Idempotency-Keys past their promise; returns the bookings whose state
/// changed.
pub fn expire_due(
    w: &mut Working,
    now_ms: i64,
    skew_margin_ms: i64,
) -> StorageResult<Vec<BookingId>> {
    // Idempotency-Keys are promised for 24 hours; forgotten after.
    w.forget_idempotency_before = Some(now_ms - shared::limits::IDEMPOTENCY_RETENTION_MS);
    let mut changed = Vec::new();
    for id in w.due.clone().unwrap_or_default() {
        let Some(row) = w.booking(&id)? else { continue };
        let Some(reason) = due(row, now_ms, skew_margin_ms) else {
            continue;
        };
        let owner = match &row.owner {
            ParticipantId::Location(l) => Some(l.clone()),
            ParticipantId::Hub => None,
        };
        changed.extend(view::hub_act(
            w,
            owner.as_ref(),
            EventBody::BookingExpired {
                id,
                reason: reason.into(),
            },
            now_ms,
        )?);
    }
    Ok(changed)
}
