//! Each location's own ledger of units, as the hub follows it from that
//! location's log (docs/ARCHITECTURE.md, sections 2 and 7), as a pure function of one event: what
//! it changes in whose holding. The hub holds every author to its ledger
//! ([`shared::authz::check`] reads it back through
//! [`shared::authz::Facts::available`]); a backend only stores the entries.
//!
//! A holding moves only with its holder's own events (and the owner's
//! catalog events), exactly as the holder's own store moves it: so the hub
//! never judges an honest store by units it does not yet know it lost. The
//! hub's own holding is kept with its pools by the hub's own acts.

use shared::authz::Facts;
use shared::{BookingId, BookingState, EventBody, Line, LocationId, ParticipantId, PoolId};

/// One change to the ledgers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Units of `pool` charged to `holder` change by `units`.
    Allotted {
        pool: PoolId,
        holder: LocationId,
        units: i64,
    },
    /// Units of `pool` that `holder`'s bookings consume change by `units`.
    Used {
        pool: PoolId,
        holder: LocationId,
        units: i64,
    },
    /// Units of `pool` on their way from `from` to `to` change by `units`.
    InFlight {
        pool: PoolId,
        from: ParticipantId,
        to: ParticipantId,
        units: i64,
    },
    /// The charged participant now records the booking in `state`.
    ChargedState {
        booking: BookingId,
        state: BookingState,
    },
}

fn used(charged: &ParticipantId, lines: &[Line], sign: i64, out: &mut Vec<Entry>) {
    if let ParticipantId::Location(holder) = charged {
        out.extend(lines.iter().map(|line| Entry::Used {
            pool: line.pool_id.clone(),
            holder: holder.clone(),
            units: sign * line.quantity,
        }));
    }
}

/// What `body`, written by `author` and already found valid, changes in
/// the ledgers. Read `facts` before the event is applied.
pub fn entries<F: Facts>(
    author: &ParticipantId,
    body: &EventBody,
    facts: &F,
) -> Result<Vec<Entry>, F::Error> {
    let mut out = Vec::new();
    let owner_of = |pool: &PoolId| -> Result<Option<ParticipantId>, F::Error> {
        Ok(facts.pool(pool)?.map(|p| p.owner))
    };
    let location = match author {
        ParticipantId::Location(l) => Some(l.clone()),
        ParticipantId::Hub => None,
    };
    match body {
        EventBody::PoolCreated {
            id,
            owner: ParticipantId::Location(owner),
            capacity,
            ..
        } => out.push(Entry::Allotted {
            pool: id.clone(),
            holder: owner.clone(),
            units: *capacity,
        }),
        EventBody::PoolAdjusted { pool, delta } => {
            if let Some(holder) = location {
                out.push(Entry::Allotted {
                    pool: pool.clone(),
                    holder,
                    units: *delta,
                });
            }
        }
        EventBody::AllotmentGranted { pool, to, units } => {
            if let Some(holder) = location {
                out.push(Entry::Allotted {
                    pool: pool.clone(),
                    holder,
                    units: -units,
                });
            }
            // The hub credits what it is granted on receipt; a location
            // when it records the credit.
            if *to != ParticipantId::Hub {
                out.push(Entry::InFlight {
                    pool: pool.clone(),
                    from: author.clone(),
                    to: to.clone(),
                    units: *units,
                });
            }
        }
        EventBody::AllotmentReturned { pool, units, .. } => {
            if let Some(holder) = location {
                out.push(Entry::Allotted {
                    pool: pool.clone(),
                    holder,
                    units: -units,
                });
            }
            if let Some(owner) = owner_of(pool)? {
                out.push(Entry::InFlight {
                    pool: pool.clone(),
                    from: author.clone(),
                    to: owner,
                    units: *units,
                });
            }
        }
        EventBody::AllotmentCredited {
            pool, from, units, ..
        } => {
            if let Some(holder) = location {
                out.push(Entry::Allotted {
                    pool: pool.clone(),
                    holder,
                    units: *units,
                });
            }
            out.push(Entry::InFlight {
                pool: pool.clone(),
                from: from.clone(),
                to: author.clone(),
                units: -units,
            });
        }
        EventBody::BookingCreated {
            id,
            charged_to,
            lines,
            state,
            ..
        } => {
            // New, or the owner's decision on a request (which consumed
            // nothing while it waited): either way the charged participant
            // now records `state`.
            out.push(Entry::ChargedState {
                booking: *id,
                state: *state,
            });
            if state.consumes_units() {
                used(charged_to, lines, 1, &mut out);
            }
        }
        EventBody::BookingConfirmed { id, .. }
        | EventBody::BookingFulfilled { id, .. }
        | EventBody::BookingNoShow { id, .. }
        | EventBody::BookingCancelled { id, .. }
        | EventBody::BookingExpired { id, .. } => {
            let next = match body {
                EventBody::BookingConfirmed { .. } => BookingState::Confirmed,
                EventBody::BookingFulfilled { .. } => BookingState::Fulfilled,
                EventBody::BookingNoShow { .. } => BookingState::NoShow,
                EventBody::BookingCancelled { .. } => BookingState::Cancelled,
                _ => BookingState::Expired,
            };
            // Only the charged participant's own word moves its ledger;
            // the owner confirming a grantee's sale, or a requester giving
            // up, reaches that ledger when the charged participant takes
            // it in (below).
            if let Some(known) = facts.booking(id)?
                && known.charged_to == *author
            {
                let before = known.charged_state.unwrap_or(BookingState::Requested);
                moved(author, *id, &known.lines, before, next, &mut out);
            }
        }
        // What the charged participant recorded taking in from others about
        // a booking charged to it moves its state as its own store moved it
        // (by the requester's rules, as `adopt` does there): so the hub's
        // copy of that state is the store's own, event for event.
        EventBody::Observed { event, .. } => {
            let word = match event.typed() {
                Ok(EventBody::BookingCreated { id, state, .. }) => Some((id, state)),
                Ok(EventBody::BookingConfirmed { id, .. }) => Some((id, BookingState::Confirmed)),
                Ok(EventBody::BookingCancelled { id, .. }) => Some((id, BookingState::Cancelled)),
                Ok(EventBody::BookingFulfilled { id, .. }) => Some((id, BookingState::Fulfilled)),
                Ok(EventBody::BookingNoShow { id, .. }) => Some((id, BookingState::NoShow)),
                Ok(EventBody::BookingExpired { id, .. }) => Some((id, BookingState::Expired)),
                _ => None,
            };
            if let Some((id, remote)) = word
                && let Some(known) = facts.booking(&id)?
                && known.charged_to == *author
            {
                let before = known.charged_state.unwrap_or(BookingState::Requested);
                if let Some(next) = shared::booking::requester_adopts(before, remote) {
                    moved(author, id, &known.lines, before, next, &mut out);
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// The charged participant's booking `id` moves from `before` to `next`.
fn moved(
    charged: &ParticipantId,
    id: BookingId,
    lines: &[Line],
    before: BookingState,
    next: BookingState,
    out: &mut Vec<Entry>,
) {
    match (before.consumes_units(), next.consumes_units()) {
        (true, false) => used(charged, lines, -1, out),
        (false, true) => used(charged, lines, 1, out),
        _ => {}
    }
    out.push(Entry::ChargedState {
        booking: id,
        state: next,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::authz::{BookingFacts, PoolFacts, ResourceFacts};
    use shared::{Channel, Customer, ResourceId};

    struct One(Option<BookingFacts>);

    impl Facts for One {
        type Error = std::convert::Infallible;
        fn resource(&self, _: &ResourceId) -> Result<Option<ResourceFacts>, Self::Error> {
            Ok(None)
        }
        fn pool(&self, _: &PoolId) -> Result<Option<PoolFacts>, Self::Error> {
            Ok(Some(PoolFacts {
                owner: p("s1"),
                capacity: 10,
            }))
        }
        fn booking(&self, _: &BookingId) -> Result<Option<BookingFacts>, Self::Error> {
            Ok(self.0.clone())
        }
        fn available(&self, _: &PoolId, _: &ParticipantId) -> Result<Option<i64>, Self::Error> {
            Ok(None)
        }
        fn in_flight(
            &self,
            _: &PoolId,
            _: &ParticipantId,
            _: &ParticipantId,
        ) -> Result<Option<i64>, Self::Error> {
            Ok(None)
        }
        fn may_receive(&self, _: &ParticipantId) -> Result<Option<bool>, Self::Error> {
            Ok(None)
        }
    }

    fn p(id: &str) -> ParticipantId {
        ParticipantId::parse(id).expect("id")
    }

    fn l(id: &str) -> LocationId {
        LocationId::parse(id).expect("id")
    }

    fn beans() -> PoolId {
        PoolId::parse("s1:beans").expect("id")
    }

    fn sale(state: BookingState) -> BookingFacts {
        BookingFacts {
            owner: p("s1"),
            requested_by: p("s3"),
            charged_to: p("s3"),
            charged_state: Some(state),
            channel: Channel::Staff,
            lines: vec![Line {
                pool_id: beans(),
                quantity: 2,
            }],
            customer: Customer {
                name: "Ada".into(),
                phone: None,
                email: None,
            },
        }
    }

    #[test]
    fn a_grant_leaves_the_owner_at_once_and_waits_in_flight_for_its_credit() {
        let grant = EventBody::AllotmentGranted {
            pool: beans(),
            to: p("s3"),
            units: 4,
        };
        assert_eq!(
            entries(&p("s1"), &grant, &One(None)).expect("entries"),
            vec![
                Entry::Allotted {
                    pool: beans(),
                    holder: l("s1"),
                    units: -4
                },
                Entry::InFlight {
                    pool: beans(),
                    from: p("s1"),
                    to: p("s3"),
                    units: 4
                },
            ]
        );
        let credit = EventBody::AllotmentCredited {
            pool: beans(),
            from: p("s1"),
            units: 4,
            hub_seq: 7,
        };
        assert_eq!(
            entries(&p("s3"), &credit, &One(None)).expect("entries"),
            vec![
                Entry::Allotted {
                    pool: beans(),
                    holder: l("s3"),
                    units: 4
                },
                Entry::InFlight {
                    pool: beans(),
                    from: p("s1"),
                    to: p("s3"),
                    units: -4
                },
            ]
        );
        // The hub credits its grants itself, on receipt.
        let to_hub = EventBody::AllotmentGranted {
            pool: beans(),
            to: ParticipantId::Hub,
            units: 4,
        };
        assert_eq!(
            entries(&p("s1"), &to_hub, &One(None))
                .expect("entries")
                .len(),
            1
        );
    }

    #[test]
    fn only_the_charged_participant_moves_its_bookings_units() {
        let cancel = EventBody::BookingCancelled {
            id: BookingId::generate(),
            by: None,
        };
        let by_grantee =
            entries(&p("s3"), &cancel, &One(Some(sale(BookingState::Held)))).expect("entries");
        assert!(by_grantee.contains(&Entry::Used {
            pool: beans(),
            holder: l("s3"),
            units: -2
        }));
        let fulfil = EventBody::BookingFulfilled {
            id: BookingId::generate(),
            by: None,
        };
        assert_eq!(
            entries(&p("s1"), &fulfil, &One(Some(sale(BookingState::Cancelled)))).expect("entries"),
            vec![],
            "the owner's word reaches the grantee's ledger through the grantee"
        );
        let again =
            entries(&p("s3"), &fulfil, &One(Some(sale(BookingState::Cancelled)))).expect("entries");
        assert!(again.contains(&Entry::Used {
            pool: beans(),
            holder: l("s3"),
            units: 2
        }));
        // The grantee takes the owner's word in: now it counts again.
        let observed = EventBody::Observed {
            hub_seq: 9,
            event: Box::new(shared::Event::next(
                shared::event::ChainHead::EMPTY,
                p("s1"),
                1,
                0,
                fulfil.clone(),
            )),
        };
        let taken_in = entries(
            &p("s3"),
            &observed,
            &One(Some(sale(BookingState::Cancelled))),
        )
        .expect("entries");
        assert_eq!(
            taken_in,
            vec![
                Entry::Used {
                    pool: beans(),
                    holder: l("s3"),
                    units: 2
                },
                Entry::ChargedState {
                    booking: match &fulfil {
                        EventBody::BookingFulfilled { id, .. } => *id,
                        _ => unreachable!(),
                    },
                    state: BookingState::Fulfilled
                }
            ]
        );
        // Another participant's record of it changes nothing of s3's.
        assert_eq!(
            entries(
                &p("s1"),
                &observed,
                &One(Some(sale(BookingState::Cancelled)))
            )
            .expect("entries"),
            vec![]
        );
        let confirm = EventBody::BookingConfirmed {
            id: BookingId::generate(),
            by: None,
        };
        let held_to_confirmed =
            entries(&p("s3"), &confirm, &One(Some(sale(BookingState::Held)))).expect("entries");
        assert!(
            !held_to_confirmed
                .iter()
                .any(|e| matches!(e, Entry::Used { .. }))
        );
    }
}
