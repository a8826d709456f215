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
use crate::types::{ClOrdId, OrderId, Side, SymbolId};

/// Layout version of the engine section (2: ClOrdID keys hashed with the session as seed).
const VERSION: u32 = 2;
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
        w.put(&VERSION);
        w.put(&self.open);
        w.put(&self.trading_day);
        w.put(&self.next_order_seq);
        w.put(&self.next_exec_id);
        w.put(&self.next_trade_id);
        w.count(self.accounts.len());
        for a in &self.accounts {
            w.put(&a.cash);
            w.put(&a.cash_reserved);
            w.put(&a.open_orders);
            w.count(a.positions.len());
            for p in a.positions.iter() {
                w.put(&p.shares);
                w.put(&p.reserved);
                w.put(&p.traded_today);
                w.put(&p.open_qty);
                w.put(&p.daily_limit);
            }
        }
        let (len, free) = self.arena.layout();
        w.count(len);
        w.count(free.len());
        for &f in free {
            w.put(&f);
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
        let ids = self.cl_ord_ids.sorted();
        w.count(ids.len());
        for (k, o) in ids {
            w.bytes(&k.to_bytes());
            w.put(&o.0);
        }
        w.into_bytes()
    }

    /// An engine in the state `bytes` hold (from [`Engine::save`] under the same
    /// configuration). Bytes that do not describe a consistent state are an error, never a
    /// panic.
    pub fn load(config: EngineConfig, bytes: &[u8]) -> Result<Engine, SnapshotError> {
        let mut e = Engine::new(config);
        let mut r = Reader::new(bytes);
        let version: u32 = r.get()?;
        if version != VERSION {
            return Err(corrupt(format!("layout version {version}")));
        }
        e.open = r.get()?;
        e.trading_day = r.get()?;
        e.next_order_seq = r.get()?;
        e.next_exec_id = r.get()?;
        e.next_trade_id = r.get()?;
        let symbols = e.instruments.len();
        let accounts = r.count(8 + 8 + 4 + 8)?;
        if accounts > e.limits.max_accounts as usize {
            return Err(corrupt(format!("{accounts} accounts")));
        }
        for _ in 0..accounts {
            let mut a = Account {
                cash: r.get()?,
                cash_reserved: r.get()?,
                open_orders: r.get()?,
                positions: Box::default(),
            };
            let n = r.count(8 * 5)?;
            if n != 0 && n != symbols {
                return Err(corrupt(format!("{n} positions for {symbols} instruments")));
            }
            a.positions = (0..n)
                .map(|_| {
                    Ok(Position {
                        shares: r.get()?,
                        reserved: r.get()?,
                        traded_today: r.get()?,
                        open_qty: r.get()?,
                        daily_limit: r.get()?,
                    })
                })
                .collect::<Result<_, SnapshotError>>()?;
            e.accounts.push(a);
        }
        let len = r.count(0)?;
        let free = (0..r.count(4)?)
            .map(|_| r.get())
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
        let keys = r.count(16 + 8)?;
        // Sized for what it holds: a restore grows no table.
        let expected = (e.limits.expected_orders_per_day as usize).max(keys);
        e.cl_ord_ids = ClOrdIndex::with_capacity(expected);
        let mut last = None;
        for _ in 0..keys {
            let mut b = [0u8; 16];
            b.copy_from_slice(r.bytes(16)?);
            let key = ClKey::from_bytes(b).ok_or_else(|| corrupt("a zero ClOrdID key"))?;
            // Sorted and distinct, as saved: inserting a key twice would be a panic.
            if last.is_some_and(|l| l >= key) {
                return Err(corrupt("ClOrdID keys out of order"));
            }
            last = Some(key);
            e.cl_ord_ids.insert(key, OrderId(r.get()?));
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
    w.put(&o.id.slot());
    w.put(&o.id);
    w.put(&o.account);
    w.put(&o.session);
    w.put(&o.ord_type);
    w.put(&o.tif);
    w.put(&o.price);
    w.put(&o.qty);
    w.put(&o.cum);
    w.put(&o.leaves);
    w.put(&o.cum_cost);
    w.put(&o.cl_ord_id);
}

fn read_order(r: &mut Reader<'_>, symbol: SymbolId, side: Side) -> Result<Order, SnapshotError> {
    let slot: u32 = r.get()?;
    let id: OrderId = r.get()?;
    if id.slot() != slot {
        return Err(corrupt(format!("order {id} is not in slot {slot}")));
    }
    Ok(Order {
        id,
        account: r.get()?,
        session: r.get()?,
        symbol,
        side,
        ord_type: r.get()?,
        tif: r.get()?,
        price: r.get()?,
        qty: r.get()?,
        cum: r.get()?,
        leaves: r.get()?,
        cum_cost: r.get()?,
        cl_ord_id: r.get()?,
        prev: NIL,
        next: NIL,
        resting: false,
    })
}
