//! Availability arithmetic over allotments (docs/ARCHITECTURE.md, section 2).
//!
//! Every participant keeps, per pool, a [`Holding`]: the units charged to it
//! (`allotted`) and the units its own bookings consume (`used`). It may only
//! book against `allotted - used`. The owner starts with the whole capacity;
//! a grant debits the giver at once and credits the receiver only when the
//! event arrives, so units in flight are counted by nobody and the sum of
//! `used` over all participants never exceeds the capacity.

use serde::{Deserialize, Serialize};

/// Units one participant holds of one pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// Units charged to this participant: for the owner, capacity minus what
    /// it granted plus what came back; for a grantee, what it received minus
    /// what it returned.
    pub allotted: i64,
    /// Units consumed by this participant's bookings in `held`, `confirmed`
    /// or `fulfilled`.
    pub used: i64,
}

/// Not enough units left in the caller's own allotment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{requested} requested, {available} available")]
pub struct InsufficientCapacity {
    pub requested: i64,
    pub available: i64,
}

impl Holding {
    /// The owner's holding of a freshly created pool.
    pub fn owner_of(capacity: i64) -> Self {
        Self {
            allotted: capacity,
            used: 0,
        }
    }

    /// Units this participant may still book or give away. Negative after a
    /// stock decrease below what is already booked: see [`Self::overbooked`].
    pub fn available(&self) -> i64 {
        self.allotted - self.used
    }

    /// Booked beyond what is held: only a `pool_adjusted` decrease can cause
    /// this, and it is surfaced as an alert, never hidden.
    pub fn overbooked(&self) -> bool {
        self.available() < 0
    }

    fn check(&self, units: i64) -> Result<(), InsufficientCapacity> {
        debug_assert!(units > 0, "units must be positive, got {units}");
        if units > self.available() {
            return Err(InsufficientCapacity {
                requested: units,
                available: self.available().max(0),
            });
        }
        Ok(())
    }

    /// A booking of ours takes `units`.
    pub fn reserve(&mut self, units: i64) -> Result<(), InsufficientCapacity> {
        self.check(units)?;
        self.used += units;
        Ok(())
    }

    /// A booking of ours gave its `units` back (cancelled or expired).
    pub fn release(&mut self, units: i64) {
        debug_assert!(
            units > 0 && units <= self.used,
            "release {units} of {}",
            self.used
        );
        self.used -= units;
    }

    /// We give `units` of our allotment away (a grant by the owner, or a
    /// return by a grantee): debited at once, before anyone is told.
    pub fn give(&mut self, units: i64) -> Result<(), InsufficientCapacity> {
        self.check(units)?;
        self.allotted -= units;
        Ok(())
    }

    /// Units someone gave us have arrived.
    pub fn receive(&mut self, units: i64) {
        debug_assert!(units > 0, "units must be positive, got {units}");
        self.allotted += units;
    }

    /// The owner changed the real stock (restock or shrinkage).
    pub fn adjust(&mut self, delta: i64) {
        self.allotted += delta;
    }
}

/// Invariant I1 for one pool: units consumed over all participants are at
/// most the capacity.
pub fn no_oversell(capacity: i64, holdings: impl IntoIterator<Item = Holding>) -> bool {
    holdings.into_iter().map(|h| h.used).sum::<i64>() <= capacity
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_owner_books_against_what_it_holds_and_no_more() {
        let mut owner = Holding::owner_of(10);
        owner.reserve(7).expect("fits");
        assert_eq!(
            owner.reserve(4),
            Err(InsufficientCapacity {
                requested: 4,
                available: 3
            })
        );
        owner.release(2);
        assert_eq!(owner.available(), 5);
    }

    #[test]
    fn a_grant_debits_the_owner_at_once_and_credits_on_receipt() {
        let mut owner = Holding::owner_of(10);
        let mut hub = Holding::default();
        owner.give(5).expect("owner holds 10");
        assert_eq!(owner.available(), 5);
        assert_eq!(hub.available(), 0, "in flight: counted by nobody");
        hub.receive(5);
        hub.reserve(5).expect("hub sells its allotment");
        assert!(hub.reserve(1).is_err());
    }

    #[test]
    fn a_stock_decrease_below_bookings_is_surfaced_as_overbooked() {
        let mut owner = Holding::owner_of(4);
        owner.reserve(4).expect("fits");
        owner.adjust(-2);
        assert!(owner.overbooked());
        assert_eq!(owner.available(), -2);
        assert_eq!(
            owner.reserve(1),
            Err(InsufficientCapacity {
                requested: 1,
                available: 0
            })
        );
    }

    /// One step of a random escrow history among three participants.
    #[derive(Debug, Clone)]
    enum Step {
        Book { who: usize, units: i64 },
        Release { who: usize, units: i64 },
        Give { from: usize, to: usize, units: i64 },
        Deliver { index: usize },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..3usize, 1..5i64).prop_map(|(who, units)| Step::Book { who, units }),
            (0..3usize, 1..5i64).prop_map(|(who, units)| Step::Release { who, units }),
            (0..3usize, 0..3usize, 1..6i64).prop_map(|(from, to, units)| Step::Give {
                from,
                to,
                units
            }),
            (0..8usize).prop_map(|index| Step::Deliver { index }),
        ]
    }

    proptest! {
        /// Whatever order grants and returns arrive in, and whatever is booked
        /// meanwhile, nobody books a unit somebody else holds.
        #[test]
        fn escrow_never_oversells_whatever_the_network_does(
            capacity in 0..30i64,
            steps in proptest::collection::vec(step(), 0..200),
        ) {
            let mut holdings = [Holding::owner_of(capacity), Holding::default(), Holding::default()];
            let mut in_flight: Vec<(usize, i64)> = Vec::new();
            for s in steps {
                match s {
                    Step::Book { who, units } => { let _ = holdings[who].reserve(units); }
                    Step::Release { who, units } => {
                        if units <= holdings[who].used { holdings[who].release(units); }
                    }
                    Step::Give { from, to, units } => {
                        if from != to && holdings[from].give(units).is_ok() {
                            in_flight.push((to, units));
                        }
                    }
                    Step::Deliver { index } => {
                        if !in_flight.is_empty() {
                            let (to, units) = in_flight.remove(index % in_flight.len());
                            holdings[to].receive(units);
                        }
                    }
                }
                prop_assert!(no_oversell(capacity, holdings));
                let held: i64 = holdings.iter().map(|h| h.allotted).sum();
                let flying: i64 = in_flight.iter().map(|&(_, u)| u).sum();
                prop_assert_eq!(held + flying, capacity, "units are conserved");
                prop_assert!(holdings.iter().all(|h| !h.overbooked()));
            }
        }
    }
}
