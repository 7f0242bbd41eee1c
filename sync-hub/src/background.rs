//! What the hub does on its own: expiring its requests and holds on time,
//! and delivering webhooks until they are taken.

use std::time::Duration;

use ring::hmac;
use tokio::sync::watch;

use crate::alerts;
use crate::api::AppState;
use crate::fleet::Snapshot;

/// How often the hub looks for requests and holds to expire: well within
/// the skew margin, and cheap (one indexed query).
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// How often the webhook outbox is looked at when idle.
const WEBHOOK_POLL: Duration = Duration::from_millis(200);

/// Deliveries attempted per round.
const WEBHOOK_BATCH: usize = 50;

/// A receiver gets this long to answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a claimed delivery is left to the process that claimed it:
/// longer than an attempt can take, so each attempt happens once; if the
/// process dies mid-attempt, another tries again after it.
const WEBHOOK_LEASE_MS: i64 = 3 * WEBHOOK_TIMEOUT.as_millis() as i64;

/// Longest wait between two attempts at one delivery.
const WEBHOOK_BACKOFF_MAX_MS: i64 = 60_000;

async fn pause(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

pub async fn sweep(state: AppState, mut stop: watch::Receiver<bool>) {
    while pause(&mut stop, SWEEP_EVERY).await {
        match state
            .storage
            .expire_due(state.settings.skew_margin_ms, state.now_ms())
            .await
        {
            Ok(changed) => {
                if !changed.is_empty() {
                    tracing::info!(
                        expired = changed.len(),
                        "expired the hub's requests and holds"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "hub expiry sweep failed"),
        }
    }
}

/// The signature a receiver checks: HMAC-SHA256 over `timestamp.body`.
pub fn webhook_signature(secret: &str, timestamp_ms: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("{timestamp_ms}.{body}").as_bytes());
    format!("sha256={}", hex::encode(tag.as_ref()))
}

pub async fn deliver_webhooks(state: AppState, mut stop: watch::Receiver<bool>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .build()
        .unwrap_or_default();
    loop {
        let due = match state
            .storage
            .claim_deliveries(state.now_ms(), WEBHOOK_LEASE_MS, WEBHOOK_BATCH)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the webhook outbox");
                Vec::new()
            }
        };
        if due.is_empty() && !pause(&mut stop, WEBHOOK_POLL).await {
            return;
        }
        for delivery in due {
            if *stop.borrow() {
                return;
            }
            let now = state.now_ms();
            let result = http
                .post(&delivery.url)
                .header("content-type", "application/json")
                .header("x-event-id", &delivery.event_id)
                .header("x-timestamp", now.to_string())
                .header(
                    "x-signature",
                    webhook_signature(&delivery.secret, now, &delivery.payload),
                )
                .body(delivery.payload.clone())
                .send()
                .await;
            let outcome = match result {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("answered {}", response.status())),
                Err(e) => Err(e.to_string()),
            };
            metrics::counter!(
                crate::metrics::WEBHOOK_DELIVERIES,
                "outcome" => if outcome.is_ok() { "delivered" } else { "failed" }
            )
            .increment(1);
            let recorded = match outcome {
                Ok(()) => {
                    state
                        .storage
                        .delivery_done(delivery.id, state.now_ms())
                        .await
                }
                Err(error) => {
                    let backoff =
                        (500_i64 << delivery.attempts.min(10)).min(WEBHOOK_BACKOFF_MAX_MS);
                    tracing::warn!(url = %delivery.url, attempts = delivery.attempts + 1, %error, "webhook delivery failed");
                    state
                        .storage
                        .delivery_failed(delivery.id, &error, state.now_ms() + backoff)
                        .await
                }
            };
            if let Err(e) = recorded {
                tracing::error!(error = %e, "cannot record a webhook delivery");
            }
        }
    }
}

/// Looks at the fleet every [`alerts::CHECK_EVERY_MS`]: raises and clears
/// alerts (their webhooks queued in the same transaction) and publishes the
/// read for the dashboard.
pub async fn watch_fleet(state: AppState, mut stop: watch::Receiver<bool>) {
    // A store is not called silent for the time this hub itself was down:
    // silence counts from the later of its last word and our start.
    let watching_since = state.now_ms();
    while pause(&mut stop, Duration::from_millis(alerts::CHECK_EVERY_MS)).await {
        let now = state.now_ms();
        let mut read = match state.storage.fleet(now).await {
            Ok(read) => read,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the fleet");
                continue;
            }
        };
        let current = alerts::evaluate(&read, &state.settings, watching_since, now);
        match state.storage.record_alerts(current, now).await {
            Ok(changes) => {
                for alert in &changes.raised {
                    tracing::warn!(alert = %alert.key, "alert raised: {}", alert.message);
                }
                for alert in &changes.cleared {
                    tracing::info!(alert = %alert.key, "alert cleared: {}", alert.message);
                }
                read.open_alerts
                    .retain(|open| !changes.cleared.iter().any(|c| c.key == open.key));
                read.open_alerts
                    .extend(changes.raised.iter().map(|a| a.opened(now)));
            }
            Err(e) => tracing::error!(error = %e, "cannot record alerts"),
        }
        state
            .fleet
            .send_replace(Some(std::sync::Arc::new(Snapshot { read, at_ms: now })));
    }
}
