//! Market data: the sequenced event stream turned into what traders watch.
//!
//! [`feed::Feed`] consumes events (never the engine's internals) and keeps, per instrument, the
//! book (L1, L2 and L3), the last trades, the session statistics and candlesticks at 1m, 5m, 1h
//! and 1d; it answers MarketDataRequests with snapshots and publishes incremental updates, with
//! a RptSeq per instrument and view (the subscriptions asking for the same entries share
//! their updates) and conflation of subscribers that cannot keep up. It does no IO:
//! the gateway renders its output as FIX, and [`archive::Archive`] keeps candles that no longer
//! fit in memory.

pub mod archive;
pub mod book;
pub mod candles;
pub mod feed;
pub mod replica;

pub use book::{Level, OrderBook};
pub use candles::{Candle, Resolution};
pub use feed::{Action, Entry, EntryKind, Feed, FeedConfig, Out, Request, RequestKind};
pub use replica::Replica;
