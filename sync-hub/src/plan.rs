//! The rules for a pushed batch (docs/ARCHITECTURE.md, section 7), as pure functions:
//! which events of it to apply. Every storage backend runs these inside its
//! transaction, and then [`shared::authz::check`] on each event to apply:
//! what a device may author at all.

use shared::event::{ChainHead, ChainVerdict, check_next};
use shared::{Event, EventBody, Hash, LocationId, ParticipantId};

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

/// A batch that passed the chain checks: where its new events start, and
/// what each new event was found to be on the way, so that nothing is
/// computed twice (a batch of 500 events is hashed and parsed once).
#[derive(Debug)]
pub struct Planned {
    /// Index of the first event to apply (`events.len()` when all are
    /// duplicates).
    pub first_new: usize,
    /// One per event from `first_new` on, in order.
    pub new: Vec<Checked>,
}

/// A new event of a batch, as checked.
#[derive(Debug)]
pub struct Checked {
    /// Its hash, which the next event's `prev` was checked against.
    pub hash: Hash,
    /// Its body as canonical JSON, which the hash covers: stored as it is.
    pub canonical_body: String,
    pub body: EventBody,
}

/// Checks a batch against the hub's head of its log: which of its events
/// to apply, and each of those hashed and parsed.
///
/// `stored_hash(seq)` is the hash the hub holds at a `seq` not beyond its
/// head.
pub fn plan_batch(
    log: &DeviceLog,
    events: &[Event],
    stored_hash: impl FnMut(u64) -> Option<Hash>,
) -> Result<Planned, Refusal> {
    plan_parsed(
        log,
        events,
        events.iter().map(|_| None).collect(),
        stored_hash,
    )
}

/// [`plan_batch`] for a batch whose bodies were parsed already (`None`
/// where they were not, or did not parse): each is parsed once.
pub fn plan_parsed(
    log: &DeviceLog,
    events: &[Event],
    mut bodies: Vec<Option<EventBody>>,
    mut stored_hash: impl FnMut(u64) -> Option<Hash>,
) -> Result<Planned, Refusal> {
    let origin = ParticipantId::Location(log.origin.clone());
    let mut first_new = events.len();
    let mut new = Vec::new();
    let mut previous: Option<(&Event, Hash)> = None;
    for (index, event) in events.iter().enumerate() {
        if event.origin != origin {
            return Err(Refusal::Forbidden(format!(
                "device {} may only push its own log, not {}'s",
                log.origin, event.origin
            )));
        }
        let (hash, canonical_body) = event.sealed();
        if let Some((prev, prev_hash)) = previous
            && (event.seq != prev.seq + 1 || event.prev != prev_hash)
        {
            return Err(Refusal::BrokenChain { seq: event.seq });
        }
        previous = Some((event, hash));
        if event.seq > log.head.seq && first_new == events.len() {
            first_new = index;
        }
        if event.seq <= log.head.seq || index == first_new {
            // An event the hub holds another of, authored under an older
            // epoch than the device's: an old copy of the device speaking
            // (one from before a reset), not the device as it is now, which
            // took the hub's log when its epoch began. Fenced, so the
            // device is not quarantined for what an old copy says.
            let floor = if event.seq <= log.head.seq || event.seq >= log.epoch_start_seq {
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
            let body = match bodies.get_mut(index).and_then(Option::take) {
                Some(body) => body,
                None => event.typed().map_err(|e| {
                    Refusal::BadEvent(format!("event {} has a bad body: {e}", event.seq))
                })?,
            };
            new.push(Checked {
                hash,
                canonical_body,
                body,
            });
        }
    }
    Ok(Planned { first_new, new })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_new(
        log: &DeviceLog,
        events: &[Event],
        stored_hash: impl FnMut(u64) -> Option<Hash>,
    ) -> Result<usize, Refusal> {
        let planned = plan_batch(log, events, stored_hash)?;
        assert_eq!(planned.new.len(), events.len() - planned.first_new);
        for (checked, event) in planned.new.iter().zip(&events[planned.first_new..]) {
            assert_eq!(checked.hash, event.hash());
        }
        Ok(planned.first_new)
    }
    use shared::{EventBody, PoolId};

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
        assert_eq!(first_new(&log(&events, 2, 1), &events[2..], hash_at), Ok(0));
        assert_eq!(first_new(&log(&events, 2, 1), &events, hash_at), Ok(2));
        assert_eq!(first_new(&log(&events, 5, 1), &events, hash_at), Ok(5));
    }

    #[test]
    fn gaps_forks_broken_chains_and_old_epochs_are_refused() {
        let events = chain(5, 1);
        let hash_at = |seq: u64| Some(events[seq as usize - 1].hash());
        assert_eq!(
            first_new(&log(&events, 1, 1), &events[3..], hash_at),
            Err(Refusal::Gap { expected: 2 })
        );
        let other = chain(5, 1);
        assert_eq!(
            first_new(&log(&events, 3, 1), &other[1..], hash_at),
            Err(Refusal::Fork { seq: 2 })
        );
        let mut tampered = events[2..].to_vec();
        tampered[1].body["delta"] = serde_json::Value::from(99);
        assert_eq!(
            first_new(&log(&events, 2, 1), &tampered, hash_at),
            Err(Refusal::BrokenChain { seq: 5 })
        );
        assert!(matches!(
            first_new(&log(&events, 2, 2), &events[2..], hash_at),
            Err(Refusal::Fenced {
                seq: 3,
                epoch: 1,
                current: 2
            })
        ));
    }

    #[test]
    fn an_old_copy_after_a_reset_is_fenced_not_called_a_fork() {
        // The hub holds 1..=3 of epoch 1, then the reset device's 4..=5 of
        // epoch 2; an old copy from before the reset pushes its own 4.
        let old = chain(5, 1);
        let mut held = old[..3].to_vec();
        let mut head = held[2].head();
        for i in 0..2 {
            let e = Event::next(
                head,
                ParticipantId::Location(origin()),
                2,
                100 + i,
                EventBody::PoolAdjusted {
                    pool: PoolId::parse("p").expect("id"),
                    delta: 7,
                },
            );
            head = e.head();
            held.push(e);
        }
        let mut device = log(&held, 5, 2);
        device.epoch_start_seq = 4;
        let hash_at = |seq: u64| Some(held[seq as usize - 1].hash());
        assert!(matches!(
            first_new(&device, &old[3..], hash_at),
            Err(Refusal::Fenced {
                seq: 4,
                epoch: 1,
                current: 2
            })
        ));
        // Its events from before the reset are what the hub holds.
        assert_eq!(first_new(&device, &old[..3], hash_at), Ok(3));
        // An old copy that diverged before the reset, where the hub holds
        // epoch 1 too, is fenced as well: the device now is of epoch 2.
        let diverged = chain(3, 1)
            .into_iter()
            .map(|mut e| {
                e.at_ms += 1;
                e
            })
            .collect::<Vec<_>>();
        let resealed = {
            let mut head = ChainHead::EMPTY;
            diverged
                .iter()
                .map(|e| {
                    let next = Event::next(
                        head,
                        e.origin.clone(),
                        1,
                        e.at_ms,
                        e.typed().expect("typed"),
                    );
                    head = next.head();
                    next
                })
                .collect::<Vec<_>>()
        };
        assert!(matches!(
            first_new(&device, &resealed, hash_at),
            Err(Refusal::Fenced {
                seq: 1,
                epoch: 1,
                current: 2
            })
        ));
        // The same divergence under the device's own epoch is a fork.
        assert_eq!(
            first_new(&log(&held[..3], 3, 1), &resealed, |seq| Some(
                held[seq as usize - 1].hash()
            )),
            Err(Refusal::Fork { seq: 1 })
        );
    }

    #[test]
    fn events_written_before_enrollment_keep_their_epoch() {
        let events = chain(4, 0);
        let mut device = log(&events, 0, 1);
        device.epoch_start_seq = 5;
        assert_eq!(first_new(&device, &events, |_| None), Ok(0));
        device.epoch_start_seq = 3;
        assert!(matches!(
            first_new(&device, &events, |_| None),
            Err(Refusal::Fenced { seq: 3, .. })
        ));
    }

    #[test]
    fn a_device_may_push_only_its_own_log() {
        let mut events = chain(1, 1);
        events[0].origin = ParticipantId::parse("store-2").expect("id");
        assert!(matches!(
            first_new(&log(&events, 0, 1), &events, |_| None),
            Err(Refusal::Forbidden(_))
        ));
    }
}
