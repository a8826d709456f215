//! Events: the engine's outputs, as fixed-layout versioned binary records.
//!
//! Every event that becomes an ExecutionReport carries the full order state (quantities, cost,
//! ClOrdIDs), so execution reports, drop copies and the reporting database are projections of
//! the event stream alone.

use crate::command::{Asset, MassCancelRequest, MassStatusRequest};
use crate::reject::{CancelReason, RejectReason};
use crate::types::{
    AccountId, ClOrdId, OrdStatus, OrdType, OrderId, Price, Qty, SessionId, Side, SymbolId,
    TimeInForce,
};
use crate::wire::{DecodeError, FORMAT_VERSION, Layout, Reader, Writer, layout};

/// The state of one order as an execution report describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderView {
    /// Exchange order id.
    pub order_id: OrderId,
    /// Owning session.
    pub session: SessionId,
    /// Owning account.
    pub account: AccountId,
    /// Instrument.
    pub symbol: SymbolId,
    /// Side.
    pub side: Side,
    /// Order type.
    pub ord_type: OrdType,
    /// Time in force.
    pub tif: TimeInForce,
    /// Status after this event.
    pub status: OrdStatus,
    /// Limit price (collar price for market orders).
    pub price: Price,
    /// Total order quantity.
    pub qty: Qty,
    /// Filled quantity.
    pub cum_qty: Qty,
    /// Quantity still working (0 once the order is done).
    pub leaves_qty: Qty,
    /// Sum of price x quantity over the fills (AvgPx = cum_cost / cum_qty).
    pub cum_cost: u64,
    /// ClOrdID this report answers (the cancel's or replace's own for those).
    pub cl_ord_id: ClOrdId,
    /// Unique execution id.
    pub exec_id: u64,
}
layout!(
    OrderView {
        order_id: OrderId,
        session: SessionId,
        account: AccountId,
        symbol: SymbolId,
        side: Side,
        ord_type: OrdType,
        tif: TimeInForce,
        status: OrdStatus,
        price: Price,
        qty: Qty,
        cum_qty: Qty,
        leaves_qty: Qty,
        cum_cost: u64,
        cl_ord_id: ClOrdId,
        exec_id: u64
    } == 110
);

/// An order was accepted (ExecType New).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The order.
    pub order: OrderView,
}
layout!(Accepted { order: OrderView } == 110);

/// A new order was refused (ExecType Rejected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Session of the order.
    pub session: SessionId,
    /// Account named by the order.
    pub account: AccountId,
    /// The order's ClOrdID.
    pub cl_ord_id: ClOrdId,
    /// Instrument named by the order.
    pub symbol: SymbolId,
    /// Side.
    pub side: Side,
    /// Order type.
    pub ord_type: OrdType,
    /// Time in force.
    pub tif: TimeInForce,
    /// Limit price as sent.
    pub price: Price,
    /// Quantity as sent.
    pub qty: Qty,
    /// Why.
    pub reason: RejectReason,
    /// Unique execution id.
    pub exec_id: u64,
}
layout!(
    Rejected {
        session: SessionId,
        account: AccountId,
        cl_ord_id: ClOrdId,
        symbol: SymbolId,
        side: Side,
        ord_type: OrdType,
        tif: TimeInForce,
        price: Price,
        qty: Qty,
        reason: RejectReason,
        exec_id: u64
    } == 79
);

/// One side of a trade: the order's state after the fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    /// Exchange order id.
    pub order_id: OrderId,
    /// Owning session.
    pub session: SessionId,
    /// Owning account.
    pub account: AccountId,
    /// The order's current ClOrdID.
    pub cl_ord_id: ClOrdId,
    /// Order type.
    pub ord_type: OrdType,
    /// Time in force.
    pub tif: TimeInForce,
    /// The order's limit price.
    pub price: Price,
    /// Total order quantity.
    pub qty: Qty,
    /// Filled quantity including this fill.
    pub cum_qty: Qty,
    /// Quantity still working after this fill.
    pub leaves_qty: Qty,
    /// Sum of price x quantity over the fills.
    pub cum_cost: u64,
    /// Unique execution id of this side's report.
    pub exec_id: u64,
}
layout!(
    Fill {
        order_id: OrderId,
        session: SessionId,
        account: AccountId,
        cl_ord_id: ClOrdId,
        ord_type: OrdType,
        tif: TimeInForce,
        price: Price,
        qty: Qty,
        cum_qty: Qty,
        leaves_qty: Qty,
        cum_cost: u64,
        exec_id: u64
    } == 106
);

/// A trade between an incoming order and one resting order (ExecType Trade on both sides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    /// Unique trade id.
    pub trade_id: u64,
    /// Instrument.
    pub symbol: SymbolId,
    /// Side of the incoming (aggressing) order.
    pub aggressor: Side,
    /// Trade price: the resting order's price.
    pub price: Price,
    /// Quantity traded.
    pub qty: Qty,
    /// The resting order.
    pub maker: Fill,
    /// The incoming order.
    pub taker: Fill,
}
layout!(
    Trade {
        trade_id: u64,
        symbol: SymbolId,
        aggressor: Side,
        price: Price,
        qty: Qty,
        maker: Fill,
        taker: Fill
    } == 239
);

impl Trade {
    /// The buyer's side of the trade.
    pub fn buyer(&self) -> &Fill {
        if self.aggressor == Side::Buy {
            &self.taker
        } else {
            &self.maker
        }
    }

    /// The seller's side of the trade.
    pub fn seller(&self) -> &Fill {
        if self.aggressor == Side::Buy {
            &self.maker
        } else {
            &self.taker
        }
    }
}

/// An order stopped working (ExecType Canceled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Canceled {
    /// The order after cancellation; `cl_ord_id` is the cancel request's for requested cancels.
    pub order: OrderView,
    /// The order's ClOrdID before the cancel request (empty for unsolicited cancels).
    pub orig_cl_ord_id: ClOrdId,
    /// Quantity that was cancelled.
    pub canceled_qty: Qty,
    /// Why.
    pub reason: CancelReason,
}
layout!(
    Canceled {
        order: OrderView,
        orig_cl_ord_id: ClOrdId,
        canceled_qty: Qty,
        reason: CancelReason
    } == 159
);

/// A cancel/replace took effect (ExecType Replaced); the order keeps its OrderID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replaced {
    /// The order after the replace, under its new ClOrdID.
    pub order: OrderView,
    /// The ClOrdID it had before.
    pub orig_cl_ord_id: ClOrdId,
    /// Whether the order kept its time priority (quantity decrease at the same price).
    pub kept_priority: bool,
}
layout!(
    Replaced {
        order: OrderView,
        orig_cl_ord_id: ClOrdId,
        kept_priority: bool
    } == 151
);

/// A cancel or cancel/replace request was refused (FIX OrderCancelReject).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelRejected {
    /// Session of the request.
    pub session: SessionId,
    /// Account named by the request.
    pub account: AccountId,
    /// The request's ClOrdID.
    pub cl_ord_id: ClOrdId,
    /// The ClOrdID the request named.
    pub orig_cl_ord_id: ClOrdId,
    /// The order, or 0 when none was found.
    pub order_id: OrderId,
    /// Instrument named by the request.
    pub symbol: SymbolId,
    /// Side named by the request.
    pub side: Side,
    /// Current status of the order (Rejected when there is no such order).
    pub status: OrdStatus,
    /// Whether the request was a cancel/replace (CxlRejResponseTo 2) or a cancel (1).
    pub is_replace: bool,
    /// Why.
    pub reason: RejectReason,
}
layout!(
    CancelRejected {
        session: SessionId,
        account: AccountId,
        cl_ord_id: ClOrdId,
        orig_cl_ord_id: ClOrdId,
        order_id: OrderId,
        symbol: SymbolId,
        side: Side,
        status: OrdStatus,
        is_replace: bool,
        reason: RejectReason
    } == 103
);

/// The answer to an order status request (ExecType Order Status): the order as it stands or,
/// when the session has no working order by that id, the request's fields with status
/// Rejected and the reason (unknown, or no longer working: filled, cancelled or expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusReport {
    /// The order (its current status and quantities), or the request as understood.
    pub order: OrderView,
    /// The client's OrdStatusReqID, echoed (empty when it gave none).
    pub req_id: ClOrdId,
    /// Why there is no order to show; `None` when `order` is the working order.
    pub reason: Option<RejectReason>,
}
layout!(
    StatusReport {
        order: OrderView,
        req_id: ClOrdId,
        reason: Option<RejectReason>
    } == 152
);

/// The answer to an order mass cancel, after the Canceled events of the orders it cancelled:
/// the request as understood, how many orders it cancelled, or why it was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MassCancelReport {
    /// The request.
    pub request: MassCancelRequest,
    /// Orders cancelled.
    pub canceled: u32,
    /// Why the request was refused; `None` when it was carried out.
    pub reason: Option<RejectReason>,
    /// Execution id of the answer.
    pub exec_id: u64,
}
layout!(
    MassCancelReport {
        request: MassCancelRequest,
        canceled: u32,
        reason: Option<RejectReason>,
        exec_id: u64
    } == 68
);

/// One answer to an order mass status request: a working order as it stands, with the count
/// of answers and whether it is the last; when no order matches, a single answer saying so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MassStatusReport {
    /// The request.
    pub request: MassStatusRequest,
    /// The order (its current status and quantities); when none matched, status Rejected, no
    /// order id, and the request's session.
    pub order: OrderView,
    /// Answers to the request in all; 0 when no order matched.
    pub total: u32,
    /// Whether this is the request's last answer.
    pub last: bool,
}
layout!(
    MassStatusReport {
        request: MassStatusRequest,
        order: OrderView,
        total: u32,
        last: bool
    } == 168
);

/// A Day order expired at the close (ExecType Expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The order after expiry.
    pub order: OrderView,
}
layout!(Expired { order: OrderView } == 110);

/// The trading session opened or closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradingStatus {
    /// Trading day as YYYYMMDD.
    pub trading_day: u32,
    /// Whether trading is open.
    pub open: bool,
}
layout!(
    TradingStatus {
        trading_day: u32,
        open: bool
    } == 5
);

/// A deposit or withdrawal was applied, or refused with a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferDone {
    /// The account.
    pub account: AccountId,
    /// Cash or shares.
    pub asset: Asset,
    /// Amount moved: positive for a deposit, negative for a withdrawal.
    pub amount: i64,
    /// Balance of the asset after the transfer.
    pub balance: i64,
    /// `None` when applied, else why it was refused.
    pub reject: Option<RejectReason>,
}
layout!(TransferDone { account: AccountId, asset: Asset, amount: i64, balance: i64, reject: Option<RejectReason> } == 25);

/// An output of the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An order was accepted.
    Accepted(Accepted),
    /// An order was rejected.
    Rejected(Rejected),
    /// A trade.
    Trade(Trade),
    /// An order was cancelled.
    Canceled(Canceled),
    /// An order was replaced.
    Replaced(Replaced),
    /// A cancel or replace was refused.
    CancelRejected(CancelRejected),
    /// A Day order expired.
    Expired(Expired),
    /// Trading opened or closed.
    TradingStatus(TradingStatus),
    /// A deposit or withdrawal.
    Transfer(TransferDone),
    /// The answer to an order status request.
    Status(StatusReport),
    /// The answer to an order mass cancel.
    MassCancel(MassCancelReport),
    /// One answer to an order mass status request.
    MassStatus(MassStatusReport),
}

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Longest encoded event: version and kind bytes plus the largest body.
pub const MAX_EVENT_LEN: usize = 2 + max(
    max(
        max(Accepted::LEN, Rejected::LEN),
        max(Trade::LEN, Canceled::LEN),
    ),
    max(
        max(Replaced::LEN, CancelRejected::LEN),
        max(
            max(Expired::LEN, TradingStatus::LEN),
            max(
                TransferDone::LEN,
                max(
                    StatusReport::LEN,
                    max(MassCancelReport::LEN, MassStatusReport::LEN),
                ),
            ),
        ),
    ),
);
const _: () = assert!(MAX_EVENT_LEN == 241);

impl Event {
    fn kind(&self) -> u8 {
        match self {
            Event::Accepted(_) => 1,
            Event::Rejected(_) => 2,
            Event::Trade(_) => 3,
            Event::Canceled(_) => 4,
            Event::Replaced(_) => 5,
            Event::CancelRejected(_) => 6,
            Event::Expired(_) => 7,
            Event::TradingStatus(_) => 8,
            Event::Transfer(_) => 9,
            Event::Status(_) => 10,
            Event::MassCancel(_) => 11,
            Event::MassStatus(_) => 12,
        }
    }

    /// Encoded length of this event.
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            Event::Accepted(_) => Accepted::LEN,
            Event::Rejected(_) => Rejected::LEN,
            Event::Trade(_) => Trade::LEN,
            Event::Canceled(_) => Canceled::LEN,
            Event::Replaced(_) => Replaced::LEN,
            Event::CancelRejected(_) => CancelRejected::LEN,
            Event::Expired(_) => Expired::LEN,
            Event::TradingStatus(_) => TradingStatus::LEN,
            Event::Transfer(_) => TransferDone::LEN,
            Event::Status(_) => StatusReport::LEN,
            Event::MassCancel(_) => MassCancelReport::LEN,
            Event::MassStatus(_) => MassStatusReport::LEN,
        }
    }

    /// Encodes into `buf` (at least `encoded_len` bytes) and returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> usize {
        let len = self.encoded_len();
        let mut w = Writer::new(&mut buf[..len]);
        w.u8(FORMAT_VERSION);
        w.u8(self.kind());
        match self {
            Event::Accepted(e) => e.write(&mut w),
            Event::Rejected(e) => e.write(&mut w),
            Event::Trade(e) => e.write(&mut w),
            Event::Canceled(e) => e.write(&mut w),
            Event::Replaced(e) => e.write(&mut w),
            Event::CancelRejected(e) => e.write(&mut w),
            Event::Expired(e) => e.write(&mut w),
            Event::TradingStatus(e) => e.write(&mut w),
            Event::Transfer(e) => e.write(&mut w),
            Event::Status(e) => e.write(&mut w),
            Event::MassCancel(e) => e.write(&mut w),
            Event::MassStatus(e) => e.write(&mut w),
        }
        assert_eq!(w.position(), len);
        len
    }

    /// Decodes one event from the front of `buf`, returning it and the bytes consumed.
    pub fn decode(buf: &[u8]) -> Result<(Event, usize), DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        let e = match r.u8()? {
            1 => Event::Accepted(Accepted::read(&mut r)?),
            2 => Event::Rejected(Rejected::read(&mut r)?),
            3 => Event::Trade(Trade::read(&mut r)?),
            4 => Event::Canceled(Canceled::read(&mut r)?),
            5 => Event::Replaced(Replaced::read(&mut r)?),
            6 => Event::CancelRejected(CancelRejected::read(&mut r)?),
            7 => Event::Expired(Expired::read(&mut r)?),
            8 => Event::TradingStatus(TradingStatus::read(&mut r)?),
            9 => Event::Transfer(TransferDone::read(&mut r)?),
            10 => Event::Status(StatusReport::read(&mut r)?),
            11 => Event::MassCancel(MassCancelReport::read(&mut r)?),
            12 => Event::MassStatus(MassStatusReport::read(&mut r)?),
            k => return Err(DecodeError::Kind(k)),
        };
        Ok((e, r.position()))
    }

    /// The session whose client this event reports to, if any.
    pub fn session(&self) -> Option<SessionId> {
        match self {
            Event::Accepted(e) => Some(e.order.session),
            Event::Rejected(e) => Some(e.session),
            Event::Canceled(e) => Some(e.order.session),
            Event::Replaced(e) => Some(e.order.session),
            Event::CancelRejected(e) => Some(e.session),
            Event::Expired(e) => Some(e.order.session),
            Event::Status(e) => Some(e.order.session),
            Event::MassCancel(e) => Some(e.request.session),
            Event::MassStatus(e) => Some(e.request.session),
            Event::Trade(_) | Event::TradingStatus(_) | Event::Transfer(_) => None,
        }
    }
}
