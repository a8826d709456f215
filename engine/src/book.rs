//! Order storage and price ladders: O(1) add, cancel and execute, O(1) best price.
//!
//! Orders live in an [`Arena`] of fixed slots recycled through a free list, so steady-state
//! trading allocates nothing. Each side of a book is a [`Ladder`]: one [`Level`] per tick across
//! the instrument's price band, each level an intrusive doubly-linked FIFO of arena slots.
//! A two-level occupancy bitmap finds the next non-empty level in a few word scans, which keeps
//! the best price O(1) to read and cheap to move when a level empties. Limit prices outside the
//! band are refused by risk before they reach the book, so the ladder covers every price.

use bytemuck::Zeroable;

use crate::types::{
    AccountId, ClOrdId, OrdType, OrderId, Price, Qty, SessionId, Side, SymbolId, TimeInForce,
};

/// Arena slot index; 0 is reserved so that a zeroed level means "empty".
pub(crate) type Slot = u32;

/// The null slot.
pub(crate) const NIL: Slot = 0;

/// A live order: working on the book, or being matched as it arrives.
///
/// Two cache lines, aligned: the first holds everything queueing and matching read, so
/// linking an order behind another or unlinking a neighbour touches one line of it; the
/// second holds what only reports need.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub(crate) struct Order {
    pub id: OrderId,
    /// Limit price; for a market order, its collar price.
    pub price: Price,
    pub leaves: Qty,
    pub cum: Qty,
    /// Sum of price x quantity over the fills.
    pub cum_cost: u64,
    pub account: AccountId,
    pub session: SessionId,
    pub prev: Slot,
    pub next: Slot,
    pub symbol: SymbolId,
    pub side: Side,
    pub ord_type: OrdType,
    pub tif: TimeInForce,
    /// Whether the order is linked into a ladder level.
    pub resting: bool,
    pub qty: Qty,
    pub cl_ord_id: ClOrdId,
}

const _: () = assert!(std::mem::size_of::<Order>() == 128);
const _: () = assert!(std::mem::offset_of!(Order, resting) < 64);

impl Order {
    const VACANT: Order = Order {
        id: OrderId(0),
        account: AccountId(0),
        session: SessionId(0),
        symbol: SymbolId(0),
        side: Side::Buy,
        ord_type: OrdType::Limit,
        tif: TimeInForce::Day,
        price: 0,
        qty: 0,
        cum: 0,
        leaves: 0,
        cum_cost: 0,
        cl_ord_id: ClOrdId::EMPTY,
        prev: NIL,
        next: NIL,
        resting: false,
    };
}

/// Fixed-slot storage for live orders with a free list.
#[derive(Debug)]
pub(crate) struct Arena {
    slots: Vec<Order>,
    free: Vec<Slot>,
    live: u32,
}

impl Clone for Arena {
    /// Keeps the reserved capacity, so a clone grows no more than the original would.
    fn clone(&self) -> Arena {
        let mut slots = Vec::with_capacity(self.slots.capacity());
        crate::prefetch::huge_pages(&slots);
        slots.extend_from_slice(&self.slots);
        Arena {
            slots,
            free: self.free.clone(),
            live: self.live,
        }
    }
}

impl Arena {
    /// An arena with room reserved for `capacity` orders.
    pub fn with_capacity(capacity: usize) -> Arena {
        let mut slots = Vec::with_capacity(capacity + 1);
        crate::prefetch::huge_pages(&slots);
        slots.push(Order::VACANT);
        Arena {
            slots,
            free: Vec::new(),
            live: 0,
        }
    }

    /// Number of live orders.
    pub fn live(&self) -> u32 {
        self.live
    }

    /// The slot the next `insert` will use.
    pub fn next_slot(&self) -> Slot {
        match self.free.last() {
            Some(&s) => s,
            None => Slot::try_from(self.slots.len()).expect("arena slot index fits in u32"),
        }
    }

    /// Faults the reserved storage in now (see [`crate::prefetch::populate`]).
    pub fn populate(&self) {
        crate::prefetch::populate(&self.slots);
    }

    /// Starts loading a slot's order into cache.
    pub fn prefetch(&self, slot: Slot) {
        if let Some(o) = self.slots.get(slot as usize) {
            crate::prefetch::prefetch_all(o);
        }
    }

    /// Starts loading the part of a slot's order that queueing reads (its first cache line).
    pub fn prefetch_links(&self, slot: Slot) {
        if let Some(o) = self.slots.get(slot as usize) {
            crate::prefetch::prefetch(o);
        }
    }

    /// The live order whose id is `id`, if any.
    pub fn find(&self, id: OrderId) -> Option<Slot> {
        let slot = id.slot();
        match self.slots.get(slot as usize) {
            Some(o) if o.id == id && slot != NIL => Some(slot),
            _ => None,
        }
    }

    /// Stores an order and returns its slot.
    pub fn insert(&mut self, order: Order) -> Slot {
        self.live += 1;
        if let Some(slot) = self.free.pop() {
            self.slots[slot as usize] = order;
            slot
        } else {
            let slot = Slot::try_from(self.slots.len()).expect("arena slot index fits in u32");
            self.slots.push(order);
            slot
        }
    }

    /// Releases a slot for reuse.
    pub fn remove(&mut self, slot: Slot) {
        assert!(slot != NIL, "removing the null slot");
        let o = &mut self.slots[slot as usize];
        assert!(!o.resting, "removing an order still linked into a level");
        o.id = OrderId(0);
        self.free.push(slot);
        self.live -= 1;
    }

    /// The number of slots (the null slot included) and the free list, in reuse order: what a
    /// snapshot keeps so that a restored arena hands out the same slots, hence the same ids.
    pub fn layout(&self) -> (usize, &[Slot]) {
        (self.slots.len(), &self.free)
    }

    /// An arena of `len` vacant slots (the null slot included) reusing `free` in that order,
    /// with room for `capacity` orders; [`Arena::place`] then puts the live orders back.
    pub fn restore(capacity: usize, len: usize, free: Vec<Slot>) -> Result<Arena, String> {
        if len == 0 || len > OrderId::MAX_SLOTS as usize + 1 {
            return Err(format!("{len} arena slots"));
        }
        let mut slots = Vec::with_capacity(capacity.max(len) + 1);
        crate::prefetch::huge_pages(&slots);
        slots.resize(len, Order::VACANT);
        let mut seen = vec![false; len];
        for &f in &free {
            let i = f as usize;
            if f == NIL || i >= len || std::mem::replace(&mut seen[i], true) {
                return Err(format!("free slot {f} out of range or listed twice"));
            }
        }
        Ok(Arena {
            slots,
            free,
            live: 0,
        })
    }

    /// Puts a live order back into its slot (the one its id names) while restoring.
    pub fn place(&mut self, order: Order) -> Result<Slot, String> {
        let slot = order.id.slot();
        let vacant = self.slots.get(slot as usize).is_some_and(|o| o.id.0 == 0);
        if slot == NIL || !vacant {
            return Err(format!("order {} cannot take slot {slot}", order.id));
        }
        self.slots[slot as usize] = order;
        self.live += 1;
        Ok(slot)
    }

    /// After the last [`Arena::place`]: every slot is either live or free, exactly once.
    pub fn check_restored(&self) -> Result<(), String> {
        if let Some(f) = self
            .free
            .iter()
            .find(|&&f| self.slots[f as usize].id.0 != 0)
        {
            return Err(format!("slot {f} is both free and live"));
        }
        if self.live as usize + self.free.len() + 1 != self.slots.len() {
            return Err("arena slots neither live nor free".into());
        }
        Ok(())
    }

    /// Iterates the live orders in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &Order)> {
        self.slots
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, o)| o.id.0 != 0)
            .map(|(i, o)| (i as Slot, o))
    }
}

impl std::ops::Index<Slot> for Arena {
    type Output = Order;
    fn index(&self, slot: Slot) -> &Order {
        &self.slots[slot as usize]
    }
}

impl std::ops::IndexMut<Slot> for Arena {
    fn index_mut(&mut self, slot: Slot) -> &mut Order {
        &mut self.slots[slot as usize]
    }
}

/// One price level: a FIFO of orders and its aggregate quantity.
#[derive(Clone, Copy, Debug, Default, Zeroable)]
pub(crate) struct Level {
    pub head: Slot,
    pub tail: Slot,
    pub count: u32,
    pub qty: Qty,
}

/// A two-level occupancy bitmap over ladder indexes.
#[derive(Clone, Debug)]
struct Bitmap {
    words: Vec<u64>,
    summary: Vec<u64>,
}

impl Bitmap {
    fn new(bits: usize) -> Bitmap {
        let words = bits.div_ceil(64);
        Bitmap {
            words: vec![0; words],
            summary: vec![0; words.div_ceil(64)],
        }
    }

    fn set(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] |= 1 << (i % 64);
        self.summary[w / 64] |= 1 << (w % 64);
    }

    fn clear(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] &= !(1 << (i % 64));
        if self.words[w] == 0 {
            self.summary[w / 64] &= !(1 << (w % 64));
        }
    }

    /// Lowest set index >= i.
    fn next_at_or_above(&self, i: usize) -> Option<usize> {
        let w = i / 64;
        if w >= self.words.len() {
            return None;
        }
        let here = self.words[w] & (!0u64 << (i % 64));
        if here != 0 {
            return Some(w * 64 + here.trailing_zeros() as usize);
        }
        let next_w = w + 1;
        let mut s = next_w / 64;
        if s >= self.summary.len() {
            return None;
        }
        let mut bits = self.summary[s] & (!0u64 << (next_w % 64));
        loop {
            if bits != 0 {
                let word = s * 64 + bits.trailing_zeros() as usize;
                let b = self.words[word];
                return Some(word * 64 + b.trailing_zeros() as usize);
            }
            s += 1;
            if s >= self.summary.len() {
                return None;
            }
            bits = self.summary[s];
        }
    }

    /// Highest set index <= i.
    fn prev_at_or_below(&self, i: usize) -> Option<usize> {
        let w = i / 64;
        let w = w.min(self.words.len() - 1);
        let bit = if w == i / 64 { i % 64 } else { 63 };
        let here = self.words[w] & (!0u64 >> (63 - bit));
        if here != 0 {
            return Some(w * 64 + 63 - here.leading_zeros() as usize);
        }
        if w == 0 {
            return None;
        }
        let prev_w = w - 1;
        let mut s = prev_w / 64;
        let mut bits = self.summary[s] & (!0u64 >> (63 - prev_w % 64));
        loop {
            if bits != 0 {
                let word = s * 64 + 63 - bits.leading_zeros() as usize;
                let b = self.words[word];
                return Some(word * 64 + 63 - b.leading_zeros() as usize);
            }
            if s == 0 {
                return None;
            }
            s -= 1;
            bits = self.summary[s];
        }
    }
}

/// One side of one book: a level per tick across the price band.
#[derive(Clone, Debug)]
pub(crate) struct Ladder {
    side: Side,
    min_price: Price,
    tick: Price,
    levels: Vec<Level>,
    occupied: Bitmap,
    best: Option<usize>,
}

impl Ladder {
    /// An empty ladder covering `len` ticks from `min_price`.
    pub fn new(side: Side, min_price: Price, tick: Price, len: usize) -> Ladder {
        Ladder {
            side,
            min_price,
            tick,
            // Zeroed memory: untouched parts of a wide band cost no physical pages.
            levels: {
                let v = bytemuck::zeroed_vec(len);
                crate::prefetch::huge_pages(&v);
                v
            },
            occupied: Bitmap::new(len),
            best: None,
        }
    }

    fn index_of(&self, price: Price) -> usize {
        self.level_index(price)
            .unwrap_or_else(|| panic!("price {price} outside the ladder"))
    }

    fn price_of(&self, i: usize) -> Price {
        self.min_price + i as Price * self.tick
    }

    /// Whether a price is on this ladder (inside the band and on a tick).
    pub fn contains(&self, price: Price) -> bool {
        self.level_index(price).is_some()
    }

    /// The level a price maps to, if it is on this ladder.
    fn level_index(&self, price: Price) -> Option<usize> {
        let i = ((price - self.min_price) / self.tick) as usize;
        (price >= self.min_price
            && (price - self.min_price) % self.tick == 0
            && i < self.levels.len())
        .then_some(i)
    }

    /// Faults the levels in now (see [`crate::prefetch::populate`]).
    pub fn populate(&self) {
        crate::prefetch::populate(&self.levels);
    }

    /// Starts loading the level a price maps to; nothing for a price off the ladder.
    pub fn prefetch_level(&self, price: Price) {
        if let Some(i) = self.level_index(price) {
            crate::prefetch::prefetch(&self.levels[i]);
        }
    }

    /// The newest order queued at a price, if the price is on the ladder and has any.
    pub fn tail_at(&self, price: Price) -> Option<Slot> {
        let tail = self.levels[self.level_index(price)?].tail;
        (tail != NIL).then_some(tail)
    }

    /// Best price on this side.
    pub fn best_price(&self) -> Option<Price> {
        self.best.map(|i| self.price_of(i))
    }

    /// Best level's price and its oldest order.
    pub fn best_head(&self) -> Option<(Price, Slot)> {
        self.best.map(|i| (self.price_of(i), self.levels[i].head))
    }

    /// Appends an order at the back of its price level's queue.
    pub fn push_back(&mut self, arena: &mut Arena, slot: Slot) {
        let (price, leaves) = {
            let o = &arena[slot];
            assert!(!o.resting && o.leaves > 0 && o.side == self.side);
            (o.price, o.leaves)
        };
        let i = self.index_of(price);
        let level = &mut self.levels[i];
        let tail = level.tail;
        {
            let o = &mut arena[slot];
            o.prev = tail;
            o.next = NIL;
            o.resting = true;
        }
        if tail == NIL {
            level.head = slot;
            self.occupied.set(i);
            self.best = Some(match (self.best, self.side) {
                (None, _) => i,
                (Some(b), Side::Buy) => b.max(i),
                (Some(b), Side::Sell) => b.min(i),
            });
        } else {
            arena[tail].next = slot;
        }
        level.tail = slot;
        level.count += 1;
        level.qty += leaves;
    }

    /// Unlinks an order from its level (its `leaves` must still be what the level counts).
    pub fn unlink(&mut self, arena: &mut Arena, slot: Slot) {
        let (price, leaves, prev, next) = {
            let o = &arena[slot];
            assert!(
                o.resting && o.side == self.side,
                "unlinking an order that is not resting here"
            );
            (o.price, o.leaves, o.prev, o.next)
        };
        let i = self.index_of(price);
        if prev == NIL {
            self.levels[i].head = next;
        } else {
            arena[prev].next = next;
        }
        if next == NIL {
            self.levels[i].tail = prev;
        } else {
            arena[next].prev = prev;
        }
        {
            let o = &mut arena[slot];
            o.resting = false;
            o.prev = NIL;
            o.next = NIL;
        }
        let level = &mut self.levels[i];
        level.count -= 1;
        level.qty -= leaves;
        if level.count == 0 {
            assert!(level.qty == 0 && level.head == NIL && level.tail == NIL);
            self.occupied.clear(i);
            if self.best == Some(i) {
                self.best = match self.side {
                    Side::Buy => i
                        .checked_sub(1)
                        .and_then(|j| self.occupied.prev_at_or_below(j)),
                    Side::Sell => self.occupied.next_at_or_above(i + 1),
                };
            }
        }
    }

    /// Reduces a resting order's level quantity after the order itself was reduced by `by`.
    pub fn reduce(&mut self, price: Price, by: Qty) {
        let i = self.index_of(price);
        let level = &mut self.levels[i];
        assert!(level.qty >= by);
        level.qty -= by;
    }

    /// Levels from the best outward: (price, quantity, order count, head slot).
    pub fn levels(&self) -> impl Iterator<Item = (Price, Qty, u32, Slot)> + '_ {
        let mut cur = self.best;
        std::iter::from_fn(move || {
            let i = cur?;
            let l = &self.levels[i];
            cur = match self.side {
                Side::Buy => i
                    .checked_sub(1)
                    .and_then(|j| self.occupied.prev_at_or_below(j)),
                Side::Sell => self.occupied.next_at_or_above(i + 1),
            };
            Some((self.price_of(i), l.qty, l.count, l.head))
        })
    }
}

/// The two ladders of one instrument.
#[derive(Clone, Debug)]
pub(crate) struct Book {
    pub bids: Ladder,
    pub asks: Ladder,
}

impl Book {
    /// An empty book over a price band.
    pub fn new(min_price: Price, tick: Price, len: usize) -> Book {
        Book {
            bids: Ladder::new(Side::Buy, min_price, tick, len),
            asks: Ladder::new(Side::Sell, min_price, tick, len),
        }
    }

    /// The ladder of one side.
    pub fn side(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    /// The ladder of one side, mutably.
    pub fn side_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_finds_neighbours_across_words_and_summaries() {
        let n = 64 * 64 * 3 + 17;
        let mut b = Bitmap::new(n);
        let marks = [0usize, 5, 63, 64, 4095, 4096, 9000, n - 1];
        for &m in &marks {
            b.set(m);
        }
        for i in 0..n {
            let up = marks.iter().copied().filter(|&m| m >= i).min();
            let down = marks.iter().copied().filter(|&m| m <= i).max();
            assert_eq!(b.next_at_or_above(i), up, "next from {i}");
            assert_eq!(b.prev_at_or_below(i), down, "prev from {i}");
        }
        for &m in &marks {
            b.clear(m);
        }
        assert_eq!(b.next_at_or_above(0), None);
        assert_eq!(b.prev_at_or_below(n - 1), None);
    }

    fn order(id: u64, side: Side, price: Price, leaves: Qty) -> Order {
        Order {
            id: OrderId(id),
            side,
            price,
            qty: leaves,
            leaves,
            ..Order::VACANT
        }
    }

    #[test]
    fn ladder_keeps_fifo_and_best_price() {
        let mut arena = Arena::with_capacity(8);
        let mut asks = Ladder::new(Side::Sell, 100, 1, 50);
        let a = arena.insert(order(1, Side::Sell, 110, 5));
        let b = arena.insert(order(2, Side::Sell, 105, 7));
        let c = arena.insert(order(3, Side::Sell, 105, 3));
        for s in [a, b, c] {
            asks.push_back(&mut arena, s);
        }
        assert_eq!(asks.best_head(), Some((105, b)));
        let lv: Vec<_> = asks.levels().map(|(p, q, n, _)| (p, q, n)).collect();
        assert_eq!(lv, vec![(105, 10, 2), (110, 5, 1)]);
        asks.unlink(&mut arena, b);
        assert_eq!(asks.best_head(), Some((105, c)));
        asks.unlink(&mut arena, c);
        assert_eq!(asks.best_price(), Some(110));
        asks.unlink(&mut arena, a);
        assert_eq!(asks.best_price(), None);

        let mut bids = Ladder::new(Side::Buy, 100, 1, 50);
        let d = arena.insert(order(4, Side::Buy, 120, 1));
        let e = arena.insert(order(5, Side::Buy, 130, 1));
        bids.push_back(&mut arena, d);
        bids.push_back(&mut arena, e);
        assert_eq!(bids.best_price(), Some(130));
        bids.unlink(&mut arena, e);
        assert_eq!(bids.best_price(), Some(120));
    }
}
