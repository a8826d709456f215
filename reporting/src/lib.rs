//! The reporting flow: every order, execution, reject and account movement of the sequenced
//! event stream in a database (SQLite by default, PostgreSQL by URL), exactly once, and the
//! reports built from it (trade history, end-of-day summary, statements, compliance,
//! settlement).
//!
//! Exactly once: rows are stored in transactions that also store the last sequence id they
//! cover; a restart resumes after it.

pub mod follow;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod reports;
pub mod rows;
pub mod schema;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod store;

pub use follow::{Progress, ReporterConfig};
pub use rows::{Names, OrderEvent, Rows};
pub use store::{Filter, Store, StoreError, open};
