//! Business reject reasons: one enum with stable codes, mapped to FIX reasons and text.

/// Why a command was refused. Codes are stable: they are journaled and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum RejectReason {
    /// The symbol is not in the instrument table.
    UnknownSymbol = 1,
    /// The account does not exist.
    UnknownAccount = 2,
    /// The trading session is closed.
    MarketClosed = 3,
    /// Quantity is zero.
    InvalidQuantity = 4,
    /// Quantity is not a multiple of the lot size.
    InvalidLotSize = 5,
    /// Price is not a multiple of the tick size.
    InvalidPriceIncrement = 6,
    /// Price is outside the band around the reference price.
    PriceOutOfBand = 7,
    /// Quantity exceeds the instrument's maximum order quantity.
    MaxOrderQtyExceeded = 8,
    /// Notional exceeds the instrument's maximum order notional.
    MaxNotionalExceeded = 9,
    /// Traded plus open quantity would exceed the account's daily limit for the symbol.
    DailyLimitExceeded = 10,
    /// Not enough available cash for the buy reservation.
    InsufficientFunds = 11,
    /// Not enough available shares for the sell reservation (no short selling).
    InsufficientShares = 12,
    /// The account has the maximum number of open orders.
    TooManyOpenOrders = 13,
    /// The ClOrdID was already used on this session today.
    DuplicateClOrdId = 14,
    /// No such order for this account.
    UnknownOrder = 15,
    /// The order is already filled, cancelled or expired.
    TooLateToCancel = 16,
    /// A market order found no opposite side to trade with.
    NoLiquidity = 17,
    /// A cancel/replace would leave nothing to work (new quantity not above the filled quantity),
    /// or changes the side, the symbol or the order type.
    InvalidReplace = 18,
    /// The session is not entitled to trade for the account.
    NotEntitled = 19,
    /// The session exceeded its order rate limit.
    RateLimited = 20,
    /// Order type or time in force not supported in this combination.
    UnsupportedOrderType = 21,
    /// A deposit or withdrawal amount that is zero or negative.
    InvalidAmount = 22,
    /// A limit price that is zero or negative.
    InvalidPrice = 23,
    /// The engine's capacity (resting orders) is exhausted.
    CapacityExceeded = 24,
    /// A cancel/replace or cancel named an order of another account.
    AccountMismatch = 25,
    /// Not enough available balance for a withdrawal.
    InsufficientBalance = 26,
    /// The instrument is halted (its trading has been suspended).
    InstrumentHalted = 27,
    /// ClOrdID (or OrigClOrdID) missing, or longer than the exchange keeps.
    InvalidClOrdId = 28,
    /// A new order flagged as possibly sent before (PossResend or PossDupFlag) whose ClOrdID
    /// the session has already used: it was received before, so it is ignored, not executed
    /// again and not answered (the FIX rule for possible resends).
    ResentDuplicate = 29,
}

impl RejectReason {
    /// Every reason, in code order.
    pub const ALL: [RejectReason; 29] = [
        RejectReason::UnknownSymbol,
        RejectReason::UnknownAccount,
        RejectReason::MarketClosed,
        RejectReason::InvalidQuantity,
        RejectReason::InvalidLotSize,
        RejectReason::InvalidPriceIncrement,
        RejectReason::PriceOutOfBand,
        RejectReason::MaxOrderQtyExceeded,
        RejectReason::MaxNotionalExceeded,
        RejectReason::DailyLimitExceeded,
        RejectReason::InsufficientFunds,
        RejectReason::InsufficientShares,
        RejectReason::TooManyOpenOrders,
        RejectReason::DuplicateClOrdId,
        RejectReason::UnknownOrder,
        RejectReason::TooLateToCancel,
        RejectReason::NoLiquidity,
        RejectReason::InvalidReplace,
        RejectReason::NotEntitled,
        RejectReason::RateLimited,
        RejectReason::UnsupportedOrderType,
        RejectReason::InvalidAmount,
        RejectReason::InvalidPrice,
        RejectReason::CapacityExceeded,
        RejectReason::AccountMismatch,
        RejectReason::InsufficientBalance,
        RejectReason::InstrumentHalted,
        RejectReason::InvalidClOrdId,
        RejectReason::ResentDuplicate,
    ];

    /// The stable numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// Decodes a stable code.
    pub fn from_code(code: u16) -> Option<RejectReason> {
        Self::ALL.get(usize::from(code).wrapping_sub(1)).copied()
    }

    /// Short stable name, used in scenario tables and reports.
    pub fn name(self) -> &'static str {
        match self {
            RejectReason::UnknownSymbol => "UnknownSymbol",
            RejectReason::UnknownAccount => "UnknownAccount",
            RejectReason::MarketClosed => "MarketClosed",
            RejectReason::InvalidQuantity => "InvalidQuantity",
            RejectReason::InvalidLotSize => "InvalidLotSize",
            RejectReason::InvalidPriceIncrement => "InvalidPriceIncrement",
            RejectReason::PriceOutOfBand => "PriceOutOfBand",
            RejectReason::MaxOrderQtyExceeded => "MaxOrderQtyExceeded",
            RejectReason::MaxNotionalExceeded => "MaxNotionalExceeded",
            RejectReason::DailyLimitExceeded => "DailyLimitExceeded",
            RejectReason::InsufficientFunds => "InsufficientFunds",
            RejectReason::InsufficientShares => "InsufficientShares",
            RejectReason::TooManyOpenOrders => "TooManyOpenOrders",
            RejectReason::DuplicateClOrdId => "DuplicateClOrdId",
            RejectReason::UnknownOrder => "UnknownOrder",
            RejectReason::TooLateToCancel => "TooLateToCancel",
            RejectReason::NoLiquidity => "NoLiquidity",
            RejectReason::InvalidReplace => "InvalidReplace",
            RejectReason::NotEntitled => "NotEntitled",
            RejectReason::RateLimited => "RateLimited",
            RejectReason::UnsupportedOrderType => "UnsupportedOrderType",
            RejectReason::InvalidAmount => "InvalidAmount",
            RejectReason::InvalidPrice => "InvalidPrice",
            RejectReason::CapacityExceeded => "CapacityExceeded",
            RejectReason::AccountMismatch => "AccountMismatch",
            RejectReason::InsufficientBalance => "InsufficientBalance",
            RejectReason::InstrumentHalted => "InstrumentHalted",
            RejectReason::InvalidClOrdId => "InvalidClOrdId",
            RejectReason::ResentDuplicate => "ResentDuplicate",
        }
    }

    /// Human-readable text for FIX Text (58) and API errors.
    pub fn text(self) -> &'static str {
        match self {
            RejectReason::UnknownSymbol => "unknown symbol",
            RejectReason::UnknownAccount => "unknown account",
            RejectReason::MarketClosed => "market is closed",
            RejectReason::InvalidQuantity => "quantity must be positive",
            RejectReason::InvalidLotSize => "quantity is not a multiple of the lot size",
            RejectReason::InvalidPriceIncrement => "price is not a multiple of the tick size",
            RejectReason::PriceOutOfBand => {
                "price outside the allowed band around the reference price"
            }
            RejectReason::MaxOrderQtyExceeded => "order quantity exceeds the maximum",
            RejectReason::MaxNotionalExceeded => "order notional exceeds the maximum",
            RejectReason::DailyLimitExceeded => {
                "daily traded quantity limit for this symbol would be exceeded"
            }
            RejectReason::InsufficientFunds => "insufficient available cash",
            RejectReason::InsufficientShares => "insufficient available shares",
            RejectReason::TooManyOpenOrders => "too many open orders for this account",
            RejectReason::DuplicateClOrdId => "duplicate ClOrdID",
            RejectReason::UnknownOrder => "unknown order",
            RejectReason::TooLateToCancel => "order is already filled, cancelled or expired",
            RejectReason::NoLiquidity => "no opposite side for a market order",
            RejectReason::InvalidReplace => "invalid cancel/replace",
            RejectReason::NotEntitled => "session is not entitled to trade for this account",
            RejectReason::RateLimited => "order rate limit exceeded",
            RejectReason::UnsupportedOrderType => "unsupported order type and time in force",
            RejectReason::InvalidAmount => "amount must be positive",
            RejectReason::InvalidPrice => "price must be positive",
            RejectReason::CapacityExceeded => "exchange order capacity exhausted",
            RejectReason::AccountMismatch => "order belongs to another account",
            RejectReason::InsufficientBalance => "insufficient available balance",
            RejectReason::InstrumentHalted => "instrument is halted",
            RejectReason::InvalidClOrdId => "ClOrdID missing or longer than 40 characters",
            RejectReason::ResentDuplicate => {
                "possible resend of an order already received: ignored"
            }
        }
    }

    /// FIX OrdRejReason (103) for an order reject.
    pub fn fix_ord_rej_reason(self) -> u32 {
        match self {
            RejectReason::UnknownSymbol => 1,
            RejectReason::MarketClosed | RejectReason::InstrumentHalted => 2,
            RejectReason::MaxOrderQtyExceeded
            | RejectReason::MaxNotionalExceeded
            | RejectReason::DailyLimitExceeded
            | RejectReason::InsufficientFunds
            | RejectReason::InsufficientShares
            | RejectReason::TooManyOpenOrders
            | RejectReason::InsufficientBalance => 3,
            RejectReason::UnknownOrder => 5,
            RejectReason::DuplicateClOrdId | RejectReason::ResentDuplicate => 6,
            RejectReason::UnsupportedOrderType | RejectReason::NoLiquidity => 11,
            RejectReason::InvalidQuantity | RejectReason::InvalidLotSize => 13,
            RejectReason::UnknownAccount | RejectReason::NotEntitled => 15,
            RejectReason::PriceOutOfBand => 16,
            RejectReason::InvalidPriceIncrement | RejectReason::InvalidPrice => 18,
            RejectReason::TooLateToCancel
            | RejectReason::InvalidReplace
            | RejectReason::RateLimited
            | RejectReason::InvalidAmount
            | RejectReason::InvalidClOrdId
            | RejectReason::CapacityExceeded
            | RejectReason::AccountMismatch => 99,
        }
    }

    /// FIX CxlRejReason (102) for a cancel or cancel/replace reject.
    pub fn fix_cxl_rej_reason(self) -> u32 {
        match self {
            RejectReason::TooLateToCancel => 0,
            RejectReason::UnknownOrder | RejectReason::AccountMismatch => 1,
            RejectReason::DuplicateClOrdId | RejectReason::ResentDuplicate => 6,
            RejectReason::PriceOutOfBand => 8,
            _ => 99,
        }
    }
}

/// Why an order stopped working without being filled or rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CancelReason {
    /// The owner asked for it (OrderCancelRequest).
    Requested = 1,
    /// Self-trade prevention cancelled it.
    SelfTrade = 2,
    /// The unfilled remainder of an IOC order (or of a market order).
    ImmediateOrCancel = 3,
    /// A fill-or-kill order that could not be filled completely.
    FillOrKill = 4,
    /// A market order stopped at its price collar with quantity left.
    CollarReached = 5,
    /// The owner's order mass cancel covered it (OrderMassCancelRequest).
    MassCancel = 6,
    /// Its session disconnected, and the session cancels its orders on disconnect.
    Disconnect = 7,
}

impl CancelReason {
    /// Decodes the wire value.
    pub fn from_u8(v: u8) -> Option<CancelReason> {
        Some(match v {
            1 => CancelReason::Requested,
            2 => CancelReason::SelfTrade,
            3 => CancelReason::ImmediateOrCancel,
            4 => CancelReason::FillOrKill,
            5 => CancelReason::CollarReached,
            6 => CancelReason::MassCancel,
            7 => CancelReason::Disconnect,
            _ => return None,
        })
    }

    /// Short stable name.
    pub fn name(self) -> &'static str {
        match self {
            CancelReason::Requested => "Requested",
            CancelReason::SelfTrade => "SelfTrade",
            CancelReason::ImmediateOrCancel => "ImmediateOrCancel",
            CancelReason::FillOrKill => "FillOrKill",
            CancelReason::CollarReached => "CollarReached",
            CancelReason::MassCancel => "MassCancel",
            CancelReason::Disconnect => "Disconnect",
        }
    }

    /// Human-readable text for FIX Text (58).
    pub fn text(self) -> &'static str {
        match self {
            CancelReason::Requested => "cancelled on request",
            CancelReason::SelfTrade => "cancelled by self-trade prevention",
            CancelReason::ImmediateOrCancel => "unfilled remainder of an immediate order cancelled",
            CancelReason::FillOrKill => "fill-or-kill order could not be filled completely",
            CancelReason::CollarReached => "market order stopped at its price collar",
            CancelReason::MassCancel => "cancelled by an order mass cancel request",
            CancelReason::Disconnect => "cancelled on disconnect",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_round_trip() {
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(usize::from(r.code()), i + 1);
            assert_eq!(RejectReason::from_code(r.code()), Some(*r));
            assert!(!r.text().is_empty());
        }
        assert_eq!(RejectReason::from_code(0), None);
        assert_eq!(RejectReason::from_code(999), None);
        assert_eq!(RejectReason::DailyLimitExceeded.code(), 10);
    }
}
