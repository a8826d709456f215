//! The exchange's matching engine, as a pure library.
//!
//! Everything between a sequenced binary [`Command`] and the [`Event`]s it produces: instruments,
//! order books with price-time priority, the order manager, risk checks and the wallet. No IO,
//! no clock, no threads, no randomness: [`Engine::apply`] is a deterministic function of the
//! commands applied before, so the journal of commands is the whole truth and any replay of it
//! emits the same events byte for byte.
//!
//! Prices are integer price units (1/10,000 of the currency, see [`types::PRICE_SCALE`]);
//! decimal conversion happens only at the edges ([`config`]).

pub(crate) mod book;
pub mod command;
pub mod config;
pub mod event;
pub mod hash;
mod index;
pub mod journal;
pub mod machine;
mod prefetch;
pub mod priority;
pub mod reject;
pub mod snapshot;
pub mod types;
pub mod wire;

pub use command::{
    Asset, CancelOrder, CloseTrading, Command, MassCancelRequest, MassScope, MassStatusRequest,
    NewOrder, OpenTrading, ReplaceOrder, Transfer,
};
pub use config::{EngineConfig, Instrument, StpMode};
pub use event::Event;
pub use machine::{Balance, Engine, Holding, LevelInfo, OrderInfo};
pub use reject::{CancelReason, RejectReason};
pub use types::{
    AccountId, ClOrdId, OrdStatus, OrdType, OrderId, Price, Qty, SessionId, Side, SymbolId,
    TimeInForce,
};
