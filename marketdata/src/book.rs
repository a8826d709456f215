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

#[derive(Default, Debug)]
struct PriceLevel {
    qty: Qty,
    /// Orders by arrival rank: iteration order is time priority.
    orders: BTreeMap<u64, OrderId>,
}

#[derive(Clone, Copy, Debug)]
struct Resting {
    side: Side,
    price: Price,
    qty: Qty,
    rank: u64,
}

/// One instrument's book.
#[derive(Default, Debug)]
pub struct OrderBook {
    bids: BTreeMap<Price, PriceLevel>,
    asks: BTreeMap<Price, PriceLevel>,
    orders: FxHashMap<OrderId, Resting>,
    next_rank: u64,
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

    /// Adds an order at the back of its price level.
    pub fn add(&mut self, id: OrderId, side: Side, price: Price, qty: Qty) {
        if qty == 0 || self.orders.contains_key(&id) {
            return;
        }
        let rank = self.next_rank;
        self.next_rank += 1;
        self.orders.insert(
            id,
            Resting {
                side,
                price,
                qty,
                rank,
            },
        );
        let level = self.side_mut(side).entry(price).or_default();
        level.qty += qty;
        level.orders.insert(rank, id);
    }

    /// Sets an order's resting quantity in place (keeping its priority); 0 removes it.
    /// Returns the order as it was, if it was in the book.
    pub fn set_qty(&mut self, id: OrderId, qty: Qty) -> Option<BookOrder> {
        let r = *self.orders.get(&id)?;
        if qty == 0 {
            return self.remove(id);
        }
        self.orders.get_mut(&id)?.qty = qty;
        if let Some(level) = self.side_mut(r.side).get_mut(&r.price) {
            level.qty = level.qty - r.qty + qty;
        }
        Some(BookOrder {
            id,
            side: r.side,
            price: r.price,
            qty: r.qty,
        })
    }

    /// Removes an order; returns it as it was.
    pub fn remove(&mut self, id: OrderId) -> Option<BookOrder> {
        let r = self.orders.remove(&id)?;
        let book = self.side_mut(r.side);
        if let Some(level) = book.get_mut(&r.price) {
            level.qty -= r.qty;
            level.orders.remove(&r.rank);
            if level.orders.is_empty() {
                book.remove(&r.price);
            }
        }
        Some(BookOrder {
            id,
            side: r.side,
            price: r.price,
            qty: r.qty,
        })
    }

    /// A resting order.
    pub fn order(&self, id: OrderId) -> Option<BookOrder> {
        self.orders.get(&id).map(|r| BookOrder {
            id,
            side: r.side,
            price: r.price,
            qty: r.qty,
        })
    }

    /// The level at a price, if any order rests there.
    pub fn level(&self, side: Side, price: Price) -> Option<Level> {
        self.side(side).get(&price).map(|l| Level {
            price,
            qty: l.qty,
            orders: l.orders.len() as u32,
        })
    }

    /// Levels of one side, best first.
    pub fn levels(&self, side: Side) -> Box<dyn Iterator<Item = Level> + '_> {
        let f = |(p, l): (&Price, &PriceLevel)| Level {
            price: *p,
            qty: l.qty,
            orders: l.orders.len() as u32,
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
        for (price, level) in levels {
            for id in level.orders.values() {
                let r = &self.orders[id];
                v.push(BookOrder {
                    id: *id,
                    side,
                    price: *price,
                    qty: r.qty,
                });
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
