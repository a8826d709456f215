//! The exchange's FIX gateway.
//!
//! - [`codec`]: framing, zero-copy parsing and encoding of FIX tag=value messages.
//! - [`dictionary`]: QuickFIX-format data dictionaries and validation driven by them.
//! - [`session`]: the FIX session layer as a sans-IO state machine.
//! - [`store`]: session stores (sequence numbers and sent messages) in memory and on disk.
//! - [`acceptor`]: the tokio shell: listener, connections, timers.
//! - [`config`]: TOML configuration with QuickFIX-like per-session keys.
//! - [`auth`]: password hashes for credentials.
//! - [`reports`]: engine events as ExecutionReports and OrderCancelRejects.
//! - [`exchange`]: the running exchange: order entry, sequencer and journal, engine, reports.
//! - [`http`], [`broker_api`]: the HTTP API (market data; orders and executions for brokers).
//! - [`at`]: QuickFIX's acceptance-test application.
//! - [`time`]: UTC timestamps in FIX formats.

pub mod acceptor;
pub mod at;
pub mod auth;
pub mod broker_api;
pub mod codec;
pub mod config;
pub mod dictionary;
pub mod exchange;
pub mod http;
pub mod reports;
pub mod session;
pub mod store;
pub mod time;
