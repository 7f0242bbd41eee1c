//! Wakes long polls when something is appended to a location's inbox.
//!
//! One process holds all waiters of its own long polls; a hub running as
//! several processes on PostgreSQL would feed this from LISTEN/NOTIFY.

use std::collections::HashMap;
use std::sync::Mutex;

use shared::LocationId;
use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct Inboxes {
    channels: Mutex<HashMap<LocationId, watch::Sender<u64>>>,
}

impl Inboxes {
    /// Follows `location`'s inbox; subscribe before reading it so nothing
    /// appended in between is missed.
    pub fn subscribe(&self, location: &LocationId) -> watch::Receiver<u64> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .entry(location.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub fn notify(&self, location: &LocationId) {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = channels.get(location) {
            sender.send_modify(|n| *n += 1);
        }
    }
}
