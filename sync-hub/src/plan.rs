//! The rules of DESIGN section 6 for a pushed batch, as pure functions:
//! which events to apply, and which a device may author at all. Every
//! storage backend runs these inside its transaction.

use shared::event::{ChainHead, ChainVerdict, check_next};
use shared::{BookingId, BookingState, Event, EventBody, Hash, LocationId, ParticipantId, PoolId};

/// Why a batch is refused. Nothing of a refused batch is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("events are missing before this batch; send from seq {expected}")]
    Gap { expected: u64 },
    #[error(
        "event {seq} differs from the one the hub holds: this device's log forked (restored from an old backup?); it is quarantined until `edge-node reset`"
    )]
    Fork { seq: u64 },
    #[error("event {seq} was written under epoch {epoch}, but this device is at epoch {current}")]
    Fenced { seq: u64, epoch: u32, current: u32 },
    #[error("event {seq} does not follow the event before it in this batch")]
    BrokenChain { seq: u64 },
    #[error("this device is quarantined: {0}")]
    Quarantined(String),
    #[error("the batch's head signature does not verify")]
    BadHeadSignature,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadEvent(String),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Gap { .. } => "gap",
            Self::Fork { .. } => "fork",
            Self::Fenced { .. } => "fenced",
            Self::BrokenChain { .. } => "broken_chain",
            Self::Quarantined(_) => "quarantined",
            Self::BadHeadSignature => "bad_signature",
            Self::Forbidden(_) => "forbidden",
            Self::BadEvent(_) => "invalid_event",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Gap { .. } | Self::Fork { .. } | Self::Fenced { .. } | Self::Quarantined(_) => {
                409
            }
            Self::BrokenChain { .. } | Self::BadEvent(_) => 400,
            Self::BadHeadSignature => 401,
            Self::Forbidden(_) => 403,
        }
    }
}

/// What the hub knows of the pushing device.
#[derive(Debug, Clone)]
pub struct DeviceLog {
    pub origin: LocationId,
    pub head: ChainHead,
    pub epoch: u32,
    pub epoch_start_seq: u64,
}

/// Checks a batch against the hub's head of its log and returns the index
/// of the first event to apply (`events.len()` when all are duplicates).
///
/// `stored_hash(seq)` is the hash the hub holds at a `seq` not beyond its
/// head.
pub fn plan_batch(
    log: &DeviceLog,
    events: &[Event],
    mut stored_hash: impl FnMut(u64) -> Option<Hash>,
) -> Result<usize, Refusal> {
    let origin = ParticipantId::Location(log.origin.clone());
    let mut first_new = events.len();
    let mut previous: Option<&Event> = None;
    for (index, event) in events.iter().enumerate() {
        if event.origin != origin {
            return Err(Refusal::Forbidden(format!(
                "device {} may only push its own log, not {}'s",
                log.origin, event.origin
            )));
        }
        if let Some(prev) = previous
            && (event.seq != prev.seq + 1 || event.prev != prev.hash())
        {
            return Err(Refusal::BrokenChain { seq: event.seq });
        }
        previous = Some(event);
        if event.seq > log.head.seq && first_new == events.len() {
            first_new = index;
        }
        if event.seq <= log.head.seq || index == first_new {
            let floor = if event.seq >= log.epoch_start_seq {
                log.epoch
            } else {
                0
            };
            let stored = (event.seq <= log.head.seq)
                .then(|| stored_hash(event.seq))
                .flatten();
            match check_next(log.head, event, stored, floor) {
                ChainVerdict::Duplicate => {}
                ChainVerdict::Apply => {}
                ChainVerdict::Fork { seq } => return Err(Refusal::Fork { seq }),
                ChainVerdict::Gap { expected } => return Err(Refusal::Gap { expected }),
                ChainVerdict::Fenced { epoch, current } => {
                    return Err(Refusal::Fenced {
                        seq: event.seq,
                        epoch,
                        current,
                    });
                }
            }
        }
        if event.seq > log.head.seq {
            let floor = if event.seq >= log.epoch_start_seq {
                log.epoch
            } else {
                0
            };
            if event.epoch < floor {
                return Err(Refusal::Fenced {
                    seq: event.seq,
                    epoch: event.epoch,
                    current: floor,
                });
            }
            if event.epoch > log.epoch {
                return Err(Refusal::BadEvent(format!(
                    "event {} claims epoch {}, beyond this device's {}",
                    event.seq, event.epoch, log.epoch
                )));
            }
            event.typed().map_err(|e| {
                Refusal::BadEvent(format!("event {} has a bad body: {e}", event.seq))
            })?;
        }
    }
    Ok(first_new)
}

/// The participants of a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingParties {
    pub owner: ParticipantId,
    pub charged_to: ParticipantId,
    pub requested_by: ParticipantId,
}

/// What the hub's view says about the things an event names.
pub trait ViewLookup {
    fn pool_owner(&self, pool: &PoolId) -> Option<ParticipantId>;
    /// Whether `holder` was ever granted units of `pool`.
    fn holds_allotment(&self, pool: &PoolId, holder: &ParticipantId) -> bool;
    /// Units of `pool` granted to `holder` and not returned.
    fn allotment_units(&self, pool: &PoolId, holder: &ParticipantId) -> i64;
    fn booking_parties(&self, id: &BookingId) -> Option<BookingParties>;
}

/// Whether `origin` may author `body`: a device never speaks for another
/// participant, nor decides for pools it does not own: it books against its
/// own units (its pools, or an allotment it was granted) or requests from
/// the owner, and it changes a booking only in its own role in it.
pub fn authorize(
    origin: &LocationId,
    body: &EventBody,
    view: &impl ViewLookup,
) -> Result<(), Refusal> {
    let me = ParticipantId::Location(origin.clone());
    let deny = |what: String| Err(Refusal::Forbidden(format!("{origin} may not {what}")));
    let owns = |pool: &PoolId| view.pool_owner(pool).is_some_and(|owner| owner == me);
    let parties = |id: &BookingId| {
        view.booking_parties(id)
            .ok_or_else(|| Refusal::BadEvent(format!("event names unknown booking {id}")))
    };
    match body {
        EventBody::ResourceCreated { owner, .. } | EventBody::PoolCreated { owner, .. }
            if *owner != me =>
        {
            deny(format!("create catalog entries owned by {owner}"))
        }
        EventBody::ResourceCreated { id, .. } if !id.in_namespace_of(origin) => deny(format!(
            "name resource {id} outside its namespace {origin}:"
        )),
        EventBody::PoolCreated { id, .. } if !id.in_namespace_of(origin) => {
            deny(format!("name pool {id} outside its namespace {origin}:"))
        }
        EventBody::PoolAdjusted { pool, .. }
        | EventBody::AllotmentGranted { pool, .. }
        | EventBody::AllotmentRecalled { pool, .. }
            if !owns(pool) =>
        {
            deny(format!("adjust or grant units of pool {pool}"))
        }
        EventBody::AllotmentGranted { to, .. } if *to == me => deny("grant units to itself".into()),
        EventBody::AllotmentReturned { pool, .. } | EventBody::AllotmentCredited { pool, .. }
            if view.pool_owner(pool).is_none() =>
        {
            deny(format!("move units of unknown pool {pool}"))
        }
        EventBody::AllotmentReturned { pool, units, .. }
            if view.allotment_units(pool, &me) < *units =>
        {
            deny(format!(
                "return {units} units of {pool}: it holds {}",
                view.allotment_units(pool, &me)
            ))
        }
        EventBody::BookingCreated {
            id,
            owner,
            charged_to,
            requested_by,
            state,
            lines,
            customer,
            ..
        } => {
            if *state == BookingState::Requested {
                // A request: ours, for pools that exist and are all the
                // owner's, to be decided by the owner.
                if *requested_by != me {
                    return deny(format!("request in {requested_by}'s name"));
                }
                if shared::booking::validate_request(lines, customer).is_err() {
                    return Err(Refusal::BadEvent(
                        "a request with invalid lines or customer".into(),
                    ));
                }
                for line in lines {
                    if view.pool_owner(&line.pool_id).as_ref() != Some(owner) || owner != charged_to
                    {
                        return Err(Refusal::BadEvent(format!(
                            "a request for pool {} that {owner} does not own",
                            line.pool_id
                        )));
                    }
                }
                return Ok(());
            }
            if *charged_to != me {
                return deny(format!("book against {charged_to}'s units"));
            }
            if let Some(p) = view.booking_parties(id)
                && p.charged_to != me
            {
                return deny(format!("decide booking {id}, charged to {}", p.charged_to));
            }
            for line in lines {
                if !owns(&line.pool_id) && !view.holds_allotment(&line.pool_id, &me) {
                    return deny(format!(
                        "book pool {} it neither owns nor holds units of",
                        line.pool_id
                    ));
                }
            }
            Ok(())
        }
        EventBody::BookingConfirmed { id } | EventBody::BookingCancelled { id } => {
            let p = parties(id)?;
            if p.charged_to == me {
                Ok(())
            } else {
                deny(format!("change booking {id}"))
            }
        }
        EventBody::BookingFulfilled { id } => {
            let p = parties(id)?;
            if p.charged_to == me || p.owner == me {
                Ok(())
            } else {
                deny(format!("fulfil booking {id}"))
            }
        }
        EventBody::BookingExpired { id, .. } => {
            let p = parties(id)?;
            if p.charged_to == me || p.requested_by == me {
                Ok(())
            } else {
                deny(format!("expire booking {id}"))
            }
        }
        EventBody::BookingCancelRequested { id } => {
            let p = parties(id)?;
            if p.requested_by == me {
                Ok(())
            } else {
                deny(format!("ask to cancel booking {id}"))
            }
        }
        EventBody::Relayed { .. } | EventBody::LocationJoined { .. } => {
            deny("author the hub's relays".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> LocationId {
        LocationId::parse("store-1").expect("id")
    }

    fn chain(len: u64, epoch: u32) -> Vec<Event> {
        let mut head = ChainHead::EMPTY;
        (0..len)
            .map(|i| {
                let e = Event::next(
                    head,
                    ParticipantId::Location(origin()),
                    epoch,
                    i as i64,
                    EventBody::PoolAdjusted {
                        pool: PoolId::parse("p").expect("id"),
                        delta: i as i64 + 1,
                    },
                );
                head = e.head();
                e
            })
            .collect()
    }

    fn log(events: &[Event], held: usize, epoch: u32) -> DeviceLog {
        DeviceLog {
            origin: origin(),
            head: if held == 0 {
                ChainHead::EMPTY
            } else {
                events[held - 1].head()
            },
            epoch,
            epoch_start_seq: 1,
        }
    }

    #[test]
    fn a_batch_after_the_head_applies_whole_and_a_repeated_one_applies_nothing() {
        let events = chain(5, 1);
        let hash_at = |seq: u64| Some(events[seq as usize - 1].hash());
        assert_eq!(
            plan_batch(&log(&events, 2, 1), &events[2..], hash_at),
            Ok(0)
        );
        assert_eq!(plan_batch(&log(&events, 2, 1), &events, hash_at), Ok(2));
        assert_eq!(plan_batch(&log(&events, 5, 1), &events, hash_at), Ok(5));
    }

    #[test]
    fn gaps_forks_broken_chains_and_old_epochs_are_refused() {
        let events = chain(5, 1);
        let hash_at = |seq: u64| Some(events[seq as usize - 1].hash());
        assert_eq!(
            plan_batch(&log(&events, 1, 1), &events[3..], hash_at),
            Err(Refusal::Gap { expected: 2 })
        );
        let other = chain(5, 1);
        assert_eq!(
            plan_batch(&log(&events, 3, 1), &other[1..], hash_at),
            Err(Refusal::Fork { seq: 2 })
        );
        let mut tampered = events[2..].to_vec();
        tampered[1].body["delta"] = serde_json::Value::from(99);
        assert_eq!(
            plan_batch(&log(&events, 2, 1), &tampered, hash_at),
            Err(Refusal::BrokenChain { seq: 5 })
        );
        assert!(matches!(
            plan_batch(&log(&events, 2, 2), &events[2..], hash_at),
            Err(Refusal::Fenced {
                seq: 3,
                epoch: 1,
                current: 2
            })
        ));
    }

    #[test]
    fn events_written_before_enrollment_keep_their_epoch() {
        let events = chain(4, 0);
        let mut device = log(&events, 0, 1);
        device.epoch_start_seq = 5;
        assert_eq!(plan_batch(&device, &events, |_| None), Ok(0));
        device.epoch_start_seq = 3;
        assert!(matches!(
            plan_batch(&device, &events, |_| None),
            Err(Refusal::Fenced { seq: 3, .. })
        ));
    }

    #[test]
    fn a_device_may_push_only_its_own_log() {
        let mut events = chain(1, 1);
        events[0].origin = ParticipantId::parse("store-2").expect("id");
        assert!(matches!(
            plan_batch(&log(&events, 0, 1), &events, |_| None),
            Err(Refusal::Forbidden(_))
        ));
    }

    struct View;
    impl ViewLookup for View {
        fn pool_owner(&self, pool: &PoolId) -> Option<ParticipantId> {
            match pool.as_str() {
                "mine" => Some(ParticipantId::Location(origin())),
                "theirs" => ParticipantId::parse("store-2").ok(),
                _ => None,
            }
        }
        fn holds_allotment(&self, _: &PoolId, _: &ParticipantId) -> bool {
            false
        }
        fn allotment_units(&self, _: &PoolId, _: &ParticipantId) -> i64 {
            0
        }
        fn booking_parties(&self, _: &BookingId) -> Option<BookingParties> {
            let other = ParticipantId::parse("store-2").ok()?;
            Some(BookingParties {
                owner: other.clone(),
                charged_to: other.clone(),
                requested_by: other,
            })
        }
    }

    #[test]
    fn a_device_names_catalog_entries_only_in_its_own_namespace() {
        let me = ParticipantId::Location(origin());
        let resource = |id: &str| EventBody::ResourceCreated {
            id: shared::ResourceId::parse(id).expect("id"),
            owner: me.clone(),
            name: "Beans".into(),
            kind: shared::ResourceKind::Stock,
        };
        let pool = |id: &str| EventBody::PoolCreated {
            id: PoolId::parse(id).expect("id"),
            resource_id: shared::ResourceId::parse("store-1:beans").expect("id"),
            owner: me.clone(),
            capacity: 5,
            starts_at_ms: None,
            ends_at_ms: None,
        };
        for allowed in ["store-1:beans", "0190b1a2-c3d4-7e8f-9a0b-1c2d3e4f5a6b"] {
            assert_eq!(authorize(&origin(), &resource(allowed), &View), Ok(()));
            assert_eq!(authorize(&origin(), &pool(allowed), &View), Ok(()));
        }
        for refused in ["beans", "store-2:beans", "store-10:beans"] {
            assert!(matches!(
                authorize(&origin(), &resource(refused), &View),
                Err(Refusal::Forbidden(_))
            ));
            assert!(matches!(
                authorize(&origin(), &pool(refused), &View),
                Err(Refusal::Forbidden(_))
            ));
        }
    }

    #[test]
    fn a_device_cannot_speak_for_pools_or_bookings_of_others() {
        let pool = |id: &str| PoolId::parse(id).expect("id");
        assert!(
            authorize(
                &origin(),
                &EventBody::PoolAdjusted {
                    pool: pool("mine"),
                    delta: 1
                },
                &View
            )
            .is_ok()
        );
        for body in [
            EventBody::PoolAdjusted {
                pool: pool("theirs"),
                delta: 1,
            },
            EventBody::AllotmentGranted {
                pool: pool("theirs"),
                to: ParticipantId::Hub,
                units: 1,
            },
            EventBody::BookingConfirmed {
                id: BookingId::generate(),
            },
        ] {
            assert!(
                matches!(
                    authorize(&origin(), &body, &View),
                    Err(Refusal::Forbidden(_))
                ),
                "{body:?}"
            );
        }
    }
}
