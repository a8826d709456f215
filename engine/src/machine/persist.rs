//! The engine's state as snapshot bytes, and back.
//!
//! The bytes are canonical: resting orders in priority order per book and side, ClOrdIDs
//! sorted, so two engines in the same logical state write the same bytes whatever their
//! history (one restored from an older snapshot, one replayed from the start). Arena slots and
//! the free list are kept as they are, because order ids carry their slot: a restored engine
//! must hand out the same ids as one that never stopped.

use super::{Account, Engine, Position};
use crate::book::{Arena, Book, NIL, Order};
use crate::config::EngineConfig;
use crate::hash::StableHasher;
use crate::index::{ClKey, ClOrdIndex};
use crate::snapshot::{Reader, SnapshotError, Writer};
use crate::types::{AccountId, ClOrdId, OrdType, OrderId, SessionId, Side, SymbolId, TimeInForce};

/// Layout version of the engine section.
const VERSION: u32 = 1;
/// Bytes of one resting order in the section.
const ORDER_BYTES: usize = 4 + 8 + 4 + 4 + 1 + 1 + 8 * 5 + ClOrdId::CAPACITY;

fn corrupt(what: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt(format!("engine: {}", what.into()))
}

impl EngineConfig {
    /// A fingerprint of the whole configuration: a snapshot is only restored under the
    /// configuration it was taken under.
    pub fn fingerprint(&self) -> u64 {
        let mut h = StableHasher::new();
        h.bytes(format!("{self:?}").as_bytes());
        h.finish()
    }
}

impl Engine {
    /// Name of the engine's section in a snapshot file.
    pub const SNAPSHOT_SECTION: [u8; 4] = *b"ENGN";

    /// The complete state as canonical snapshot bytes.
    pub fn save(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(VERSION);
        w.bool(self.open);
        w.u32(self.trading_day);
        w.u64(self.next_order_seq);
        w.u64(self.next_exec_id);
        w.u64(self.next_trade_id);
        w.count(self.accounts.len());
        for a in &self.accounts {
            w.i64(a.cash);
            w.i64(a.cash_reserved);
            w.u32(a.open_orders);
            w.count(a.positions.len());
            for p in a.positions.iter() {
                w.i64(p.shares);
                w.i64(p.reserved);
                w.u64(p.traded_today);
                w.u64(p.open_qty);
                w.u64(p.daily_limit);
            }
        }
        let (len, free) = self.arena.layout();
        w.count(len);
        w.count(free.len());
        for &f in free {
            w.u32(f);
        }
        for book in &self.books {
            for side in [Side::Buy, Side::Sell] {
                let ladder = book.side(side);
                w.count(ladder.levels().map(|l| l.2 as usize).sum());
                for (_, _, _, head) in ladder.levels() {
                    let mut slot = head;
                    while slot != NIL {
                        let o = &self.arena[slot];
                        write_order(&mut w, o);
                        slot = o.next;
                    }
                }
            }
        }
        let mut ids: Vec<_> = self.cl_ord_ids.iter().collect();
        ids.sort_unstable();
        w.count(ids.len());
        for (k, o) in ids {
            w.bytes(&k.to_bytes());
            w.u64(o.0);
        }
        w.into_bytes()
    }

    /// An engine in the state `bytes` hold (from [`Engine::save`] under the same
    /// configuration). Bytes that do not describe a consistent state are an error, never a
    /// panic.
    pub fn load(config: EngineConfig, bytes: &[u8]) -> Result<Engine, SnapshotError> {
        let mut e = Engine::new(config);
        let mut r = Reader::new(bytes);
        let version = r.u32()?;
        if version != VERSION {
            return Err(corrupt(format!("layout version {version}")));
        }
        e.open = r.bool()?;
        e.trading_day = r.u32()?;
        e.next_order_seq = r.u64()?;
        e.next_exec_id = r.u64()?;
        e.next_trade_id = r.u64()?;
        let symbols = e.instruments.len();
        let accounts = r.count(8 + 8 + 4 + 8)?;
        if accounts > e.limits.max_accounts as usize {
            return Err(corrupt(format!("{accounts} accounts")));
        }
        for _ in 0..accounts {
            let mut a = Account {
                cash: r.i64()?,
                cash_reserved: r.i64()?,
                open_orders: r.u32()?,
                positions: Box::default(),
            };
            let n = r.count(8 * 5)?;
            if n != 0 && n != symbols {
                return Err(corrupt(format!("{n} positions for {symbols} instruments")));
            }
            a.positions = (0..n)
                .map(|_| {
                    Ok(Position {
                        shares: r.i64()?,
                        reserved: r.i64()?,
                        traded_today: r.u64()?,
                        open_qty: r.u64()?,
                        daily_limit: r.u64()?,
                    })
                })
                .collect::<Result<_, SnapshotError>>()?;
            e.accounts.push(a);
        }
        let len = r.count(0)?;
        let free = (0..r.count(4)?)
            .map(|_| r.u32())
            .collect::<Result<Vec<_>, _>>()?;
        let capacity = (e.limits.max_resting_orders as usize).min(1 << 20);
        e.arena = Arena::restore(capacity, len, free).map_err(corrupt)?;
        for symbol in 0..symbols {
            for side in [Side::Buy, Side::Sell] {
                for _ in 0..r.count(ORDER_BYTES)? {
                    let o = read_order(&mut r, SymbolId(symbol as u16), side)?;
                    e.restore_order(o)?;
                }
            }
        }
        e.arena.check_restored().map_err(corrupt)?;
        e.cl_ord_ids = ClOrdIndex::with_capacity(e.limits.expected_orders_per_day as usize);
        let mut last = None;
        for _ in 0..r.count(16 + 8)? {
            let mut b = [0u8; 16];
            b.copy_from_slice(r.bytes(16)?);
            let key = ClKey::from_bytes(b).ok_or_else(|| corrupt("a zero ClOrdID key"))?;
            // Sorted and distinct, as saved: inserting a key twice would be a panic.
            if last.is_some_and(|l| l >= key) {
                return Err(corrupt("ClOrdID keys out of order"));
            }
            last = Some(key);
            e.cl_ord_ids.insert(key, OrderId(r.u64()?));
        }
        r.finish()?;
        e.check_invariants().map_err(corrupt)?;
        Ok(e)
    }

    /// Puts a resting order back at the back of its level.
    fn restore_order(&mut self, o: Order) -> Result<(), SnapshotError> {
        let account = self
            .accounts
            .get(o.account.0 as usize)
            .ok_or_else(|| corrupt(format!("order {} of an unknown account", o.id)))?;
        let book: &mut Book = &mut self.books[usize::from(o.symbol.0)];
        let ladder = book.side_mut(o.side);
        if account.positions.is_empty()
            || o.qty > super::MAX_QTY
            || !ladder.contains(o.price)
            || o.leaves == 0
            || o.cum.checked_add(o.leaves) != Some(o.qty)
        {
            return Err(corrupt(format!(
                "order {} is not a valid resting order",
                o.id
            )));
        }
        let slot = self.arena.place(o).map_err(corrupt)?;
        ladder.push_back(&mut self.arena, slot);
        Ok(())
    }
}

fn write_order(w: &mut Writer, o: &Order) {
    w.u32(o.id.slot());
    w.u64(o.id.0);
    w.u32(o.account.0);
    w.u32(o.session.0);
    w.u8(o.ord_type as u8);
    w.u8(o.tif as u8);
    w.i64(o.price);
    w.u64(o.qty);
    w.u64(o.cum);
    w.u64(o.leaves);
    w.u64(o.cum_cost);
    w.bytes(o.cl_ord_id.raw());
}

fn read_order(r: &mut Reader<'_>, symbol: SymbolId, side: Side) -> Result<Order, SnapshotError> {
    let slot = r.u32()?;
    let id = OrderId(r.u64()?);
    if id.slot() != slot {
        return Err(corrupt(format!("order {id} is not in slot {slot}")));
    }
    let account = AccountId(r.u32()?);
    let session = SessionId(r.u32()?);
    let ord_type = OrdType::from_u8(r.u8()?).ok_or_else(|| corrupt("order type"))?;
    let tif = TimeInForce::from_u8(r.u8()?).ok_or_else(|| corrupt("time in force"))?;
    let price = r.i64()?;
    let qty = r.u64()?;
    let cum = r.u64()?;
    let leaves = r.u64()?;
    let cum_cost = r.u64()?;
    let mut raw = [0u8; ClOrdId::CAPACITY];
    raw.copy_from_slice(r.bytes(ClOrdId::CAPACITY)?);
    Ok(Order {
        id,
        account,
        session,
        symbol,
        side,
        ord_type,
        tif,
        price,
        qty,
        cum,
        leaves,
        cum_cost,
        cl_ord_id: ClOrdId::from_raw(raw),
        prev: NIL,
        next: NIL,
        resting: false,
    })
}
