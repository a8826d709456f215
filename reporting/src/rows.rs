//! Engine events as database rows: a pure projection of the sequenced event stream.

use engine::command::Asset;
use engine::event::{Fill, OrderView};
use engine::types::{OrdStatus, OrdType, Side, TimeInForce};
use engine::{CancelReason, Event};
use serde::Serialize;

/// The names behind the engine's dense account and symbol ids.
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// Account names by account id.
    pub accounts: Vec<String>,
    /// Symbols by symbol id.
    pub symbols: Vec<String>,
}

impl Names {
    /// An account's name ("" for an id without one).
    pub fn account(&self, id: u32) -> &str {
        self.accounts.get(id as usize).map_or("", String::as_str)
    }

    /// A symbol ("?" for an id without one).
    pub fn symbol(&self, id: u16) -> &str {
        self.symbols
            .get(usize::from(id))
            .map_or("?", String::as_str)
    }
}

/// One execution report: a new order, a fill, a cancel, a replace, an expiry or a reject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrderEvent {
    /// Sequence id of the command that caused it.
    pub seq: u64,
    /// The report's ExecID (unique).
    pub exec_id: u64,
    /// Sequencer time, ns since the Unix epoch.
    pub time_ns: i64,
    /// Exchange order id (0 for a rejected new order).
    pub order_id: u64,
    /// ClOrdID the report answers.
    pub cl_ord_id: String,
    /// OrigClOrdID of a cancel or replace (empty otherwise).
    pub orig_cl_ord_id: String,
    /// Account name.
    pub account: String,
    /// Symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// `limit` or `market`.
    pub ord_type: String,
    /// `day`, `gtc`, `ioc` or `fok`.
    pub tif: String,
    /// `new`, `trade`, `canceled`, `replaced`, `expired` or `rejected`.
    pub exec_type: String,
    /// The order's status after this report.
    pub status: String,
    /// Limit price in price units (1/10,000).
    pub price: i64,
    /// Order quantity.
    pub qty: i64,
    /// Filled quantity.
    pub cum_qty: i64,
    /// Quantity still working.
    pub leaves_qty: i64,
    /// Sum of price x quantity over the fills, in price units.
    pub cum_cost: i64,
    /// Trade price of a fill, in price units.
    pub last_px: Option<i64>,
    /// Quantity of a fill.
    pub last_qty: Option<i64>,
    /// Trade id of a fill (the same on both sides).
    pub trade_id: Option<u64>,
    /// `maker` or `taker`, for a fill.
    pub liquidity: Option<String>,
    /// Reject reason code of a reject, cancel reason code of an unrequested cancel.
    pub reason_code: Option<i32>,
    /// Reject or cancel reason text.
    pub text: Option<String>,
}

/// A deposit or withdrawal, applied or refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransferRow {
    /// Sequence id of the command.
    pub seq: u64,
    /// Sequencer time, ns.
    pub time_ns: i64,
    /// Account name.
    pub account: String,
    /// `cash` or a symbol.
    pub asset: String,
    /// Amount moved (price units for cash): positive in, negative out.
    pub amount: i64,
    /// Balance after.
    pub balance: i64,
    /// Reject reason code when refused.
    pub reject_code: Option<i32>,
}

/// A refused cancel or replace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CancelRejectRow {
    /// Sequence id of the command.
    pub seq: u64,
    /// Sequencer time, ns.
    pub time_ns: i64,
    /// Account name.
    pub account: String,
    /// Symbol.
    pub symbol: String,
    /// The order named (0 when unknown).
    pub order_id: u64,
    /// The request's ClOrdID.
    pub cl_ord_id: String,
    /// The OrigClOrdID it named.
    pub orig_cl_ord_id: String,
    /// Whether it was a cancel/replace (else a cancel).
    pub is_replace: bool,
    /// Reject reason code.
    pub reason_code: i32,
    /// Reason text.
    pub text: String,
}

/// Rows of a run of sequenced commands, applied in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    /// Execution reports.
    pub order_events: Vec<OrderEvent>,
    /// Account movements.
    pub transfers: Vec<TransferRow>,
    /// Refused cancels and replaces.
    pub cancel_rejects: Vec<CancelRejectRow>,
    /// The last sequence id these rows cover (stored with them).
    pub last_seq: u64,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.order_events.len() + self.transfers.len() + self.cancel_rejects.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the rows, keeping their memory.
    pub fn clear(&mut self) {
        self.order_events.clear();
        self.transfers.clear();
        self.cancel_rejects.clear();
    }

    /// Adds the rows of one event of the command with sequence id `seq`.
    pub fn push(&mut self, seq: u64, time_ns: i64, event: &Event, names: &Names) {
        self.last_seq = self.last_seq.max(seq);
        let order = |o: &OrderView, exec_type: &str| OrderEvent {
            seq,
            exec_id: o.exec_id,
            time_ns,
            order_id: o.order_id.0,
            cl_ord_id: o.cl_ord_id.as_str().into_owned(),
            orig_cl_ord_id: String::new(),
            account: names.account(o.account.0).into(),
            symbol: names.symbol(o.symbol.0).into(),
            side: side(o.side).into(),
            ord_type: ord_type(o.ord_type).into(),
            tif: tif(o.tif).into(),
            exec_type: exec_type.into(),
            status: status_name(o.status).into(),
            price: o.price,
            qty: o.qty as i64,
            cum_qty: o.cum_qty as i64,
            leaves_qty: o.leaves_qty as i64,
            cum_cost: o.cum_cost as i64,
            last_px: None,
            last_qty: None,
            trade_id: None,
            liquidity: None,
            reason_code: None,
            text: None,
        };
        match event {
            Event::Accepted(e) => self.order_events.push(order(&e.order, "new")),
            Event::Replaced(e) => {
                let mut r = order(&e.order, "replaced");
                r.orig_cl_ord_id = e.orig_cl_ord_id.as_str().into_owned();
                self.order_events.push(r);
            }
            Event::Canceled(e) => {
                let mut r = order(&e.order, "canceled");
                r.orig_cl_ord_id = e.orig_cl_ord_id.as_str().into_owned();
                if e.reason != CancelReason::Requested {
                    r.reason_code = Some(i32::from(e.reason as u8));
                    r.text = Some(e.reason.text().into());
                }
                self.order_events.push(r);
            }
            Event::Expired(e) => self.order_events.push(order(&e.order, "expired")),
            Event::Rejected(e) => self.order_events.push(OrderEvent {
                seq,
                exec_id: e.exec_id,
                time_ns,
                order_id: 0,
                cl_ord_id: e.cl_ord_id.as_str().into_owned(),
                orig_cl_ord_id: String::new(),
                account: names.account(e.account.0).into(),
                symbol: names.symbol(e.symbol.0).into(),
                side: side(e.side).into(),
                ord_type: ord_type(e.ord_type).into(),
                tif: tif(e.tif).into(),
                exec_type: "rejected".into(),
                status: "rejected".into(),
                price: e.price,
                qty: e.qty as i64,
                cum_qty: 0,
                leaves_qty: 0,
                cum_cost: 0,
                last_px: None,
                last_qty: None,
                trade_id: None,
                liquidity: None,
                reason_code: Some(i32::from(e.reason.code())),
                text: Some(e.reason.text().into()),
            }),
            Event::Trade(t) => {
                for (fill, s, liquidity) in [
                    (&t.maker, t.aggressor.opposite(), "maker"),
                    (&t.taker, t.aggressor, "taker"),
                ] {
                    self.order_events.push(fill_row(
                        seq, time_ns, fill, s, t.symbol.0, t.price, t.qty, t.trade_id, liquidity,
                        names,
                    ));
                }
            }
            Event::CancelRejected(e) => self.cancel_rejects.push(CancelRejectRow {
                seq,
                time_ns,
                account: names.account(e.account.0).into(),
                symbol: names.symbol(e.symbol.0).into(),
                order_id: e.order_id.0,
                cl_ord_id: e.cl_ord_id.as_str().into_owned(),
                orig_cl_ord_id: e.orig_cl_ord_id.as_str().into_owned(),
                is_replace: e.is_replace,
                reason_code: i32::from(e.reason.code()),
                text: e.reason.text().into(),
            }),
            Event::Transfer(t) => self.transfers.push(TransferRow {
                seq,
                time_ns,
                account: names.account(t.account.0).into(),
                asset: match t.asset {
                    Asset::Cash => "cash".into(),
                    Asset::Shares(s) => names.symbol(s.0).into(),
                },
                amount: t.amount,
                balance: t.balance,
                reject_code: t.reject.map(|r| i32::from(r.code())),
            }),
            // Nothing changed: a status answer only restates an order; a mass cancel's answer
            // only counts the cancels, each stored above with its reason.
            Event::TradingStatus(_)
            | Event::Status(_)
            | Event::MassCancel(_)
            | Event::MassStatus(_) => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn fill_row(
    seq: u64,
    time_ns: i64,
    fill: &Fill,
    s: Side,
    symbol: u16,
    price: i64,
    qty: u64,
    trade_id: u64,
    liquidity: &str,
    names: &Names,
) -> OrderEvent {
    OrderEvent {
        seq,
        exec_id: fill.exec_id,
        time_ns,
        order_id: fill.order_id.0,
        cl_ord_id: fill.cl_ord_id.as_str().into_owned(),
        orig_cl_ord_id: String::new(),
        account: names.account(fill.account.0).into(),
        symbol: names.symbol(symbol).into(),
        side: side(s).into(),
        ord_type: ord_type(fill.ord_type).into(),
        tif: tif(fill.tif).into(),
        exec_type: "trade".into(),
        status: status_name(OrdStatus::working(fill.cum_qty, fill.leaves_qty)).into(),
        price: fill.price,
        qty: fill.qty as i64,
        cum_qty: fill.cum_qty as i64,
        leaves_qty: fill.leaves_qty as i64,
        cum_cost: fill.cum_cost as i64,
        last_px: Some(price),
        last_qty: Some(qty as i64),
        trade_id: Some(trade_id),
        liquidity: Some(liquidity.into()),
        reason_code: None,
        text: None,
    }
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn ord_type(t: OrdType) -> &'static str {
    match t {
        OrdType::Market => "market",
        OrdType::Limit => "limit",
    }
}

fn tif(t: TimeInForce) -> &'static str {
    match t {
        TimeInForce::Day => "day",
        TimeInForce::Gtc => "gtc",
        TimeInForce::Ioc => "ioc",
        TimeInForce::Fok => "fok",
    }
}

/// An order status as the store and the HTTP API name it.
pub fn status_name(s: OrdStatus) -> &'static str {
    match s {
        OrdStatus::New => "new",
        OrdStatus::PartiallyFilled => "partially_filled",
        OrdStatus::Filled => "filled",
        OrdStatus::Canceled => "canceled",
        OrdStatus::Replaced => "replaced",
        OrdStatus::Rejected => "rejected",
        OrdStatus::Expired => "expired",
    }
}
