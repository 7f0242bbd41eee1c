//! End-to-end tests: the hub and edge nodes as real processes on loopback,
//! killed with SIGKILL, restored from backups, replaced.

mod abuse;
mod bookings;
mod browser;
mod conformance;
mod demo;
mod enrollment;
mod fleet;
mod hub_input;
mod inbox;
mod openapi;
mod operations;
mod partition;
mod postgres;
mod protocol;
mod recovery;
mod replication;
mod running;
mod signin;
mod timeouts;
mod webhooks;
mod world;
