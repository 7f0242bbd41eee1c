//! What the embedded backend keeps in memory rather than writing for every
//! signed request: the nonces seen within the freshness window, and the
//! latest health readings of each device (written to the database in one
//! transaction a second). A long poll then costs the hub no fsync at all.
//!
//! Replay protection survives a restart without a write per request: a
//! request signed before this process started is refused, so a request
//! captured before the restart cannot be replayed after it, and one
//! captured after it is in memory.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use shared::LocationId;

use super::Seen;

/// Nonces remembered before expired ones are swept out: at most a sweep
/// per this many requests. 10,000 stores polling every 4 s keep about 1.5
/// million nonces alive in a 10-minute window (about 40 MB).
const SWEEP_EVERY_INSERTS: usize = 65_536;

#[derive(Debug)]
pub struct Recent {
    started_at_ms: i64,
    /// A keyed 64-bit digest of (location, nonce) and when it may be
    /// forgotten. Keyed with a random key, so nobody can aim collisions.
    nonces: Mutex<Nonces>,
    hasher: RandomState,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Nonces {
    expiry: HashMap<u64, i64>,
    since_sweep: usize,
}

#[derive(Debug, Default)]
struct Health {
    latest: HashMap<LocationId, Seen>,
    /// When the backlog in `latest` was true: a request's backlog is as of
    /// its signing, a push's result as of the push. A request signed before
    /// a push finished (a long poll that was on its way) does not undo it.
    backlog_as_of: HashMap<LocationId, i64>,
    unwritten: HashSet<LocationId>,
}

impl Recent {
    pub fn new(started_at_ms: i64) -> Self {
        Self {
            started_at_ms,
            nonces: Mutex::default(),
            hasher: RandomState::new(),
            health: Mutex::default(),
        }
    }

    /// Takes a signed request's nonce and the device's readings; `false`
    /// (and nothing taken) for a nonce seen before, or a request signed
    /// before this process started.
    pub fn admit(
        &self,
        location: &LocationId,
        nonce: &str,
        signed_at_ms: i64,
        expires_at_ms: i64,
        seen: Seen,
    ) -> bool {
        if signed_at_ms < self.started_at_ms {
            return false;
        }
        let key = self.hasher.hash_one((location.as_str(), nonce));
        {
            let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
            if nonces.expiry.contains_key(&key) {
                return false;
            }
            nonces.since_sweep += 1;
            if nonces.since_sweep >= SWEEP_EVERY_INSERTS {
                nonces.since_sweep = 0;
                nonces.expiry.retain(|_, at| *at >= seen.at_ms);
            }
            nonces.expiry.insert(key, expires_at_ms);
        }
        self.note(location, signed_at_ms, seen);
        true
    }

    /// Takes the readings of a request signed at `signed_at_ms` whose
    /// nonce was taken elsewhere (a database several processes share).
    pub fn note(&self, location: &LocationId, signed_at_ms: i64, seen: Seen) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let before = health.latest.get(location).copied();
        let newer = health
            .backlog_as_of
            .get(location)
            .is_none_or(|at| signed_at_ms >= *at);
        let reported = seen.backlog_events.filter(|_| newer);
        if reported.is_some() {
            health.backlog_as_of.insert(location.clone(), signed_at_ms);
        }
        let synced_at_ms = match reported {
            Some(0) => Some(seen.at_ms),
            _ => before.and_then(|s| s.synced_at_ms),
        };
        let backlog_events = reported.or_else(|| before.and_then(|s| s.backlog_events));
        health.latest.insert(
            location.clone(),
            Seen {
                backlog_events,
                synced_at_ms,
                ..seen
            },
        );
        health.unwritten.insert(location.clone());
    }

    /// What a push left waiting at the device, as of `at_ms`.
    pub fn pushed(&self, location: &LocationId, remaining: u64, at_ms: i64) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(latest) = health.latest.get_mut(location) {
            latest.backlog_events = Some(remaining);
            if remaining == 0 {
                latest.synced_at_ms = Some(at_ms);
            }
            health.backlog_as_of.insert(location.clone(), at_ms);
            health.unwritten.insert(location.clone());
        }
    }

    /// The latest readings of `location` since this process started.
    pub fn seen(&self, location: &LocationId) -> Option<Seen> {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .latest
            .get(location)
            .copied()
    }

    /// The readings not yet written, to be written now.
    pub fn unwritten(&self) -> Vec<(LocationId, Seen)> {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let ids: Vec<LocationId> = health.unwritten.drain().collect();
        ids.into_iter()
            .filter_map(|id| health.latest.get(&id).copied().map(|s| (id, s)))
            .collect()
    }

    /// Puts readings whose write failed back, unless newer ones came.
    pub fn unwritten_again(&self, readings: Vec<(LocationId, Seen)>) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        for (id, _) in readings {
            health.unwritten.insert(id);
        }
    }

    #[cfg(test)]
    fn nonces_kept(&self) -> usize {
        self.nonces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expiry
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(at_ms: i64, backlog: Option<u64>) -> Seen {
        Seen {
            at_ms,
            clock_offset_ms: 3,
            backlog_events: backlog,
            synced_at_ms: None,
        }
    }

    #[test]
    fn a_nonce_is_taken_once_and_nothing_signed_before_the_start_is_taken() {
        let recent = Recent::new(1_000);
        let s1 = LocationId::parse("s1").expect("id");
        let s2 = LocationId::parse("s2").expect("id");
        assert!(recent.admit(&s1, "aa", 1_000, 9_000, seen(1_000, Some(2))));
        assert!(!recent.admit(&s1, "aa", 1_001, 9_000, seen(1_001, None)));
        assert!(recent.admit(&s2, "aa", 1_001, 9_000, seen(1_001, None)));
        assert!(!recent.admit(&s1, "bb", 999, 9_000, seen(1_002, None)));
        assert_eq!(recent.nonces_kept(), 2);
    }

    #[test]
    fn readings_keep_the_last_backlog_and_when_it_was_last_empty() {
        let recent = Recent::new(0);
        let s1 = LocationId::parse("s1").expect("id");
        assert!(recent.admit(&s1, "a1", 1, 99, seen(10, Some(0))));
        assert!(recent.admit(&s1, "a2", 1, 99, seen(20, Some(4))));
        assert!(recent.admit(&s1, "a3", 1, 99, seen(30, None)));
        let latest = recent.seen(&s1).expect("seen");
        assert_eq!(
            (latest.at_ms, latest.backlog_events, latest.synced_at_ms),
            (30, Some(4), Some(10))
        );
        assert_eq!(recent.unwritten().len(), 1);
        assert!(recent.unwritten().is_empty(), "written once");
        // A push leaves nothing waiting; a long poll signed before it
        // finished, arriving after, does not bring the old backlog back.
        recent.pushed(&s1, 0, 40);
        assert!(recent.admit(&s1, "a4", 35, 99, seen(41, Some(4))));
        assert_eq!(recent.seen(&s1).expect("seen").backlog_events, Some(0));
        assert!(recent.admit(&s1, "a5", 42, 99, seen(42, Some(1))));
        assert_eq!(recent.seen(&s1).expect("seen").backlog_events, Some(1));
    }
}
