//! The edge node: one per location. It takes bookings into a durable local
//! SQLite store, serves the LAN JSON API, and keeps working with the
//! internet down.
//!
//! [`app`] and [`run`] are what the binary and the tests start.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod metrics;
pub mod server;
pub mod state;
pub mod store;
pub mod sweeper;
pub mod sync;
pub mod web;

pub use server::{app, run};
