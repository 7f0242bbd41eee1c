//! systemd integration: `READY=1` once the server accepts connections, and
//! watchdog pings while its own readiness check passes, so a wedged
//! database gets the service restarted. Outside systemd every call is a
//! no-op.

use std::future::Future;
use std::time::Duration;

/// Tells the service manager the server is up (a no-op without
/// `NOTIFY_SOCKET`).
pub fn ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell systemd the service is ready");
    }
}

/// Tells the service manager the server is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// When systemd runs a watchdog (`WatchdogSec=`), pings it at half the
/// interval for as long as `healthy` answers true; a check that fails or
/// hangs past the interval lets systemd restart the service. Returns at
/// once when there is no watchdog.
pub async fn watchdog<F, Fut>(healthy: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = interval / 2;
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        match tokio::time::timeout(period, healthy()).await {
            Ok(true) => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            Ok(false) => tracing::warn!("readiness check failed; withholding the watchdog ping"),
            Err(_) => tracing::warn!("readiness check hung; withholding the watchdog ping"),
        }
    }
}
