//! The public view of one instrument's order book, rebuilt from events alone: every resting
//! order (L3) in priority order, aggregated price levels (L2) and the best bid and offer (L1).

use std::collections::BTreeMap;

use engine::types::{OrderId, Price, Qty, Side};
use rustc_hash::FxHashMap;

/// An aggregated price level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Level {
    /// Price.
    pub price: Price,
    /// Total resting quantity.
    pub qty: Qty,
    /// Number of orders.
    pub orders: u32,
}

/// One resting order as market data shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookOrder {
    /// Exchange order id (the MDEntryID of L3 entries).
    pub id: OrderId,
    /// Side.
    pub side: Side,
    /// Limit price.
    pub price: Price,
    /// Quantity still resting.
    pub qty: Qty,
}

/// No order: the end of a level's queue.
const NIL: u32 = u32::MAX;

/// A price level: its total and its queue of orders (slots in the book's slab, linked both
/// ways, in time priority), so that an order joins or leaves it in constant time.
#[derive(Debug)]
struct PriceLevel {
    qty: Qty,
    orders: u32,
    head: u32,
    tail: u32,
}

/// A resting order in the slab, with its neighbours in its level's queue.
#[derive(Clone, Copy, Debug)]
struct Node {
    id: OrderId,
    side: Side,
    price: Price,
    qty: Qty,
    prev: u32,
    next: u32,
}

/// One instrument's book.
#[derive(Default, Debug)]
pub struct OrderBook {
    bids: BTreeMap<Price, PriceLevel>,
    asks: BTreeMap<Price, PriceLevel>,
    /// Each resting order's slot in `nodes`.
    orders: FxHashMap<OrderId, u32>,
    nodes: Vec<Node>,
    /// Slots of `nodes` free for reuse.
    free: Vec<u32>,
}

impl OrderBook {
    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<Price, PriceLevel> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn side(&self, side: Side) -> &BTreeMap<Price, PriceLevel> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn book_order(n: &Node) -> BookOrder {
        BookOrder {
            id: n.id,
            side: n.side,
            price: n.price,
            qty: n.qty,
        }
    }

    /// Adds an order at the back of its price level.
    pub fn add(&mut self, id: OrderId, side: Side, price: Price, qty: Qty) {
        if qty == 0 || self.orders.contains_key(&id) {
            return;
        }
        let node = Node {
            id,
            side,
            price,
            qty,
            prev: NIL,
            next: NIL,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.nodes[s as usize] = node;
                s
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.orders.insert(id, slot);
        let level = self.side_mut(side).entry(price).or_insert(PriceLevel {
            qty: 0,
            orders: 0,
            head: NIL,
            tail: NIL,
        });
        level.qty += qty;
        level.orders += 1;
        let tail = std::mem::replace(&mut level.tail, slot);
        if tail == NIL {
            level.head = slot;
        } else {
            self.nodes[tail as usize].next = slot;
            self.nodes[slot as usize].prev = tail;
        }
    }

    /// Sets an order's resting quantity in place (keeping its priority); 0 removes it.
    /// Returns the order as it was, if it was in the book.
    pub fn set_qty(&mut self, id: OrderId, qty: Qty) -> Option<BookOrder> {
        if qty == 0 {
            return self.remove(id);
        }
        let slot = *self.orders.get(&id)?;
        let n = &mut self.nodes[slot as usize];
        let was = Self::book_order(n);
        n.qty = qty;
        if let Some(level) = self.side_mut(was.side).get_mut(&was.price) {
            level.qty = level.qty - was.qty + qty;
        }
        Some(was)
    }

    /// Removes an order; returns it as it was.
    pub fn remove(&mut self, id: OrderId) -> Option<BookOrder> {
        let slot = self.orders.remove(&id)?;
        let n = self.nodes[slot as usize];
        if n.prev != NIL {
            self.nodes[n.prev as usize].next = n.next;
        }
        if n.next != NIL {
            self.nodes[n.next as usize].prev = n.prev;
        }
        self.free.push(slot);
        let book = self.side_mut(n.side);
        if let Some(level) = book.get_mut(&n.price) {
            level.qty -= n.qty;
            level.orders -= 1;
            if level.head == slot {
                level.head = n.next;
            }
            if level.tail == slot {
                level.tail = n.prev;
            }
            if level.orders == 0 {
                book.remove(&n.price);
            }
        }
        Some(Self::book_order(&n))
    }

    /// A resting order.
    pub fn order(&self, id: OrderId) -> Option<BookOrder> {
        let slot = *self.orders.get(&id)?;
        Some(Self::book_order(&self.nodes[slot as usize]))
    }

    /// The level at a price, if any order rests there.
    pub fn level(&self, side: Side, price: Price) -> Option<Level> {
        self.side(side).get(&price).map(|l| Level {
            price,
            qty: l.qty,
            orders: l.orders,
        })
    }

    /// Levels of one side, best first.
    pub fn levels(&self, side: Side) -> Box<dyn Iterator<Item = Level> + '_> {
        let f = |(p, l): (&Price, &PriceLevel)| Level {
            price: *p,
            qty: l.qty,
            orders: l.orders,
        };
        match side {
            Side::Buy => Box::new(self.bids.iter().rev().map(f)),
            Side::Sell => Box::new(self.asks.iter().map(f)),
        }
    }

    /// The best `n` levels of one side (all when `n` is 0).
    pub fn top(&self, side: Side, n: usize) -> Vec<Level> {
        let n = if n == 0 { usize::MAX } else { n };
        self.levels(side).take(n).collect()
    }

    /// Best level of one side (L1).
    pub fn best(&self, side: Side) -> Option<Level> {
        self.levels(side).next()
    }

    /// Every resting order of one side in priority order: best price first, then time.
    pub fn orders(&self, side: Side) -> Vec<BookOrder> {
        let mut v = Vec::new();
        let book = self.side(side);
        let levels: Box<dyn Iterator<Item = (&Price, &PriceLevel)>> = match side {
            Side::Buy => Box::new(book.iter().rev()),
            Side::Sell => Box::new(book.iter()),
        };
        for (_, level) in levels {
            let mut s = level.head;
            while s != NIL {
                let n = &self.nodes[s as usize];
                v.push(Self::book_order(n));
                s = n.next;
            }
        }
        v
    }

    /// Number of resting orders.
    pub fn len(&self) -> usize {
        self.orders.len()
    }

    /// Whether no order rests.
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The book as a plain list in arrival order: what every query must agree with.
    #[derive(Default)]
    struct Model(Vec<BookOrder>);

    impl Model {
        fn orders(&self, side: Side) -> Vec<BookOrder> {
            let mut v: Vec<BookOrder> = self.0.iter().filter(|o| o.side == side).copied().collect();
            // Stable: equal prices keep arrival order.
            v.sort_by_key(|o| if side == Side::Buy { -o.price } else { o.price });
            v
        }
    }

    proptest::proptest! {
        #[test]
        fn the_book_agrees_with_a_plain_list(
            ops in proptest::collection::vec((0u8..3, 0u64..40, 0u8..2, 0i64..6, 0u64..5), 0..300)
        ) {
            let (mut b, mut m) = (OrderBook::default(), Model::default());
            for (op, id, side, price, qty) in ops {
                let (id, side) = (OrderId(id), if side == 0 { Side::Buy } else { Side::Sell });
                let at = m.0.iter().position(|o| o.id == id);
                match op {
                    0 => {
                        b.add(id, side, 100 + price, qty);
                        if at.is_none() && qty > 0 {
                            m.0.push(BookOrder { id, side, price: 100 + price, qty });
                        }
                    }
                    1 => {
                        let was = b.set_qty(id, qty);
                        proptest::prop_assert_eq!(was, at.map(|i| m.0[i]));
                        if let Some(i) = at {
                            if qty == 0 {
                                m.0.remove(i);
                            } else {
                                m.0[i].qty = qty;
                            }
                        }
                    }
                    _ => {
                        proptest::prop_assert_eq!(b.remove(id), at.map(|i| m.0.remove(i)));
                    }
                }
                proptest::prop_assert_eq!(b.len(), m.0.len());
                for side in [Side::Buy, Side::Sell] {
                    let want = m.orders(side);
                    proptest::prop_assert_eq!(b.orders(side), want.clone());
                    let mut levels: Vec<Level> = Vec::new();
                    for o in &want {
                        match levels.last_mut() {
                            Some(l) if l.price == o.price => {
                                l.qty += o.qty;
                                l.orders += 1;
                            }
                            _ => levels.push(Level { price: o.price, qty: o.qty, orders: 1 }),
                        }
                    }
                    proptest::prop_assert_eq!(b.top(side, 0), levels.clone());
                    for l in &levels {
                        proptest::prop_assert_eq!(b.level(side, l.price), Some(*l));
                    }
                }
            }
        }
    }

    #[test]
    fn levels_aggregate_and_keep_time_priority() {
        let mut b = OrderBook::default();
        b.add(OrderId(1), Side::Buy, 100, 10);
        b.add(OrderId(2), Side::Buy, 101, 5);
        b.add(OrderId(3), Side::Buy, 100, 7);
        b.add(OrderId(4), Side::Sell, 103, 1);
        assert_eq!(
            b.top(Side::Buy, 0),
            [
                Level {
                    price: 101,
                    qty: 5,
                    orders: 1
                },
                Level {
                    price: 100,
                    qty: 17,
                    orders: 2
                }
            ]
        );
        b.set_qty(OrderId(1), 4);
        let ids: Vec<_> = b.orders(Side::Buy).iter().map(|o| o.id.0).collect();
        assert_eq!(ids, [2, 1, 3], "a reduced order keeps its place");
        assert_eq!(b.level(Side::Buy, 100).unwrap().qty, 11);
        b.remove(OrderId(2));
        assert_eq!(b.best(Side::Buy).unwrap().price, 100);
        b.set_qty(OrderId(4), 0);
        assert!(b.best(Side::Sell).is_none());
        assert_eq!(b.len(), 2);
    }
}
