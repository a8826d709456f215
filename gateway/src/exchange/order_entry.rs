//! Order entry: FIX NewOrderSingle, OrderCancelRequest and OrderCancelReplaceRequest validated,
//! checked against the session's entitlements and rate limit, and normalized into binary
//! engine commands.
//!
//! A new order refused here goes to the engine as a `Refused` command, a cancel or replace as a
//! `RefusedCancel` command, when it names a known account and symbol, so the refusal is
//! journaled, reported and stored like any reject (and a refused order drop-copied); anything
//! else refused here is answered at once (an ExecutionReport or OrderCancelReject with the
//! reason). Everything accepted goes to the engine thread, whose
//! events produce the reports.

// Fx: keys come from the configuration; they are looked up for every message.
use rustc_hash::FxHashMap as HashMap;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Instant;

use engine::command::{
    CancelOrder, MassCancelRequest, MassScope, MassStatusRequest, NewOrder, Refused, RefusedCancel,
    ReplaceOrder, StatusRequest,
};
use engine::config::decimal_to_units;
use engine::types::{
    AccountId, ClOrdId, OrdType, OrderId, Price, Qty, SessionId, Side, SymbolId, TimeInForce,
};
use engine::{Command, RejectReason};
use rust_decimal::Decimal;

use super::market_data::{self, MdInput};
use crate::codec::{Message, Tag};
use crate::config::Role;
use crate::reports::{
    RefusedRequest, gateway_cancel_reject, gateway_mass_cancel_reject, gateway_mass_status_reject,
    gateway_reject, gateway_status_reject, tag,
};
use crate::session::{AppReject, Application, Outgoing, SessionKey};
use crate::time::now_nanos;

/// Tag access shared by FIX messages and orders that arrive another way (HTTP), so both go
/// through the same checks.
pub trait Fields {
    /// The value of the first field with this tag.
    fn get(&self, tag: Tag) -> Option<&[u8]>;
}

impl Fields for Message<'_> {
    fn get(&self, tag: Tag) -> Option<&[u8]> {
        Message::get(self, tag)
    }
}

/// An order's fields by FIX tag, built from a request in another format.
#[derive(Clone, Debug, Default)]
pub struct FieldMap(pub Vec<(Tag, Vec<u8>)>);

impl Fields for FieldMap {
    fn get(&self, tag: Tag) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_slice())
    }
}

/// A token bucket: `rate` orders a second, bursts up to one second's worth.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// What order entry knows about one session.
#[derive(Debug)]
pub struct SessionInfo {
    /// The engine's id for the session.
    pub id: SessionId,
    /// Accounts the session may trade, by name.
    pub accounts: Vec<(String, AccountId)>,
    /// What the session is for.
    pub role: Role,
    /// Whether its working orders are cancelled when it disconnects.
    pub cancel_on_disconnect: bool,
    bucket: Bucket,
}

impl SessionInfo {
    /// A session with this role, entitled to these accounts.
    pub fn new(id: SessionId, accounts: Vec<(String, AccountId)>, role: Role) -> SessionInfo {
        SessionInfo {
            id,
            accounts,
            role,
            cancel_on_disconnect: false,
            bucket: Bucket {
                tokens: f64::MAX,
                last: Instant::now(),
            },
        }
    }
}

/// The order-entry application behind every trading session.
pub struct OrderEntry {
    sessions: HashMap<SessionKey, SessionInfo>,
    symbols: HashMap<Vec<u8>, SymbolId>,
    accounts: HashMap<Vec<u8>, AccountId>,
    tx: SyncSender<Command>,
    md: Option<SyncSender<MdInput>>,
    rate: f64,
    epoch_ns: i64,
    rejects: u64,
    /// The exchange is shutting down: sessions that disconnect now keep their orders.
    closing: bool,
}

/// A refusal before the engine: reason and text.
pub type Refusal = (RejectReason, &'static str);

impl OrderEntry {
    /// Order entry for these sessions and symbols (ticker, id), sending commands on `tx`;
    /// each session may send `rate` orders a second.
    pub fn new(
        sessions: HashMap<SessionKey, SessionInfo>,
        symbols: impl IntoIterator<Item = (String, SymbolId)>,
        accounts: impl IntoIterator<Item = (String, AccountId)>,
        tx: SyncSender<Command>,
        md: Option<SyncSender<MdInput>>,
        rate: u32,
    ) -> OrderEntry {
        OrderEntry {
            sessions,
            symbols: symbols
                .into_iter()
                .map(|(s, id)| (s.into_bytes(), id))
                .collect(),
            accounts: accounts
                .into_iter()
                .map(|(a, id)| (a.into_bytes(), id))
                .collect(),
            tx,
            md,
            rate: f64::from(rate.max(1)),
            epoch_ns: now_nanos(),
            rejects: 0,
            closing: false,
        }
    }

    /// Marks the exchange as shutting down: the sessions it logs out keep their working orders
    /// (cancel on disconnect is for a client that goes away, not for the venue closing).
    pub fn shutting_down(&mut self) {
        self.closing = true;
    }

    /// Cancel on disconnect: a mass cancel of everything the session has working, sequenced
    /// like the client's own. Never lost to a full engine queue: a thread then waits for room
    /// (not this one: it holds the session's lock, which the report thread may need before
    /// the engine can drain its queue). Fails only when the engine has stopped.
    fn cancel_on_disconnect(&self, key: &SessionKey) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        if !s.cancel_on_disconnect || self.closing {
            return;
        }
        let cmd = Command::MassCancel(MassCancelRequest::on_disconnect(s.id));
        tracing::info!(session = %key, "cancel on disconnect");
        let stopped = |key: &dyn std::fmt::Display| {
            tracing::warn!(session = %key, "cancel on disconnect: the engine has stopped");
        };
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(cmd)) => {
                let (tx, key) = (self.tx.clone(), key.clone());
                std::thread::spawn(move || {
                    if tx.send(cmd).is_err() {
                        stopped(&key);
                    }
                });
            }
            Err(TrySendError::Disconnected(_)) => stopped(key),
        }
    }

    fn exec_id(&mut self) -> String {
        self.rejects += 1;
        format!("G{}-{}", self.epoch_ns, self.rejects)
    }

    /// The checks every order message passes first: the session's rate limit, then the
    /// account it names (or its only account) among those it may trade.
    fn admit(
        &mut self,
        key: &SessionKey,
        msg: &impl Fields,
    ) -> Result<(SessionId, AccountId), Refusal> {
        let (session, account) = self.admit_any(key, msg)?;
        let s = self
            .sessions
            .get(key)
            .ok_or((RejectReason::NotEntitled, "session may not trade"))?;
        match account {
            Some(a) => Ok((session, a)),
            None if s.accounts.len() == 1 => Ok((session, s.accounts[0].1)),
            None => Err((
                RejectReason::UnknownAccount,
                "Account (1) is required: this session trades for several accounts",
            )),
        }
    }

    /// [`Self::admit`] for a request that may leave the account out to mean every account the
    /// session trades for (`None`).
    fn admit_any(
        &mut self,
        key: &SessionKey,
        msg: &impl Fields,
    ) -> Result<(SessionId, Option<AccountId>), Refusal> {
        let rate = self.rate;
        let s = self
            .sessions
            .get_mut(key)
            .ok_or((RejectReason::NotEntitled, "session may not trade"))?;
        let now = Instant::now();
        let b = &mut s.bucket;
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate);
        b.last = now;
        if b.tokens < 1.0 {
            return Err((
                RejectReason::RateLimited,
                "order rate limit exceeded for this session",
            ));
        }
        b.tokens -= 1.0;
        let account = match msg.get(tag::ACCOUNT) {
            Some(name) => Some(
                s.accounts
                    .iter()
                    .find(|(n, _)| n.as_bytes() == name)
                    .map(|(_, id)| *id)
                    .ok_or((
                        RejectReason::NotEntitled,
                        "this session may not trade for that account",
                    ))?,
            ),
            None => None,
        };
        Ok((s.id, account))
    }

    /// The engine's id of a session.
    pub fn session_id(&self, key: &SessionKey) -> Option<SessionId> {
        self.sessions.get(key).map(|s| s.id)
    }

    fn role(&self, key: &SessionKey) -> Option<(SessionId, Role)> {
        self.sessions.get(key).map(|s| (s.id, s.role))
    }

    fn to_market_data(&self, input: MdInput) -> bool {
        self.md
            .as_ref()
            .is_some_and(|md| md.try_send(input).is_ok())
    }

    fn market_data_request(&self, id: SessionId, msg: &Message<'_>, reply: &mut Vec<Outgoing>) {
        let r = market_data::parse_request(msg);
        let req_id = r.req_id.clone();
        if !self.to_market_data(MdInput::Request(id.0, r)) {
            reply.push(market_data::reject(
                &req_id,
                Some(b'2'),
                "market data is busy; try again",
            ));
        }
    }

    fn symbol(&self, msg: &impl Fields) -> Result<SymbolId, Refusal> {
        msg.get(tag::SYMBOL)
            .and_then(|s| self.symbols.get(s))
            .copied()
            .ok_or((RejectReason::UnknownSymbol, "unknown symbol"))
    }

    fn send(&self, cmd: Command) -> Result<(), Refusal> {
        match self.tx.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err((
                RejectReason::CapacityExceeded,
                "exchange busy: order queue full, try again",
            )),
            Err(TrySendError::Disconnected(_)) => {
                Err((RejectReason::CapacityExceeded, "exchange shutting down"))
            }
        }
    }

    fn new_order(&mut self, key: &SessionKey, msg: &impl Fields) -> Result<(), Refusal> {
        let (session, account) = self.admit(key, msg)?;
        let cl_ord_id = cl_ord_id(msg, tag::CL_ORD_ID)?;
        let symbol = self.symbol(msg)?;
        let side = side(msg)?;
        let qty = qty(msg)?;
        let ord_type = order_type(msg).ok_or((
            RejectReason::UnsupportedOrderType,
            "only market (1) and limit (2) orders are supported",
        ))?;
        let price = match ord_type {
            OrdType::Limit => price(msg)?,
            OrdType::Market => 0,
        };
        let tif = time_in_force(msg).ok_or((
            RejectReason::UnsupportedOrderType,
            "TimeInForce must be Day (0), GTC (1), IOC (3) or FOK (4)",
        ))?;
        let order = NewOrder {
            session,
            account,
            cl_ord_id,
            symbol,
            side,
            ord_type,
            tif,
            price,
            qty,
        };
        // A possible resend is executed only if its ClOrdID is new; the engine decides, so
        // the decision is journaled and replays the same.
        let resent = [tag::POSS_RESEND, crate::codec::tags::POSS_DUP_FLAG]
            .iter()
            .any(|&t| msg.get(t) == Some(b"Y"));
        self.send(if resent {
            Command::ResentOrder(order)
        } else {
            Command::NewOrder(order)
        })
    }

    /// Submits a NewOrderSingle given as fields (an HTTP order) for the session `key`, through
    /// the same entitlement, rate-limit and validation checks as a FIX order; the engine's
    /// events answer it. A refusal is also journaled when it names a known account and
    /// symbol, so that it is stored and drop-copied.
    pub fn submit_new_order(&mut self, key: &SessionKey, fields: &FieldMap) -> Result<(), Refusal> {
        let r = self.new_order(key, fields);
        if let Err((reason, _)) = r {
            self.journal_refusal(key, fields, reason);
        }
        r
    }

    /// The session, account and symbol a refused request names, when all are known, so that
    /// the refusal can be journaled; `None` as well when the engine queue is full.
    fn refused_names(
        &self,
        key: &SessionKey,
        msg: &impl Fields,
        reason: RejectReason,
    ) -> Option<(SessionId, AccountId, SymbolId)> {
        if reason == RejectReason::CapacityExceeded {
            return None;
        }
        let s = self.sessions.get(key)?;
        let account = match msg.get(tag::ACCOUNT) {
            Some(name) => self.accounts.get(name).copied(),
            None if s.accounts.len() == 1 => Some(s.accounts[0].1),
            None => None,
        }?;
        let symbol = msg
            .get(tag::SYMBOL)
            .and_then(|x| self.symbols.get(x))
            .copied()?;
        Some((s.id, account, symbol))
    }

    /// Sends a refused new order to the engine as a [`Refused`] command, so that the refusal
    /// is sequenced, journaled, reported, drop-copied and stored like an engine reject. Only
    /// an order that names a known account and symbol with a readable ClOrdID, side, order
    /// type and time in force can be; returns whether this one was (otherwise the caller
    /// answers it directly). A full engine queue also leaves it to the caller.
    fn journal_refusal(&self, key: &SessionKey, msg: &impl Fields, reason: RejectReason) -> bool {
        let Some((session, account, symbol)) = self.refused_names(key, msg, reason) else {
            return false;
        };
        let ord_type = order_type(msg);
        let tif = time_in_force(msg);
        let (Some(ord_type), Some(tif), Ok(side), Ok(cl_ord_id)) =
            (ord_type, tif, side(msg), cl_ord_id(msg, tag::CL_ORD_ID))
        else {
            return false;
        };
        let order = NewOrder {
            session,
            account,
            cl_ord_id,
            symbol,
            side,
            ord_type,
            tif,
            price: if ord_type == OrdType::Limit {
                price(msg).unwrap_or(0)
            } else {
                0
            },
            qty: qty(msg).unwrap_or(0),
        };
        self.tx
            .try_send(Command::Refuse(Refused { order, reason }))
            .is_ok()
    }

    /// Sends a refused cancel or replace to the engine as a [`RefusedCancel`] command, like
    /// [`Self::journal_refusal`] for new orders: the request must name a known account and
    /// symbol with a readable ClOrdID, side and order reference. Returns whether it was sent.
    fn journal_cancel_refusal(
        &self,
        key: &SessionKey,
        msg: &impl Fields,
        is_replace: bool,
        reason: RejectReason,
    ) -> bool {
        let Some((session, account, symbol)) = self.refused_names(key, msg, reason) else {
            return false;
        };
        let (Ok(side), Ok(cl_ord_id), Ok(orig_cl_ord_id), Ok(order_id)) = (
            side(msg),
            cl_ord_id(msg, tag::CL_ORD_ID),
            cl_ord_id_opt(msg, tag::ORIG_CL_ORD_ID),
            order_id(msg),
        ) else {
            return false;
        };
        let request = CancelOrder {
            session,
            account,
            cl_ord_id,
            orig_cl_ord_id,
            order_id,
            symbol,
            side,
        };
        self.tx
            .try_send(Command::RefuseCancel(RefusedCancel {
                request,
                is_replace,
                reason,
            }))
            .is_ok()
    }

    /// An OrderStatusRequest (H): sequenced like an order, so the answer shows the order after
    /// every command before it; only the session's own orders are shown.
    fn status_request(&mut self, key: &SessionKey, msg: &impl Fields) -> Result<(), Refusal> {
        let (session, account) = self.admit(key, msg)?;
        let request = StatusRequest {
            session,
            account,
            cl_ord_id: cl_ord_id(msg, tag::CL_ORD_ID)?,
            order_id: order_id(msg)?,
            symbol: self.symbol(msg)?,
            side: side(msg)?,
            req_id: ClOrdId::from_bytes(msg.get(tag::ORD_STATUS_REQ_ID).unwrap_or_default())
                .ok_or((
                    RejectReason::InvalidClOrdId,
                    "OrdStatusReqID longer than 40 characters",
                ))?,
        };
        self.send(Command::Status(request))
    }

    /// What a mass request covers: its request type (the tag, and the code of "all orders",
    /// which FIX numbers differently per message; 1 is one security), the Symbol that then
    /// names it, and an optional Side.
    fn mass_scope(
        &self,
        msg: &impl Fields,
        (type_tag, all): (Tag, &[u8]),
        invalid: &'static str,
    ) -> Result<(MassScope, SymbolId, Option<Side>), Refusal> {
        let (scope, symbol) = match msg.get(type_tag) {
            Some(b"1") => (MassScope::Symbol, self.symbol(msg)?),
            Some(v) if v == all => (MassScope::All, SymbolId(0)),
            _ => return Err((RejectReason::UnsupportedOrderType, invalid)),
        };
        Ok((scope, symbol, optional_side(msg)?))
    }

    /// An OrderMassCancelRequest: the session's orders in one instrument (530=1) or all (530=7),
    /// optionally only one account's (1) or one side's (54).
    fn mass_cancel(&mut self, key: &SessionKey, msg: &impl Fields) -> Result<(), Refusal> {
        let (session, account) = self.admit_any(key, msg)?;
        let cl_ord_id = cl_ord_id(msg, tag::CL_ORD_ID)?;
        let (scope, symbol, side) = self.mass_scope(
            msg,
            (tag::MASS_CANCEL_REQUEST_TYPE, b"7"),
            "MassCancelRequestType must be 1 (one security) or 7 (all orders)",
        )?;
        self.send(Command::MassCancel(MassCancelRequest {
            session,
            account,
            cl_ord_id,
            scope,
            symbol,
            side,
            on_disconnect: false,
        }))
    }

    /// An OrderMassStatusRequest: the session's orders in one instrument (585=1) or all
    /// (585=6), optionally only one account's (1) or one side's (54).
    fn mass_status(&mut self, key: &SessionKey, msg: &impl Fields) -> Result<(), Refusal> {
        let (session, account) = self.admit_any(key, msg)?;
        let req_id = ClOrdId::from_bytes(msg.get(tag::MASS_STATUS_REQ_ID).unwrap_or_default())
            .filter(|id| !id.is_empty())
            .ok_or((
                RejectReason::InvalidClOrdId,
                "MassStatusReqID is required, at most 40 characters",
            ))?;
        let (scope, symbol, side) = self.mass_scope(
            msg,
            (tag::MASS_STATUS_REQ_TYPE, b"6"),
            "MassStatusReqType must be 1 (one security) or 6 (all orders)",
        )?;
        self.send(Command::MassStatus(MassStatusRequest {
            session,
            account,
            req_id,
            scope,
            symbol,
            side,
        }))
    }

    fn cancel_or_replace(
        &mut self,
        key: &SessionKey,
        msg: &impl Fields,
        replace: bool,
    ) -> Result<(), Refusal> {
        let (session, account) = self.admit(key, msg)?;
        let cl_ord_id = cl_ord_id(msg, tag::CL_ORD_ID)?;
        let orig_cl_ord_id = cl_ord_id_opt(msg, tag::ORIG_CL_ORD_ID)?;
        let order_id = order_id(msg)?;
        if order_id.0 == 0 && orig_cl_ord_id.is_empty() {
            return Err((
                RejectReason::UnknownOrder,
                "OrigClOrdID or OrderID is required",
            ));
        }
        let symbol = self.symbol(msg)?;
        let side = side(msg)?;
        let cmd = if replace {
            if msg.get(tag::ORD_TYPE) != Some(b"2") {
                return Err((
                    RejectReason::InvalidReplace,
                    "only limit orders can be replaced",
                ));
            }
            Command::Replace(ReplaceOrder {
                session,
                account,
                cl_ord_id,
                orig_cl_ord_id,
                order_id,
                symbol,
                side,
                price: price(msg)?,
                qty: qty(msg)?,
            })
        } else {
            Command::Cancel(CancelOrder {
                session,
                account,
                cl_ord_id,
                orig_cl_ord_id,
                order_id,
                symbol,
                side,
            })
        };
        self.send(cmd)
    }
}

/// OrderID (37) of a cancel or replace: 0 when absent (or `NONE`), the order is then named by
/// OrigClOrdID.
fn order_id(msg: &impl Fields) -> Result<OrderId, Refusal> {
    match msg.get(tag::ORDER_ID) {
        None | Some(b"NONE") => Ok(OrderId(0)),
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(OrderId)
            .ok_or((RejectReason::UnknownOrder, "unknown OrderID")),
    }
}

fn cl_ord_id_opt(msg: &impl Fields, t: Tag) -> Result<ClOrdId, Refusal> {
    match msg.get(t) {
        None => Ok(ClOrdId::EMPTY),
        Some(v) => ClOrdId::from_bytes(v).ok_or((
            RejectReason::InvalidClOrdId,
            "ClOrdID longer than 40 characters",
        )),
    }
}

fn cl_ord_id(msg: &impl Fields, t: Tag) -> Result<ClOrdId, Refusal> {
    let id = cl_ord_id_opt(msg, t)?;
    if id.is_empty() {
        return Err((RejectReason::InvalidClOrdId, "ClOrdID is required"));
    }
    Ok(id)
}

/// OrdType (40): market or limit, `None` for anything else.
fn order_type(msg: &impl Fields) -> Option<OrdType> {
    match msg.get(tag::ORD_TYPE) {
        Some(b"1") => Some(OrdType::Market),
        Some(b"2") => Some(OrdType::Limit),
        _ => None,
    }
}

/// TimeInForce (59); Day when absent, `None` when not one this exchange supports.
fn time_in_force(msg: &impl Fields) -> Option<TimeInForce> {
    match msg.get(tag::TIME_IN_FORCE) {
        None | Some(b"0") => Some(TimeInForce::Day),
        Some(b"1") => Some(TimeInForce::Gtc),
        Some(b"3") => Some(TimeInForce::Ioc),
        Some(b"4") => Some(TimeInForce::Fok),
        Some(_) => None,
    }
}

/// Side (54) of a request that may leave it out (both sides).
fn optional_side(msg: &impl Fields) -> Result<Option<Side>, Refusal> {
    msg.get(tag::SIDE).map(|_| side(msg)).transpose()
}

fn side(msg: &impl Fields) -> Result<Side, Refusal> {
    match msg.get(tag::SIDE) {
        Some(b"1") => Ok(Side::Buy),
        Some(b"2") => Ok(Side::Sell),
        _ => Err((
            RejectReason::UnsupportedOrderType,
            "Side must be buy (1) or sell (2)",
        )),
    }
}

fn decimal(msg: &impl Fields, t: Tag) -> Option<Decimal> {
    std::str::from_utf8(msg.get(t)?).ok()?.parse().ok()
}

fn qty(msg: &impl Fields) -> Result<Qty, Refusal> {
    let bad = (
        RejectReason::InvalidQuantity,
        "OrderQty must be a positive whole number of shares",
    );
    if let Some(q) = msg.get(tag::ORDER_QTY).and_then(|v| plain_scaled(v, 0)) {
        return if q > 0 { Ok(q) } else { Err(bad) };
    }
    let d = decimal(msg, tag::ORDER_QTY).ok_or(bad)?;
    if d <= Decimal::ZERO || d.fract() != Decimal::ZERO {
        return Err(bad);
    }
    u64::try_from(d).map_err(|_| bad)
}

fn price(msg: &impl Fields) -> Result<Price, Refusal> {
    let bad = (
        RejectReason::InvalidPrice,
        "Price must be a positive decimal with at most 4 places",
    );
    let units = match msg
        .get(tag::PRICE)
        .and_then(|v| plain_scaled(v, PRICE_PLACES))
    {
        Some(u) => i64::try_from(u).ok(),
        None => decimal_to_units(decimal(msg, tag::PRICE).ok_or(bad)?),
    };
    match units {
        Some(u) if u > 0 => Ok(u),
        _ => Err(bad),
    }
}

/// Decimal places of a price unit.
const PRICE_PLACES: u32 = 4;
const _: () = assert!(10i64.pow(PRICE_PLACES) == engine::types::PRICE_SCALE);

/// `digits` or `digits.digits` with at most `places` decimals, as a whole number of
/// 10^-places: the plain form clients send, read without a `Decimal` (its parse, `fract` and
/// `trunc` were 3% of the connections' CPU at the peak). `None` for any other form, which the
/// `Decimal` path judges.
fn plain_scaled(v: &[u8], places: u32) -> Option<u64> {
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(p) => (&v[..p], &v[p + 1..]),
        None => (v, &v[v.len()..]),
    };
    let dotted = int.len() < v.len();
    // 14 integer digits scaled by up to 10^4 stay far below u64::MAX.
    if int.is_empty() || int.len() > 14 || frac.len() > places as usize || dotted && frac.is_empty()
    {
        return None;
    }
    let mut n: u64 = 0;
    for &c in int.iter().chain(frac) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    Some(n * 10u64.pow(places - frac.len() as u32))
}

impl Application for OrderEntry {
    fn on_logon(&mut self, key: &SessionKey) {
        if let Some((id, Role::MarketData)) = self.role(key) {
            self.to_market_data(MdInput::Connect(id.0));
        }
    }

    fn on_logout(&mut self, key: &SessionKey) {
        // Never blocks (the caller holds the session): if the queue is full the subscriptions
        // go stale (nobody is logged on to read them) and the next logon clears them.
        if let Some((id, Role::MarketData)) = self.role(key) {
            self.to_market_data(MdInput::Disconnect(id.0));
        }
        self.cancel_on_disconnect(key);
    }

    fn on_app_message(
        &mut self,
        key: &SessionKey,
        msg: &Message<'_>,
        reply: &mut Vec<Outgoing>,
    ) -> Result<(), AppReject> {
        let get = |t| msg.get(t).unwrap_or_default();
        match (self.role(key), msg.msg_type()) {
            (Some((id, Role::MarketData)), b"V") => {
                self.market_data_request(id, msg, reply);
                return Ok(());
            }
            (Some((_, Role::MarketData | Role::DropCopy)), b"D" | b"F" | b"G" | b"q") => {
                return Err(AppReject::Business {
                    reason: 6,
                    text: "orders are not accepted on this session: it is read-only".into(),
                });
            }
            (_, b"V") => {
                return Err(AppReject::Business {
                    reason: 6,
                    text: "market data is served on market-data sessions".into(),
                });
            }
            _ => {}
        }
        match msg.msg_type() {
            b"D" => {
                if let Err((reason, text)) = self.new_order(key, msg)
                    && !self.journal_refusal(key, msg, reason)
                {
                    let id = self.exec_id();
                    reply.push(gateway_reject(
                        &id,
                        get(tag::CL_ORD_ID),
                        get(tag::ACCOUNT),
                        get(tag::SYMBOL),
                        get(tag::SIDE),
                        reason,
                        text,
                        now_nanos(),
                    ));
                }
                Ok(())
            }
            t @ (b"F" | b"G") => {
                let replace = t == b"G";
                if let Err((reason, text)) = self.cancel_or_replace(key, msg, replace)
                    && !self.journal_cancel_refusal(key, msg, replace, reason)
                {
                    reply.push(gateway_cancel_reject(
                        get(tag::CL_ORD_ID),
                        get(tag::ORIG_CL_ORD_ID),
                        get(tag::ORDER_ID),
                        get(tag::ACCOUNT),
                        replace,
                        reason,
                        text,
                        now_nanos(),
                    ));
                }
                Ok(())
            }
            b"H" => {
                if let Err((reason, text)) = self.status_request(key, msg) {
                    let id = self.exec_id();
                    let request = RefusedRequest {
                        exec_id: &id,
                        cl_ord_id: get(tag::CL_ORD_ID),
                        account: get(tag::ACCOUNT),
                        symbol: get(tag::SYMBOL),
                        side: get(tag::SIDE),
                    };
                    reply.push(gateway_status_reject(
                        &request,
                        get(tag::ORD_STATUS_REQ_ID),
                        reason,
                        text,
                        now_nanos(),
                    ));
                }
                Ok(())
            }
            b"AF" => {
                if let Err((_, text)) = self.mass_status(key, msg) {
                    let id = self.exec_id();
                    reply.push(gateway_mass_status_reject(msg, &id, text, now_nanos()));
                }
                Ok(())
            }
            b"q" => {
                if let Err((reason, text)) = self.mass_cancel(key, msg) {
                    reply.push(gateway_mass_cancel_reject(
                        msg,
                        &self.exec_id(),
                        reason,
                        text,
                        now_nanos(),
                    ));
                }
                Ok(())
            }
            _ => Err(AppReject::UnsupportedMessageType),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;
    use std::time::Duration;

    fn key() -> SessionKey {
        SessionKey {
            begin_string: "FIX.4.4".into(),
            sender_comp_id: "EXCH".into(),
            target_comp_id: "C1".into(),
        }
    }

    fn entry(queue: usize) -> (OrderEntry, std::sync::mpsc::Receiver<Command>) {
        let (tx, rx) = sync_channel(queue);
        let mut info = SessionInfo::new(
            SessionId(3),
            vec![("A".into(), AccountId(0))],
            Role::OrderEntry,
        );
        info.cancel_on_disconnect = true;
        let sessions = [(key(), info)].into_iter().collect();
        let symbols = [("AAPL".to_string(), SymbolId(0))];
        let accounts = [("A".to_string(), AccountId(0))];
        (
            OrderEntry::new(sessions, symbols, accounts, tx, None, 100),
            rx,
        )
    }

    /// OrderQty and Price as the `Decimal` path alone reads them.
    fn by_decimal(v: &str) -> (Option<Qty>, Option<Price>) {
        let d: Option<Decimal> = v.parse().ok();
        let qty = d
            .filter(|d| *d > Decimal::ZERO && d.fract() == Decimal::ZERO)
            .and_then(|d| u64::try_from(d).ok());
        let price = d.and_then(decimal_to_units).filter(|&u| u > 0);
        (qty, price)
    }

    fn fast(v: &str) -> (Option<Qty>, Option<Price>) {
        let m = FieldMap(vec![
            (tag::ORDER_QTY, v.as_bytes().to_vec()),
            (tag::PRICE, v.as_bytes().to_vec()),
        ]);
        (qty(&m).ok(), price(&m).ok())
    }

    #[test]
    fn plain_numbers_read_as_decimals_do() {
        for v in [
            "1",
            "100",
            "0",
            "00",
            "0100",
            "100.0",
            "100.00000",
            "100.1",
            "100.10",
            "100.1234",
            "100.12345",
            "100.12340",
            "0.0001",
            "0.00001",
            ".5",
            "5.",
            "-5",
            "+5",
            "1e3",
            "",
            ".",
            "1.2.3",
            "12a",
            "99999999999999",
            "999999999999999",
            "922337203685477",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551616",
            " 1",
            "1 ",
        ] {
            assert_eq!(fast(v), by_decimal(v), "{v:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn numbers_read_as_decimals_do(v in "[-+]?[0-9]{0,20}(\\.[0-9]{0,8})?") {
            proptest::prop_assert_eq!(fast(&v), by_decimal(&v), "{:?}", v);
        }
    }

    fn is_cancel_on_disconnect(c: &Command) -> bool {
        matches!(c, Command::MassCancel(m) if m.on_disconnect
            && m.session == SessionId(3)
            && m.scope == MassScope::All
            && m.account.is_none())
    }

    #[test]
    fn cancel_on_disconnect_never_blocks_the_session_and_is_never_lost_to_a_full_queue() {
        let (mut e, rx) = entry(1);
        let filler = Command::CloseTrading(engine::CloseTrading {});
        e.tx.try_send(filler).expect("room for one");
        // The queue is full: the call returns at once, the command follows when there is room.
        e.on_logout(&key());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(filler));
        let c = rx.recv_timeout(Duration::from_secs(5)).expect("the cancel");
        assert!(is_cancel_on_disconnect(&c), "{c:?}");
        // With room: sent at once.
        e.on_logout(&key());
        assert!(is_cancel_on_disconnect(&rx.try_recv().expect("queued")));
        // The exchange shutting down logs sessions out: their orders stay.
        e.shutting_down();
        e.on_logout(&key());
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    }
}
