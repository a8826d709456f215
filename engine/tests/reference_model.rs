//! The engine against a deliberately naive reference model on random command streams.
//!
//! The model keeps live orders in one plain vector and finds the best resting order by scanning
//! it; accounts are plain maps. It implements the same rules from their description, not from the
//! engine's code, and every event the two produce must be identical (exec ids and costs included).
//! After every command the engine's structural invariants are checked as well, and conservation
//! of cash and shares is checked across every command that is not a transfer.

use std::collections::BTreeMap;

use engine::command::{
    Asset, CancelOrder, CloseTrading, Command, MassCancelRequest, MassScope, MassStatusRequest,
    NewOrder, OpenTrading, ReplaceOrder, StatusRequest, Transfer,
};
use engine::config::EngineConfig;
use engine::event::{
    Accepted, CancelRejected, Canceled, Event, Expired, Fill, MassCancelReport, MassStatusReport,
    OrderView, Rejected, Replaced, StatusReport, Trade, TradingStatus, TransferDone,
};
use engine::{
    AccountId, CancelReason, ClOrdId, Engine, OrdStatus, OrdType, OrderId, Price, Qty,
    RejectReason, SessionId, Side, StpMode, SymbolId, TimeInForce,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct MOrder {
    id: OrderId,
    account: AccountId,
    session: SessionId,
    symbol: SymbolId,
    side: Side,
    ord_type: OrdType,
    tif: TimeInForce,
    price: Price,
    qty: Qty,
    cum: Qty,
    leaves: Qty,
    cum_cost: u64,
    cl_ord_id: ClOrdId,
    /// Time priority: lower is older.
    prio: u64,
}

#[derive(Clone, Debug, Default)]
struct MPos {
    shares: i64,
    reserved: i64,
    traded: Qty,
    open: Qty,
}

#[derive(Clone, Debug, Default)]
struct MAccount {
    cash: i64,
    reserved: i64,
    open_orders: u32,
    pos: BTreeMap<u16, MPos>,
}

struct Model {
    cfg: EngineConfig,
    orders: Vec<MOrder>,
    accounts: BTreeMap<u32, MAccount>,
    ids: Vec<((SessionId, ClOrdId), OrderId)>,
    open: bool,
    day: u32,
    next_order: u64,
    next_exec: u64,
    next_trade: u64,
    next_prio: u64,
}

/// A status answer's view when there is no order to show: status Rejected, the request's
/// fields, the order id and ClOrdID given.
fn nothing(
    session: SessionId,
    account: AccountId,
    symbol: SymbolId,
    side: Side,
    (order_id, cl_ord_id): (OrderId, ClOrdId),
    exec_id: u64,
) -> OrderView {
    OrderView {
        order_id,
        session,
        account,
        symbol,
        side,
        ord_type: OrdType::Limit,
        tif: TimeInForce::Day,
        status: OrdStatus::Rejected,
        price: 0,
        qty: 0,
        cum_qty: 0,
        leaves_qty: 0,
        cum_cost: 0,
        cl_ord_id,
        exec_id,
    }
}

fn view(o: &MOrder, status: OrdStatus, cl: ClOrdId, exec_id: u64) -> OrderView {
    OrderView {
        order_id: o.id,
        session: o.session,
        account: o.account,
        symbol: o.symbol,
        side: o.side,
        ord_type: o.ord_type,
        tif: o.tif,
        status,
        price: o.price,
        qty: o.qty,
        cum_qty: o.cum,
        leaves_qty: o.leaves,
        cum_cost: o.cum_cost,
        cl_ord_id: cl,
        exec_id,
    }
}

fn fill_of(o: &MOrder, exec_id: u64) -> Fill {
    Fill {
        order_id: o.id,
        session: o.session,
        account: o.account,
        cl_ord_id: o.cl_ord_id,
        ord_type: o.ord_type,
        tif: o.tif,
        price: o.price,
        qty: o.qty,
        cum_qty: o.cum,
        leaves_qty: o.leaves,
        cum_cost: o.cum_cost,
        exec_id,
    }
}

fn status_of(o: &MOrder) -> OrdStatus {
    if o.leaves == 0 {
        OrdStatus::Filled
    } else if o.cum == 0 {
        OrdStatus::New
    } else {
        OrdStatus::PartiallyFilled
    }
}

impl Model {
    fn new(cfg: EngineConfig) -> Model {
        Model {
            cfg,
            orders: Vec::new(),
            accounts: BTreeMap::new(),
            ids: Vec::new(),
            open: false,
            day: 0,
            next_order: 1,
            next_exec: 1,
            next_trade: 1,
            next_prio: 0,
        }
    }

    fn exec(&mut self) -> u64 {
        self.next_exec += 1;
        self.next_exec - 1
    }

    fn prio(&mut self) -> u64 {
        self.next_prio += 1;
        self.next_prio
    }

    fn id_of(&self, key: &(SessionId, ClOrdId)) -> Option<OrderId> {
        self.ids.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    fn limit_of(&self, a: AccountId, s: SymbolId) -> Qty {
        self.cfg
            .account_limits
            .iter()
            .find(|l| l.account == a && l.symbol == s)
            .map(|l| l.daily_limit)
            .unwrap_or(self.cfg.instruments[usize::from(s.0)].daily_limit)
    }

    fn acct(&mut self, a: AccountId) -> &mut MAccount {
        self.accounts.entry(a.0).or_default()
    }

    fn pos(&mut self, a: AccountId, s: SymbolId) -> &mut MPos {
        self.acct(a).pos.entry(s.0).or_default()
    }

    /// Best resting order on `side` of `symbol`: best price, then oldest.
    fn best(&self, symbol: SymbolId, side: Side) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, o) in self.orders.iter().enumerate() {
            if o.symbol != symbol || o.side != side || o.prio == 0 {
                continue;
            }
            best = match best {
                None => Some(i),
                Some(b) => {
                    let c = &self.orders[b];
                    let better = match side {
                        Side::Buy => o.price > c.price,
                        Side::Sell => o.price < c.price,
                    };
                    if better || (o.price == c.price && o.prio < c.prio) {
                        Some(i)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        best
    }

    fn apply(&mut self, cmd: &Command) -> Vec<Event> {
        let mut out = Vec::new();
        match cmd {
            Command::NewOrder(c) => self.new_order(c, false, &mut out),
            Command::ResentOrder(c) => self.new_order(c, true, &mut out),
            Command::Cancel(c) => self.cancel(c, &mut out),
            Command::Replace(c) => self.replace(c, &mut out),
            Command::Deposit(t) => self.transfer(t, true, &mut out),
            Command::Withdraw(t) => self.transfer(t, false, &mut out),
            Command::OpenTrading(o) => self.open_day(o.trading_day, &mut out),
            Command::CloseTrading(_) => self.close(&mut out),
            Command::Refuse(r) => self.reject(&r.order, r.reason, &mut out),
            Command::RefuseCancel(r) => self.refused_cancel(r, &mut out),
            Command::Status(r) => self.status(r, &mut out),
            Command::MassCancel(r) => self.mass_cancel(r, &mut out),
            Command::MassStatus(r) => self.mass_status(r, &mut out),
        }
        out
    }

    /// The ids of the session's live orders a mass request covers, oldest first.
    fn covered(
        &self,
        session: SessionId,
        account: Option<AccountId>,
        scope: MassScope,
        symbol: SymbolId,
        side: Option<Side>,
    ) -> Vec<OrderId> {
        let mut ids: Vec<OrderId> = self
            .orders
            .iter()
            .filter(|o| {
                o.session == session
                    && account.is_none_or(|a| a == o.account)
                    && (scope == MassScope::All || o.symbol == symbol)
                    && side.is_none_or(|s| s == o.side)
            })
            .map(|o| o.id)
            .collect();
        ids.sort();
        ids
    }

    /// A mass cancel: the session's live orders that match, oldest order id first, then the
    /// count; an unknown instrument cancels nothing; a ClOrdID the session used before is a
    /// duplicate (cancel on disconnect has none).
    fn mass_cancel(&mut self, r: &MassCancelRequest, out: &mut Vec<Event>) {
        if !r.on_disconnect {
            let key = (r.session, r.cl_ord_id);
            if self.id_of(&key).is_some() {
                let exec_id = self.exec();
                out.push(Event::MassCancel(MassCancelReport {
                    request: *r,
                    canceled: 0,
                    reason: Some(RejectReason::DuplicateClOrdId),
                    exec_id,
                }));
                return;
            }
            self.ids.push((key, OrderId(0)));
        }
        let known =
            r.scope == MassScope::All || usize::from(r.symbol.0) < self.cfg.instruments.len();
        let mut canceled = 0;
        if known {
            for id in self.covered(r.session, r.account, r.scope, r.symbol, r.side) {
                let i = self.orders.iter().position(|o| o.id == id).expect("live");
                let why = if r.on_disconnect {
                    CancelReason::Disconnect
                } else {
                    CancelReason::MassCancel
                };
                self.cancel_by_engine(i, why, out);
                canceled += 1;
            }
        }
        let exec_id = self.exec();
        out.push(Event::MassCancel(MassCancelReport {
            request: *r,
            canceled,
            reason: (!known).then_some(RejectReason::UnknownSymbol),
            exec_id,
        }));
    }

    /// A mass status request: the session's live orders that match, oldest order id first,
    /// each as it stands with the count and the last marked; none (or an unknown instrument):
    /// one answer with status Rejected.
    fn mass_status(&mut self, r: &MassStatusRequest, out: &mut Vec<Event>) {
        let hit = self.covered(r.session, r.account, r.scope, r.symbol, r.side);
        if hit.is_empty() {
            let exec_id = self.exec();
            let order = nothing(
                r.session,
                r.account.unwrap_or(AccountId(0)),
                r.symbol,
                r.side.unwrap_or(Side::Buy),
                (OrderId(0), ClOrdId::EMPTY),
                exec_id,
            );
            out.push(Event::MassStatus(MassStatusReport {
                request: *r,
                order,
                total: 0,
                last: true,
            }));
            return;
        }
        for (n, id) in hit.iter().enumerate() {
            let exec_id = self.exec();
            let o = self.orders.iter().find(|o| o.id == *id).expect("live");
            out.push(Event::MassStatus(MassStatusReport {
                request: *r,
                order: view(o, status_of(o), o.cl_ord_id, exec_id),
                total: hit.len() as u32,
                last: n + 1 == hit.len(),
            }));
        }
    }

    /// A status request: the session's own order as it stands, else the request with status
    /// Rejected and why; nothing recorded but the execution id.
    fn status(&mut self, r: &StatusRequest, out: &mut Vec<Event>) {
        let found = match self.find(r.session, r.order_id, r.cl_ord_id) {
            Ok(i) if self.orders[i].session == r.session => Ok(i),
            Ok(_) => Err((RejectReason::UnknownOrder, OrderId(0))),
            Err(e) => Err(e),
        };
        let exec_id = self.exec();
        let (order, reason) = match found {
            Ok(i) => {
                let o = &self.orders[i];
                (view(o, status_of(o), o.cl_ord_id, exec_id), None)
            }
            Err((reason, order_id)) => (
                nothing(
                    r.session,
                    r.account,
                    r.symbol,
                    r.side,
                    (order_id, r.cl_ord_id),
                    exec_id,
                ),
                Some(reason),
            ),
        };
        out.push(Event::Status(StatusReport {
            order,
            req_id: r.req_id,
            reason,
        }));
    }

    /// A cancel the gateway refused: a cancel reject, with the order's status only when the
    /// order is the session's own; nothing recorded.
    fn refused_cancel(&mut self, r: &engine::command::RefusedCancel, out: &mut Vec<Event>) {
        let c = &r.request;
        let found = self
            .find(c.session, c.order_id, c.orig_cl_ord_id)
            .ok()
            .filter(|&i| self.orders[i].session == c.session);
        self.cxl_reject(
            c.session,
            c.account,
            c.cl_ord_id,
            c.orig_cl_ord_id,
            c.symbol,
            c.side,
            r.is_replace,
            found,
            OrderId(0),
            r.reason,
            out,
        );
    }

    fn reject(&mut self, c: &NewOrder, reason: RejectReason, out: &mut Vec<Event>) {
        let exec_id = self.exec();
        out.push(Event::Rejected(Rejected {
            session: c.session,
            account: c.account,
            cl_ord_id: c.cl_ord_id,
            symbol: c.symbol,
            side: c.side,
            ord_type: c.ord_type,
            tif: c.tif,
            price: c.price,
            qty: c.qty,
            reason,
            exec_id,
        }));
    }

    fn price_ok(&self, s: SymbolId, p: Price) -> Result<(), RejectReason> {
        let i = &self.cfg.instruments[usize::from(s.0)];
        if p <= 0 {
            return Err(RejectReason::InvalidPrice);
        }
        if p % i.tick != 0 {
            return Err(RejectReason::InvalidPriceIncrement);
        }
        if p < i.min_price || p > i.max_price {
            return Err(RejectReason::PriceOutOfBand);
        }
        Ok(())
    }

    fn qty_ok(&self, s: SymbolId, q: Qty) -> Result<(), RejectReason> {
        let i = &self.cfg.instruments[usize::from(s.0)];
        if q == 0 {
            return Err(RejectReason::InvalidQuantity);
        }
        if q % i.lot != 0 {
            return Err(RejectReason::InvalidLotSize);
        }
        if q > i.max_order_qty {
            return Err(RejectReason::MaxOrderQtyExceeded);
        }
        Ok(())
    }

    fn vet(&mut self, c: &NewOrder) -> Result<Price, RejectReason> {
        if usize::from(c.symbol.0) >= self.cfg.instruments.len() {
            return Err(RejectReason::UnknownSymbol);
        }
        if c.account.0 >= self.cfg.limits.max_accounts {
            return Err(RejectReason::UnknownAccount);
        }
        if !self.open {
            return Err(RejectReason::MarketClosed);
        }
        self.qty_ok(c.symbol, c.qty)?;
        let inst = self.cfg.instruments[usize::from(c.symbol.0)].clone();
        let price = if c.ord_type == OrdType::Limit {
            self.price_ok(c.symbol, c.price)?;
            c.price
        } else {
            let b = self
                .best(c.symbol, c.side.opposite())
                .ok_or(RejectReason::NoLiquidity)?;
            let best = self.orders[b].price;
            let shift = best * i64::from(inst.collar_bps) / 10_000;
            if c.side == Side::Buy {
                ((best + shift) / inst.tick * inst.tick).min(inst.max_price)
            } else {
                ((best - shift + inst.tick - 1) / inst.tick * inst.tick).max(inst.min_price)
            }
        };
        let cost = i128::from(price) * i128::from(c.qty);
        if cost > i128::from(inst.max_notional) {
            return Err(RejectReason::MaxNotionalExceeded);
        }
        if self.orders.len() as u32 >= self.cfg.limits.max_resting_orders {
            return Err(RejectReason::CapacityExceeded);
        }
        let limit = self.limit_of(c.account, c.symbol);
        let max_open = self.cfg.limits.max_open_orders_per_account;
        let a = self.acct(c.account).clone();
        if a.open_orders >= max_open {
            return Err(RejectReason::TooManyOpenOrders);
        }
        let p = a.pos.get(&c.symbol.0).cloned().unwrap_or_default();
        if p.traded + p.open + c.qty > limit {
            return Err(RejectReason::DailyLimitExceeded);
        }
        if c.side == Side::Buy && cost > i128::from(a.cash - a.reserved) {
            return Err(RejectReason::InsufficientFunds);
        }
        if c.side == Side::Sell && c.qty as i64 > p.shares - p.reserved {
            return Err(RejectReason::InsufficientShares);
        }
        Ok(price)
    }

    /// A new order; a `resent` one whose ClOrdID is known is the order received before.
    fn new_order(&mut self, c: &NewOrder, resent: bool, out: &mut Vec<Event>) {
        let key = (c.session, c.cl_ord_id);
        if self.id_of(&key).is_some() {
            let reason = if resent {
                RejectReason::ResentDuplicate
            } else {
                RejectReason::DuplicateClOrdId
            };
            return self.reject(c, reason, out);
        }
        let price = match self.vet(c) {
            Ok(p) => p,
            Err(r) => {
                self.ids.push((key, OrderId(0)));
                return self.reject(c, r, out);
            }
        };
        let id = OrderId(self.next_order);
        self.next_order += 1;
        self.ids.push((key, id));
        let a = self.acct(c.account);
        a.open_orders += 1;
        if c.side == Side::Buy {
            a.reserved += price * c.qty as i64;
        }
        let p = self.pos(c.account, c.symbol);
        p.open += c.qty;
        if c.side == Side::Sell {
            p.reserved += c.qty as i64;
        }
        let o = MOrder {
            id,
            account: c.account,
            session: c.session,
            symbol: c.symbol,
            side: c.side,
            ord_type: c.ord_type,
            tif: c.tif,
            price,
            qty: c.qty,
            cum: 0,
            leaves: c.qty,
            cum_cost: 0,
            cl_ord_id: c.cl_ord_id,
            prio: 0,
        };
        let exec_id = self.exec();
        out.push(Event::Accepted(Accepted {
            order: view(&o, OrdStatus::New, c.cl_ord_id, exec_id),
        }));
        self.orders.push(o);
        let idx = self.orders.len() - 1;
        if c.tif == TimeInForce::Fok && !self.can_fill(idx) {
            return self.cancel_by_engine(idx, CancelReason::FillOrKill, out);
        }
        self.run(idx, out);
    }

    fn can_fill(&self, idx: usize) -> bool {
        let o = &self.orders[idx];
        let mut candidates: Vec<&MOrder> = self
            .orders
            .iter()
            .filter(|r| r.prio != 0 && r.symbol == o.symbol && r.side == o.side.opposite())
            .filter(|r| {
                if o.side == Side::Buy {
                    r.price <= o.price
                } else {
                    r.price >= o.price
                }
            })
            .collect();
        candidates.sort_by_key(|r| {
            (
                if o.side == Side::Buy {
                    r.price
                } else {
                    -r.price
                },
                r.prio,
            )
        });
        let mut got = 0;
        for r in candidates {
            if r.account == o.account {
                if self.cfg.limits.stp != StpMode::CancelResting {
                    return false;
                }
                continue;
            }
            got += r.leaves;
            if got >= o.leaves {
                return true;
            }
        }
        false
    }

    /// Matches the order at `idx` (not resting), then rests or cancels what is left.
    fn run(&mut self, mut idx: usize, out: &mut Vec<Event>) {
        let id = self.orders[idx].id;
        let mut stp_stop = false;
        loop {
            let o = self.orders[idx].clone();
            if o.leaves == 0 {
                break;
            }
            let Some(m) = self.best(o.symbol, o.side.opposite()) else {
                break;
            };
            let mp = self.orders[m].price;
            let crosses = if o.side == Side::Buy {
                o.price >= mp
            } else {
                o.price <= mp
            };
            if !crosses {
                break;
            }
            if self.orders[m].account == o.account {
                match self.cfg.limits.stp {
                    StpMode::CancelResting => {
                        self.cancel_by_engine(m, CancelReason::SelfTrade, out)
                    }
                    StpMode::CancelIncoming => stp_stop = true,
                    StpMode::CancelBoth => {
                        self.cancel_by_engine(m, CancelReason::SelfTrade, out);
                        stp_stop = true;
                    }
                }
                idx = self.orders.iter().position(|x| x.id == id).unwrap();
                if stp_stop {
                    break;
                }
                continue;
            }
            let q = o.leaves.min(self.orders[m].leaves);
            for i in [idx, m] {
                let x = &mut self.orders[i];
                x.leaves -= q;
                x.cum += q;
                x.cum_cost += (mp * q as i64) as u64;
            }
            let (b, s) = if o.side == Side::Buy {
                (idx, m)
            } else {
                (m, idx)
            };
            let (bo, so) = (self.orders[b].clone(), self.orders[s].clone());
            let v = mp * q as i64;
            let ba = self.acct(bo.account);
            ba.cash -= v;
            ba.reserved -= bo.price * q as i64;
            let bp = self.pos(bo.account, bo.symbol);
            bp.shares += q as i64;
            bp.traded += q;
            bp.open -= q;
            self.acct(so.account).cash += v;
            let sp = self.pos(so.account, so.symbol);
            sp.shares -= q as i64;
            sp.reserved -= q as i64;
            sp.traded += q;
            sp.open -= q;
            let trade_id = self.next_trade;
            self.next_trade += 1;
            let me = self.exec();
            let te = self.exec();
            out.push(Event::Trade(Trade {
                trade_id,
                symbol: o.symbol,
                aggressor: o.side,
                price: mp,
                qty: q,
                maker: fill_of(&self.orders[m], me),
                taker: fill_of(&self.orders[idx], te),
            }));
            if self.orders[m].leaves == 0 {
                self.drop_order(m);
                idx = self.orders.iter().position(|x| x.id == id).unwrap();
            }
        }
        let o = self.orders[idx].clone();
        if o.leaves == 0 {
            self.drop_order(idx);
            return;
        }
        if stp_stop {
            return self.cancel_by_engine(idx, CancelReason::SelfTrade, out);
        }
        match (o.ord_type, o.tif) {
            (OrdType::Limit, TimeInForce::Day | TimeInForce::Gtc) => {
                self.orders[idx].prio = self.prio()
            }
            (OrdType::Market, _) => {
                let reason = if self.best(o.symbol, o.side.opposite()).is_some() {
                    CancelReason::CollarReached
                } else {
                    CancelReason::ImmediateOrCancel
                };
                self.cancel_by_engine(idx, reason, out)
            }
            _ => self.cancel_by_engine(idx, CancelReason::ImmediateOrCancel, out),
        }
    }

    /// Forgets an order and releases what its remaining quantity holds.
    fn drop_order(&mut self, idx: usize) -> MOrder {
        let o = self.orders.remove(idx);
        let a = self.acct(o.account);
        a.open_orders -= 1;
        if o.side == Side::Buy {
            a.reserved -= o.price * o.leaves as i64;
        }
        let p = self.pos(o.account, o.symbol);
        p.open -= o.leaves;
        if o.side == Side::Sell {
            p.reserved -= o.leaves as i64;
        }
        o
    }

    fn cancel_by_engine(&mut self, idx: usize, reason: CancelReason, out: &mut Vec<Event>) {
        let o = self.drop_order(idx);
        let exec_id = self.exec();
        let mut v = view(&o, OrdStatus::Canceled, o.cl_ord_id, exec_id);
        v.leaves_qty = 0;
        out.push(Event::Canceled(Canceled {
            order: v,
            orig_cl_ord_id: ClOrdId::EMPTY,
            canceled_qty: o.leaves,
            reason,
        }));
    }

    /// Finds the live order for a cancel or replace: index, or reason and order id to report.
    fn find(
        &self,
        session: SessionId,
        order_id: OrderId,
        orig: ClOrdId,
    ) -> Result<usize, (RejectReason, OrderId)> {
        let id = if order_id.0 != 0 {
            order_id
        } else {
            match self.id_of(&(session, orig)) {
                Some(id) if id.0 != 0 => id,
                _ => return Err((RejectReason::UnknownOrder, OrderId(0))),
            }
        };
        match self.orders.iter().position(|o| o.id == id) {
            Some(i) => Ok(i),
            None if id.0 < self.next_order => Err((RejectReason::TooLateToCancel, id)),
            None => Err((RejectReason::UnknownOrder, OrderId(0))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn cxl_reject(
        &self,
        session: SessionId,
        account: AccountId,
        cl: ClOrdId,
        orig: ClOrdId,
        symbol: SymbolId,
        side: Side,
        is_replace: bool,
        found: Option<usize>,
        id: OrderId,
        reason: RejectReason,
        out: &mut Vec<Event>,
    ) {
        let (order_id, status) = match found {
            Some(i) => (self.orders[i].id, status_of(&self.orders[i])),
            None if reason == RejectReason::TooLateToCancel => (id, OrdStatus::Filled),
            None => (id, OrdStatus::Rejected),
        };
        out.push(Event::CancelRejected(CancelRejected {
            session,
            account,
            cl_ord_id: cl,
            orig_cl_ord_id: orig,
            order_id,
            symbol,
            side,
            status,
            is_replace,
            reason,
        }));
    }

    fn cancel(&mut self, c: &CancelOrder, out: &mut Vec<Event>) {
        let rej =
            |m: &Model, f: Option<usize>, id: OrderId, r: RejectReason, out: &mut Vec<Event>| {
                m.cxl_reject(
                    c.session,
                    c.account,
                    c.cl_ord_id,
                    c.orig_cl_ord_id,
                    c.symbol,
                    c.side,
                    false,
                    f,
                    id,
                    r,
                    out,
                )
            };
        let key = (c.session, c.cl_ord_id);
        if self.id_of(&key).is_some() {
            return rej(self, None, c.order_id, RejectReason::DuplicateClOrdId, out);
        }
        let idx = match self.find(c.session, c.order_id, c.orig_cl_ord_id) {
            Ok(i) => i,
            Err((r, id)) => {
                self.ids.push((key, OrderId(0)));
                return rej(self, None, id, r, out);
            }
        };
        self.ids.push((key, self.orders[idx].id));
        if self.orders[idx].account != c.account {
            return rej(self, None, OrderId(0), RejectReason::AccountMismatch, out);
        }
        let o = self.drop_order(idx);
        let exec_id = self.exec();
        let mut v = view(&o, OrdStatus::Canceled, c.cl_ord_id, exec_id);
        v.leaves_qty = 0;
        out.push(Event::Canceled(Canceled {
            order: v,
            orig_cl_ord_id: o.cl_ord_id,
            canceled_qty: o.leaves,
            reason: CancelReason::Requested,
        }));
    }

    fn replace_ok(&self, o: &MOrder, c: &ReplaceOrder) -> Result<(), RejectReason> {
        if !self.open {
            return Err(RejectReason::MarketClosed);
        }
        if c.symbol != o.symbol || c.side != o.side || o.ord_type != OrdType::Limit {
            return Err(RejectReason::InvalidReplace);
        }
        self.price_ok(o.symbol, c.price)?;
        self.qty_ok(o.symbol, c.qty)?;
        if c.qty <= o.cum {
            return Err(RejectReason::InvalidReplace);
        }
        let inst = &self.cfg.instruments[usize::from(o.symbol.0)];
        if i128::from(c.price) * i128::from(c.qty) > i128::from(inst.max_notional) {
            return Err(RejectReason::MaxNotionalExceeded);
        }
        let nl = c.qty - o.cum;
        let a = self.accounts.get(&o.account.0).unwrap();
        let p = a.pos.get(&o.symbol.0).unwrap();
        if p.traded + p.open - o.leaves + nl > self.limit_of(o.account, o.symbol) {
            return Err(RejectReason::DailyLimitExceeded);
        }
        if o.side == Side::Buy {
            let extra =
                i128::from(c.price) * i128::from(nl) - i128::from(o.price) * i128::from(o.leaves);
            if extra > i128::from(a.cash - a.reserved) {
                return Err(RejectReason::InsufficientFunds);
            }
        } else if nl as i64 - o.leaves as i64 > p.shares - p.reserved {
            return Err(RejectReason::InsufficientShares);
        }
        Ok(())
    }

    fn replace(&mut self, c: &ReplaceOrder, out: &mut Vec<Event>) {
        let rej =
            |m: &Model, f: Option<usize>, id: OrderId, r: RejectReason, out: &mut Vec<Event>| {
                m.cxl_reject(
                    c.session,
                    c.account,
                    c.cl_ord_id,
                    c.orig_cl_ord_id,
                    c.symbol,
                    c.side,
                    true,
                    f,
                    id,
                    r,
                    out,
                )
            };
        let key = (c.session, c.cl_ord_id);
        if self.id_of(&key).is_some() {
            return rej(self, None, c.order_id, RejectReason::DuplicateClOrdId, out);
        }
        let idx = match self.find(c.session, c.order_id, c.orig_cl_ord_id) {
            Ok(i) => i,
            Err((r, id)) => {
                self.ids.push((key, OrderId(0)));
                return rej(self, None, id, r, out);
            }
        };
        let old = self.orders[idx].clone();
        self.ids.push((key, old.id));
        if old.account != c.account {
            return rej(self, None, OrderId(0), RejectReason::AccountMismatch, out);
        }
        if let Err(r) = self.replace_ok(&old, c) {
            return rej(self, Some(idx), old.id, r, out);
        }
        let nl = c.qty - old.cum;
        let keep = c.price == old.price && nl <= old.leaves;
        let a = self.acct(old.account);
        if old.side == Side::Buy {
            a.reserved += c.price * nl as i64 - old.price * old.leaves as i64;
        }
        let p = self.pos(old.account, old.symbol);
        p.open = p.open - old.leaves + nl;
        if old.side == Side::Sell {
            p.reserved += nl as i64 - old.leaves as i64;
        }
        {
            let o = &mut self.orders[idx];
            o.price = c.price;
            o.qty = c.qty;
            o.leaves = nl;
            o.cl_ord_id = c.cl_ord_id;
            if !keep {
                o.prio = 0;
            }
        }
        let exec_id = self.exec();
        let o = self.orders[idx].clone();
        out.push(Event::Replaced(Replaced {
            order: view(&o, status_of(&o), c.cl_ord_id, exec_id),
            orig_cl_ord_id: old.cl_ord_id,
            kept_priority: keep,
        }));
        if !keep {
            self.run(idx, out);
        }
    }

    fn transfer(&mut self, t: &Transfer, deposit: bool, out: &mut Vec<Event>) {
        let res = (|| {
            if t.amount <= 0 {
                return Err(RejectReason::InvalidAmount);
            }
            if let Asset::Shares(s) = t.asset
                && usize::from(s.0) >= self.cfg.instruments.len()
            {
                return Err(RejectReason::UnknownSymbol);
            }
            if t.account.0 >= self.cfg.limits.max_accounts {
                return Err(RejectReason::UnknownAccount);
            }
            let a = self.acct(t.account);
            let (held, reserved) = match t.asset {
                Asset::Cash => (&mut a.cash, a.reserved),
                Asset::Shares(s) => {
                    let p = a.pos.entry(s.0).or_default();
                    (&mut p.shares, p.reserved)
                }
            };
            if deposit {
                *held = held
                    .checked_add(t.amount)
                    .ok_or(RejectReason::InvalidAmount)?;
            } else if *held - reserved < t.amount {
                return Err(RejectReason::InsufficientBalance);
            } else {
                *held -= t.amount;
            }
            Ok(())
        })();
        let balance = self
            .accounts
            .get(&t.account.0)
            .map(|a| match t.asset {
                Asset::Cash => a.cash,
                Asset::Shares(s) => a.pos.get(&s.0).map_or(0, |p| p.shares),
            })
            .unwrap_or(0);
        out.push(Event::Transfer(TransferDone {
            account: t.account,
            asset: t.asset,
            amount: if deposit {
                t.amount
            } else {
                t.amount.wrapping_neg()
            },
            balance,
            reject: res.err(),
        }));
    }

    fn open_day(&mut self, day: u32, out: &mut Vec<Event>) {
        if day != self.day {
            if self.open {
                self.close(out);
            }
            self.day = day;
            for a in self.accounts.values_mut() {
                for p in a.pos.values_mut() {
                    p.traded = 0;
                }
            }
            let live: Vec<OrderId> = self.orders.iter().map(|o| o.id).collect();
            self.ids.retain(|(_, id)| live.contains(id));
        }
        self.open = true;
        out.push(Event::TradingStatus(TradingStatus {
            trading_day: self.day,
            open: true,
        }));
    }

    fn close(&mut self, out: &mut Vec<Event>) {
        self.open = false;
        out.push(Event::TradingStatus(TradingStatus {
            trading_day: self.day,
            open: false,
        }));
        let mut day: Vec<OrderId> = self
            .orders
            .iter()
            .filter(|o| o.tif == TimeInForce::Day)
            .map(|o| o.id)
            .collect();
        day.sort();
        for id in day {
            let idx = self.orders.iter().position(|o| o.id == id).unwrap();
            let o = self.drop_order(idx);
            let exec_id = self.exec();
            let mut v = view(&o, OrdStatus::Expired, o.cl_ord_id, exec_id);
            v.leaves_qty = 0;
            out.push(Event::Expired(Expired { order: v }));
        }
    }
}

fn config(stp: &str) -> EngineConfig {
    EngineConfig::from_toml(&format!(
        "[limits]\nmax_open_orders_per_account = 6\nmax_resting_orders = 25\nmax_accounts = 4\nself_trade_prevention = \"{stp}\"\n\
         [defaults]\ntick_size = \"0.01\"\nlot_size = 1\nband_percent = \"1\"\ncollar_percent = \"0.05\"\ndaily_limit = 2000\nmax_order_qty = 400\nmax_notional = \"30000\"\n\
         [[instruments]]\nsymbol = \"AAA\"\nreference_price = \"100.00\"\n\
         [[instruments]]\nsymbol = \"BBB\"\nreference_price = \"10.00\"\nlot_size = 10\nband_percent = \"2\"\n\
         [[account_limits]]\naccount = 1\nsymbol = \"AAA\"\ndaily_limit = 500\n"
    ))
    .unwrap()
}

fn cl(n: u16) -> ClOrdId {
    ClOrdId::new(&format!("c{n}")).unwrap()
}

fn price_for(sym: u16, ticks: i64) -> Price {
    // AAA: 100.00 +- ticks of 0.01 (band 99.00..101.00); BBB: 10.00 +- ticks (band 9.80..10.20).
    let (base, tick) = if sym == 0 {
        (1_000_000, 100)
    } else {
        (100_000, 100)
    };
    base + ticks * tick
}

fn arb_command() -> impl Strategy<Value = Command> {
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let tif = prop_oneof![
        4 => Just(TimeInForce::Day),
        2 => Just(TimeInForce::Gtc),
        1 => Just(TimeInForce::Ioc),
        1 => Just(TimeInForce::Fok)
    ];
    let sym = prop_oneof![4 => Just(0u16), 1 => Just(1u16), 1 => Just(7u16)];
    let acct = 0u32..5;
    let ticks = prop_oneof![8 => -12i64..12, 1 => -150i64..150];
    let qty = prop_oneof![8 => 1u64..120, 1 => 0u64..500];
    let refused = (acct.clone(), 0u16..150, 19u16..21).prop_map(|(a, c, r)| {
        Command::Refuse(engine::command::Refused {
            order: NewOrder {
                session: SessionId(a % 4),
                account: AccountId(a),
                cl_ord_id: cl(c),
                symbol: SymbolId(0),
                side: Side::Buy,
                ord_type: OrdType::Limit,
                tif: TimeInForce::Day,
                price: 0,
                qty: 0,
            },
            reason: RejectReason::from_code(r).expect("a reason"),
        })
    });
    let new_order = (
        acct.clone(),
        0u16..150,
        sym.clone(),
        side.clone(),
        any::<bool>(),
        tif,
        ticks.clone(),
        qty.clone(),
        0u8..10,
    )
        .prop_map(|(a, c, s, side, market, tif, t, q, odd)| {
            let mut price = price_for(s, t);
            if odd == 0 {
                price += 37; // off the tick
            }
            let order = NewOrder {
                session: SessionId(a % 4),
                account: AccountId(a),
                cl_ord_id: cl(c),
                symbol: SymbolId(s),
                side,
                ord_type: if market && odd < 3 {
                    OrdType::Market
                } else {
                    OrdType::Limit
                },
                tif,
                price,
                qty: if s == 1 {
                    q / 10 * 10 + u64::from(odd == 1)
                } else {
                    q
                },
            };
            // One in ten flagged as a possible resend (PossResend or PossDupFlag on FIX).
            if odd == 9 {
                Command::ResentOrder(order)
            } else {
                Command::NewOrder(order)
            }
        });
    let cancel = (
        acct.clone(),
        0u16..150,
        0u16..150,
        0u64..40,
        any::<bool>(),
        sym.clone(),
        side.clone(),
    )
        .prop_map(|(a, c, o, id, by_id, s, side)| {
            Command::Cancel(CancelOrder {
                session: SessionId(a % 4),
                account: AccountId(a % 4),
                cl_ord_id: cl(c),
                orig_cl_ord_id: cl(o),
                order_id: OrderId(if by_id { id } else { 0 }),
                symbol: SymbolId(s),
                side,
            })
        });
    let replace = (
        acct.clone(),
        0u16..150,
        0u16..150,
        prop_oneof![Just(0u16), Just(1u16)],
        side,
        ticks,
        qty,
        0u64..40,
        0u8..4,
    )
        .prop_map(|(a, c, o, s, side, t, q, id, by_id)| {
            Command::Replace(ReplaceOrder {
                session: SessionId(a % 4),
                account: AccountId(a % 4),
                cl_ord_id: cl(c),
                orig_cl_ord_id: cl(o),
                order_id: OrderId(if by_id == 0 { id } else { 0 }),
                symbol: SymbolId(s),
                side,
                price: price_for(s, t),
                qty: if s == 1 { q / 10 * 10 } else { q },
            })
        });
    let status = (acct.clone(), 0u16..150, 0u64..40, any::<bool>(), 0u16..3).prop_map(
        |(a, c, id, by_id, req)| {
            Command::Status(StatusRequest {
                session: SessionId(a % 4),
                account: AccountId(a % 4),
                cl_ord_id: cl(c),
                order_id: OrderId(if by_id { id } else { 0 }),
                symbol: SymbolId(0),
                side: Side::Buy,
                req_id: if req == 0 { ClOrdId::EMPTY } else { cl(req) },
            })
        },
    );
    let mass_cancel = (
        acct.clone(),
        0u16..150,
        any::<bool>(),
        sym.clone(),
        prop_oneof![Just(None), Just(Some(Side::Buy)), Just(Some(Side::Sell))],
        any::<bool>(),
        0u8..4,
    )
        .prop_map(|(a, c, all, s, side, by_account, origin)| {
            Command::MassCancel(MassCancelRequest {
                session: SessionId(a % 4),
                // Session 0 trades for accounts 0 and 4: the account filter matters there.
                account: by_account.then_some(AccountId(a)),
                cl_ord_id: cl(c),
                scope: if all {
                    MassScope::All
                } else {
                    MassScope::Symbol
                },
                symbol: SymbolId(s),
                side,
                on_disconnect: origin == 0,
            })
        });
    // The same selections as a mass cancel's, asked as a status request.
    let mass_status = mass_cancel.clone().prop_map(|c| {
        let Command::MassCancel(m) = c else {
            unreachable!("a mass cancel")
        };
        Command::MassStatus(MassStatusRequest {
            session: m.session,
            account: m.account,
            req_id: m.cl_ord_id,
            scope: m.scope,
            symbol: m.symbol,
            side: m.side,
        })
    });
    let transfer = (
        acct,
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some(0u16)),
            Just(Some(1u16)),
            Just(Some(9u16))
        ],
        -5i64..200_000,
    )
        .prop_map(|(a, dep, asset, amt)| {
            let t = Transfer {
                account: AccountId(a),
                asset: asset.map_or(Asset::Cash, |s| Asset::Shares(SymbolId(s))),
                amount: if asset.is_none() {
                    amt * 10_000
                } else {
                    amt / 100
                },
            };
            if dep {
                Command::Deposit(t)
            } else {
                Command::Withdraw(t)
            }
        });
    let refused_cancel = (cancel.clone(), any::<bool>(), 19u16..21).prop_map(|(c, rep, r)| {
        let Command::Cancel(request) = c else {
            unreachable!("a cancel")
        };
        Command::RefuseCancel(engine::command::RefusedCancel {
            request,
            is_replace: rep,
            reason: RejectReason::from_code(r).expect("a reason"),
        })
    });
    prop_oneof![
        12 => new_order,
        1 => refused_cancel,
        3 => cancel,
        3 => replace,
        4 => transfer,
        1 => (1u32..4).prop_map(|d| Command::OpenTrading(OpenTrading { trading_day: d })),
        1 => Just(Command::CloseTrading(CloseTrading {})),
        1 => refused,
        1 => status,
        1 => mass_cancel,
        1 => mass_status,
    ]
}

/// The engine's order ids carry a storage slot; the model's are plain sequence numbers.
fn normalize(e: &Event) -> Event {
    let n = |id: OrderId| OrderId(id.sequence());
    let mut e = *e;
    match &mut e {
        Event::Accepted(x) => x.order.order_id = n(x.order.order_id),
        Event::Canceled(x) => x.order.order_id = n(x.order.order_id),
        Event::Replaced(x) => x.order.order_id = n(x.order.order_id),
        Event::Expired(x) => x.order.order_id = n(x.order.order_id),
        Event::Trade(x) => {
            x.maker.order_id = n(x.maker.order_id);
            x.taker.order_id = n(x.taker.order_id);
        }
        Event::CancelRejected(x) => x.order_id = n(x.order_id),
        Event::Status(x) => x.order.order_id = n(x.order.order_id),
        Event::MassStatus(x) => x.order.order_id = n(x.order.order_id),
        Event::Rejected(_)
        | Event::TradingStatus(_)
        | Event::Transfer(_)
        | Event::MassCancel(_) => {}
    }
    e
}

/// A command as the engine must see it: model order ids become the engine's ids.
fn to_engine(cmd: &Command, ids: &std::collections::HashMap<u64, OrderId>) -> Command {
    let map = |id: OrderId| match id.0 {
        0 => id,
        n => ids.get(&n).copied().unwrap_or(OrderId::compose(n, 0)),
    };
    let mut c = *cmd;
    match &mut c {
        Command::Cancel(x) => x.order_id = map(x.order_id),
        Command::Replace(x) => x.order_id = map(x.order_id),
        Command::RefuseCancel(x) => x.request.order_id = map(x.request.order_id),
        Command::Status(x) => x.order_id = map(x.order_id),
        _ => {}
    }
    c
}

/// Quantity accounting per order, from the events alone: every fill adds up to the cum
/// quantity reported, and an order that stops working has filled + cancelled = ordered.
#[derive(Default)]
struct Ledger {
    filled: std::collections::HashMap<OrderId, u64>,
}

impl Ledger {
    fn done(&self, order: &OrderView, canceled: u64) -> Result<(), String> {
        let filled = self.filled.get(&order.order_id).copied().unwrap_or(0);
        if filled != order.cum_qty || order.cum_qty + canceled != order.qty || order.leaves_qty != 0
        {
            return Err(format!(
                "order {}: filled {filled} (cum {}) + cancelled {canceled} != ordered {}",
                order.order_id, order.cum_qty, order.qty
            ));
        }
        Ok(())
    }

    fn check(&mut self, e: &Event) -> Result<(), String> {
        match e {
            Event::Trade(t) => {
                for f in [&t.maker, &t.taker] {
                    let filled = self.filled.entry(f.order_id).or_default();
                    *filled += t.qty;
                    if *filled != f.cum_qty || f.cum_qty + f.leaves_qty != f.qty {
                        return Err(format!(
                            "order {}: fills {} but cum {} leaves {} qty {}",
                            f.order_id, filled, f.cum_qty, f.leaves_qty, f.qty
                        ));
                    }
                }
            }
            Event::Canceled(c) => self.done(&c.order, c.canceled_qty)?,
            Event::Expired(x) => self.done(&x.order, x.order.qty - x.order.cum_qty)?,
            _ => {}
        }
        Ok(())
    }
}

fn totals(e: &Engine) -> (i64, Vec<i64>) {
    let cash = (0..4).map(|a| e.balance(AccountId(a)).cash).sum();
    let shares = (0..2)
        .map(|s| {
            (0..4)
                .map(|a| e.holding(AccountId(a), SymbolId(s)).shares)
                .sum()
        })
        .collect();
    (cash, shares)
}

/// Opens trading and funds the accounts, so most generated orders get past the wallet.
fn setup() -> Vec<Command> {
    let mut setup = vec![Command::OpenTrading(OpenTrading { trading_day: 1 })];
    for a in 0..4 {
        setup.push(Command::Deposit(Transfer {
            account: AccountId(a),
            asset: Asset::Cash,
            amount: 100_000 * 10_000,
        }));
        for s in 0..2 {
            setup.push(Command::Deposit(Transfer {
                account: AccountId(a),
                asset: Asset::Shares(SymbolId(s)),
                amount: 1_000,
            }));
        }
    }
    setup
}

/// Notes the order ids the engine handed out, for [`to_engine`] to name orders by id.
fn remember_ids(events: &[Event], ids: &mut std::collections::HashMap<u64, OrderId>) {
    for e in events {
        if let Event::Accepted(a) = e {
            ids.insert(a.order.order_id.sequence(), a.order.order_id);
        }
    }
}

fn run(stp: &str, cmds: &[Command]) -> Result<(), TestCaseError> {
    let cfg = config(stp);
    let mut engine = Engine::new(cfg.clone());
    let mut model = Model::new(cfg);
    let mut events = Vec::new();
    let setup = setup();
    let mut ids = std::collections::HashMap::new();
    let mut ledger = Ledger::default();
    for (i, cmd) in setup.iter().chain(cmds).enumerate() {
        let before = totals(&engine);
        events.clear();
        engine.apply(&to_engine(cmd, &ids), &mut events);
        remember_ids(&events, &mut ids);
        for e in &events {
            ledger.check(e).map_err(TestCaseError::fail)?;
        }
        let got: Vec<Event> = events.iter().map(normalize).collect();
        let expected = model.apply(cmd);
        prop_assert_eq!(&got, &expected, "command #{} {:?}", i, cmd);
        if let Err(e) = engine.check_invariants() {
            return Err(TestCaseError::fail(format!(
                "after command #{i} {cmd:?}: {e}"
            )));
        }
        if !matches!(cmd, Command::Deposit(_) | Command::Withdraw(_)) {
            prop_assert_eq!(
                totals(&engine),
                before,
                "cash or shares not conserved by #{} {:?}",
                i,
                cmd
            );
        }
    }
    for a in 0..4 {
        let b = engine.balance(AccountId(a));
        let m = model.accounts.get(&a).cloned().unwrap_or_default();
        prop_assert_eq!(
            (b.cash, b.cash_reserved, b.open_orders),
            (m.cash, m.reserved, m.open_orders)
        );
        for s in 0..2u16 {
            let h = engine.holding(AccountId(a), SymbolId(s));
            let p = m.pos.get(&s).cloned().unwrap_or_default();
            prop_assert_eq!(
                (h.shares, h.reserved, h.traded_today, h.open_qty),
                (p.shares, p.reserved, p.traded, p.open)
            );
        }
    }
    for s in 0..2u16 {
        for side in [Side::Buy, Side::Sell] {
            let got: Vec<(Price, Qty)> = engine
                .depth(SymbolId(s), side)
                .map(|l| (l.price, l.qty))
                .collect();
            let mut want: BTreeMap<Price, Qty> = BTreeMap::new();
            for o in model
                .orders
                .iter()
                .filter(|o| o.symbol.0 == s && o.side == side)
            {
                *want.entry(o.price).or_default() += o.leaves;
            }
            let mut want: Vec<(Price, Qty)> = want.into_iter().collect();
            if side == Side::Buy {
                want.reverse();
            }
            prop_assert_eq!(got, want);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_reference_model(
        stp in prop_oneof![Just("cancel-resting"), Just("cancel-incoming"), Just("cancel-both")],
        cmds in proptest::collection::vec(arb_command(), 1..250),
    ) {
        run(stp, &cmds)?;
    }

    #[test]
    fn identical_streams_give_identical_events_and_state(
        cmds in proptest::collection::vec(arb_command(), 1..200),
    ) {
        let mut a = Engine::new(config("cancel-resting"));
        let mut b = Engine::new(config("cancel-resting"));
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        for c in &cmds {
            a.apply(c, &mut ea);
        }
        // The second engine gets the same commands decoded from their binary records.
        let mut buf = [0u8; engine::command::MAX_COMMAND_LEN];
        for c in &cmds {
            let n = c.encode(&mut buf);
            let (d, used) = Command::decode(&buf[..n]).unwrap();
            prop_assert_eq!(used, n);
            b.apply(&d, &mut eb);
        }
        prop_assert_eq!(engine::hash::hash_events(&ea), engine::hash::hash_events(&eb));
        prop_assert_eq!(a.state_hash(), b.state_hash());
        // Every event survives its binary round trip.
        let mut ebuf = [0u8; engine::event::MAX_EVENT_LEN];
        for e in &ea {
            let n = e.encode(&mut ebuf);
            prop_assert_eq!(Event::decode(&ebuf[..n]).unwrap(), (*e, n));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn batches_give_the_same_events_and_state_as_one_command_at_a_time(
        stp in prop_oneof![Just("cancel-resting"), Just("cancel-both")],
        cmds in proptest::collection::vec(arb_command(), 1..250),
        sizes in proptest::collection::vec(1usize..70, 1..20),
    ) {
        let mut a = Engine::new(config(stp));
        let mut ids = std::collections::HashMap::new();
        // One at a time, with cancels by OrderID naming the ids the engine handed out.
        let mut want: Vec<Vec<Event>> = Vec::new();
        let mut converted = Vec::new();
        for cmd in setup().iter().chain(&cmds) {
            let c = to_engine(cmd, &ids);
            let mut events = Vec::new();
            a.apply(&c, &mut events);
            remember_ids(&events, &mut ids);
            want.push(events);
            converted.push(c);
        }
        // The same commands in batches of varying sizes: batches prefetch for the commands
        // after the current one, which must never change what the current one does.
        let mut b = Engine::new(config(stp));
        // Faulting the tables in ahead (as the live engine does) changes nothing either.
        b.populate_memory();
        let mut got: Vec<Vec<Event>> = Vec::new();
        let (mut at, mut k) = (0, 0);
        let mut out = Vec::new();
        while at < converted.len() {
            let n = sizes[k % sizes.len()].min(converted.len() - at);
            k += 1;
            b.apply_batch_each(&converted[at..at + n], &mut out, |i, out| {
                assert_eq!(got.len(), at + i, "called once per command, in order");
                got.push(std::mem::take(out));
            });
            at += n;
        }
        prop_assert_eq!(got, want);
        prop_assert_eq!(a.state_hash(), b.state_hash());
        prop_assert_eq!(a.save(), b.save());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_restored_snapshot_continues_exactly_like_the_engine_it_was_taken_from(
        stp in prop_oneof![Just("cancel-resting"), Just("cancel-both")],
        cmds in proptest::collection::vec(arb_command(), 2..250),
        cut in any::<proptest::sample::Index>(),
    ) {
        let cut = cut.index(cmds.len());
        let mut a = Engine::new(config(stp));
        let mut events = Vec::new();
        for c in &cmds[..cut] {
            a.apply(c, &mut events);
        }
        let bytes = a.save();
        let mut b = Engine::load(config(stp), &bytes).unwrap();
        prop_assert_eq!(b.state_hash(), a.state_hash());
        prop_assert_eq!(b.save(), bytes.clone(), "the bytes are canonical");
        // A snapshot under another configuration does not fit it.
        prop_assert_ne!(config(stp).fingerprint(), config("cancel-incoming").fingerprint());
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        for c in &cmds[cut..] {
            a.apply(c, &mut ea);
            b.apply(c, &mut eb);
            if let Err(e) = b.check_invariants() {
                return Err(TestCaseError::fail(e));
            }
        }
        // Same events (order ids included: the arena's slots and free list were kept).
        prop_assert_eq!(ea, eb);
        prop_assert_eq!(a.state_hash(), b.state_hash());
        prop_assert_eq!(a.save(), b.save());
    }

    #[test]
    fn damaged_snapshot_bytes_are_refused_or_consistent_never_a_panic(
        cmds in proptest::collection::vec(arb_command(), 1..120),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1u8..=255), 1..4),
        cut in any::<proptest::sample::Index>(),
    ) {
        let mut a = Engine::new(config("cancel-resting"));
        let mut events = Vec::new();
        for c in &cmds {
            a.apply(c, &mut events);
        }
        let mut bytes = a.save();
        for (i, x) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= x;
        }
        let cut = cut.index(bytes.len() + 1);
        for b in [&bytes[..], &bytes[..cut]] {
            // Whatever loads satisfies every invariant (load checks them).
            if let Ok(e) = Engine::load(config("cancel-resting"), b) {
                prop_assert!(e.check_invariants().is_ok());
            }
        }
    }
}
