//! Who may author each kind of event, which ids it may create or touch, and
//! which values it may carry (docs/ARCHITECTURE.md, section 7): a device never speaks for
//! another participant, nor decides for pools it does not own.
//!
//! One pure rule, [`check`], that the hub runs on every event a device
//! pushes and every receiver runs again on every event it pulls, each over
//! the facts it keeps ([`Facts`]). The hub keeps every participant's ledger
//! and checks everything; a store knows its own pools and bookings and the
//! units it gave out, checks what those facts allow, and trusts the hub for
//! the rest: a fact a receiver does not keep is `None`, and the check that
//! needs it is left to the hub.
//!
//! Refusing an event stops its author's sync for good (its log cannot
//! change), so the rule refuses only what no honest participant ever
//! writes: another's name, another's pools or bookings, ids that exist
//! already or lie outside the author's namespace, values out of range,
//! units the author does not hold, and a change to a booking that the
//! charged participant's own state does not allow. That state is followed
//! from the charged participant's log alone (its own words and what it
//! recorded taking in from others), so its next word is one it could
//! write. Two participants acting on one booking at the same moment (staff
//! confirm at the counter while the website gives up) are not judged
//! against each other: the merge of [`crate::booking::requester_adopts`]
//! settles such races. Nor are names judged for hidden characters here:
//! those are refused where a booking is entered and neutralised where it
//! is shown, since events written before that rule must still be read.

use crate::booking::{Action, BookingState, Channel, Customer, Line, has_hidden_characters};
use crate::event::{Event, EventBody, ResourceKind};
use crate::ids::{BookingId, ParticipantId, PoolId, ResourceId};
use crate::limits::{
    ACTOR_NAME_MAX_CHARS, ALLOTMENT_UNITS_MAX, HOLD_SECONDS_MAX, POOL_CAPACITY_MAX,
    REASON_MAX_CHARS, REQUEST_TTL_MAX_S, RESOURCE_NAME_MAX_CHARS,
};

/// Why an event is refused. Nothing of a batch holding one is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The author may not do this (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The event is malformed, out of range, or names what does not exist
    /// (HTTP 400).
    #[error("{0}")]
    Invalid(String),
}

/// The verdict on one event: `Ok(())` to apply it.
pub type Verdict = Result<(), Denied>;

/// A resource as a receiver knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceFacts {
    pub owner: ParticipantId,
    pub kind: ResourceKind,
    /// Whether any pool of it exists (a stock resource has exactly one).
    pub has_pools: bool,
}

/// A pool as a receiver knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFacts {
    pub owner: ParticipantId,
    pub capacity: i64,
}

/// A booking as a receiver knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingFacts {
    pub owner: ParticipantId,
    pub requested_by: ParticipantId,
    pub charged_to: ParticipantId,
    /// The state as the participant charged with it last recorded it in
    /// its own log; `None` where the receiver does not follow that log.
    pub charged_state: Option<BookingState>,
    pub channel: Channel,
    pub lines: Vec<Line>,
    pub customer: Customer,
}

/// What a receiver knows of the things events name. Lookups may fail (a
/// database read); such a failure is not a verdict and is passed on.
pub trait Facts {
    type Error;
    fn resource(&self, id: &ResourceId) -> Result<Option<ResourceFacts>, Self::Error>;
    fn pool(&self, id: &PoolId) -> Result<Option<PoolFacts>, Self::Error>;
    fn booking(&self, id: &BookingId) -> Result<Option<BookingFacts>, Self::Error>;
    /// Units of `pool` that `holder` may still book or give away, by its
    /// own ledger (at most that, where the receiver only keeps a bound);
    /// `None` where the receiver does not keep it.
    fn available(&self, pool: &PoolId, holder: &ParticipantId) -> Result<Option<i64>, Self::Error>;
    /// Units of `pool` that `from` sent `to` and `to` has not credited yet.
    fn in_flight(
        &self,
        pool: &PoolId,
        from: &ParticipantId,
        to: &ParticipantId,
    ) -> Result<Option<i64>, Self::Error>;
    /// Whether `participant` can be given units: the hub, or a location
    /// that enrolled a device.
    fn may_receive(&self, participant: &ParticipantId) -> Result<Option<bool>, Self::Error>;
}

/// Who may author an event of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    /// A location, naming itself the owner of the entry it creates, under
    /// an id of its own namespace.
    NamedOwner,
    /// The owner of the pool the event names.
    PoolOwner,
    /// A holder of units of the pool other than its owner.
    Grantee,
    /// The participant units were sent to, crediting them.
    Receiver,
    /// For a request, its requester; for a booking against the author's
    /// own units, the participant charged; for a decision on a request, the
    /// owner of its pools (see [`check`]).
    BookingCreator,
    /// The participant charged with the booking, or the owner of its pools
    /// (staff hand over what the website sold from its allotment).
    ChargedOrOwner,
    /// The participant charged with the booking.
    Charged,
    /// The participant charged with the booking, or its requester giving
    /// up on it.
    ChargedOrRequester,
    /// The requester of a booking someone else is charged with.
    Requester,
    /// A location, recording what reached its own inbox.
    Location,
    /// The hub alone.
    Hub,
}

/// Who may author each kind of event: the table [`check`] enforces.
pub const AUTHORS: [(&str, Author); 18] = [
    ("resource_created", Author::NamedOwner),
    ("pool_created", Author::NamedOwner),
    ("pool_adjusted", Author::PoolOwner),
    ("allotment_granted", Author::PoolOwner),
    ("allotment_recalled", Author::PoolOwner),
    ("allotment_returned", Author::Grantee),
    ("allotment_credited", Author::Receiver),
    ("booking_created", Author::BookingCreator),
    ("booking_confirmed", Author::ChargedOrOwner),
    ("booking_fulfilled", Author::ChargedOrOwner),
    ("booking_no_show", Author::ChargedOrOwner),
    ("booking_cancelled", Author::Charged),
    ("booking_expired", Author::ChargedOrRequester),
    ("booking_cancel_requested", Author::Requester),
    ("location_joined", Author::Hub),
    ("relayed", Author::Hub),
    ("observed", Author::Location),
    ("inbox_set_aside", Author::Location),
];

/// Who may author `kind`; `None` for a kind this build does not know.
pub fn author_of(kind: &str) -> Option<Author> {
    AUTHORS.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a)
}

fn forbidden<T>(message: String) -> Result<T, Denied> {
    Err(Denied::Forbidden(message))
}

fn invalid<T>(message: String) -> Result<T, Denied> {
    Err(Denied::Invalid(message))
}

/// Whether `author` fills `role` for an event about a pool owned by
/// `pool_owner` and, if any, a booking with `booking`'s parties.
fn fills(
    role: Author,
    author: &ParticipantId,
    pool_owner: Option<&ParticipantId>,
    booking: Option<&BookingFacts>,
) -> bool {
    let is = |p: Option<&ParticipantId>| p == Some(author);
    let charged = booking.map(|b| &b.charged_to);
    match role {
        Author::NamedOwner | Author::Location => matches!(author, ParticipantId::Location(_)),
        Author::PoolOwner => is(pool_owner),
        Author::Grantee => pool_owner.is_some() && !is(pool_owner),
        Author::Receiver | Author::BookingCreator => true,
        Author::ChargedOrOwner => is(charged) || is(booking.map(|b| &b.owner)),
        Author::Charged => is(charged),
        Author::ChargedOrRequester => is(charged) || is(booking.map(|b| &b.requested_by)),
        Author::Requester => is(booking.map(|b| &b.requested_by)) && !is(charged),
        Author::Hub => *author == ParticipantId::Hub,
    }
}

/// Whether `author` may write `event` (whose typed body is `body`), given
/// what the receiver knows. The outer `Err` is a failed lookup, not a
/// verdict.
pub fn check<F: Facts>(event: &Event, body: &EventBody, facts: &F) -> Result<Verdict, F::Error> {
    let author = &event.origin;
    let Some(role) = author_of(&event.kind) else {
        return Ok(invalid(format!(
            "events of kind {} are not known here",
            event.kind
        )));
    };
    // Nothing but the hub's own relays may carry other participants' words.
    if role == Author::Hub && *author != ParticipantId::Hub {
        return Ok(forbidden(format!(
            "{author} may not write {}: only the hub does",
            event.kind
        )));
    }
    match body {
        EventBody::ResourceCreated { .. } | EventBody::PoolCreated { .. } => {
            catalog(author, body, facts)
        }
        EventBody::PoolAdjusted { .. }
        | EventBody::AllotmentGranted { .. }
        | EventBody::AllotmentRecalled { .. }
        | EventBody::AllotmentReturned { .. }
        | EventBody::AllotmentCredited { .. } => units_moved(author, role, body, facts),
        EventBody::BookingCreated { .. } => booking_created(event, body, facts),
        EventBody::BookingConfirmed { id, .. }
        | EventBody::BookingFulfilled { id, .. }
        | EventBody::BookingNoShow { id, .. }
        | EventBody::BookingCancelled { id, .. }
        | EventBody::BookingExpired { id, .. }
        | EventBody::BookingCancelRequested { id } => {
            booking_changed(author, role, id, body, facts)
        }
        EventBody::LocationJoined { name, .. } => Ok(length("location name", name, 200)),
        EventBody::Relayed { .. } => Ok(Ok(())),
        EventBody::Observed { hub_seq, event } => {
            Ok(recorded(author, role, *hub_seq).and_then(|()| {
                if event.origin == *author {
                    invalid(format!(
                        "{author} cannot have observed its own event {}",
                        event.seq
                    ))
                } else {
                    Ok(())
                }
            }))
        }
        EventBody::InboxSetAside {
            hub_seq,
            origin,
            kind,
            reason,
        } => Ok(recorded(author, role, *hub_seq)
            .and_then(|()| {
                ParticipantId::parse(origin)
                    .map(|_| ())
                    .map_err(|e| Denied::Invalid(format!("origin: {e}")))
            })
            .and_then(|()| readable("kind", kind, 100))
            .and_then(|()| readable("reason", reason, REASON_MAX_CHARS))),
    }
}

/// A location's record of what reached its inbox at `hub_seq`.
fn recorded(author: &ParticipantId, role: Author, hub_seq: u64) -> Verdict {
    if !fills(role, author, None, None) {
        return forbidden(format!("{author} keeps no inbox"));
    }
    if hub_seq == 0 {
        return invalid("hub_seq starts at 1".into());
    }
    Ok(())
}

/// Free text an event carries: at most `max` characters.
/// The staff member a booking change names, if any.
fn acted_by(body: &EventBody) -> Option<&str> {
    match body {
        EventBody::BookingConfirmed { by, .. }
        | EventBody::BookingCancelled { by, .. }
        | EventBody::BookingFulfilled { by, .. }
        | EventBody::BookingNoShow { by, .. } => by.as_deref(),
        _ => None,
    }
}

fn length(what: &str, value: &str, max: usize) -> Verdict {
    if value.chars().count() > max {
        return invalid(format!("{what} is longer than {max} characters"));
    }
    Ok(())
}

/// Text of a kind that was always written without hidden characters.
fn readable(what: &str, value: &str, max: usize) -> Verdict {
    length(what, value, max)?;
    if has_hidden_characters(value) {
        return invalid(format!(
            "{what} must not contain control or text-direction characters"
        ));
    }
    Ok(())
}

fn in_range(what: &str, value: i64, range: std::ops::RangeInclusive<i64>) -> Verdict {
    if range.contains(&value) {
        Ok(())
    } else {
        invalid(format!(
            "{what} must be between {} and {}, got {value}",
            range.start(),
            range.end()
        ))
    }
}

/// A catalog entry the author names itself the owner of, under an id of
/// its own namespace.
fn its_own(
    author: &ParticipantId,
    owner: &ParticipantId,
    what: &str,
    id: &str,
    in_namespace: bool,
) -> Verdict {
    if owner != author {
        return forbidden(format!(
            "{author} may not create catalog entries owned by {owner}"
        ));
    }
    if !in_namespace {
        return forbidden(format!(
            "{author} may not name {what} {id} outside its namespace {author}:"
        ));
    }
    Ok(())
}

/// `resource_created` and `pool_created`: new ids of the author's own
/// namespace, for entries it owns, that refer only to what exists.
fn catalog<F: Facts>(
    author: &ParticipantId,
    body: &EventBody,
    facts: &F,
) -> Result<Verdict, F::Error> {
    let ParticipantId::Location(location) = author else {
        return Ok(forbidden("the hub owns no catalog yet".into()));
    };
    match body {
        EventBody::ResourceCreated {
            id, owner, name, ..
        } => {
            if let Err(denied) = its_own(
                author,
                owner,
                "resource",
                id.as_str(),
                id.in_namespace_of(location),
            ) {
                return Ok(Err(denied));
            }
            if facts.resource(id)?.is_some() {
                return Ok(invalid(format!("resource {id} exists already")));
            }
            if name.trim().is_empty() {
                return Ok(invalid("a resource needs a name".into()));
            }
            Ok(length("resource name", name, RESOURCE_NAME_MAX_CHARS))
        }
        EventBody::PoolCreated {
            id,
            resource_id,
            owner,
            capacity,
            starts_at_ms,
            ends_at_ms,
        } => {
            if let Err(denied) = its_own(
                author,
                owner,
                "pool",
                id.as_str(),
                id.in_namespace_of(location),
            ) {
                return Ok(Err(denied));
            }
            if facts.pool(id)?.is_some() {
                return Ok(invalid(format!("pool {id} exists already")));
            }
            let Some(resource) = facts.resource(resource_id)? else {
                return Ok(invalid(format!(
                    "pool {id} names unknown resource {resource_id}"
                )));
            };
            if resource.owner != *author {
                return Ok(forbidden(format!(
                    "{author} may not add pools to resource {resource_id} of {}",
                    resource.owner
                )));
            }
            if let Err(denied) = in_range("capacity", *capacity, 0..=POOL_CAPACITY_MAX) {
                return Ok(Err(denied));
            }
            Ok(match (resource.kind, starts_at_ms, ends_at_ms) {
                (ResourceKind::Stock, None, None) if !resource.has_pools => Ok(()),
                (ResourceKind::Stock, None, None) => {
                    invalid(format!("stock resource {resource_id} has its pool already"))
                }
                (ResourceKind::Stock, _, _) => {
                    invalid("a stock pool has no starts_at or ends_at".into())
                }
                (ResourceKind::Slot, Some(starts), Some(ends)) if starts < ends => Ok(()),
                (ResourceKind::Slot, _, _) => {
                    invalid("a slot pool needs starts_at before ends_at".into())
                }
            })
        }
        _ => unreachable!("called for catalog events only"),
    }
}

/// Stock changes and units moving between holders: by the right party, in
/// range, and never more than the giver holds or was sent.
fn units_moved<F: Facts>(
    author: &ParticipantId,
    role: Author,
    body: &EventBody,
    facts: &F,
) -> Result<Verdict, F::Error> {
    let (pool, units) = match body {
        EventBody::PoolAdjusted { pool, delta } => (pool, *delta),
        EventBody::AllotmentGranted { pool, units, .. }
        | EventBody::AllotmentRecalled { pool, units, .. }
        | EventBody::AllotmentReturned { pool, units, .. }
        | EventBody::AllotmentCredited { pool, units, .. } => (pool, *units),
        _ => unreachable!("called for unit movements only"),
    };
    let Some(facts_of_pool) = facts.pool(pool)? else {
        return Ok(invalid(format!("event names unknown pool {pool}")));
    };
    let owner = &facts_of_pool.owner;
    if !fills(role, author, Some(owner), None) {
        return Ok(forbidden(match role {
            Author::Grantee => format!("{author} owns pool {pool}: only a grantee returns units"),
            _ => format!("{author} may not change pool {pool} of {owner}"),
        }));
    }
    let short = |available: i64| {
        invalid(format!(
            "{author} holds {available} units of pool {pool}, not {units}"
        ))
    };
    if let EventBody::PoolAdjusted { delta, .. } = body {
        if *delta == 0 {
            return Ok(invalid("delta must not be 0".into()));
        }
        let after = facts_of_pool.capacity.checked_add(*delta).unwrap_or(-1);
        return Ok(in_range(
            "capacity after the change",
            after,
            0..=POOL_CAPACITY_MAX,
        ));
    }
    if let Err(denied) = in_range("units", units, 1..=ALLOTMENT_UNITS_MAX) {
        return Ok(Err(denied));
    }
    match body {
        EventBody::AllotmentGranted { to, .. } => {
            if to == author {
                return Ok(invalid("an owner cannot grant units to itself".into()));
            }
            if facts.may_receive(to)? == Some(false) {
                return Ok(invalid(format!(
                    "{to} is not a participant that can hold units"
                )));
            }
            if let Some(available) = facts.available(pool, author)?
                && available < units
            {
                return Ok(short(available));
            }
        }
        EventBody::AllotmentRecalled { from, .. } if from == author => {
            return Ok(invalid(
                "an owner recalls units from others, not itself".into(),
            ));
        }
        EventBody::AllotmentReturned { hub_seq, .. } => {
            if *hub_seq == Some(0) {
                return Ok(invalid("hub_seq starts at 1".into()));
            }
            if let Some(available) = facts.available(pool, author)?
                && available < units
            {
                return Ok(short(available));
            }
        }
        EventBody::AllotmentCredited { from, hub_seq, .. } => {
            if from == author || *hub_seq == 0 {
                return Ok(invalid(format!(
                    "{author} cannot credit units from {from} at hub seq {hub_seq}"
                )));
            }
            if let Some(sent) = facts.in_flight(pool, from, author)?
                && sent < units
            {
                return Ok(invalid(format!(
                    "{from} has {sent} units of pool {pool} on their way to {author}, not {units}"
                )));
            }
        }
        _ => {}
    }
    Ok(Ok(()))
}

/// Milliseconds from `from` to `to`, or `None` if that is negative or
/// cannot be written as an `i64` (timestamps come from the author).
fn span_ms(from: i64, to: i64) -> Option<i64> {
    to.checked_sub(from).filter(|span| *span >= 0)
}

fn within(what: &str, from: i64, to: Option<i64>, min_ms: i64, max_ms: i64) -> Verdict {
    match to.and_then(|to| span_ms(from, to)) {
        Some(span) if (min_ms..=max_ms).contains(&span) => Ok(()),
        _ => invalid(format!(
            "{what} must be {} to {} s after the event",
            min_ms / 1000,
            max_ms / 1000
        )),
    }
}

/// Whether `holder` holds the units of every line (where it is known).
fn holds<F: Facts>(holder: &ParticipantId, lines: &[Line], facts: &F) -> Result<Verdict, F::Error> {
    for line in lines {
        if let Some(available) = facts.available(&line.pool_id, holder)?
            && available < line.quantity
        {
            return Ok(invalid(format!(
                "{holder} holds {available} units of pool {}, not {}",
                line.pool_id, line.quantity
            )));
        }
    }
    Ok(Ok(()))
}

/// `booking_created`: a new request, a new booking against the author's
/// own units, or the owner's decision on a request it received.
fn booking_created<F: Facts>(
    event: &Event,
    body: &EventBody,
    facts: &F,
) -> Result<Verdict, F::Error> {
    let EventBody::BookingCreated {
        id,
        owner,
        requested_by,
        charged_to,
        channel,
        lines,
        customer,
        state,
        expires_at_ms,
        hold_seconds,
        reason,
    } = body
    else {
        unreachable!("called for booking_created only")
    };
    let author = &event.origin;
    if let Err(e) = crate::booking::validate_booking(lines, customer) {
        return Ok(invalid(format!("booking {id}: {e}")));
    }
    if let Some(reason) = reason
        && let Err(denied) = length("reason", reason, REASON_MAX_CHARS)
    {
        return Ok(Err(denied));
    }
    for line in lines {
        match facts.pool(&line.pool_id)? {
            None => {
                return Ok(invalid(format!(
                    "booking {id} names unknown pool {}",
                    line.pool_id
                )));
            }
            Some(pool) if pool.owner != *owner => {
                return Ok(invalid(format!(
                    "booking {id} says {owner} owns pool {}, but {} does",
                    line.pool_id, pool.owner
                )));
            }
            Some(_) => {}
        }
    }
    let hold = |expires| {
        within(
            "a hold's expires_at",
            event.at_ms,
            expires,
            0,
            HOLD_SECONDS_MAX * 1000,
        )
    };
    let Some(known) = facts.booking(id)? else {
        return Ok(match state {
            BookingState::Requested => {
                if requested_by != author {
                    return Ok(forbidden(format!(
                        "{author} may not request in {requested_by}'s name"
                    )));
                }
                if charged_to != owner || owner == author {
                    return Ok(invalid(format!(
                        "a request is charged to the owner of its pools, {owner}, and made by someone else"
                    )));
                }
                if let Some(seconds) = hold_seconds
                    && let Err(denied) = in_range("hold_seconds", *seconds, 1..=HOLD_SECONDS_MAX)
                {
                    return Ok(Err(denied));
                }
                within(
                    "a request's expires_at",
                    event.at_ms,
                    *expires_at_ms,
                    1000,
                    REQUEST_TTL_MAX_S * 1000,
                )
            }
            BookingState::Held | BookingState::Confirmed => {
                if requested_by != author || charged_to != author {
                    return Ok(forbidden(format!(
                        "{author} may book only against its own units, not {charged_to}'s"
                    )));
                }
                if *state == BookingState::Held
                    && let Err(denied) = hold(*expires_at_ms)
                {
                    return Ok(Err(denied));
                }
                return holds(author, lines, facts);
            }
            other => invalid(format!(
                "a new booking is requested, held or confirmed, not {other}"
            )),
        });
    };
    // The booking exists: this can only be its owner deciding the request.
    if known.owner != *author || known.charged_to != *author {
        return Ok(forbidden(format!(
            "{author} may not decide booking {id}: it is {}'s to decide",
            known.owner
        )));
    }
    if known
        .charged_state
        .is_some_and(|s| s != BookingState::Requested)
    {
        return Ok(invalid(format!("booking {id} was decided already")));
    }
    let same = known.owner == *owner
        && known.requested_by == *requested_by
        && known.charged_to == *charged_to
        && known.channel == *channel
        && known.lines == *lines
        && known.customer == *customer;
    if !same {
        return Ok(invalid(format!(
            "a decision on booking {id} must repeat the request it decides"
        )));
    }
    match state {
        BookingState::Held => match hold(*expires_at_ms) {
            Ok(()) => holds(author, lines, facts),
            Err(denied) => Ok(Err(denied)),
        },
        BookingState::Confirmed => holds(author, lines, facts),
        BookingState::Rejected | BookingState::Expired => Ok(Ok(())),
        other => Ok(invalid(format!(
            "a decision holds, confirms, rejects or expires a request, not {other}"
        ))),
    }
}

/// Confirm, fulfil, cancel, expire or ask to cancel an existing booking.
fn booking_changed<F: Facts>(
    author: &ParticipantId,
    role: Author,
    id: &BookingId,
    body: &EventBody,
    facts: &F,
) -> Result<Verdict, F::Error> {
    let Some(known) = facts.booking(id)? else {
        return Ok(invalid(format!("event names unknown booking {id}")));
    };
    if !fills(role, author, None, Some(&known)) {
        return Ok(forbidden(format!(
            "{author} may not change booking {id} of {} (charged to {})",
            known.owner, known.charged_to
        )));
    }
    if let EventBody::BookingExpired { reason, .. } = body
        && let Err(denied) = length("reason", reason, REASON_MAX_CHARS)
    {
        return Ok(Err(denied));
    }
    if let Some(by) = acted_by(body)
        && let Err(denied) = readable("by", by, ACTOR_NAME_MAX_CHARS)
    {
        return Ok(Err(denied));
    }
    // The charged participant's own word follows from its own state.
    if known.charged_to == *author
        && let Some(state) = known.charged_state
    {
        let may = |action| crate::booking::transition(state, action).is_ok();
        let (allowed, verb) = match body {
            EventBody::BookingConfirmed { .. } => (may(Action::Confirm), "confirmed"),
            EventBody::BookingFulfilled { .. } => (may(Action::Fulfil), "fulfilled"),
            EventBody::BookingNoShow { .. } => (may(Action::NoShow), "marked a no-show"),
            EventBody::BookingCancelled { .. } => (may(Action::Cancel), "cancelled"),
            EventBody::BookingExpired { .. } => (
                may(Action::Expire) || may(Action::RequesterGaveUp),
                "expired",
            ),
            _ => (true, ""),
        };
        if !allowed {
            return Ok(invalid(format!(
                "booking {id} is {state} for {author}: it cannot be {verb} now"
            )));
        }
    }
    // Units come back into use only against what the author still holds.
    let consumes_again = matches!(
        body,
        EventBody::BookingConfirmed { .. } | EventBody::BookingFulfilled { .. }
    ) && known.charged_to == *author
        && known.charged_state.is_some_and(|s| !s.consumes_units());
    if consumes_again {
        return holds(author, &known.lines, facts);
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests;
