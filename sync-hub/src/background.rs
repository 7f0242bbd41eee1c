//! What the hub does on its own: expiring its requests and holds on time,
//! and delivering webhooks until they are taken.

use std::time::Duration;

use ring::hmac;
use tokio::sync::watch;

use crate::api::AppState;

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
