//! Expires pending holds at their `expires_at`, gives up on our requests
//! the owner did not decide in time, and purges old idempotency records. Sleeps until the next expiry (woken early when a new hold is
//! placed) and never longer than [`IDLE_WAKE`], so a hold is expired well
//! within a second of its time even if a wake-up were missed.

use std::future::Future;
use std::time::Duration;

use crate::store::{Store, StoreResult, ops, queries};

/// Longest sleep between two looks at the next expiry.
const IDLE_WAKE: Duration = Duration::from_millis(500);

/// How often idempotency records past their retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Back-off after a failed sweep, so a broken disk is not hammered.
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub async fn run(store: Store, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let holds_changed = store.holds_changed();
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        let wait = match sweep(&store, &mut last_purge).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::error!(error = %e, "hold sweep failed");
                RETRY_AFTER
            }
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = holds_changed.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Expires what is due and returns how long to sleep.
async fn sweep(
    store: &Store,
    last_purge: &mut Option<tokio::time::Instant>,
) -> StoreResult<Duration> {
    loop {
        let margin = store.settings().skew_margin_ms;
        let expired = store.write(move |ctx| ops::expire_due(ctx, margin)).await?;
        if expired > 0 {
            tracing::info!(expired, "expired pending holds and unanswered requests");
        }
        if expired < ops::EXPIRE_BATCH_MAX {
            break;
        }
    }
    if last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
        let purged = store.write(ops::purge_idempotency_keys).await?;
        if purged > 0 {
            tracing::info!(purged, "forgot idempotency keys past retention");
        }
        *last_purge = Some(tokio::time::Instant::now());
    }
    let me = store.node().participant();
    let margin = store.settings().skew_margin_ms;
    let next = store
        .read(move |conn| queries::next_expiry_ms(conn, &me, margin))
        .await?;
    let wait = match next {
        Some(at) => Duration::from_millis(u64::try_from(at - store.now_ms()).unwrap_or(0)),
        None => IDLE_WAKE,
    };
    Ok(wait.min(IDLE_WAKE))
}
