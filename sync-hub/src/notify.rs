//! What long polls wait on: the tail of the hub's log as it is committed.
//!
//! The storage backend publishes every hub event it commits, in commit
//! order (SQLite from its writer, under the write lock; a backend of
//! several processes would feed the same from its notifications). A store
//! waiting for its inbox wakes when an event is addressed to it or to
//! everyone. Events addressed to everyone (locations joining, catalog) are
//! kept here for a while, so the thousands of stores that wake for one are
//! answered from memory: the database is read once per event, not once
//! per waiting store.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use shared::LocationId;
use shared::protocol::InboxEvent;
use tokio::sync::watch;

/// Events addressed to everyone kept in memory. A store that fell further
/// behind than this reads them from the database, as it does when it
/// catches up after a restart; 4,096 covers a burst of catalog changes
/// (a month of class slots at once) with room.
pub const TAIL_EVENTS_MAX: usize = 4096;

/// Booking changes buffered for waiting web orders; a waiter that falls
/// further behind re-reads its booking.
pub const DECISIONS_BUFFERED: usize = 1024;

/// Who a hub event is addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    Location(LocationId),
    Everyone,
}

/// One committed hub event, as the backend publishes it. The event itself
/// is carried for events addressed to everyone (they are kept in the tail).
#[derive(Debug, Clone)]
pub struct Published {
    pub seq: u64,
    pub to: Recipient,
    pub event: Option<InboxEvent>,
}

#[derive(Debug)]
struct Tail {
    /// Every event addressed to everyone with a seq above this is in
    /// `events`; what is at or below it must be read from the database.
    floor: u64,
    events: VecDeque<InboxEvent>,
}

#[derive(Debug)]
pub struct Inboxes {
    /// Per location: the last seq addressed to it, published while someone
    /// was listening. Entries are made by the first poll of a location, so
    /// there is one per store that polls, and no more.
    personal: Mutex<HashMap<LocationId, watch::Sender<u64>>>,
    /// The last seq addressed to everyone.
    everyone: watch::Sender<u64>,
    tail: Mutex<Tail>,
}

impl Inboxes {
    /// Nothing published yet above `head`, the hub's log as it stands.
    pub fn new(head: u64) -> Self {
        Self {
            personal: Mutex::default(),
            everyone: watch::channel(head).0,
            tail: Mutex::new(Tail {
                floor: head,
                events: VecDeque::new(),
            }),
        }
    }

    /// Follows what is addressed to `location` and to everyone. Subscribe
    /// before reading the inbox, so nothing appended in between is missed.
    pub fn subscribe(&self, location: &LocationId) -> (watch::Receiver<u64>, watch::Receiver<u64>) {
        let mut personal = self.personal.lock().unwrap_or_else(|p| p.into_inner());
        let mine = personal
            .entry(location.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        (mine, self.everyone.subscribe())
    }

    /// Takes in committed hub events, in commit order.
    pub fn publish(&self, events: Vec<Published>) {
        if events.is_empty() {
            return;
        }
        let mut everyone_at = None;
        {
            // Personal marks go up before the tail shows anything later,
            // so a store answered from the tail never skips one of its own.
            let personal = self.personal.lock().unwrap_or_else(|p| p.into_inner());
            for published in &events {
                if let Recipient::Location(location) = &published.to
                    && let Some(sender) = personal.get(location)
                {
                    sender.send_replace(published.seq);
                }
            }
        }
        {
            let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            for published in events {
                if let (Recipient::Everyone, Some(event)) = (published.to, published.event) {
                    everyone_at = Some(published.seq);
                    tail.events.push_back(event);
                    if tail.events.len() > TAIL_EVENTS_MAX
                        && let Some(oldest) = tail.events.pop_front()
                    {
                        tail.floor = oldest.hub_seq;
                    }
                }
            }
        }
        if let Some(seq) = everyone_at {
            self.everyone.send_replace(seq);
        }
    }

    /// The inbox of `location` after `after`, from memory, when memory has
    /// all of it: nothing addressed to the location itself since, and
    /// `after` within the kept tail. `None` means: read the database.
    pub fn from_tail(
        &self,
        location: &LocationId,
        after: u64,
        limit: usize,
    ) -> Option<Vec<InboxEvent>> {
        let own = self
            .personal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(location)
            .map_or(0, |s| *s.borrow());
        if own > after {
            return None;
        }
        let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if after < tail.floor {
            return None;
        }
        Some(
            tail.events
                .iter()
                .filter(|e| e.hub_seq > after)
                .take(limit)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::event::ChainHead;
    use shared::{Event, EventBody, ParticipantId};

    fn joined(seq: u64) -> InboxEvent {
        let mut event = Event::next(
            ChainHead::EMPTY,
            ParticipantId::Hub,
            0,
            0,
            EventBody::LocationJoined {
                location: LocationId::parse("s9").expect("id"),
                name: "S9".into(),
            },
        );
        event.seq = seq;
        InboxEvent {
            hub_seq: seq,
            event,
        }
    }

    fn everyone(seq: u64) -> Published {
        Published {
            seq,
            to: Recipient::Everyone,
            event: Some(joined(seq)),
        }
    }

    #[test]
    fn a_store_is_answered_from_memory_only_when_memory_holds_all_it_needs() {
        let s1 = LocationId::parse("s1").expect("id");
        let inboxes = Inboxes::new(10);
        let (mine, all) = inboxes.subscribe(&s1);
        assert_eq!(inboxes.from_tail(&s1, 10, 100).map(|e| e.len()), Some(0));
        assert_eq!(inboxes.from_tail(&s1, 9, 100), None, "below the floor");
        inboxes.publish(vec![everyone(11), everyone(12)]);
        assert!(all.has_changed().expect("open"));
        let seqs = |events: Option<Vec<InboxEvent>>| {
            events.map(|e| e.iter().map(|e| e.hub_seq).collect::<Vec<_>>())
        };
        assert_eq!(seqs(inboxes.from_tail(&s1, 10, 100)), Some(vec![11, 12]));
        assert_eq!(seqs(inboxes.from_tail(&s1, 11, 1)), Some(vec![12]));
        // Something addressed to s1 itself: the database has it.
        inboxes.publish(vec![
            Published {
                seq: 13,
                to: Recipient::Location(s1.clone()),
                event: None,
            },
            everyone(14),
        ]);
        assert!(mine.has_changed().expect("open"));
        assert_eq!(inboxes.from_tail(&s1, 12, 100), None);
        assert_eq!(seqs(inboxes.from_tail(&s1, 13, 100)), Some(vec![14]));
        // Another store is not held back by s1's own events.
        let s2 = LocationId::parse("s2").expect("id");
        assert_eq!(seqs(inboxes.from_tail(&s2, 12, 100)), Some(vec![14]));
    }

    #[test]
    fn the_tail_forgets_its_oldest_events_and_says_so() {
        let s1 = LocationId::parse("s1").expect("id");
        let inboxes = Inboxes::new(0);
        let _ = inboxes.subscribe(&s1);
        inboxes.publish((1..=TAIL_EVENTS_MAX as u64 + 2).map(everyone).collect());
        assert_eq!(inboxes.from_tail(&s1, 1, 10), None);
        assert_eq!(
            inboxes
                .from_tail(&s1, 2, 10)
                .and_then(|e| e.first().map(|e| e.hub_seq)),
            Some(3)
        );
    }
}
