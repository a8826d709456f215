//! Engine events as FIX messages: ExecutionReport (8) and OrderCancelReject (9).
//!
//! Pure functions of an event, its sequencer timestamp and the names of accounts and symbols,
//! so a report rendered at replay is byte for byte the report rendered live.

use engine::command::MassScope;
use engine::event::{Fill, MassCancelReport, MassStatusReport, OrderView, StatusReport};
use engine::types::{
    AccountId, OrdStatus, OrdType, OrderId, PRICE_SCALE, SessionId, Side, TimeInForce,
};
use engine::{Event, RejectReason};

use crate::codec::{Message, Tag};
use crate::session::Outgoing;
use crate::time::format_utc_millis;

/// The names the engine's dense ids stand for (shared with the reporting store).
pub use reporting::Names;

/// FIX tags the reports use.
#[allow(missing_docs)]
pub mod tag {
    use crate::codec::Tag;
    pub const ACCOUNT: Tag = 1;
    pub const AVG_PX: Tag = 6;
    pub const CL_ORD_ID: Tag = 11;
    pub const CUM_QTY: Tag = 14;
    pub const EXEC_ID: Tag = 17;
    pub const LAST_PX: Tag = 31;
    pub const LAST_QTY: Tag = 32;
    pub const ORDER_ID: Tag = 37;
    pub const ORDER_QTY: Tag = 38;
    pub const ORD_STATUS: Tag = 39;
    pub const ORD_STATUS_REQ_ID: Tag = 790;
    pub const ORD_TYPE: Tag = 40;
    pub const ORIG_CL_ORD_ID: Tag = 41;
    pub const POSS_DUP: Tag = 43;
    pub const PRICE: Tag = 44;
    pub const SIDE: Tag = 54;
    pub const SYMBOL: Tag = 55;
    pub const TEXT: Tag = 58;
    pub const TIME_IN_FORCE: Tag = 59;
    pub const TRANSACT_TIME: Tag = 60;
    pub const POSS_RESEND: Tag = 97;
    pub const CXL_REJ_REASON: Tag = 102;
    pub const ORD_REJ_REASON: Tag = 103;
    pub const EXEC_TYPE: Tag = 150;
    pub const LEAVES_QTY: Tag = 151;
    pub const CXL_REJ_RESPONSE_TO: Tag = 434;
    pub const COPY_MSG_INDICATOR: Tag = 797;
    pub const LAST_LIQUIDITY_IND: Tag = 851;
    pub const TRD_MATCH_ID: Tag = 880;
    pub const AGGRESSOR_INDICATOR: Tag = 1057;
    pub const MASS_CANCEL_REQUEST_TYPE: Tag = 530;
    pub const MASS_CANCEL_RESPONSE: Tag = 531;
    pub const MASS_CANCEL_REJECT_REASON: Tag = 532;
    pub const TOTAL_AFFECTED_ORDERS: Tag = 533;
    pub const MASS_STATUS_REQ_ID: Tag = 584;
    pub const MASS_STATUS_REQ_TYPE: Tag = 585;
    pub const TOT_NUM_REPORTS: Tag = 911;
    pub const LAST_RPT_REQUESTED: Tag = 912;
}

/// Decimal places of a price unit.
const PRICE_DECIMALS: usize = 4;
const _: () = assert!(10i64.pow(PRICE_DECIMALS as u32) == PRICE_SCALE);

/// A price in units as FIX decimal text (`100.1`, `25`, `0.0005`).
pub fn fmt_price(units: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_price(&mut out, units);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends a price in units as FIX decimal text, without allocating (one per report field
/// showed in the report thread's samples).
pub fn write_price(out: &mut Vec<u8>, units: i64) {
    if units < 0 {
        out.push(b'-');
    }
    let u = units.unsigned_abs();
    let scale = PRICE_SCALE as u64;
    crate::codec::write_uint(out, u / scale);
    let mut frac = u % scale;
    if frac == 0 {
        return;
    }
    out.push(b'.');
    let mut digits = PRICE_DECIMALS;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    // `digits` places with leading zeros, the trailing ones dropped above.
    let start = out.len();
    out.resize(start + digits, b'0');
    for b in out[start..].iter_mut().rev() {
        *b = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
}

/// AvgPx: the cost over the quantity, to six decimal places.
fn fmt_avg(cum_cost: u64, cum_qty: u64) -> String {
    if cum_qty == 0 {
        return "0".into();
    }
    let avg = rust_decimal::Decimal::from(cum_cost)
        / rust_decimal::Decimal::from(cum_qty)
        / rust_decimal::Decimal::from(PRICE_SCALE);
    avg.round_dp(6).normalize().to_string()
}

/// A sequencer timestamp as a FIX UTCTimestamp with milliseconds.
fn format_utc_nanos(ns: i64) -> [u8; 21] {
    format_utc_millis(ns.div_euclid(1_000_000))
}

/// FIX OrdStatus (39).
pub fn ord_status(s: OrdStatus) -> &'static [u8] {
    match s {
        OrdStatus::New => b"0",
        OrdStatus::PartiallyFilled => b"1",
        OrdStatus::Filled => b"2",
        OrdStatus::Canceled => b"4",
        OrdStatus::Replaced => b"5",
        OrdStatus::Rejected => b"8",
        OrdStatus::Expired => b"C",
    }
}

fn side(s: Side) -> &'static [u8] {
    match s {
        Side::Buy => b"1",
        Side::Sell => b"2",
    }
}

fn ord_type(t: OrdType) -> &'static [u8] {
    match t {
        OrdType::Market => b"1",
        OrdType::Limit => b"2",
    }
}

fn tif(t: TimeInForce) -> &'static [u8] {
    match t {
        TimeInForce::Day => b"0",
        TimeInForce::Gtc => b"1",
        TimeInForce::Ioc => b"3",
        TimeInForce::Fok => b"4",
    }
}

/// A report's body fields, encoded as they go (`tag=value<SOH>`...): one buffer per report
/// rather than one allocation per field.
struct Fields(Vec<u8>);

impl Fields {
    fn with_capacity(fields: usize) -> Fields {
        Fields(Vec::with_capacity(fields * 12))
    }
    fn tag(&mut self, tag: Tag) {
        crate::codec::write_tag(&mut self.0, tag);
    }
    fn price(&mut self, tag: Tag, units: i64) -> &mut Self {
        self.tag(tag);
        write_price(&mut self.0, units);
        self.0.push(crate::codec::SOH);
        self
    }
    fn put(&mut self, tag: Tag, v: impl AsRef<[u8]>) -> &mut Self {
        self.tag(tag);
        self.0.extend_from_slice(v.as_ref());
        self.0.push(crate::codec::SOH);
        self
    }
    /// OrderID (37): the engine's id, or NONE for an order that never got one.
    fn order_id(&mut self, id: OrderId) -> &mut Self {
        if id.0 == 0 {
            self.put(tag::ORDER_ID, "NONE")
        } else {
            self.num(tag::ORDER_ID, id.0)
        }
    }
    fn num(&mut self, tag: Tag, v: u64) -> &mut Self {
        self.tag(tag);
        crate::codec::write_uint(&mut self.0, v);
        self.0.push(crate::codec::SOH);
        self
    }
}

/// A rendered report: the session that owns the order, the order's account and the message.
#[derive(Clone, Debug)]
pub struct Report {
    /// The owning session (the engine's id).
    pub session: SessionId,
    /// The order's account (drop copies are routed by it).
    pub account: AccountId,
    /// The ExecutionReport or OrderCancelReject.
    pub msg: Outgoing,
    /// Whether drop-copy sessions get it: every ExecutionReport but an order status answer.
    pub drop_copy: bool,
}

impl Report {
    /// The message as a drop copy: CopyMsgIndicator (797) = Y.
    pub fn copy(&self) -> Outgoing {
        let mut m = self.msg.clone();
        m.fields.push((tag::COPY_MSG_INDICATOR, b"Y".to_vec()));
        m
    }
}

/// The ExecutionReport and OrderCancelReject messages an event produces, in order.
pub fn render(event: &Event, timestamp_ns: i64, names: &Names, out: &mut Vec<Report>) {
    let time = format_utc_nanos(timestamp_ns);
    match event {
        Event::Accepted(e) => out.push(order_report(&e.order, b"0", None, None, &time, names)),
        Event::Replaced(e) => out.push(order_report(
            &e.order,
            b"5",
            Some(e.orig_cl_ord_id.as_bytes()),
            None,
            &time,
            names,
        )),
        Event::Canceled(e) => {
            let orig = (!e.orig_cl_ord_id.is_empty()).then(|| e.orig_cl_ord_id.as_bytes());
            let text = (e.reason != engine::CancelReason::Requested).then(|| e.reason.text());
            out.push(order_report(&e.order, b"4", orig, text, &time, names));
        }
        Event::Expired(e) => out.push(order_report(
            &e.order,
            b"C",
            None,
            Some("Day order expired at the close"),
            &time,
            names,
        )),
        Event::Status(st) => out.push(status_report(st, &time, names)),
        // Cancel on disconnect: the cancels speak for themselves; nobody asked for a report.
        Event::MassCancel(m) if m.request.on_disconnect => {}
        Event::MassCancel(m) => out.push(mass_cancel_report(m, &time, names)),
        Event::MassStatus(m) => out.push(mass_status_report(m, &time, names)),
        // The order was received before and has had its answers: nothing to say again.
        Event::Rejected(e) if e.reason == RejectReason::ResentDuplicate => {}
        Event::Rejected(e) => {
            let mut f = Fields::with_capacity(20);
            f.put(tag::ORDER_ID, "NONE")
                .put(tag::CL_ORD_ID, e.cl_ord_id.as_bytes())
                .num(tag::EXEC_ID, e.exec_id)
                .put(tag::EXEC_TYPE, "8")
                .put(tag::ORD_STATUS, "8")
                .num(
                    tag::ORD_REJ_REASON,
                    u64::from(e.reason.fix_ord_rej_reason()),
                )
                .put(tag::ACCOUNT, names.account(e.account.0))
                .put(tag::SYMBOL, names.symbol(e.symbol.0))
                .put(tag::SIDE, side(e.side))
                .num(tag::ORDER_QTY, e.qty)
                .put(tag::ORD_TYPE, ord_type(e.ord_type));
            if e.ord_type == OrdType::Limit {
                f.price(tag::PRICE, e.price);
            }
            f.put(tag::TIME_IN_FORCE, tif(e.tif))
                .put(tag::LEAVES_QTY, "0")
                .put(tag::CUM_QTY, "0")
                .put(tag::AVG_PX, "0")
                .put(tag::TRANSACT_TIME, time)
                .put(tag::TEXT, e.reason.text());
            out.push(Report {
                session: e.session,
                account: e.account,
                msg: outgoing(b"8", f),
                drop_copy: true,
            });
        }
        Event::Trade(t) => {
            for (fill, taker) in [(&t.maker, false), (&t.taker, true)] {
                let s = if taker {
                    t.aggressor
                } else {
                    t.aggressor.opposite()
                };
                out.push(fill_report(
                    fill, t.symbol.0, s, t.price, t.qty, t.trade_id, taker, &time, names,
                ));
            }
        }
        Event::CancelRejected(e) => {
            let mut f = Fields::with_capacity(12);
            f.order_id(e.order_id)
                .put(tag::CL_ORD_ID, e.cl_ord_id.as_bytes())
                .put(tag::ORIG_CL_ORD_ID, e.orig_cl_ord_id.as_bytes())
                .put(tag::ORD_STATUS, ord_status(e.status))
                .put(tag::ACCOUNT, names.account(e.account.0))
                .put(
                    tag::CXL_REJ_RESPONSE_TO,
                    if e.is_replace { "2" } else { "1" },
                )
                .num(
                    tag::CXL_REJ_REASON,
                    u64::from(e.reason.fix_cxl_rej_reason()),
                )
                .put(tag::TRANSACT_TIME, time)
                .put(tag::TEXT, e.reason.text());
            out.push(Report {
                session: e.session,
                account: e.account,
                msg: outgoing(b"9", f),
                drop_copy: false,
            });
        }
        Event::TradingStatus(_) | Event::Transfer(_) => {}
    }
}

/// MassCancelRejectReason (532) of a refusal: unknown security, or other.
fn mass_cancel_reject_reason(reason: RejectReason) -> u64 {
    if reason == RejectReason::UnknownSymbol {
        1
    } else {
        99
    }
}

/// The OrderMassCancelReport (r) answering a mass cancel the engine carried out or refused
/// (its cancelled orders were reported before it, one ExecutionReport each). Its OrderID is
/// the exchange's id of the request. Not drop-copied: the cancels are.
fn mass_cancel_report(m: &MassCancelReport, time: &[u8], names: &Names) -> Report {
    let r = &m.request;
    let scope = [r.scope as u8 + b'0'];
    let mut f = Fields::with_capacity(12);
    f.put(tag::CL_ORD_ID, r.cl_ord_id.as_bytes());
    f.tag(tag::ORDER_ID);
    f.0.extend_from_slice(b"MC");
    crate::codec::write_uint(&mut f.0, m.exec_id);
    f.0.push(crate::codec::SOH);
    f.put(tag::MASS_CANCEL_REQUEST_TYPE, scope);
    match m.reason {
        None => f.put(tag::MASS_CANCEL_RESPONSE, scope),
        Some(reason) => f.put(tag::MASS_CANCEL_RESPONSE, "0").num(
            tag::MASS_CANCEL_REJECT_REASON,
            mass_cancel_reject_reason(reason),
        ),
    };
    f.num(tag::TOTAL_AFFECTED_ORDERS, u64::from(m.canceled));
    if let Some(a) = r.account {
        f.put(tag::ACCOUNT, names.account(a.0));
    }
    if r.scope == MassScope::Symbol {
        f.put(tag::SYMBOL, names.symbol(r.symbol.0));
    }
    if let Some(s) = r.side {
        f.put(tag::SIDE, side(s));
    }
    f.put(tag::TRANSACT_TIME, time);
    if let Some(reason) = m.reason {
        f.put(tag::TEXT, reason.text());
    }
    Report {
        session: r.session,
        account: r.account.unwrap_or(AccountId(0)),
        msg: outgoing(b"r", f),
        drop_copy: false,
    }
}

/// An ExecutionReport (ExecType I) answering an order mass status request: one working order
/// as it stands, with MassStatusReqID (584), TotNumReports (911) and, on the last,
/// LastRptRequested (912) = Y; when no order matched, a single one with OrdStatus Rejected and
/// no order. Not drop-copied.
fn mass_status_report(m: &MassStatusReport, time: &[u8], names: &Names) -> Report {
    let (r, o) = (&m.request, &m.order);
    let mut f = if m.total > 0 {
        order_fields(o, b"I", None, time, names)
    } else {
        let mut f = no_order_fields(&o.exec_id.to_string(), time);
        if let Some(a) = r.account {
            f.put(tag::ACCOUNT, names.account(a.0));
        }
        match r.scope {
            MassScope::Symbol => f.put(tag::SYMBOL, names.symbol(r.symbol.0)),
            MassScope::All => f.put(tag::SYMBOL, "NA"),
        };
        f.put(tag::SIDE, side(r.side.unwrap_or(Side::Buy)))
            .put(tag::TEXT, "no working order matches the request");
        f
    };
    f.put(tag::MASS_STATUS_REQ_ID, r.req_id.as_bytes())
        .num(tag::TOT_NUM_REPORTS, u64::from(m.total));
    if m.last {
        f.put(tag::LAST_RPT_REQUESTED, "Y");
    }
    Report {
        session: r.session,
        account: o.account,
        msg: outgoing(b"8", f),
        drop_copy: false,
    }
}

/// The fields of an ExecutionReport (ExecType I, OrdStatus Rejected) that shows no order.
fn no_order_fields(exec_id: &str, time: &[u8]) -> Fields {
    let mut f = Fields::with_capacity(16);
    f.put(tag::ORDER_ID, "NONE")
        .put(tag::EXEC_ID, exec_id)
        .put(tag::EXEC_TYPE, "I")
        .put(tag::ORD_STATUS, "8")
        .put(tag::LEAVES_QTY, "0")
        .put(tag::CUM_QTY, "0")
        .put(tag::AVG_PX, "0")
        .put(tag::TRANSACT_TIME, time);
    f
}

/// An ExecutionReport answering an order mass status request refused before the engine
/// (rate limit, entitlement, unknown symbol): ExecType I, OrdStatus Rejected, no order, the
/// request's fields echoed, TotNumReports 0 and LastRptRequested Y.
pub fn gateway_mass_status_reject(
    msg: &Message<'_>,
    exec_id: &str,
    text: &str,
    time_ns: i64,
) -> Outgoing {
    let mut f = no_order_fields(exec_id, &format_utc_nanos(time_ns));
    if let Some(a) = msg.get(tag::ACCOUNT) {
        f.put(tag::ACCOUNT, a);
    }
    f.put(tag::SYMBOL, msg.get(tag::SYMBOL).unwrap_or(b"NA"))
        .put(tag::SIDE, msg.get(tag::SIDE).unwrap_or(b"1"));
    if let Some(id) = msg.get(tag::MASS_STATUS_REQ_ID) {
        f.put(tag::MASS_STATUS_REQ_ID, id);
    }
    f.put(tag::TOT_NUM_REPORTS, "0")
        .put(tag::LAST_RPT_REQUESTED, "Y")
        .put(tag::TEXT, text);
    outgoing(b"8", f)
}

/// An OrderMassCancelReport (r) refusing a request before it reached the engine (rate limit,
/// entitlement, unknown symbol): the request's fields echoed, `id` as its OrderID.
pub fn gateway_mass_cancel_reject(
    msg: &Message<'_>,
    id: &str,
    reason: RejectReason,
    text: &str,
    time_ns: i64,
) -> Outgoing {
    let mut f = Fields::with_capacity(12);
    if let Some(cl) = msg.get(tag::CL_ORD_ID) {
        f.put(tag::CL_ORD_ID, cl);
    }
    f.put(tag::ORDER_ID, id)
        .put(
            tag::MASS_CANCEL_REQUEST_TYPE,
            msg.get(tag::MASS_CANCEL_REQUEST_TYPE).unwrap_or(b"7"),
        )
        .put(tag::MASS_CANCEL_RESPONSE, "0")
        .num(
            tag::MASS_CANCEL_REJECT_REASON,
            mass_cancel_reject_reason(reason),
        )
        .put(tag::TOTAL_AFFECTED_ORDERS, "0");
    for t in [tag::ACCOUNT, tag::SYMBOL, tag::SIDE] {
        if let Some(v) = msg.get(t) {
            f.put(t, v);
        }
    }
    f.put(tag::TRANSACT_TIME, format_utc_nanos(time_ns))
        .put(tag::TEXT, text);
    outgoing(b"r", f)
}

fn outgoing(msg_type: &[u8], f: Fields) -> Outgoing {
    Outgoing {
        body: f.0,
        ..Outgoing::new(msg_type, Vec::new())
    }
}

fn order_report(
    o: &OrderView,
    exec_type: &[u8],
    orig: Option<&[u8]>,
    text: Option<&str>,
    time: &[u8],
    names: &Names,
) -> Report {
    let mut f = order_fields(o, exec_type, orig, time, names);
    if let Some(t) = text {
        f.put(tag::TEXT, t);
    }
    Report {
        session: o.session,
        account: o.account,
        msg: outgoing(b"8", f),
        drop_copy: true,
    }
}

/// An ExecutionReport's fields for an order's state, up to TransactTime.
fn order_fields(
    o: &OrderView,
    exec_type: &[u8],
    orig: Option<&[u8]>,
    time: &[u8],
    names: &Names,
) -> Fields {
    let mut f = Fields::with_capacity(22);
    f.order_id(o.order_id)
        .put(tag::CL_ORD_ID, o.cl_ord_id.as_bytes());
    if let Some(orig) = orig {
        f.put(tag::ORIG_CL_ORD_ID, orig);
    }
    f.num(tag::EXEC_ID, o.exec_id)
        .put(tag::EXEC_TYPE, exec_type)
        .put(tag::ORD_STATUS, ord_status(o.status))
        .put(tag::ACCOUNT, names.account(o.account.0))
        .put(tag::SYMBOL, names.symbol(o.symbol.0))
        .put(tag::SIDE, side(o.side))
        .num(tag::ORDER_QTY, o.qty)
        .put(tag::ORD_TYPE, ord_type(o.ord_type));
    if o.ord_type == OrdType::Limit {
        f.price(tag::PRICE, o.price);
    }
    f.put(tag::TIME_IN_FORCE, tif(o.tif))
        .num(tag::LEAVES_QTY, o.leaves_qty)
        .num(tag::CUM_QTY, o.cum_qty)
        .put(tag::AVG_PX, fmt_avg(o.cum_cost, o.cum_qty))
        .put(tag::TRANSACT_TIME, time);
    f
}

/// The answer to an order status request (ExecType I): the order as it stands, or, when there
/// is none to show, OrdStatus Rejected with OrdRejReason and Text (no quantities or prices the
/// request did not give).
fn status_report(st: &StatusReport, time: &[u8], names: &Names) -> Report {
    let o = &st.order;
    let f = match st.reason {
        None => {
            let mut f = order_fields(o, b"I", None, time, names);
            if !st.req_id.is_empty() {
                f.put(tag::ORD_STATUS_REQ_ID, st.req_id.as_bytes());
            }
            f
        }
        Some(reason) => {
            let mut f = Fields::with_capacity(16);
            f.order_id(o.order_id)
                .put(tag::CL_ORD_ID, o.cl_ord_id.as_bytes())
                .num(tag::EXEC_ID, o.exec_id)
                .put(tag::EXEC_TYPE, "I")
                .put(tag::ORD_STATUS, ord_status(o.status))
                .num(tag::ORD_REJ_REASON, u64::from(reason.fix_ord_rej_reason()))
                .put(tag::ACCOUNT, names.account(o.account.0))
                .put(tag::SYMBOL, names.symbol(o.symbol.0))
                .put(tag::SIDE, side(o.side))
                .put(tag::LEAVES_QTY, "0")
                .put(tag::CUM_QTY, "0")
                .put(tag::AVG_PX, "0")
                .put(tag::TRANSACT_TIME, time);
            if !st.req_id.is_empty() {
                f.put(tag::ORD_STATUS_REQ_ID, st.req_id.as_bytes());
            }
            f.put(tag::TEXT, reason.text());
            f
        }
    };
    Report {
        session: o.session,
        account: o.account,
        msg: outgoing(b"8", f),
        drop_copy: false,
    }
}

#[allow(clippy::too_many_arguments)]
fn fill_report(
    fill: &Fill,
    symbol: u16,
    s: Side,
    price: i64,
    qty: u64,
    trade_id: u64,
    taker: bool,
    time: &[u8],
    names: &Names,
) -> Report {
    let status = OrdStatus::working(fill.cum_qty, fill.leaves_qty);
    let mut f = Fields::with_capacity(24);
    f.order_id(fill.order_id)
        .put(tag::CL_ORD_ID, fill.cl_ord_id.as_bytes())
        .num(tag::EXEC_ID, fill.exec_id)
        .put(tag::EXEC_TYPE, "F")
        .put(tag::ORD_STATUS, ord_status(status))
        .put(tag::ACCOUNT, names.account(fill.account.0))
        .put(tag::SYMBOL, names.symbol(symbol))
        .put(tag::SIDE, side(s))
        .num(tag::ORDER_QTY, fill.qty)
        .put(tag::ORD_TYPE, ord_type(fill.ord_type));
    if fill.ord_type == OrdType::Limit {
        f.price(tag::PRICE, fill.price);
    }
    f.put(tag::TIME_IN_FORCE, tif(fill.tif))
        .num(tag::LAST_QTY, qty)
        .price(tag::LAST_PX, price)
        .num(tag::TRD_MATCH_ID, trade_id)
        .put(tag::LAST_LIQUIDITY_IND, if taker { "2" } else { "1" })
        .put(tag::AGGRESSOR_INDICATOR, if taker { "Y" } else { "N" })
        .num(tag::LEAVES_QTY, fill.leaves_qty)
        .num(tag::CUM_QTY, fill.cum_qty)
        .put(tag::AVG_PX, fmt_avg(fill.cum_cost, fill.cum_qty))
        .put(tag::TRANSACT_TIME, time);
    Report {
        session: fill.session,
        account: fill.account,
        msg: outgoing(b"8", f),
        drop_copy: true,
    }
}

/// An ExecutionReport rejecting a new order before it reached the engine (entitlement, rate
/// limit, malformed values).
#[allow(clippy::too_many_arguments)]
pub fn gateway_reject(
    exec_id: &str,
    cl_ord_id: &[u8],
    account: &[u8],
    symbol: &[u8],
    side: &[u8],
    reason: RejectReason,
    text: &str,
    time_ns: i64,
) -> Outgoing {
    let request = RefusedRequest {
        exec_id,
        cl_ord_id,
        account,
        symbol,
        side,
    };
    refusal(b"8", &request, None, reason, text, time_ns)
}

/// What a request refused before the engine named, as its answer repeats it.
pub struct RefusedRequest<'a> {
    /// ExecID of the answer.
    pub exec_id: &'a str,
    /// ClOrdID (11) as sent.
    pub cl_ord_id: &'a [u8],
    /// Account (1) as sent, or empty.
    pub account: &'a [u8],
    /// Symbol (55) as sent, or empty.
    pub symbol: &'a [u8],
    /// Side (54) as sent, or empty.
    pub side: &'a [u8],
}

/// An ExecutionReport answering an order status request refused before the engine
/// (entitlement, rate limit, malformed values): ExecType I, OrdStatus Rejected, the
/// OrdStatusReqID (790) echoed when given.
pub fn gateway_status_reject(
    request: &RefusedRequest,
    req_id: &[u8],
    reason: RejectReason,
    text: &str,
    time_ns: i64,
) -> Outgoing {
    refusal(b"I", request, Some(req_id), reason, text, time_ns)
}

fn refusal(
    exec_type: &[u8],
    r: &RefusedRequest,
    req_id: Option<&[u8]>,
    reason: RejectReason,
    text: &str,
    time_ns: i64,
) -> Outgoing {
    let mut f = Fields::with_capacity(15);
    f.put(tag::ORDER_ID, "NONE")
        .put(tag::CL_ORD_ID, r.cl_ord_id)
        .put(tag::EXEC_ID, r.exec_id)
        .put(tag::EXEC_TYPE, exec_type)
        .put(tag::ORD_STATUS, "8")
        .num(tag::ORD_REJ_REASON, u64::from(reason.fix_ord_rej_reason()));
    if !r.account.is_empty() {
        f.put(tag::ACCOUNT, r.account);
    }
    f.put(
        tag::SYMBOL,
        if r.symbol.is_empty() { b"?" } else { r.symbol },
    )
    .put(tag::SIDE, if r.side.is_empty() { b"1" } else { r.side })
    .put(tag::LEAVES_QTY, "0")
    .put(tag::CUM_QTY, "0")
    .put(tag::AVG_PX, "0")
    .put(tag::TRANSACT_TIME, format_utc_nanos(time_ns));
    if let Some(id) = req_id.filter(|id| !id.is_empty()) {
        f.put(tag::ORD_STATUS_REQ_ID, id);
    }
    f.put(tag::TEXT, text);
    outgoing(b"8", f)
}

/// An OrderCancelReject for a cancel or replace refused before it reached the engine.
#[allow(clippy::too_many_arguments)]
pub fn gateway_cancel_reject(
    cl_ord_id: &[u8],
    orig_cl_ord_id: &[u8],
    order_id: &[u8],
    account: &[u8],
    is_replace: bool,
    reason: RejectReason,
    text: &str,
    time_ns: i64,
) -> Outgoing {
    let mut f = Fields::with_capacity(10);
    f.put(
        tag::ORDER_ID,
        if order_id.is_empty() {
            b"NONE"
        } else {
            order_id
        },
    )
    .put(tag::CL_ORD_ID, cl_ord_id)
    .put(tag::ORIG_CL_ORD_ID, orig_cl_ord_id)
    .put(tag::ORD_STATUS, "8");
    if !account.is_empty() {
        f.put(tag::ACCOUNT, account);
    }
    f.put(tag::CXL_REJ_RESPONSE_TO, if is_replace { "2" } else { "1" })
        .num(tag::CXL_REJ_REASON, u64::from(reason.fix_cxl_rej_reason()))
        .put(tag::TRANSACT_TIME, format_utc_nanos(time_ns))
        .put(tag::TEXT, text);
    outgoing(b"9", f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_print_as_short_decimals() {
        assert_eq!(fmt_price(1_001_000), "100.1");
        assert_eq!(fmt_price(250_000), "25");
        assert_eq!(fmt_price(5), "0.0005");
        assert_eq!(fmt_price(-12_345), "-1.2345");
        for units in [
            0,
            1,
            10,
            100,
            1_000,
            10_000,
            10_010,
            99_999,
            1_000_001,
            i64::MAX,
            i64::MIN,
        ]
        .into_iter()
        .chain((-3_000..3_000).map(|i| i * 7_919))
        {
            let want = rust_decimal::Decimal::from_i128_with_scale(i128::from(units), 4)
                .normalize()
                .to_string();
            assert_eq!(fmt_price(units), want, "{units}");
        }
        assert_eq!(fmt_avg(1_001_000 * 3 + 1_001_100, 4), "100.1025");
        assert_eq!(fmt_avg(10, 3), "0.000333");
        assert_eq!(fmt_avg(0, 0), "0");
    }
}
