//! Commands: the sequenced inputs of the engine, as fixed-layout versioned binary records.

use crate::reject::RejectReason;
use crate::types::{
    AccountId, ClOrdId, OrdType, OrderId, Price, Qty, SessionId, Side, SymbolId, TimeInForce,
};
use crate::wire::{DecodeError, FORMAT_VERSION, Field, Layout, Reader, Writer, layout};

/// A new limit or market order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// Session the order came from.
    pub session: SessionId,
    /// Account the order trades for.
    pub account: AccountId,
    /// The client's order id, unique per session and day.
    pub cl_ord_id: ClOrdId,
    /// Instrument.
    pub symbol: SymbolId,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    pub ord_type: OrdType,
    /// Time in force.
    pub tif: TimeInForce,
    /// Limit price in price units (ignored for market orders).
    pub price: Price,
    /// Quantity in shares.
    pub qty: Qty,
}
layout!(
    NewOrder {
        session: SessionId,
        account: AccountId,
        cl_ord_id: ClOrdId,
        symbol: SymbolId,
        side: Side,
        ord_type: OrdType,
        tif: TimeInForce,
        price: Price,
        qty: Qty
    } == 69
);

/// A request to cancel a working order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelOrder {
    /// Session the request came from.
    pub session: SessionId,
    /// Account of the order.
    pub account: AccountId,
    /// The request's own ClOrdID.
    pub cl_ord_id: ClOrdId,
    /// ClOrdID of the order to cancel (looked up on this session) when `order_id` is 0.
    pub orig_cl_ord_id: ClOrdId,
    /// Exchange order id of the order, or 0 to look it up by `orig_cl_ord_id`.
    pub order_id: OrderId,
    /// Instrument, as the client named it.
    pub symbol: SymbolId,
    /// Side, as the client named it.
    pub side: Side,
}
layout!(
    CancelOrder {
        session: SessionId,
        account: AccountId,
        cl_ord_id: ClOrdId,
        orig_cl_ord_id: ClOrdId,
        order_id: OrderId,
        symbol: SymbolId,
        side: Side
    } == 99
);

/// A cancel/replace: new price and/or total quantity for a working limit order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplaceOrder {
    /// Session the request came from.
    pub session: SessionId,
    /// Account of the order.
    pub account: AccountId,
    /// The order's new ClOrdID.
    pub cl_ord_id: ClOrdId,
    /// ClOrdID of the order to replace (looked up on this session) when `order_id` is 0.
    pub orig_cl_ord_id: ClOrdId,
    /// Exchange order id of the order, or 0 to look it up by `orig_cl_ord_id`.
    pub order_id: OrderId,
    /// Instrument; must be the order's.
    pub symbol: SymbolId,
    /// Side; must be the order's.
    pub side: Side,
    /// New limit price.
    pub price: Price,
    /// New total order quantity (filled quantity included).
    pub qty: Qty,
}
layout!(
    ReplaceOrder {
        session: SessionId,
        account: AccountId,
        cl_ord_id: ClOrdId,
        orig_cl_ord_id: ClOrdId,
        order_id: OrderId,
        symbol: SymbolId,
        side: Side,
        price: Price,
        qty: Qty
    } == 115
);

/// What a transfer moves: cash, or shares of one instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Asset {
    /// Cash, in price units.
    Cash,
    /// Shares of an instrument.
    Shares(SymbolId),
}

impl Field for Asset {
    const SIZE: usize = 3;
    fn put(&self, w: &mut Writer<'_>) {
        match self {
            Asset::Cash => {
                w.u8(0);
                w.u16(0);
            }
            Asset::Shares(s) => {
                w.u8(1);
                w.u16(s.0);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tag = r.u8()?;
        let sym = r.u16()?;
        match tag {
            0 => Ok(Asset::Cash),
            1 => Ok(Asset::Shares(SymbolId(sym))),
            v => Err(DecodeError::Field {
                field: "asset",
                value: u64::from(v),
            }),
        }
    }
}

/// A deposit to or withdrawal from an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The account.
    pub account: AccountId,
    /// Cash or shares.
    pub asset: Asset,
    /// Amount: price units of cash, or shares; must be positive.
    pub amount: i64,
}
layout!(
    Transfer {
        account: AccountId,
        asset: Asset,
        amount: i64
    } == 15
);

/// Opens the trading session for a trading day (YYYYMMDD); a new day resets daily counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenTrading {
    /// Trading day as YYYYMMDD.
    pub trading_day: u32,
}
layout!(OpenTrading { trading_day: u32 } == 4);

/// Closes the trading session; Day orders expire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseTrading {}
layout!(CloseTrading {} == 0);

/// An order the gateway refused before the engine (entitlement, rate limit, field values):
/// journaled like any command so that the refusal is reported, drop-copied and stored like an
/// engine reject. The engine only turns it into a Rejected event; nothing else changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The order as the gateway understood it (zero where a value could not be read).
    pub order: NewOrder,
    /// Why it was refused.
    pub reason: RejectReason,
}
layout!(
    Refused {
        order: NewOrder,
        reason: RejectReason
    } == 71
);

/// A cancel or cancel/replace the gateway refused before the engine (entitlement, rate limit,
/// field values): journaled so that the refusal is reported and stored like an engine
/// reject. The engine only turns it into a CancelRejected event (with the order's status when
/// the order is the session's); nothing else changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusedCancel {
    /// The request as the gateway understood it (zero where a value could not be read).
    pub request: CancelOrder,
    /// Whether it was a cancel/replace.
    pub is_replace: bool,
    /// Why it was refused.
    pub reason: RejectReason,
}
layout!(
    RefusedCancel {
        request: CancelOrder,
        is_replace: bool,
        reason: RejectReason
    } == 102
);

/// An order status request (FIX OrderStatusRequest): answered with the order's current state,
/// in sequence with the commands around it; changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRequest {
    /// Session asking; only its own orders are shown.
    pub session: SessionId,
    /// Account named by the request.
    pub account: AccountId,
    /// ClOrdID of the order (any it has had), used when `order_id` is 0.
    pub cl_ord_id: ClOrdId,
    /// Exchange order id, or 0.
    pub order_id: OrderId,
    /// Instrument named by the request.
    pub symbol: SymbolId,
    /// Side named by the request.
    pub side: Side,
    /// The client's OrdStatusReqID (empty when none), echoed in the answer.
    pub req_id: ClOrdId,
}
layout!(
    StatusRequest {
        session: SessionId,
        account: AccountId,
        cl_ord_id: ClOrdId,
        order_id: OrderId,
        symbol: SymbolId,
        side: Side,
        req_id: ClOrdId
    } == 99
);

/// What an order mass cancel or mass status request covers (FIX MassCancelRequestType, 530,
/// whose codes the wire uses; MassStatusReqType, 585, says "all orders" with 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MassScope {
    /// The orders in one instrument (530=1).
    Symbol = 1,
    /// All orders (530=7).
    All = 7,
}

impl MassScope {
    /// Decodes the wire value (the FIX code).
    pub fn from_u8(v: u8) -> Option<MassScope> {
        match v {
            1 => Some(MassScope::Symbol),
            7 => Some(MassScope::All),
            _ => None,
        }
    }
}

/// An order mass cancel (FIX OrderMassCancelRequest): cancels the session's working orders
/// that match, each with its own Canceled event, then answers with a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MassCancelRequest {
    /// Session asking; only its own orders are cancelled.
    pub session: SessionId,
    /// Only this account's orders, or every account's the session trades for.
    pub account: Option<AccountId>,
    /// The request's ClOrdID, echoed in the answer.
    pub cl_ord_id: ClOrdId,
    /// One instrument or all.
    pub scope: MassScope,
    /// The instrument when `scope` is [`MassScope::Symbol`].
    pub symbol: SymbolId,
    /// Only this side's orders, or both.
    pub side: Option<Side>,
    /// Sent by the gateway because the session disconnected (cancel on disconnect), not by
    /// the client: its cancels say so, and nobody is answered.
    pub on_disconnect: bool,
}
impl MassCancelRequest {
    /// The gateway's cancel on disconnect: every order of the session, no ClOrdID, no answer.
    pub fn on_disconnect(session: SessionId) -> MassCancelRequest {
        MassCancelRequest {
            session,
            account: None,
            cl_ord_id: ClOrdId::EMPTY,
            scope: MassScope::All,
            symbol: SymbolId(0),
            side: None,
            on_disconnect: true,
        }
    }
}

layout!(
    MassCancelRequest {
        session: SessionId,
        account: Option<AccountId>,
        cl_ord_id: ClOrdId,
        scope: MassScope,
        symbol: SymbolId,
        side: Option<Side>,
        on_disconnect: bool
    } == 54
);

/// An order mass status request (FIX OrderMassStatusRequest): the session's working orders that
/// match, each reported as it stands; changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MassStatusRequest {
    /// Session asking; only its own orders are shown.
    pub session: SessionId,
    /// Only this account's orders, or every account's the session trades for.
    pub account: Option<AccountId>,
    /// The client's MassStatusReqID, echoed on every answer.
    pub req_id: ClOrdId,
    /// One instrument or all.
    pub scope: MassScope,
    /// The instrument when `scope` is [`MassScope::Symbol`].
    pub symbol: SymbolId,
    /// Only this side's orders, or both.
    pub side: Option<Side>,
}
layout!(
    MassStatusRequest {
        session: SessionId,
        account: Option<AccountId>,
        req_id: ClOrdId,
        scope: MassScope,
        symbol: SymbolId,
        side: Option<Side>
    } == 53
);

/// An input of the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// A new order.
    NewOrder(NewOrder),
    /// A new order the client flagged as possibly sent before (FIX PossResend or PossDupFlag):
    /// executed as a new order unless the session has already used its ClOrdID, in which case
    /// it is the order received before and is ignored (rejected as
    /// [`RejectReason::ResentDuplicate`](crate::RejectReason::ResentDuplicate), a reject nobody
    /// is sent).
    ResentOrder(NewOrder),
    /// Cancel a working order.
    Cancel(CancelOrder),
    /// Cancel/replace a working order.
    Replace(ReplaceOrder),
    /// Add cash or shares to an account.
    Deposit(Transfer),
    /// Take cash or shares out of an account.
    Withdraw(Transfer),
    /// Open trading.
    OpenTrading(OpenTrading),
    /// Close trading.
    CloseTrading(CloseTrading),
    /// An order refused by the gateway, to be reported as rejected.
    Refuse(Refused),
    /// A cancel or replace refused by the gateway, to be reported as a cancel reject.
    RefuseCancel(RefusedCancel),
    /// Report an order's current state.
    Status(StatusRequest),
    /// Cancel a set of the session's working orders.
    MassCancel(MassCancelRequest),
    /// Report a set of the session's working orders.
    MassStatus(MassStatusRequest),
}

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Longest encoded command: version and kind bytes plus the largest body.
pub const MAX_COMMAND_LEN: usize = 2 + max(
    max(
        max(NewOrder::LEN, CancelOrder::LEN),
        max(ReplaceOrder::LEN, Transfer::LEN),
    ),
    max(
        max(OpenTrading::LEN, CloseTrading::LEN),
        max(
            max(Refused::LEN, RefusedCancel::LEN),
            max(
                StatusRequest::LEN,
                max(MassCancelRequest::LEN, MassStatusRequest::LEN),
            ),
        ),
    ),
);
const _: () = assert!(MAX_COMMAND_LEN == 117);

impl Command {
    fn kind(&self) -> u8 {
        match self {
            Command::NewOrder(_) => 1,
            Command::Cancel(_) => 2,
            Command::Replace(_) => 3,
            Command::Deposit(_) => 4,
            Command::Withdraw(_) => 5,
            Command::OpenTrading(_) => 6,
            Command::CloseTrading(_) => 7,
            Command::Refuse(_) => 8,
            Command::RefuseCancel(_) => 9,
            Command::ResentOrder(_) => 10,
            Command::Status(_) => 11,
            Command::MassCancel(_) => 12,
            Command::MassStatus(_) => 13,
        }
    }

    /// Encoded length of this command.
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            Command::NewOrder(_) | Command::ResentOrder(_) => NewOrder::LEN,
            Command::Cancel(_) => CancelOrder::LEN,
            Command::Replace(_) => ReplaceOrder::LEN,
            Command::Deposit(_) | Command::Withdraw(_) => Transfer::LEN,
            Command::OpenTrading(_) => OpenTrading::LEN,
            Command::CloseTrading(_) => CloseTrading::LEN,
            Command::Refuse(_) => Refused::LEN,
            Command::RefuseCancel(_) => RefusedCancel::LEN,
            Command::Status(_) => StatusRequest::LEN,
            Command::MassCancel(_) => MassCancelRequest::LEN,
            Command::MassStatus(_) => MassStatusRequest::LEN,
        }
    }

    /// Encodes into `buf` (at least [`MAX_COMMAND_LEN`] bytes, or `encoded_len`) and returns
    /// the number of bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> usize {
        let len = self.encoded_len();
        let mut w = Writer::new(&mut buf[..len]);
        w.u8(FORMAT_VERSION);
        w.u8(self.kind());
        match self {
            Command::NewOrder(c) | Command::ResentOrder(c) => c.write(&mut w),
            Command::Cancel(c) => c.write(&mut w),
            Command::Replace(c) => c.write(&mut w),
            Command::Deposit(c) | Command::Withdraw(c) => c.write(&mut w),
            Command::OpenTrading(c) => c.write(&mut w),
            Command::CloseTrading(c) => c.write(&mut w),
            Command::Refuse(c) => c.write(&mut w),
            Command::RefuseCancel(c) => c.write(&mut w),
            Command::Status(c) => c.write(&mut w),
            Command::MassCancel(c) => c.write(&mut w),
            Command::MassStatus(c) => c.write(&mut w),
        }
        assert_eq!(w.position(), len);
        len
    }

    /// Decodes one command from the front of `buf`, returning it and the bytes consumed.
    pub fn decode(buf: &[u8]) -> Result<(Command, usize), DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        let cmd = match r.u8()? {
            1 => Command::NewOrder(NewOrder::read(&mut r)?),
            2 => Command::Cancel(CancelOrder::read(&mut r)?),
            3 => Command::Replace(ReplaceOrder::read(&mut r)?),
            4 => Command::Deposit(Transfer::read(&mut r)?),
            5 => Command::Withdraw(Transfer::read(&mut r)?),
            6 => Command::OpenTrading(OpenTrading::read(&mut r)?),
            7 => Command::CloseTrading(CloseTrading::read(&mut r)?),
            8 => Command::Refuse(Refused::read(&mut r)?),
            9 => Command::RefuseCancel(RefusedCancel::read(&mut r)?),
            10 => Command::ResentOrder(NewOrder::read(&mut r)?),
            11 => Command::Status(StatusRequest::read(&mut r)?),
            12 => Command::MassCancel(MassCancelRequest::read(&mut r)?),
            13 => Command::MassStatus(MassStatusRequest::read(&mut r)?),
            k => return Err(DecodeError::Kind(k)),
        };
        Ok((cmd, r.position()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Command {
        Command::NewOrder(NewOrder {
            session: SessionId(7),
            account: AccountId(3),
            cl_ord_id: ClOrdId::new("abc").unwrap(),
            symbol: SymbolId(2),
            side: Side::Sell,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: 1_001_000,
            qty: 2700,
        })
    }

    #[test]
    fn round_trip_and_fixed_layout() {
        let mut buf = [0u8; MAX_COMMAND_LEN];
        let n = order().encode(&mut buf);
        assert_eq!(n, 71);
        // version, kind, then the session id little-endian.
        assert_eq!(&buf[..6], &[1, 1, 7, 0, 0, 0]);
        assert_eq!(Command::decode(&buf[..n]).unwrap(), (order(), n));
        // A possible resend: the same body under its own kind.
        let Command::NewOrder(o) = order() else {
            unreachable!()
        };
        let n = Command::ResentOrder(o).encode(&mut buf);
        assert_eq!((n, &buf[..2]), (71, &[1, 10][..]));
        assert_eq!(
            Command::decode(&buf[..n]).unwrap(),
            (Command::ResentOrder(o), n)
        );
    }

    #[test]
    fn a_mass_cancel_round_trips_with_and_without_its_filters() {
        let mut buf = [0u8; MAX_COMMAND_LEN];
        for (account, side, scope) in [
            (None, None, MassScope::All),
            (Some(AccountId(0)), Some(Side::Sell), MassScope::Symbol),
        ] {
            let c = Command::MassCancel(MassCancelRequest {
                session: SessionId(3),
                account,
                cl_ord_id: ClOrdId::new("k1").unwrap(),
                scope,
                symbol: SymbolId(4),
                side,
                on_disconnect: account.is_none(),
            });
            let n = c.encode(&mut buf);
            assert_eq!(n, 2 + 54);
            assert_eq!(Command::decode(&buf[..n]).unwrap(), (c, n));
        }
        // The scope byte sits after session (4), account (5) and ClOrdID (40).
        let scope_at = 2 + 4 + 5 + 40;
        assert_eq!(buf[scope_at], 1);
        buf[scope_at] = 2;
        assert_eq!(
            Command::decode(&buf[..56]),
            Err(DecodeError::Field {
                field: "mass_scope",
                value: 2
            })
        );
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let mut buf = [0u8; MAX_COMMAND_LEN];
        let n = order().encode(&mut buf);
        for cut in 0..n {
            assert!(matches!(
                Command::decode(&buf[..cut]),
                Err(DecodeError::Truncated { .. })
            ));
        }
        let mut bad = buf;
        bad[0] = 9;
        assert_eq!(Command::decode(&bad[..n]), Err(DecodeError::Version(9)));
        bad = buf;
        bad[1] = 200;
        assert_eq!(Command::decode(&bad[..n]), Err(DecodeError::Kind(200)));
        bad = buf;
        bad[2 + 4 + 4 + 40 + 2] = 7; // side
        assert_eq!(
            Command::decode(&bad[..n]),
            Err(DecodeError::Field {
                field: "side",
                value: 7
            })
        );
    }
}
