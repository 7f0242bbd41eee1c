//! Integration tests of the edge node: real SQLite files, real servers on
//! 127.0.0.1 ports, and the real binary killed with SIGKILL.

mod auth;
mod backup;
mod bad_input;
mod bookings;
mod crash;
mod helpers;
mod holds;
mod idempotency;
mod pages;
mod queue;
mod sessions;
mod store;
mod timeouts;
