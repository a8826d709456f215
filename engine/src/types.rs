//! Identifiers and small value types shared by commands, events and the book.

use std::fmt;

/// Price in price units: 1/10,000 of the currency (so $190.25 is 1_902_500).
///
/// Every instrument's tick size is a whole number of price units, so a price is an integer
/// count of the finest tick and prices compare and add exactly.
pub type Price = i64;

/// Quantity in shares.
pub type Qty = u64;

/// Cash amount in price units (1/10,000 of the currency).
pub type Cash = i64;

/// Price units per unit of currency.
pub const PRICE_SCALE: i64 = 10_000;

/// Exchange-assigned order identifier, unique for the life of the engine.
///
/// The high bits are a sequence number (ids grow in the order orders were accepted); the low
/// [`OrderId::SLOT_BITS`] bits name the engine's storage slot, so finding a live order by id is
/// one array access instead of a hash lookup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId(pub u64);

impl OrderId {
    /// Low bits of an id that hold the storage slot.
    pub const SLOT_BITS: u32 = 24;

    /// Largest number of live orders the id layout can address.
    pub const MAX_SLOTS: u32 = (1 << Self::SLOT_BITS) - 2;

    /// Builds an id from its sequence number and slot.
    pub fn compose(sequence: u64, slot: u32) -> OrderId {
        OrderId(sequence << Self::SLOT_BITS | u64::from(slot))
    }

    /// The sequence number: the n-th order the engine accepted.
    pub fn sequence(self) -> u64 {
        self.0 >> Self::SLOT_BITS
    }

    /// The storage slot.
    pub fn slot(self) -> u32 {
        (self.0 & ((1 << Self::SLOT_BITS) - 1)) as u32
    }
}

/// Dense account index (the gateway maps account names to these).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub u32);

/// Stable identifier of the FIX (or API) session a command came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u32);

/// Dense instrument index into the instrument table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SymbolId(pub u16);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Side of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    /// Buy (FIX Side=1).
    Buy = 1,
    /// Sell (FIX Side=2).
    Sell = 2,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// Decodes the wire value.
    pub fn from_u8(v: u8) -> Option<Side> {
        match v {
            1 => Some(Side::Buy),
            2 => Some(Side::Sell),
            _ => None,
        }
    }
}

/// Order type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OrdType {
    /// Market order: never rests, protected by the instrument's collar.
    Market = 1,
    /// Limit order.
    Limit = 2,
}

impl OrdType {
    /// Decodes the wire value.
    pub fn from_u8(v: u8) -> Option<OrdType> {
        match v {
            1 => Some(OrdType::Market),
            2 => Some(OrdType::Limit),
            _ => None,
        }
    }
}

/// Time in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TimeInForce {
    /// Expires at the close of the trading session.
    Day = 0,
    /// Good till cancel: survives the close.
    Gtc = 1,
    /// Immediate or cancel: the unfilled remainder is cancelled.
    Ioc = 3,
    /// Fill or kill: filled completely at once or not at all.
    Fok = 4,
}

impl TimeInForce {
    /// Decodes the wire value (the FIX TimeInForce code).
    pub fn from_u8(v: u8) -> Option<TimeInForce> {
        match v {
            0 => Some(TimeInForce::Day),
            1 => Some(TimeInForce::Gtc),
            3 => Some(TimeInForce::Ioc),
            4 => Some(TimeInForce::Fok),
            _ => None,
        }
    }

    /// Whether an order with this time in force may rest on the book.
    pub fn rests(self) -> bool {
        matches!(self, TimeInForce::Day | TimeInForce::Gtc)
    }
}

/// Order status as FIX OrdStatus reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OrdStatus {
    /// Accepted, nothing filled.
    New = 0,
    /// Partly filled and still working.
    PartiallyFilled = 1,
    /// Completely filled.
    Filled = 2,
    /// Cancelled (by request, IOC/FOK remainder, self-trade prevention or collar).
    Canceled = 4,
    /// Replaced by a cancel/replace (the order works on under its new ClOrdID).
    Replaced = 5,
    /// Rejected.
    Rejected = 8,
    /// Expired at the close.
    Expired = 12,
}

impl OrdStatus {
    /// Decodes the wire value.
    pub fn from_u8(v: u8) -> Option<OrdStatus> {
        Some(match v {
            0 => OrdStatus::New,
            1 => OrdStatus::PartiallyFilled,
            2 => OrdStatus::Filled,
            4 => OrdStatus::Canceled,
            5 => OrdStatus::Replaced,
            8 => OrdStatus::Rejected,
            12 => OrdStatus::Expired,
            _ => return None,
        })
    }

    /// The working status of an order with these quantities.
    pub fn working(cum: Qty, leaves: Qty) -> OrdStatus {
        if leaves == 0 {
            OrdStatus::Filled
        } else if cum == 0 {
            OrdStatus::New
        } else {
            OrdStatus::PartiallyFilled
        }
    }
}

/// Client order identifier (FIX ClOrdID), stored inline: up to [`ClOrdId::CAPACITY`] bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClOrdId([u8; ClOrdId::CAPACITY]);

impl ClOrdId {
    /// Longest ClOrdID accepted, in bytes (room for a UUID with dashes).
    pub const CAPACITY: usize = 40;

    /// The empty identifier (used where none applies).
    pub const EMPTY: ClOrdId = ClOrdId([0; ClOrdId::CAPACITY]);

    /// Builds an identifier from text; `None` if it is empty, too long or holds a NUL byte.
    pub fn new(s: &str) -> Option<ClOrdId> {
        Self::from_bytes(s.as_bytes())
    }

    /// Builds an identifier from bytes; `None` if empty, too long or holding a NUL byte.
    pub fn from_bytes(b: &[u8]) -> Option<ClOrdId> {
        if b.is_empty() || b.len() > Self::CAPACITY || b.contains(&0) {
            return None;
        }
        let mut raw = [0u8; Self::CAPACITY];
        raw[..b.len()].copy_from_slice(b);
        Some(ClOrdId(raw))
    }

    /// Rebuilds an identifier from its fixed-size wire form.
    pub fn from_raw(raw: [u8; Self::CAPACITY]) -> ClOrdId {
        ClOrdId(raw)
    }

    /// The fixed-size wire form.
    pub fn raw(&self) -> &[u8; Self::CAPACITY] {
        &self.0
    }

    /// The identifier's bytes, without padding.
    pub fn as_bytes(&self) -> &[u8] {
        let len = self
            .0
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(Self::CAPACITY);
        &self.0[..len]
    }

    /// The identifier as text (lossy for non-UTF-8 bytes).
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }

    /// Whether this is the empty identifier.
    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }
}

impl Default for ClOrdId {
    fn default() -> Self {
        ClOrdId::EMPTY
    }
}

impl fmt::Debug for ClOrdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for ClOrdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cl_ord_id_round_trips_and_bounds() {
        let id = ClOrdId::new("abc-123").unwrap();
        assert_eq!(id.as_bytes(), b"abc-123");
        assert_eq!(ClOrdId::from_raw(*id.raw()), id);
        assert!(ClOrdId::new("").is_none());
        assert!(ClOrdId::new(&"x".repeat(41)).is_none());
        assert!(ClOrdId::new(&"x".repeat(40)).is_some());
        assert!(ClOrdId::from_bytes(b"a\0b").is_none());
    }
}
