//! Process plumbing both servers share, so the edge node and the hub run
//! the same way: configuration layered from defaults, a file, the
//! environment and flags ([`config`]); logs in text or JSON with a request
//! id on every line of a request ([`log`], [`http`]); Prometheus metrics on
//! their own listener ([`metrics`]); and systemd's readiness and watchdog
//! ([`notify`]); the HTTP server loop with its timeouts and graceful stop
//! ([`serve`]); and consistent SQLite copies of a running server
//! ([`backup`]). Nothing here knows about bookings.

pub mod backup;
pub mod config;
pub mod http;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod prompt;
pub mod serve;
