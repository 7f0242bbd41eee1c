//! Prometheus text exposition on a listener of its own (`--metrics-listen`),
//! kept off the public port so a scrape needs no credentials and a store's
//! customers never see it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Upper bounds of latency histograms, in seconds: from a fast commit
/// (half a millisecond) to a long poll's wait.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of count histograms (batch sizes): powers of two up to the
/// largest batch a writer or a push takes.
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];

/// How often histograms drop samples that left their window.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same
/// handle. Until it is installed, recording a metric costs next to nothing.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZE_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        // Another thread won the race; use its recorder.
        return HANDLE
            .get()
            .cloned()
            .context("a different metrics recorder is already installed");
    }
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Binds `addr`, prints `metrics on http://ADDR/metrics`, and serves the
/// exposition until `shutdown`. Before each scrape `refresh` sets the
/// gauges that are read from the database (bookings by state, backlog), so
/// they are exact at scrape time and cost nothing in between.
pub async fn serve<F, Fut>(
    addr: SocketAddr,
    refresh: F,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>>
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let handle = install()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr} (setting metrics.listen)"))?;
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            let refresh = refresh.clone();
            async move {
                refresh().await;
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    }))
}

/// The `[metrics]` section both servers share.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Where `/metrics` is served; off when unset.
    pub listen: Option<SocketAddr>,
}

/// A gauge whose labelled series are read whole from the database at each
/// scrape (bookings by state and channel): a series that disappeared from
/// the read drops to zero instead of keeping its last value.
#[derive(Debug)]
pub struct GaugeSnapshot {
    name: &'static str,
    seen: std::sync::Mutex<std::collections::BTreeSet<Vec<(&'static str, String)>>>,
}

impl GaugeSnapshot {
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            seen: std::sync::Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    /// Sets every series of `rows` and zeroes the ones seen before but not
    /// now.
    pub fn set(&self, rows: Vec<(Vec<(&'static str, String)>, f64)>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now: std::collections::BTreeSet<_> = rows.iter().map(|(l, _)| l.clone()).collect();
        for gone in seen.difference(&now) {
            metrics::gauge!(self.name, labels(gone)).set(0.0);
        }
        for (series, value) in &rows {
            metrics::gauge!(self.name, labels(series)).set(*value);
        }
        seen.extend(now);
    }
}

fn labels(series: &[(&'static str, String)]) -> Vec<metrics::Label> {
    series
        .iter()
        .map(|(k, v)| metrics::Label::new(*k, v.clone()))
        .collect()
}
