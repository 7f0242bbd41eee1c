//! Alerts: when the fleet's state needs an operator. The rules are pure
//! functions over one read of the fleet ([`evaluate`]) and over the alerts
//! already open ([`diff`]); a backend records the difference in one
//! transaction, so among several hub processes exactly one raises (and
//! one clears) each alert, and its webhook goes out once.

use serde::{Deserialize, Serialize};

/// When the fleet's state becomes an alert (`[alerts]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// A store unreachable for longer than this raises `store_unreachable`.
    pub unreachable_for_ms: i64,
    /// A store with more events than this waiting to reach the hub raises
    /// `backlog_growing`.
    pub backlog_events: u64,
    /// A webhook delivery failing this many times in a row raises
    /// `webhook_failing`.
    pub webhook_attempts: u32,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            unreachable_for_ms: 60_000,
            backlog_events: 1_000,
            webhook_attempts: 3,
        }
    }
}

use crate::HubSettings;
use crate::fleet::{Alert, FleetRead, LocationHealth, OpenAlert};
use crate::working::DeviceStatus;

/// What one recording changed: the alerts raised and those cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub raised: Vec<Alert>,
    pub cleared: Vec<OpenAlert>,
}

/// How often the hub looks at its fleet for alerts and for the dashboard:
/// often enough that an operator sees a store go within seconds, rarely
/// enough that the read costs nothing next to the sync traffic.
pub const CHECK_EVERY_MS: u64 = 1_000;

/// Pools (and the like) listed by name at most; beyond it the dashboard
/// shows the count the list stopped at, so one bad day cannot make the
/// fleet read unbounded.
pub const LISTED_MAX: usize = 100;

/// A session's last use is written at most this often, so a dashboard
/// open all day costs one write a minute, not one per request.
pub const SESSION_TOUCH_EVERY_MS: i64 = 60_000;

/// Where a location stands for the dashboard and the metrics.
pub fn location_state(
    location: &LocationHealth,
    settings: &HubSettings,
    now_ms: i64,
) -> &'static str {
    match (location.status, &location.last_seen_at) {
        (DeviceStatus::Quarantined, _) => "quarantined",
        (_, None) => "never_seen",
        (_, Some(at)) if now_ms - at.as_millisecond() <= settings.unreachable_after_ms => {
            "connected"
        }
        _ => "unreachable",
    }
}

/// The conditions that need an operator now, one per kind and subject.
/// A store's silence counts from `watching_since_ms` at the earliest (the
/// hub's own start), so a restarted hub does not call every store gone
/// before they had the time to reconnect.
pub fn evaluate(
    fleet: &FleetRead,
    settings: &HubSettings,
    watching_since_ms: i64,
    now_ms: i64,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let mut raise = |kind: &str, subject: &str, message: String| {
        alerts.push(Alert::new(kind, subject, message))
    };
    // Stores silent since before this process watched, not yet for long
    // enough by its own count: another process, watching longer, may have
    // raised their alert, and this one must not clear it.
    let mut undecided = Vec::new();
    for location in &fleet.locations {
        let id = location.id.as_str();
        if location.status == DeviceStatus::Quarantined {
            raise(
                "fork",
                id,
                format!(
                    "{} was restored from an old copy and forked its log: run `edge-node reset` \
                     there and review what it set aside",
                    location.name
                ),
            );
            continue;
        }
        // An old copy of the store's device is still trying to sync: it
        // takes bookings nobody will ever see. Cleared once it has been
        // quiet for as long as a silent store takes to be called gone.
        if let Some(fenced) = location.fenced_at
            && now_ms - fenced.as_millisecond() <= settings.alerts.unreachable_for_ms
        {
            raise(
                "fenced",
                id,
                format!(
                    "an old copy of {} (replaced, or from before a reset) is still trying to \
                     sync and is refused: find that PC and switch it off",
                    location.name
                ),
            );
        }
        let Some(seen) = location.last_seen_at else {
            continue;
        };
        let silent_ms = now_ms - seen.as_millisecond().max(watching_since_ms);
        if silent_ms > settings.alerts.unreachable_for_ms {
            raise(
                "store_unreachable",
                id,
                format!(
                    "{} has not been heard from for {} s",
                    location.name,
                    silent_ms / 1000
                ),
            );
            // A silent store's other readings are as old as its silence.
            continue;
        }
        if now_ms - seen.as_millisecond() > settings.alerts.unreachable_for_ms {
            undecided.push(Alert {
                undecided: true,
                ..Alert::new(
                    "store_unreachable",
                    id,
                    format!(
                        "{} has not been heard from for {} s",
                        location.name,
                        (now_ms - seen.as_millisecond()) / 1000
                    ),
                )
            });
            continue;
        }
        if let Some(offset) = location.clock_offset_ms
            && offset.abs() > settings.skew_margin_ms / 2
        {
            raise(
                "clock_skew",
                id,
                format!(
                    "the clock of {} is {} ms off the hub's (more than half the {} ms margin)",
                    location.name, offset, settings.skew_margin_ms
                ),
            );
        }
        if let Some(backlog) = location.backlog_events
            && backlog > settings.alerts.backlog_events
        {
            raise(
                "backlog_growing",
                id,
                format!(
                    "{} has {backlog} events waiting to reach the hub (more than {})",
                    location.name, settings.alerts.backlog_events
                ),
            );
        }
        if location.set_aside_events > 0 {
            raise(
                "events_set_aside",
                id,
                format!(
                    "{} set aside {} events it could not apply: review them there",
                    location.name, location.set_aside_events
                ),
            );
        }
    }
    for pool in &fleet.overbooked_pools {
        raise(
            "pool_overbooked",
            &pool.id,
            format!(
                "pool {} of {} has {} units booked of {}",
                pool.id, pool.owner, pool.used, pool.capacity
            ),
        );
    }
    for hook in &fleet.failing_webhooks {
        if hook.attempts >= settings.alerts.webhook_attempts {
            raise(
                "webhook_failing",
                &hook.id.to_string(),
                format!(
                    "webhook {} failed {} times in a row ({} messages waiting){}",
                    hook.url,
                    hook.attempts,
                    hook.pending,
                    hook.last_error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
            );
        }
    }
    alerts.extend(undecided);
    alerts
}

/// What to raise (conditions with no open alert, unless undecided) and what
/// to clear (open alerts whose condition is gone). An alert already open
/// stays as it is, even when its message changed (the seconds of silence
/// grow).
pub fn diff(open: &[OpenAlert], current: &[Alert]) -> Changes {
    let open_keys: std::collections::HashSet<&str> = open.iter().map(|a| a.key.as_str()).collect();
    let current_keys: std::collections::HashSet<&str> =
        current.iter().map(|a| a.key.as_str()).collect();
    Changes {
        raised: current
            .iter()
            .filter(|a| !a.undecided && !open_keys.contains(a.key.as_str()))
            .cloned()
            .collect(),
        cleared: open
            .iter()
            .filter(|a| !current_keys.contains(a.key.as_str()))
            .cloned()
            .collect(),
    }
}

/// The webhook message of an alert raised (`alert.raised`) or cleared
/// (`alert.cleared`).
pub fn payload(event_id: &str, raised: bool, alert: &OpenAlert, now_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "event_id": event_id,
        "type": if raised { "alert.raised" } else { "alert.cleared" },
        "at": crate::working::timestamp(now_ms),
        "alert": {
            "key": alert.key,
            "kind": alert.kind,
            "subject": alert.subject,
            "message": alert.message,
            "raised_at": crate::working::timestamp(alert.raised_at_ms),
        },
    })
}

impl Alert {
    /// The alert of `kind` about `subject`, keyed `kind:subject`.
    pub fn new(kind: &str, subject: &str, message: String) -> Self {
        Self {
            key: format!("{kind}:{subject}"),
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            message,
            undecided: false,
        }
    }

    /// The alert as it is once raised at `now_ms`.
    pub fn opened(&self, now_ms: i64) -> OpenAlert {
        OpenAlert {
            key: self.key.clone(),
            kind: self.kind.clone(),
            subject: self.subject.clone(),
            message: self.message.clone(),
            raised_at_ms: now_ms,
        }
    }
}

/// Totals for the metrics and the dashboard's header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub by_state: Vec<(&'static str, u64)>,
    pub backlog_events: u64,
    pub clock_offset_max_ms: i64,
}

pub fn summarize(fleet: &FleetRead, settings: &HubSettings, now_ms: i64) -> Summary {
    let mut by_state: Vec<(&'static str, u64)> =
        ["connected", "unreachable", "never_seen", "quarantined"]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
    let mut summary = Summary::default();
    for location in &fleet.locations {
        let state = location_state(location, settings, now_ms);
        if let Some(entry) = by_state.iter_mut().find(|(s, _)| *s == state) {
            entry.1 += 1;
        }
        summary.backlog_events += location.backlog_events.unwrap_or(0);
        if let Some(offset) = location.clock_offset_ms {
            summary.clock_offset_max_ms = summary.clock_offset_max_ms.max(offset.abs());
        }
    }
    summary.by_state = by_state;
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{FailingWebhook, OverbookedPool};

    fn store(id: &str, seen_ms_ago: Option<i64>, now: i64) -> LocationHealth {
        LocationHealth {
            id: LocationId::parse(id).unwrap(),
            name: id.to_uppercase(),
            timezone: "UTC".into(),
            status: DeviceStatus::Active,
            epoch: 1,
            head_seq: 10,
            last_seen_at: seen_ms_ago.map(|ago| crate::working::timestamp(now - ago)),
            backlog_events: Some(0),
            clock_offset_ms: Some(0),
            set_aside_events: 0,
            fenced_at: None,
        }
    }

    use shared::LocationId;

    #[test]
    fn each_condition_raises_one_alert_and_a_silent_store_only_its_silence() {
        let now = 10_000_000;
        let settings = HubSettings::default();
        let mut skewed = store("skewed", Some(100), now);
        skewed.clock_offset_ms = Some(settings.skew_margin_ms);
        let mut behind = store("behind", Some(100), now);
        behind.backlog_events = Some(settings.alerts.backlog_events + 1);
        let mut gone = store("gone", Some(settings.alerts.unreachable_for_ms + 1), now);
        gone.clock_offset_ms = Some(settings.skew_margin_ms);
        let mut forked = store("forked", Some(100), now);
        forked.status = DeviceStatus::Quarantined;
        let mut fenced = store("fenced", Some(100), now);
        fenced.fenced_at = Some(crate::working::timestamp(now - 1000));
        let mut long_fenced = store("long-fenced", Some(100), now);
        long_fenced.fenced_at = Some(crate::working::timestamp(
            now - settings.alerts.unreachable_for_ms - 1,
        ));
        let fleet = FleetRead {
            locations: vec![
                store("fine", Some(100), now),
                store("new", None, now),
                skewed,
                behind,
                gone,
                forked,
                fenced,
                long_fenced,
            ],
            overbooked_pools: vec![OverbookedPool {
                id: "p1".into(),
                owner: "loc:fine".into(),
                capacity: 2,
                used: 3,
            }],
            failing_webhooks: vec![
                FailingWebhook {
                    id: 7,
                    url: "http://x".into(),
                    attempts: settings.alerts.webhook_attempts,
                    last_error: Some("503".into()),
                    pending: 2,
                },
                FailingWebhook {
                    id: 8,
                    url: "http://y".into(),
                    attempts: settings.alerts.webhook_attempts - 1,
                    last_error: None,
                    pending: 1,
                },
            ],
            ..FleetRead::default()
        };
        let keys: Vec<String> = evaluate(&fleet, &settings, 0, now)
            .into_iter()
            .map(|a| a.key)
            .collect();
        assert_eq!(
            keys,
            [
                "clock_skew:skewed",
                "backlog_growing:behind",
                "store_unreachable:gone",
                "fork:forked",
                "fenced:fenced",
                "pool_overbooked:p1",
                "webhook_failing:7"
            ]
        );
    }

    #[test]
    fn silence_counts_from_the_hubs_start_at_the_earliest() {
        let now = 10_000_000;
        let settings = HubSettings::default();
        let gone = store("gone", Some(settings.alerts.unreachable_for_ms + 1), now);
        let fleet = FleetRead {
            locations: vec![gone],
            ..FleetRead::default()
        };
        let decided = evaluate(&fleet, &settings, 0, now);
        assert_eq!(decided.len(), 1);
        assert!(!decided[0].undecided);
        // A process that started watching a second ago cannot tell yet: it
        // raises nothing, and keeps open what a process watching for longer
        // raised (several processes share one database).
        let young = evaluate(&fleet, &settings, now - 1000, now);
        assert_eq!(young.len(), 1);
        assert!(young[0].undecided);
        assert_eq!(diff(&[], &young), Changes::default());
        let open = decided[0].opened(now - 1);
        assert_eq!(
            diff(std::slice::from_ref(&open), &young),
            Changes::default()
        );
        assert_eq!(diff(std::slice::from_ref(&open), &[]).cleared, vec![open]);
    }

    #[test]
    fn diff_raises_the_new_clears_the_healed_and_keeps_the_rest() {
        let alert = |k: &str| Alert {
            key: k.into(),
            kind: "k".into(),
            subject: "s".into(),
            message: "now".into(),
            undecided: false,
        };
        let open = |k: &str| OpenAlert {
            key: k.into(),
            kind: "k".into(),
            subject: "s".into(),
            message: "then".into(),
            raised_at_ms: 1,
        };
        let changes = diff(&[open("a"), open("b")], &[alert("b"), alert("c")]);
        assert_eq!(changes.raised, vec![alert("c")]);
        assert_eq!(changes.cleared, vec![open("a")]);
        assert_eq!(diff(&[open("a")], &[alert("a")]), Changes::default());
    }
}
