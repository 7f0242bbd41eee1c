//! The background sync of an enrolled node: a pusher that replays our log
//! after the hub's acknowledged head, and a puller that long-polls our
//! inbox. Neither ever sits in a user's write path: they read on read
//! connections and write through the same group commit as everyone else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use shared::limits::{LONG_POLL_MAX_MS, PUSH_BATCH_BYTES_MAX, PUSH_BATCH_EVENTS_MAX};
use shared::protocol::{HeadResponse, PullResponse, PushRequest, PushResponse};
use shared::signing;
use tokio::sync::watch;

use super::client::{Exchange, HubClient, HubError, REQUEST_TIMEOUT};
use crate::store::ops::{self, SyncUpdate};
use crate::store::{Store, StoreResult, queries};

/// First retry delay after a failure; doubles up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest wait between two attempts while the hub is unreachable: short
/// enough that a store catches up within seconds of the hub's return (the
/// first loop through also wakes the other), long enough that even a
/// thousand stores retrying cost the hub a few hundred requests a second.
const BACKOFF_MAX: Duration = Duration::from_secs(3);
/// Longest wait before asking again when the hub's host refused the
/// connection (nothing listens: the hub is restarting). A refused connection
/// costs the hub's kernel a reset and the hub process nothing, so stores ask
/// at this pace however long the outage, and replay within a moment of the
/// hub's return instead of sitting out a backoff.
const DOWN_RETRY_MAX: Duration = Duration::from_millis(400);
/// How often a refused device asks again whether it was let back in.
const REFUSED_RETRY: Duration = Duration::from_secs(30);

/// A wait between half and all of `ceiling`, at random, so that stores
/// that lost the hub together do not come back together.
fn jittered(ceiling: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    let fraction = u64::from_le_bytes(bytes) as f64 / u64::MAX as f64;
    ceiling.mul_f64(0.5 + fraction / 2.0)
}

/// Exponential backoff with jitter, so a hub coming back is not hit by
/// every store at the same instant.
#[derive(Debug, Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let ceiling = BACKOFF_BASE
            .saturating_mul(1 << self.attempt.min(16))
            .min(BACKOFF_MAX);
        self.attempt = self.attempt.saturating_add(1);
        jittered(ceiling)
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A batch ready to send: the events after `after`, signed and encoded.
#[derive(Debug)]
struct Prepared {
    after: u64,
    last_sent: u64,
    /// Events not yet acknowledged when the batch was read, for the hub's
    /// dashboard.
    backlog: u64,
    body: Vec<u8>,
}

/// Waits for a recording in flight to commit.
async fn settle(recording: &mut Option<tokio::task::JoinHandle<()>>) {
    if let Some(handle) = recording.take() {
        let _ = handle.await;
    }
}

/// What both loops know about the link, summed up as one state.
#[derive(Debug, Default)]
struct Health {
    push_error: Option<String>,
    pull_error: Option<String>,
    unreachable: bool,
}

impl Health {
    fn state(&self) -> &'static str {
        if self.push_error.is_some() || self.pull_error.is_some() {
            "error"
        } else if self.unreachable {
            "offline"
        } else {
            "online"
        }
    }

    fn error(&self) -> Option<String> {
        self.push_error.clone().or_else(|| self.pull_error.clone())
    }
}

#[derive(Debug, Clone)]
struct Sync {
    store: Store,
    client: HubClient,
    health: Arc<Mutex<Health>>,
    stop: watch::Receiver<bool>,
    /// Signalled when an exchange succeeds after the hub was unreachable,
    /// so the other loop stops backing off.
    hub_back: Arc<tokio::sync::Notify>,
}

impl Sync {
    /// Changes the link's health and says what to record of it.
    fn health_update(&self, update: impl FnOnce(&mut Health) -> SyncUpdate) -> SyncUpdate {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let mut update = update(&mut health);
        update.state = Some(health.state());
        update.error = Some(health.error());
        update
    }

    async fn record(&self, update: impl FnOnce(&mut Health) -> SyncUpdate) -> StoreResult<()> {
        let update = self.health_update(update);
        self.store
            .write(move |ctx| ops::record_sync(ctx, update))
            .await
    }

    /// Sleeps for `wait`, or until the hub is back, or less if asked to
    /// stop; `false` when stopping.
    async fn pause(&mut self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = self.hub_back.notified() => true,
            _ = self.stop.wait_for(|stop| *stop) => false,
        }
    }

    /// Notes a successful exchange; wakes the other loop if the hub had
    /// been unreachable.
    fn reached(&self, health: &mut Health) {
        if health.unreachable {
            self.hub_back.notify_waiters();
        }
        health.unreachable = false;
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Records a failed exchange and waits before the next attempt: with
    /// backoff while the hub is unreachable, longer after a refusal, but a
    /// pusher also tries again as soon as there is something new to show
    /// (a refused, forked node's new events are how the hub learns of it).
    async fn failed(
        &mut self,
        error: &HubError,
        head: Option<&mut watch::Receiver<u64>>,
        backoff: &mut Backoff,
    ) -> bool {
        let pushing = head.is_some();
        let message = error.to_string();
        let unreachable = error.unreachable();
        tracing::warn!(error = %message, pushing, "sync exchange failed");
        let _ = self
            .record(|h| {
                h.unreachable = unreachable;
                if !unreachable {
                    if pushing {
                        h.push_error = Some(message);
                    } else {
                        h.pull_error = Some(message);
                    }
                }
                SyncUpdate::default()
            })
            .await;
        // A refusal of what we sent (our log forked, or the hub finds an
        // event of ours unacceptable) does not heal by sending it again a
        // moment later: ask again at a slow pace.
        let refused = matches!(
            error.code(),
            Some("fork" | "fenced" | "quarantined" | "forbidden" | "invalid_event")
        );
        if let (true, Some(code)) = (refused, error.code()) {
            metrics::counter!(crate::metrics::SYNC_REFUSALS, "code" => code.to_owned())
                .increment(1);
        }
        let wait = if refused {
            REFUSED_RETRY
        } else if matches!(error, HubError::Down(_)) {
            backoff.next().min(jittered(DOWN_RETRY_MAX))
        } else {
            backoff.next()
        };
        match head {
            // The pusher's own receiver: any commit since it last looked
            // ends the wait at once.
            Some(head) => tokio::select! {
                keep_going = self.pause(wait) => keep_going,
                _ = head.changed() => true,
            },
            None => self.pause(wait).await,
        }
    }

    /// Reads, signs and encodes the events after `acked` (one bounded
    /// batch); `None` when there are none.
    async fn prepare(&self, acked: u64, backlog: u64) -> Result<Option<Prepared>, HubError> {
        let me = self.store.node().participant();
        let origin = me.clone();
        let batch = self
            .store
            .read(move |c| {
                queries::events_after(
                    c,
                    &origin,
                    acked,
                    PUSH_BATCH_EVENTS_MAX,
                    PUSH_BATCH_BYTES_MAX,
                )
            })
            .await
            .map_err(|e| HubError::Protocol(e.to_string()))?;
        let Some(last) = batch.last() else {
            return Ok(None);
        };
        let last_sent = last.seq;
        let head_signature = self.client.key().sign_b64(&signing::head_message(
            me.as_str(),
            last.epoch,
            last.seq,
            &last.hash(),
        ));
        let request = PushRequest {
            origin: me,
            events: batch,
            head_signature,
        };
        let body = serde_json::to_vec(&request).map_err(|e| HubError::Protocol(e.to_string()))?;
        Ok(Some(Prepared {
            after: acked,
            last_sent,
            backlog,
            body,
        }))
    }

    /// Sends a prepared batch; the hub's answer.
    async fn send(&self, batch: Prepared) -> Result<Exchange<PushResponse>, HubError> {
        let path = format!("/v1/sync/push?backlog={}", batch.backlog);
        let started = std::time::Instant::now();
        let answer = self
            .client
            .call::<PushResponse>(Method::POST, &path, Some(batch.body), REQUEST_TIMEOUT)
            .await;
        metrics::histogram!(crate::metrics::PUSH_DURATION).record(started.elapsed().as_secs_f64());
        answer
    }

    /// Pushes the events after `acked` (one bounded batch); the answer and
    /// the last seq sent.
    async fn push_from(
        &self,
        acked: u64,
        backlog: u64,
    ) -> Result<Option<(Exchange<PushResponse>, u64)>, HubError> {
        let Some(batch) = self.prepare(acked, backlog).await? else {
            return Ok(None);
        };
        let last_sent = batch.last_sent;
        self.send(batch)
            .await
            .map(|exchange| Some((exchange, last_sent)))
    }

    /// Finds where the hub's copy of our log ends and checks it is ours.
    async fn reconcile(&self) -> Result<(), HubError> {
        let exchange = self
            .client
            .call::<HeadResponse>(Method::GET, "/v1/sync/head", None, REQUEST_TIMEOUT)
            .await?;
        let hub = exchange.value;
        if hub.status == "quarantined" {
            return Err(HubError::Refused {
                status: 409,
                code: "quarantined".into(),
                message: "the hub quarantined this device after a fork; run `edge-node reset`"
                    .into(),
                expected_seq: None,
            });
        }
        let local_head = *self.store.head_seq().borrow();
        let seq = hub.head.seq;
        if seq > local_head {
            // We are behind what the hub holds of us: restored from a backup.
            // Show the hub what we wrote since our last acknowledged event,
            // so a divergent one is judged (and we are quarantined) there too.
            let acked = self
                .store
                .read(queries::sync_row)
                .await
                .map_err(|e| HubError::Protocol(e.to_string()))?
                .acked_seq;
            if local_head > acked {
                self.push_from(acked, local_head - acked).await?;
            }
            return Err(HubError::Refused {
                status: 409,
                code: "fork".into(),
                message: format!(
                    "the hub holds {seq} events of this location but this node only {local_head}: \
                     it was restored from an old backup; run `edge-node reset`"
                ),
                expected_seq: None,
            });
        }
        if seq > 0 {
            let local = self
                .store
                .read(move |conn| queries::event_hash(conn, seq))
                .await
                .map_err(|e| HubError::Protocol(e.to_string()))?;
            if local != Some(hub.head.hash) {
                return Err(HubError::Refused {
                    status: 409,
                    code: "fork".into(),
                    message: format!(
                        "event {seq} here differs from the hub's; run `edge-node reset`"
                    ),
                    expected_seq: None,
                });
            }
        }
        let offset = exchange.clock_offset_ms;
        self.store
            .write(move |ctx| {
                ops::rewind_acked(ctx, seq)?;
                ops::record_sync(
                    ctx,
                    SyncUpdate {
                        clock_offset_ms: offset,
                        ..SyncUpdate::default()
                    },
                )
            })
            .await
            .map_err(|e| HubError::Protocol(e.to_string()))
    }

    /// Replays our log after the hub's acknowledged head, as fast as the
    /// two disks allow: while the hub applies one batch, the next is read,
    /// signed and encoded, and the acknowledgment of the one before is
    /// committed here. Batches still go one at a time, so the hub sees them
    /// in order and never answers a gap to a healthy replay.
    async fn push_loop(mut self) {
        let mut backoff = Backoff::default();
        let mut head = self.store.head_seq();
        let mut reconciled = false;
        // The hub's acknowledged head as last heard, when it is ahead of
        // what `sync_state` holds yet; `None` after anything that rewinds.
        let mut heard: Option<u64> = None;
        let mut next: Option<tokio::task::JoinHandle<Result<Option<Prepared>, HubError>>> = None;
        let mut recording: Option<tokio::task::JoinHandle<()>> = None;
        while !self.stopping() {
            if !reconciled {
                heard = None;
                next = None;
                settle(&mut recording).await;
                match self.reconcile().await {
                    Ok(()) => reconciled = true,
                    Err(e) => {
                        if !self.failed(&e, Some(&mut head), &mut backoff).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let acked = match heard {
                Some(acked) => acked,
                None => match self.store.read(queries::sync_row).await {
                    Ok(row) => row.acked_seq,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the sync state");
                        if !self.pause(backoff.next()).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let local = *head.borrow_and_update();
            if acked >= local {
                next = None;
                tokio::select! {
                    _ = head.changed() => {}
                    _ = self.stop.wait_for(|stop| *stop) => return,
                }
                continue;
            }
            let prepared = match next.take() {
                Some(handle) => match handle.await {
                    Ok(Ok(Some(batch))) if batch.after == acked => Ok(Some(batch)),
                    _ => self.prepare(acked, local - acked).await,
                },
                None => self.prepare(acked, local - acked).await,
            };
            let batch = match prepared {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    // Nothing after `acked` although the head is beyond it:
                    // never expected; do not spin on it.
                    tracing::error!(acked, local, "no events to push below the head");
                    if !self.pause(backoff.next()).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    if !self.failed(&e, Some(&mut head), &mut backoff).await {
                        return;
                    }
                    continue;
                }
            };
            let last_sent = batch.last_sent;
            let batch_after = batch.after;
            if last_sent < local {
                let this = self.clone();
                next = Some(tokio::spawn(async move {
                    this.prepare(last_sent, local - last_sent).await
                }));
            }
            let exchange = self.send(batch).await;
            if !matches!(&exchange, Ok(e) if e.value.acked.seq <= last_sent) {
                // Whatever follows records an error or rewinds: after the
                // acknowledgment before it, not before.
                settle(&mut recording).await;
                next = None;
                heard = None;
            }
            match exchange {
                Ok(exchange) if exchange.value.acked.seq > last_sent => {
                    let behind = HubError::Refused {
                        status: 409,
                        code: "fork".into(),
                        message: format!(
                            "the hub holds {} events of this location but this node only {last_sent}: \
                             it was restored from an old backup; run `edge-node reset`",
                            exchange.value.acked.seq
                        ),
                        expected_seq: None,
                    };
                    reconciled = false;
                    if !self.failed(&behind, Some(&mut head), &mut backoff).await {
                        return;
                    }
                }
                Ok(exchange) => {
                    backoff.reset();
                    let acked = exchange.value.acked.seq;
                    metrics::counter!(crate::metrics::PUSHED_EVENTS)
                        .increment(acked.saturating_sub(batch_after));
                    heard = Some(acked);
                    let offset = exchange.clock_offset_ms;
                    let update = self.health_update(|h| {
                        self.reached(h);
                        h.push_error = None;
                        SyncUpdate {
                            acked_seq: Some(acked),
                            pushed: true,
                            clock_offset_ms: offset,
                            ..SyncUpdate::default()
                        }
                    });
                    let before = recording.take();
                    let store = self.store.clone();
                    recording = Some(tokio::spawn(async move {
                        if let Some(before) = before {
                            let _ = before.await;
                        }
                        let _ = store.write(move |ctx| ops::record_sync(ctx, update)).await;
                    }));
                }
                Err(HubError::Refused {
                    code,
                    expected_seq: Some(expected),
                    ..
                }) if code == "gap" => {
                    // The hub holds less than we thought: send from there.
                    let seq = expected.saturating_sub(1);
                    let _ = self
                        .store
                        .write(move |ctx| ops::rewind_acked(ctx, seq))
                        .await;
                }
                Err(e) => {
                    reconciled = false;
                    if !self.failed(&e, Some(&mut head), &mut backoff).await {
                        return;
                    }
                }
            }
        }
        settle(&mut recording).await;
    }

    async fn pull_loop(mut self) {
        let mut backoff = Backoff::default();
        while !self.stopping() {
            let (cursor, acked) = match self.store.read(queries::sync_row).await {
                Ok(row) => (row.pull_cursor, row.acked_seq),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the sync state");
                    if !self.pause(backoff.next()).await {
                        return;
                    }
                    continue;
                }
            };
            let backlog = self.store.head_seq().borrow().saturating_sub(acked);
            let protocol = self.store.settings().sync_protocol;
            let path = format!(
                "/v1/sync/pull?after={cursor}&wait_ms={LONG_POLL_MAX_MS}&backlog={backlog}&protocol={protocol}"
            );
            let timeout = REQUEST_TIMEOUT + Duration::from_millis(LONG_POLL_MAX_MS);
            let started = std::time::Instant::now();
            let exchange = tokio::select! {
                result = self.client.call::<PullResponse>(Method::GET, &path, None, timeout) => result,
                _ = self.stop.wait_for(|stop| *stop) => return,
            };
            metrics::histogram!(crate::metrics::PULL_DURATION)
                .record(started.elapsed().as_secs_f64());
            match exchange {
                Ok(exchange) => {
                    let events = exchange.value.events;
                    metrics::counter!(crate::metrics::PULLED_EVENTS).increment(events.len() as u64);
                    let upgrade = exchange.value.upgrade_to_protocol;
                    let offset = exchange.clock_offset_ms;
                    let applied = if events.is_empty() {
                        Ok(0)
                    } else {
                        self.store
                            .write(move |ctx| ops::apply_inbox(ctx, &events))
                            .await
                    };
                    let mut error = applied.as_ref().err().map(ToString::to_string);
                    if let Some(e) = &error {
                        tracing::error!(error = %e, "cannot apply inbox events");
                    }
                    if let (None, Some(needs)) = (&error, upgrade) {
                        let message = format!(
                            "the hub sends sync protocol {needs} and this edge-node speaks \
                             {protocol}: update edge-node to receive orders and units again"
                        );
                        tracing::error!("{message}");
                        error = Some(message);
                    }
                    let _ = self
                        .record(|h| {
                            self.reached(h);
                            h.pull_error = error.clone();
                            SyncUpdate {
                                pulled: true,
                                clock_offset_ms: offset,
                                ..SyncUpdate::default()
                            }
                        })
                        .await;
                    if error.is_none() {
                        backoff.reset();
                    } else if !self.pause(backoff.next()).await {
                        return;
                    }
                }
                Err(e) => {
                    if !self.failed(&e, None, &mut backoff).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Runs the pusher and the puller until `stop` turns true.
pub async fn run(store: Store, client: HubClient, stop: watch::Receiver<bool>) {
    let sync = Sync {
        store,
        client,
        health: Arc::default(),
        stop,
        hub_back: Arc::default(),
    };
    tokio::join!(sync.clone().push_loop(), sync.pull_loop());
}
