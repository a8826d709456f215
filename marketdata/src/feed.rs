//! The market-data state machine: sequenced events in; books, trades, statistics and candles
//! kept; snapshots and incremental updates out, per subscription.
//!
//! Sans-IO: [`Feed::apply`] takes events, [`Feed::flush`] returns what every subscriber must be
//! sent, as [`Out`] values the gateway renders into FIX. A flush publishes every change since
//! the previous flush, so a feed that falls behind publishes fewer, larger updates instead of
//! falling further behind.
//!
//! An incoming order is only shown once its command's events are all in: it appears in the
//! book if something of it rests after matching, never in a transient crossed state.

mod persist;

use std::collections::VecDeque;
use std::sync::Arc;

use engine::event::{Event, OrderView};
use engine::types::{OrdType, OrderId, Price, Qty, Side, SymbolId, TimeInForce};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::book::{Level, OrderBook};
use crate::candles::{Candle, CandleSeries, Resolution, RingSizes};

/// Who receives market data (the gateway's session number).
pub type SubscriberId = u32;

/// MDEntryType (269).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Bid (0).
    Bid,
    /// Offer (1).
    Offer,
    /// Trade (2).
    Trade,
    /// Session opening price (4).
    Open,
    /// Session closing price (5).
    Close,
    /// Session high (7).
    High,
    /// Session low (8).
    Low,
    /// Session volume (B).
    Volume,
}

impl EntryKind {
    /// Every kind.
    pub const ALL: [EntryKind; 8] = [
        EntryKind::Bid,
        EntryKind::Offer,
        EntryKind::Trade,
        EntryKind::Open,
        EntryKind::Close,
        EntryKind::High,
        EntryKind::Low,
        EntryKind::Volume,
    ];

    /// The FIX value.
    pub fn fix(self) -> u8 {
        match self {
            EntryKind::Bid => b'0',
            EntryKind::Offer => b'1',
            EntryKind::Trade => b'2',
            EntryKind::Open => b'4',
            EntryKind::Close => b'5',
            EntryKind::High => b'7',
            EntryKind::Low => b'8',
            EntryKind::Volume => b'B',
        }
    }

    /// From the FIX value.
    pub fn from_fix(v: u8) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.fix() == v)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    fn of_side(side: Side) -> EntryKind {
        match side {
            Side::Buy => EntryKind::Bid,
            Side::Sell => EntryKind::Offer,
        }
    }
}

/// MDUpdateAction (279).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// New (0).
    New,
    /// Change (1).
    Change,
    /// Delete (2).
    Delete,
}

impl Action {
    /// The FIX value.
    pub fn fix(self) -> u8 {
        match self {
            Action::New => b'0',
            Action::Change => b'1',
            Action::Delete => b'2',
        }
    }
}

/// One market-data entry of a snapshot or an incremental update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What happens to the entry (always `New` in snapshots).
    pub action: Action,
    /// Entry type.
    pub kind: EntryKind,
    /// Instrument.
    pub symbol: SymbolId,
    /// Order id for order-by-order (L3) entries.
    pub order_id: Option<OrderId>,
    /// Price (none for volume).
    pub price: Option<Price>,
    /// Size (quantity, or volume).
    pub size: Option<Qty>,
    /// Number of orders at an aggregated level.
    pub orders: Option<u32>,
    /// Event time, ns since the Unix epoch (trades and statistics).
    pub time: i64,
    /// The subscription's per-instrument sequence number of this entry.
    pub rpt_seq: u64,
}

/// SubscriptionRequestType (263).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// One snapshot (0).
    Snapshot,
    /// Snapshot then updates (1).
    Subscribe,
    /// End a subscription (2).
    Unsubscribe,
}

/// A MarketDataRequest, normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// MDReqID.
    pub req_id: String,
    /// SubscriptionRequestType.
    pub kind: RequestKind,
    /// MarketDepth: 0 full book, 1 top of book, N levels.
    pub depth: u32,
    /// AggregatedBook: true for price levels (L2), false for every order (L3).
    pub aggregated: bool,
    /// MDUpdateType asked for: `Some(false)` full refresh (unsupported), `Some(true)` or `None`
    /// incremental.
    pub incremental: Option<bool>,
    /// MDEntryType values as sent.
    pub entry_types: Vec<u8>,
    /// Symbols as sent.
    pub symbols: Vec<String>,
}

/// MDReqRejReason (281).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// 0.
    UnknownSymbol,
    /// 1.
    DuplicateReqId,
    /// 2.
    InsufficientBandwidth,
    /// 4.
    UnsupportedSubscriptionType,
    /// 5.
    UnsupportedMarketDepth,
    /// 6.
    UnsupportedUpdateType,
    /// 7.
    UnsupportedAggregatedBook,
    /// 8.
    UnsupportedEntryType,
}

impl RejectReason {
    /// The FIX value.
    pub fn fix(self) -> u8 {
        match self {
            RejectReason::UnknownSymbol => b'0',
            RejectReason::DuplicateReqId => b'1',
            RejectReason::InsufficientBandwidth => b'2',
            RejectReason::UnsupportedSubscriptionType => b'4',
            RejectReason::UnsupportedMarketDepth => b'5',
            RejectReason::UnsupportedUpdateType => b'6',
            RejectReason::UnsupportedAggregatedBook => b'7',
            RejectReason::UnsupportedEntryType => b'8',
        }
    }
}

/// Something to send to a subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// MarketDataSnapshotFullRefresh (W) of one instrument.
    Snapshot {
        /// Recipient.
        subscriber: SubscriberId,
        /// MDReqID.
        req_id: Arc<str>,
        /// Instrument.
        symbol: SymbolId,
        /// RptSeq of the last update the snapshot includes.
        rpt_seq: u64,
        /// Entries.
        entries: Vec<Entry>,
    },
    /// MarketDataIncrementalRefresh (X).
    Incremental {
        /// Recipient.
        subscriber: SubscriberId,
        /// MDReqID.
        req_id: Arc<str>,
        /// Updates of one instrument each, in order; the same update goes to every
        /// subscription of its view, so it is rendered once however many receive it.
        updates: Vec<Update>,
    },
    /// MarketDataRequestReject (Y).
    Reject {
        /// Recipient.
        subscriber: SubscriberId,
        /// MDReqID.
        req_id: String,
        /// Why, when a FIX reason fits.
        reason: Option<RejectReason>,
        /// Explanation.
        text: String,
    },
    /// TradingSessionStatus (h).
    Status {
        /// Recipient.
        subscriber: SubscriberId,
        /// Trading day, YYYYMMDD.
        trading_day: u32,
        /// Whether trading is open.
        open: bool,
    },
}

/// The entries of one instrument's view published in one flush (at most
/// [`FeedConfig::max_entries`]), shared by every subscription of that view.
pub type Update = Arc<[Entry]>;

impl Out {
    /// The entries of a snapshot or an incremental refresh, in order.
    pub fn entries(&self) -> Vec<&Entry> {
        match self {
            Out::Snapshot { entries, .. } => entries.iter().collect(),
            Out::Incremental { updates, .. } => updates.iter().flat_map(|u| u.iter()).collect(),
            Out::Reject { .. } | Out::Status { .. } => Vec::new(),
        }
    }
}

/// A trade as market data keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// Price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Time, ns since the Unix epoch.
    pub time: i64,
    /// Side of the aggressor.
    pub aggressor: Side,
}

impl Tick {
    /// The trade as a new market-data entry (RptSeq not yet assigned).
    fn entry(&self, symbol: SymbolId) -> Entry {
        Entry {
            action: Action::New,
            kind: EntryKind::Trade,
            symbol,
            order_id: None,
            price: Some(self.price),
            size: Some(self.qty),
            orders: None,
            time: self.time,
            rpt_seq: 0,
        }
    }
}

/// Session statistics of one instrument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// First trade price of the day.
    pub open: Option<Price>,
    /// Highest.
    pub high: Option<Price>,
    /// Lowest.
    pub low: Option<Price>,
    /// Last trade price at the close (set when the session closes).
    pub close: Option<Price>,
    /// Shares traded.
    pub volume: Qty,
    /// Last trade of the day.
    pub last: Option<Price>,
}

impl Stats {
    /// Entries of the statistics that exist: (kind, price, size).
    fn values(&self) -> Vec<(EntryKind, Option<Price>, Option<Qty>)> {
        let mut v = Vec::new();
        for (k, p) in [
            (EntryKind::Open, self.open),
            (EntryKind::Close, self.close),
            (EntryKind::High, self.high),
            (EntryKind::Low, self.low),
        ] {
            if p.is_some() {
                v.push((k, p, None));
            }
        }
        if self.volume > 0 {
            v.push((EntryKind::Volume, None, Some(self.volume)));
        }
        v
    }
}

/// Tuning of the feed.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// Candle ring sizes.
    pub rings: RingSizes,
    /// Trades kept per instrument for queries.
    pub last_trades: usize,
    /// Entries per incremental message at most (larger updates are split).
    pub max_entries: usize,
    /// Largest MarketDepth accepted (0, full depth, is always accepted).
    pub max_depth: u32,
}

impl Default for FeedConfig {
    fn default() -> FeedConfig {
        FeedConfig {
            rings: RingSizes::default(),
            last_trades: 100,
            max_entries: 256,
            max_depth: 1000,
        }
    }
}

/// An order still being matched in the current command.
#[derive(Clone, Copy, Debug)]
struct Incoming {
    id: OrderId,
    side: Side,
    price: Price,
    leaves: Qty,
    rests: bool,
}

/// A level change: action and the level after it (the level before it for deletes).
#[derive(Clone, Copy, Debug)]
struct LevelDiff {
    action: Action,
    side: Side,
    level: Level,
}

/// An order-by-order change.
#[derive(Clone, Copy, Debug)]
struct OrderDiff {
    action: Action,
    side: Side,
    id: OrderId,
    price: Price,
    qty: Qty,
}

/// The L2 view a depth-limited subscription last saw.
#[derive(Debug)]
struct View {
    depth: u32,
    users: u32,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

#[derive(Debug, Default)]
struct Changes {
    dirty: bool,
    levels: Vec<(Side, Price, bool)>,
    level_set: FxHashSet<(Side, Price)>,
    orders: Vec<OrderDiff>,
    trades: Vec<Tick>,
    stats_before: Option<Stats>,
}

impl Changes {
    /// Forgets the changes, keeping the allocations for the next round.
    fn clear(&mut self) {
        self.dirty = false;
        self.levels.clear();
        self.level_set.clear();
        self.orders.clear();
        self.trades.clear();
        self.stats_before = None;
    }
}

/// What a subscription publishes of an instrument: subscriptions asking for the same view
/// receive the same updates with the same RptSeq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ViewKey {
    depth: u32,
    orders: bool,
    types: u16,
}

/// A view of one instrument that has subscribers, and the RptSeq of its last entry.
#[derive(Debug)]
struct Publication {
    key: ViewKey,
    users: u32,
    rpt_seq: u64,
}

#[derive(Debug)]
struct Instrument {
    book: OrderBook,
    incoming: Option<Incoming>,
    stats: Stats,
    trades: VecDeque<Tick>,
    candles: CandleSeries,
    views: Vec<View>,
    pubs: Vec<Publication>,
    changes: Changes,
    subs: Vec<usize>,
}

impl Instrument {
    /// RptSeq of the last update of a view (0 when nobody subscribes to it yet).
    fn rpt_seq(&self, key: ViewKey) -> u64 {
        self.pubs
            .iter()
            .find(|p| p.key == key)
            .map_or(0, |p| p.rpt_seq)
    }
}

#[derive(Debug)]
struct Subscription {
    subscriber: SubscriberId,
    req_id: Arc<str>,
    key: ViewKey,
    symbols: Vec<SymbolId>,
    stale: bool,
}

/// The market-data state of every instrument, and the subscriptions.
#[derive(Debug)]
pub struct Feed {
    config: FeedConfig,
    names: Vec<String>,
    by_name: FxHashMap<String, SymbolId>,
    instruments: Vec<Instrument>,
    subs: Vec<Option<Subscription>>,
    connected: FxHashSet<SubscriberId>,
    group: u64,
    pending_incoming: Vec<SymbolId>,
    dirty: Vec<SymbolId>,
    trading_day: u32,
    open: bool,
    status_changed: bool,
    evicted: Vec<(SymbolId, Resolution, Candle)>,
    last_time: i64,
}

impl Feed {
    /// A feed for these instruments (names indexed by symbol id).
    pub fn new(symbols: Vec<String>, config: FeedConfig) -> Feed {
        let instruments = symbols
            .iter()
            .map(|_| Instrument {
                book: OrderBook::default(),
                incoming: None,
                stats: Stats::default(),
                trades: VecDeque::with_capacity(config.last_trades),
                candles: CandleSeries::new(config.rings),
                views: Vec::new(),
                pubs: Vec::new(),
                changes: Changes::default(),
                subs: Vec::new(),
            })
            .collect();
        let by_name = symbols
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), SymbolId(i as u16)))
            .collect();
        Feed {
            config,
            names: symbols,
            by_name,
            instruments,
            subs: Vec::new(),
            connected: FxHashSet::default(),
            group: 0,
            pending_incoming: Vec::new(),
            dirty: Vec::new(),
            trading_day: 0,
            open: false,
            status_changed: false,
            evicted: Vec::new(),
            last_time: 0,
        }
    }

    /// The id of a ticker.
    pub fn symbol(&self, name: &str) -> Option<SymbolId> {
        self.by_name.get(name).copied()
    }

    /// The ticker of an id.
    pub fn name(&self, id: SymbolId) -> &str {
        self.names.get(usize::from(id.0)).map_or("", |s| s)
    }

    /// An instrument's book.
    pub fn book(&self, id: SymbolId) -> Option<&OrderBook> {
        self.instruments.get(usize::from(id.0)).map(|i| &i.book)
    }

    /// An instrument's session statistics.
    pub fn stats(&self, id: SymbolId) -> Option<Stats> {
        self.instruments.get(usize::from(id.0)).map(|i| i.stats)
    }

    /// An instrument's latest trades, oldest first.
    pub fn trades(&self, id: SymbolId) -> Vec<Tick> {
        self.instruments
            .get(usize::from(id.0))
            .map(|i| i.trades.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Candles in memory whose start lies in `[from, to)` (ms), oldest first.
    pub fn candles(&self, id: SymbolId, r: Resolution, from: i64, to: i64) -> Vec<Candle> {
        self.instruments
            .get(usize::from(id.0))
            .map(|i| i.candles.range(r, from, to))
            .unwrap_or_default()
    }

    /// Start of the oldest in-memory candle (older ones were evicted to the archive).
    pub fn oldest_candle(&self, id: SymbolId, r: Resolution) -> Option<i64> {
        self.instruments
            .get(usize::from(id.0))
            .and_then(|i| i.candles.oldest(r))
    }

    /// Candles pushed out of the rings since the last call, for the archive.
    pub fn take_evicted(&mut self) -> Vec<(SymbolId, Resolution, Candle)> {
        std::mem::take(&mut self.evicted)
    }

    /// Whether trading is open, and the trading day.
    pub fn trading_status(&self) -> (u32, bool) {
        (self.trading_day, self.open)
    }

    /// Timestamp of the last event applied (ns).
    pub fn last_time(&self) -> i64 {
        self.last_time
    }

    // ----- events ----------------------------------------------------------------------------

    fn touch(&mut self, sym: SymbolId) -> &mut Instrument {
        let i = usize::from(sym.0);
        let ins = &mut self.instruments[i];
        if !ins.changes.dirty {
            ins.changes.dirty = true;
            self.dirty.push(sym);
        }
        &mut self.instruments[i]
    }

    fn touch_level(&mut self, sym: SymbolId, side: Side, price: Price) {
        let ins = self.touch(sym);
        if ins.changes.level_set.insert((side, price)) {
            let existed = ins.book.level(side, price).is_some();
            ins.changes.levels.push((side, price, existed));
        }
    }

    fn remove_order(&mut self, sym: SymbolId, id: OrderId) {
        self.set_order_qty(sym, id, 0);
    }

    /// Sets a resting order's quantity in place; 0 removes it.
    fn set_order_qty(&mut self, sym: SymbolId, id: OrderId, qty: Qty) {
        let Some(o) = self
            .instruments
            .get_mut(usize::from(sym.0))
            .and_then(|i| i.book.set_qty(id, qty))
        else {
            return;
        };
        // One lookup of the order, not three: the change is made first, and the level it
        // rested at existed before it (`touch_level` would ask the book).
        let ins = self.touch(sym);
        if ins.changes.level_set.insert((o.side, o.price)) {
            ins.changes.levels.push((o.side, o.price, true));
        }
        ins.changes.orders.push(OrderDiff {
            action: if qty == 0 {
                Action::Delete
            } else {
                Action::Change
            },
            side: o.side,
            id,
            price: o.price,
            qty,
        });
    }

    fn start_incoming(&mut self, o: &OrderView) {
        let sym = o.symbol;
        if usize::from(sym.0) >= self.instruments.len() {
            return;
        }
        let rests =
            o.ord_type == OrdType::Limit && matches!(o.tif, TimeInForce::Day | TimeInForce::Gtc);
        self.instruments[usize::from(sym.0)].incoming = Some(Incoming {
            id: o.order_id,
            side: o.side,
            price: o.price,
            leaves: o.leaves_qty,
            rests,
        });
        self.pending_incoming.push(sym);
    }

    /// Puts what is left of incoming orders into their books: their commands are complete.
    fn settle(&mut self) {
        while let Some(sym) = self.pending_incoming.pop() {
            let Some(inc) = self.instruments[usize::from(sym.0)].incoming.take() else {
                continue;
            };
            if inc.rests && inc.leaves > 0 {
                self.touch_level(sym, inc.side, inc.price);
                let ins = &mut self.instruments[usize::from(sym.0)];
                ins.book.add(inc.id, inc.side, inc.price, inc.leaves);
                ins.changes.orders.push(OrderDiff {
                    action: Action::New,
                    side: inc.side,
                    id: inc.id,
                    price: inc.price,
                    qty: inc.leaves,
                });
            }
        }
    }

    fn stats_mut(&mut self, sym: SymbolId) -> &mut Stats {
        let ins = self.touch(sym);
        if ins.changes.stats_before.is_none() {
            ins.changes.stats_before = Some(ins.stats);
        }
        &mut ins.stats
    }

    /// Applies one event of the command with sequence id `seq`, stamped `time` (ns).
    pub fn apply(&mut self, seq: u64, time: i64, event: &Event) {
        if seq != self.group {
            self.settle();
            self.group = seq;
        }
        self.last_time = time;
        match event {
            Event::Accepted(a) => self.start_incoming(&a.order),
            Event::Replaced(r) => {
                let o = &r.order;
                if r.kept_priority {
                    self.set_order_qty(o.symbol, o.order_id, o.leaves_qty);
                } else {
                    self.remove_order(o.symbol, o.order_id);
                    self.start_incoming(o);
                }
            }
            Event::Canceled(c) => self.end_order(&c.order),
            Event::Expired(e) => self.end_order(&e.order),
            Event::Trade(t) => {
                let sym = t.symbol;
                if usize::from(sym.0) >= self.instruments.len() {
                    return;
                }
                self.set_order_qty(sym, t.maker.order_id, t.maker.leaves_qty);
                let ins = &mut self.instruments[usize::from(sym.0)];
                if let Some(inc) = ins.incoming.as_mut().filter(|i| i.id == t.taker.order_id) {
                    inc.leaves = t.taker.leaves_qty;
                }
                let tick = Tick {
                    price: t.price,
                    qty: t.qty,
                    time,
                    aggressor: t.aggressor,
                };
                if ins.trades.len() == self.config.last_trades {
                    ins.trades.pop_front();
                }
                ins.trades.push_back(tick);
                let evicted = &mut self.evicted;
                ins.candles
                    .record(time / 1_000_000, t.price, t.qty, &mut |r, c| {
                        evicted.push((sym, r, c))
                    });
                self.touch(sym).changes.trades.push(tick);
                let s = self.stats_mut(sym);
                s.open.get_or_insert(t.price);
                s.high = Some(s.high.map_or(t.price, |h| h.max(t.price)));
                s.low = Some(s.low.map_or(t.price, |l| l.min(t.price)));
                s.volume += t.qty;
                s.last = Some(t.price);
            }
            Event::TradingStatus(s) => {
                self.settle();
                let new_day = s.open && s.trading_day != self.trading_day;
                self.trading_day = s.trading_day;
                self.open = s.open;
                self.status_changed = true;
                for i in 0..self.instruments.len() {
                    let sym = SymbolId(i as u16);
                    let st = self.instruments[i].stats;
                    if new_day && st != Stats::default() {
                        *self.stats_mut(sym) = Stats::default();
                    } else if !s.open && st.last.is_some() && st.close != st.last {
                        self.stats_mut(sym).close = st.last;
                    }
                }
            }
            Event::Rejected(_)
            | Event::CancelRejected(_)
            | Event::Transfer(_)
            | Event::Status(_)
            | Event::MassCancel(_)
            | Event::MassStatus(_) => {}
        }
    }

    fn end_order(&mut self, o: &OrderView) {
        let sym = o.symbol;
        if usize::from(sym.0) >= self.instruments.len() {
            return;
        }
        let ins = &mut self.instruments[usize::from(sym.0)];
        if ins.incoming.is_some_and(|i| i.id == o.order_id) {
            ins.incoming = None;
        } else {
            self.remove_order(sym, o.order_id);
        }
    }

    // ----- subscriptions ---------------------------------------------------------------------

    /// A subscriber logged on: it starts with no subscription and is told the trading status.
    pub fn connect(&mut self, subscriber: SubscriberId, out: &mut Vec<Out>) {
        self.disconnect(subscriber);
        self.connected.insert(subscriber);
        out.push(Out::Status {
            subscriber,
            trading_day: self.trading_day,
            open: self.open,
        });
    }

    /// A subscriber went away: its subscriptions end.
    pub fn disconnect(&mut self, subscriber: SubscriberId) {
        self.connected.remove(&subscriber);
        for i in 0..self.subs.len() {
            if self.subs[i]
                .as_ref()
                .is_some_and(|s| s.subscriber == subscriber)
            {
                self.remove_sub(i);
            }
        }
    }

    /// Number of live subscriptions.
    pub fn subscriptions(&self) -> usize {
        self.subs.iter().flatten().count()
    }

    fn remove_sub(&mut self, i: usize) {
        let Some(s) = self.subs[i].take() else {
            return;
        };
        for sym in &s.symbols {
            let ins = &mut self.instruments[usize::from(sym.0)];
            ins.subs.retain(|&j| j != i);
            if let Some(p) = ins.pubs.iter_mut().find(|p| p.key == s.key) {
                p.users -= 1;
            }
            ins.pubs.retain(|p| p.users > 0);
            if s.key.depth > 0 && !s.key.orders {
                if let Some(v) = ins.views.iter_mut().find(|v| v.depth == s.key.depth) {
                    v.users -= 1;
                }
                ins.views.retain(|v| v.users > 0);
            }
        }
    }

    fn vet(&self, r: &Request) -> Result<(Vec<SymbolId>, u16), (Option<RejectReason>, String)> {
        if r.incremental == Some(false) && r.kind == RequestKind::Subscribe {
            return Err((
                Some(RejectReason::UnsupportedUpdateType),
                "only incremental refresh (MDUpdateType 1) is published".into(),
            ));
        }
        if r.depth > self.config.max_depth {
            return Err((
                Some(RejectReason::UnsupportedMarketDepth),
                format!(
                    "MarketDepth at most {} (0 for the full book)",
                    self.config.max_depth
                ),
            ));
        }
        if !r.aggregated && r.depth != 0 {
            return Err((
                Some(RejectReason::UnsupportedMarketDepth),
                "an order-by-order book (AggregatedBook N) is published at full depth only (MarketDepth 0)".into(),
            ));
        }
        let mut types = 0u16;
        for t in &r.entry_types {
            match EntryKind::from_fix(*t) {
                Some(k) => types |= k.bit(),
                None => {
                    return Err((
                        Some(RejectReason::UnsupportedEntryType),
                        format!(
                            "MDEntryType {} is not published (0,1,2,4,5,7,8,B are)",
                            char::from(*t)
                        ),
                    ));
                }
            }
        }
        if types == 0 {
            return Err((
                Some(RejectReason::UnsupportedEntryType),
                "no MDEntryType requested".into(),
            ));
        }
        let mut syms = Vec::new();
        for name in &r.symbols {
            match self.symbol(name) {
                Some(s) if !syms.contains(&s) => syms.push(s),
                Some(_) => {}
                None => {
                    return Err((
                        Some(RejectReason::UnknownSymbol),
                        format!("unknown symbol {name}"),
                    ));
                }
            }
        }
        if syms.is_empty() {
            return Err((
                Some(RejectReason::UnknownSymbol),
                "no symbol requested".into(),
            ));
        }
        Ok((syms, types))
    }

    /// Handles a MarketDataRequest. Call at a flush boundary (after [`Feed::flush`]) so that
    /// the snapshot and the updates that follow it fit together.
    pub fn request(&mut self, subscriber: SubscriberId, r: Request, out: &mut Vec<Out>) {
        self.settle();
        let existing = self.subs.iter().position(|s| {
            s.as_ref()
                .is_some_and(|s| s.subscriber == subscriber && *s.req_id == *r.req_id)
        });
        if r.kind == RequestKind::Unsubscribe {
            match existing {
                Some(i) => self.remove_sub(i),
                None => out.push(Out::Reject {
                    subscriber,
                    req_id: r.req_id,
                    reason: None,
                    text: "no subscription with this MDReqID".into(),
                }),
            }
            return;
        }
        if existing.is_some() {
            return out.push(Out::Reject {
                subscriber,
                req_id: r.req_id,
                reason: Some(RejectReason::DuplicateReqId),
                text: "a subscription with this MDReqID is active".into(),
            });
        }
        let (syms, types) = match self.vet(&r) {
            Ok(v) => v,
            Err((reason, text)) => {
                return out.push(Out::Reject {
                    subscriber,
                    req_id: r.req_id,
                    reason,
                    text,
                });
            }
        };
        let key = ViewKey {
            depth: r.depth,
            orders: !r.aggregated,
            types,
        };
        let sub = Subscription {
            subscriber,
            req_id: Arc::from(r.req_id.as_str()),
            key,
            symbols: syms.clone(),
            stale: false,
        };
        for s in &syms {
            out.push(self.snapshot(&sub, *s));
        }
        if r.kind == RequestKind::Snapshot {
            return;
        }
        let i = match self.subs.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.subs.push(None);
                self.subs.len() - 1
            }
        };
        for s in &syms {
            let ins = &mut self.instruments[usize::from(s.0)];
            ins.subs.push(i);
            match ins.pubs.iter_mut().find(|p| p.key == key) {
                Some(p) => p.users += 1,
                None => ins.pubs.push(Publication {
                    key,
                    users: 1,
                    rpt_seq: 0,
                }),
            }
            if key.depth > 0 && !key.orders {
                match ins.views.iter_mut().find(|v| v.depth == key.depth) {
                    Some(v) => v.users += 1,
                    None => {
                        let n = key.depth as usize;
                        ins.views.push(View {
                            depth: key.depth,
                            users: 1,
                            bids: ins.book.top(Side::Buy, n),
                            asks: ins.book.top(Side::Sell, n),
                        });
                    }
                }
            }
        }
        self.subs[i] = Some(sub);
    }

    fn snapshot(&self, sub: &Subscription, sym: SymbolId) -> Out {
        let ins = &self.instruments[usize::from(sym.0)];
        let rpt_seq = ins.rpt_seq(sub.key);
        let ViewKey {
            depth,
            orders,
            types,
        } = sub.key;
        let mut entries = Vec::new();
        let e = |kind, price, size, orders, id, time| Entry {
            action: Action::New,
            kind,
            symbol: sym,
            order_id: id,
            price,
            size,
            orders,
            time,
            rpt_seq,
        };
        for side in [Side::Buy, Side::Sell] {
            let kind = EntryKind::of_side(side);
            if types & kind.bit() == 0 {
                continue;
            }
            if orders {
                for o in ins.book.orders(side) {
                    entries.push(e(kind, Some(o.price), Some(o.qty), None, Some(o.id), 0));
                }
            } else {
                for l in ins.book.top(side, depth as usize) {
                    entries.push(e(kind, Some(l.price), Some(l.qty), Some(l.orders), None, 0));
                }
            }
        }
        if types & EntryKind::Trade.bit() != 0
            && let Some(t) = ins.trades.back()
        {
            entries.push(Entry {
                rpt_seq,
                ..t.entry(sym)
            });
        }
        for (k, p, q) in ins.stats.values() {
            if types & k.bit() != 0 {
                entries.push(e(k, p, q, None, None, 0));
            }
        }
        Out::Snapshot {
            subscriber: sub.subscriber,
            req_id: Arc::clone(&sub.req_id),
            symbol: sym,
            rpt_seq,
            entries,
        }
    }

    // ----- publishing ------------------------------------------------------------------------

    /// Publishes every change since the last flush. `ready` tells whether a subscriber can take
    /// more now; one that cannot is skipped (conflated) and gets fresh snapshots once it can.
    ///
    /// Each view of an instrument is built once per flush and shared by its subscriptions, so
    /// a flush costs per distinct view plus a pointer per subscription.
    pub fn flush(&mut self, ready: &mut dyn FnMut(SubscriberId) -> bool, out: &mut Vec<Out>) {
        self.settle();
        if std::mem::take(&mut self.status_changed) {
            let mut subs: Vec<_> = self.connected.iter().copied().collect();
            subs.sort_unstable();
            for subscriber in subs {
                out.push(Out::Status {
                    subscriber,
                    trading_day: self.trading_day,
                    open: self.open,
                });
            }
        }
        let mut pending: FxHashMap<usize, Vec<Update>> = FxHashMap::default();
        let mut order: Vec<usize> = Vec::new();
        // Asking costs a lock on the subscriber's session: once per subscriber and flush.
        let mut readiness: FxHashMap<SubscriberId, bool> = FxHashMap::default();
        let max = self.config.max_entries.max(1);
        for sym in std::mem::take(&mut self.dirty) {
            if self.instruments[usize::from(sym.0)].subs.is_empty() {
                // Nobody to tell: a later subscriber starts from a snapshot.
                self.instruments[usize::from(sym.0)].changes.clear();
                continue;
            }
            let diff = self.diff(sym);
            let time = self.last_time;
            let ins = &mut self.instruments[usize::from(sym.0)];
            let updates: Vec<(ViewKey, Vec<Update>)> = ins
                .pubs
                .iter_mut()
                .map(|p| {
                    let mut entries = diff.entries(sym, p.key, time);
                    for e in &mut entries {
                        p.rpt_seq += 1;
                        e.rpt_seq = p.rpt_seq;
                    }
                    (p.key, entries.chunks(max).map(Update::from).collect())
                })
                .collect();
            for &si in &ins.subs {
                let Some(sub) = self.subs[si].as_mut() else {
                    continue;
                };
                let Some((_, mine)) = updates.iter().find(|(k, _)| *k == sub.key) else {
                    continue;
                };
                if sub.stale || mine.is_empty() {
                    continue;
                }
                if !*readiness
                    .entry(sub.subscriber)
                    .or_insert_with(|| ready(sub.subscriber))
                {
                    sub.stale = true;
                    pending.remove(&si);
                    continue;
                }
                pending
                    .entry(si)
                    .or_insert_with(|| {
                        order.push(si);
                        Vec::new()
                    })
                    .extend(mine.iter().cloned());
            }
        }
        for si in order {
            let Some(updates) = pending.remove(&si) else {
                continue;
            };
            let Some(sub) = self.subs[si].as_ref() else {
                continue;
            };
            let mut message: Vec<Update> = Vec::new();
            let mut n = 0;
            for u in updates {
                if n + u.len() > max && !message.is_empty() {
                    out.push(Out::Incremental {
                        subscriber: sub.subscriber,
                        req_id: Arc::clone(&sub.req_id),
                        updates: std::mem::take(&mut message),
                    });
                    n = 0;
                }
                n += u.len();
                message.push(u);
            }
            if !message.is_empty() {
                out.push(Out::Incremental {
                    subscriber: sub.subscriber,
                    req_id: Arc::clone(&sub.req_id),
                    updates: message,
                });
            }
        }
        self.refresh_stale(ready, out);
    }

    /// Sends fresh snapshots to conflated subscriptions whose subscriber can take them again.
    pub fn refresh_stale(
        &mut self,
        ready: &mut dyn FnMut(SubscriberId) -> bool,
        out: &mut Vec<Out>,
    ) {
        for i in 0..self.subs.len() {
            let Some(sub) = self.subs[i].as_ref() else {
                continue;
            };
            if !sub.stale || !ready(sub.subscriber) {
                continue;
            }
            for sym in &sub.symbols {
                out.push(self.snapshot(sub, *sym));
            }
            if let Some(s) = self.subs[i].as_mut() {
                s.stale = false;
            }
        }
    }

    /// The changes of one instrument since the last flush, and the views brought up to date.
    fn diff(&mut self, sym: SymbolId) -> Diff {
        let ins = &mut self.instruments[usize::from(sym.0)];
        let ch = &ins.changes;
        let mut full = Vec::new();
        // Deletes first, so that a client never holds more levels than the book.
        for (side, price, existed) in &ch.levels {
            if *existed && ins.book.level(*side, *price).is_none() {
                full.push(LevelDiff {
                    action: Action::Delete,
                    side: *side,
                    level: Level {
                        price: *price,
                        qty: 0,
                        orders: 0,
                    },
                });
            }
        }
        for (side, price, existed) in &ch.levels {
            if let Some(level) = ins.book.level(*side, *price) {
                let action = if *existed {
                    Action::Change
                } else {
                    Action::New
                };
                full.push(LevelDiff {
                    action,
                    side: *side,
                    level,
                });
            }
        }
        let mut views = Vec::new();
        if !ch.levels.is_empty() {
            for v in &mut ins.views {
                let n = v.depth as usize;
                let bids = ins.book.top(Side::Buy, n);
                let asks = ins.book.top(Side::Sell, n);
                let mut d = Vec::new();
                diff_levels(Side::Buy, &v.bids, &bids, &mut d);
                diff_levels(Side::Sell, &v.asks, &asks, &mut d);
                d.sort_by_key(|x| x.action != Action::Delete);
                v.bids = bids;
                v.asks = asks;
                views.push((v.depth, d));
            }
        }
        let mut stats = Vec::new();
        if let Some(before) = ch.stats_before {
            let old = before.values();
            let new = ins.stats.values();
            for (k, p, q) in &old {
                if !new.iter().any(|(k2, _, _)| k2 == k) {
                    stats.push((Action::Delete, *k, *p, *q));
                }
            }
            for (k, p, q) in &new {
                match old.iter().find(|(k2, _, _)| k2 == k) {
                    None => stats.push((Action::New, *k, *p, *q)),
                    Some((_, p0, q0)) if (p0, q0) != (p, q) => {
                        stats.push((Action::Change, *k, *p, *q))
                    }
                    Some(_) => {}
                }
            }
        }
        let orders = std::mem::take(&mut ins.changes.orders);
        let trades = std::mem::take(&mut ins.changes.trades);
        ins.changes.clear();
        Diff {
            full,
            views,
            orders,
            trades,
            stats,
        }
    }
}

/// One instrument's changes since the last flush, as every view needs them.
struct Diff {
    /// Level changes of the full book.
    full: Vec<LevelDiff>,
    /// Level changes of each depth-limited view, by depth.
    views: Vec<(u32, Vec<LevelDiff>)>,
    orders: Vec<OrderDiff>,
    trades: Vec<Tick>,
    stats: Vec<(Action, EntryKind, Option<Price>, Option<Qty>)>,
}

impl Diff {
    /// The entries a view publishes of these changes, RptSeq not yet assigned.
    fn entries(&self, symbol: SymbolId, key: ViewKey, time: i64) -> Vec<Entry> {
        let mut entries = Vec::new();
        let e = |action, kind, price, size, orders, id, time| Entry {
            action,
            kind,
            symbol,
            order_id: id,
            price,
            size,
            orders,
            time,
            rpt_seq: 0,
        };
        if key.orders {
            for d in &self.orders {
                let kind = EntryKind::of_side(d.side);
                if key.types & kind.bit() != 0 {
                    let size = (d.action != Action::Delete).then_some(d.qty);
                    entries.push(e(d.action, kind, Some(d.price), size, None, Some(d.id), 0));
                }
            }
        } else {
            let diffs = match self.views.iter().find(|(d, _)| *d == key.depth) {
                Some((_, v)) if key.depth > 0 => v,
                _ => &self.full,
            };
            for d in diffs {
                let kind = EntryKind::of_side(d.side);
                if key.types & kind.bit() != 0 {
                    let (size, n) = if d.action == Action::Delete {
                        (None, None)
                    } else {
                        (Some(d.level.qty), Some(d.level.orders))
                    };
                    entries.push(e(d.action, kind, Some(d.level.price), size, n, None, 0));
                }
            }
        }
        if key.types & EntryKind::Trade.bit() != 0 {
            entries.extend(self.trades.iter().map(|t| t.entry(symbol)));
        }
        for (action, k, p, q) in &self.stats {
            if key.types & k.bit() != 0 {
                entries.push(e(*action, *k, *p, *q, None, None, time));
            }
        }
        entries
    }
}

/// Entries that turn the view `old` into `new` (both best first).
fn diff_levels(side: Side, old: &[Level], new: &[Level], out: &mut Vec<LevelDiff>) {
    for o in old {
        if !new.iter().any(|n| n.price == o.price) {
            out.push(LevelDiff {
                action: Action::Delete,
                side,
                level: *o,
            });
        }
    }
    for n in new {
        match old.iter().find(|o| o.price == n.price) {
            None => out.push(LevelDiff {
                action: Action::New,
                side,
                level: *n,
            }),
            Some(o) if o != n => out.push(LevelDiff {
                action: Action::Change,
                side,
                level: *n,
            }),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(engine: &Engine, side: Side) -> Vec<(Price, Qty, u32)> {
        engine
            .depth(SymbolId(0), side)
            .map(|l| (l.price, l.qty, l.orders))
            .collect()
    }
    use crate::replica::Replica;
    use engine::command::{Asset, Command, NewOrder, OpenTrading, Transfer};
    use engine::types::{AccountId, ClOrdId, SessionId};
    use engine::{Engine, EngineConfig};

    fn load(replica: &mut Replica, out: &Out) {
        let Out::Snapshot {
            rpt_seq, entries, ..
        } = out
        else {
            panic!("not a snapshot: {out:?}")
        };
        replica.snapshot(*rpt_seq, entries);
    }

    fn order(n: u32, side: Side, ticks: i64) -> Command {
        Command::NewOrder(NewOrder {
            session: SessionId(n % 2),
            account: AccountId(n % 2),
            cl_ord_id: ClOrdId::new(&format!("O{n}")).unwrap(),
            symbol: SymbolId(0),
            side,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Day,
            price: 1_900_000 + ticks * 100,
            qty: 10,
        })
    }

    /// A subscriber that cannot keep up is skipped, not queued for: once it can read again it
    /// receives one fresh snapshot that equals the book, and its updates continue from there.
    #[test]
    fn a_slow_subscriber_is_conflated_to_a_fresh_snapshot() {
        let cfg = EngineConfig::default_universe();
        let mut engine = Engine::new(cfg.clone());
        let mut feed = Feed::new(
            cfg.instruments.iter().map(|i| i.symbol.clone()).collect(),
            FeedConfig::default(),
        );
        let mut seq = 0;
        let mut run = |engine: &mut Engine, feed: &mut Feed, c: Command| {
            seq += 1;
            let mut ev = Vec::new();
            engine.apply(&c, &mut ev);
            for e in &ev {
                feed.apply(seq, seq as i64, e);
            }
        };
        run(
            &mut engine,
            &mut feed,
            Command::OpenTrading(OpenTrading { trading_day: 1 }),
        );
        for a in 0..2 {
            for asset in [Asset::Cash, Asset::Shares(SymbolId(0))] {
                let amount = 1 << 40;
                run(
                    &mut engine,
                    &mut feed,
                    Command::Deposit(Transfer {
                        account: AccountId(a),
                        asset,
                        amount,
                    }),
                );
            }
        }
        let mut out = Vec::new();
        let req = Request {
            req_id: "S".into(),
            kind: RequestKind::Subscribe,
            depth: 0,
            aggregated: true,
            incremental: None,
            entry_types: b"01".to_vec(),
            symbols: vec!["AAPL".into()],
        };
        feed.request(7, req, &mut out);
        let mut replica = Replica::default();
        load(&mut replica, &out[0]);

        // Slow: a thousand orders while the subscriber cannot read; nothing is produced for it.
        for n in 0..1000 {
            let side = if n % 2 == 0 { Side::Buy } else { Side::Sell };
            let ticks = if side == Side::Buy {
                -1 - (n as i64 % 50)
            } else {
                1 + (n as i64 % 50)
            };
            run(&mut engine, &mut feed, order(n, side, ticks));
            out.clear();
            feed.flush(&mut |_| false, &mut out);
            assert!(out.is_empty(), "{out:?}");
        }
        // It drains: exactly one snapshot, equal to the book.
        out.clear();
        feed.refresh_stale(&mut |_| true, &mut out);
        assert_eq!(out.len(), 1);
        load(&mut replica, &out[0]);
        assert_eq!(replica.levels(Side::Buy), levels(&engine, Side::Buy));
        assert_eq!(replica.levels(Side::Sell), levels(&engine, Side::Sell));
        // And updates follow the snapshot without a gap.
        run(&mut engine, &mut feed, order(5000, Side::Buy, -2));
        out.clear();
        feed.flush(&mut |_| true, &mut out);
        assert!(matches!(out[0], Out::Incremental { .. }), "{out:?}");
        for e in out[0].entries() {
            replica.update(e).expect("no gap");
        }
        assert_eq!(replica.levels(Side::Buy), levels(&engine, Side::Buy));
    }
}
