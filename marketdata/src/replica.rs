//! A subscriber's copy of one instrument, rebuilt from a snapshot and the incremental updates
//! that follow it, as a client does; it notices a gap in RptSeq.

use std::collections::BTreeMap;

use engine::types::{OrderId, Price, Qty, Side};

use crate::feed::{Action, Entry, EntryKind};

/// A rebuilt book and statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replica {
    /// Price levels (L2): price -> (size, orders), per side.
    pub bids: BTreeMap<Price, (Qty, u32)>,
    /// Offers, as `bids`.
    pub asks: BTreeMap<Price, (Qty, u32)>,
    /// Orders (L3): id -> (side, price, size), with the order they arrived in.
    pub orders: BTreeMap<OrderId, (Side, Price, Qty, u64)>,
    /// Session statistics by entry type.
    pub stats: BTreeMap<u8, (Option<Price>, Option<Qty>)>,
    /// Trades seen, in order.
    pub trades: Vec<(Price, Qty)>,
    /// RptSeq of the last entry applied.
    pub rpt_seq: u64,
    next_rank: u64,
}

/// A gap: the update does not follow the last one applied; ask for a new snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// RptSeq expected.
    pub expected: u64,
    /// RptSeq received.
    pub got: u64,
}

impl Replica {
    /// Replaces the state with a snapshot's.
    pub fn snapshot(&mut self, rpt_seq: u64, entries: &[Entry]) {
        *self = Replica {
            rpt_seq,
            ..Replica::default()
        };
        for e in entries {
            self.put(e);
        }
    }

    /// Applies one incremental entry.
    pub fn update(&mut self, e: &Entry) -> Result<(), Gap> {
        if e.rpt_seq != self.rpt_seq + 1 {
            return Err(Gap {
                expected: self.rpt_seq + 1,
                got: e.rpt_seq,
            });
        }
        self.rpt_seq = e.rpt_seq;
        match e.action {
            Action::New | Action::Change => self.put(e),
            Action::Delete => self.delete(e),
        }
        Ok(())
    }

    fn side_map(&mut self, kind: EntryKind) -> &mut BTreeMap<Price, (Qty, u32)> {
        if kind == EntryKind::Bid {
            &mut self.bids
        } else {
            &mut self.asks
        }
    }

    fn put(&mut self, e: &Entry) {
        let (price, size) = (e.price.unwrap_or(0), e.size.unwrap_or(0));
        match e.kind {
            EntryKind::Bid | EntryKind::Offer => match e.order_id {
                Some(id) => {
                    let side = if e.kind == EntryKind::Bid {
                        Side::Buy
                    } else {
                        Side::Sell
                    };
                    let rank = match self.orders.get(&id) {
                        Some(o) if e.action == Action::Change => o.3,
                        _ => {
                            self.next_rank += 1;
                            self.next_rank
                        }
                    };
                    self.orders.insert(id, (side, price, size, rank));
                }
                None => {
                    let n = e.orders.unwrap_or(0);
                    self.side_map(e.kind).insert(price, (size, n));
                }
            },
            EntryKind::Trade => self.trades.push((price, size)),
            k => {
                self.stats.insert(k.fix(), (e.price, e.size));
            }
        }
    }

    fn delete(&mut self, e: &Entry) {
        match (e.kind, e.order_id) {
            (EntryKind::Bid | EntryKind::Offer, Some(id)) => {
                self.orders.remove(&id);
            }
            (EntryKind::Bid | EntryKind::Offer, None) => {
                let p = e.price.unwrap_or(0);
                self.side_map(e.kind).remove(&p);
            }
            (EntryKind::Trade, _) => {}
            (k, _) => {
                self.stats.remove(&k.fix());
            }
        }
    }

    /// The rebuilt order-by-order book of one side in priority order: (id, price, size).
    pub fn book_orders(&self, side: Side) -> Vec<(OrderId, Price, Qty)> {
        let mut v: Vec<_> = self
            .orders
            .iter()
            .filter(|(_, o)| o.0 == side)
            .map(|(id, o)| (*id, o.1, o.2, o.3))
            .collect();
        v.sort_by_key(|o| (if side == Side::Buy { -o.1 } else { o.1 }, o.3));
        v.into_iter().map(|(id, p, q, _)| (id, p, q)).collect()
    }

    /// The rebuilt levels of one side, best first: (price, size, orders).
    pub fn levels(&self, side: Side) -> Vec<(Price, Qty, u32)> {
        let it = self
            .bids_or_asks(side)
            .iter()
            .map(|(p, (q, n))| (*p, *q, *n));
        if side == Side::Buy {
            it.rev().collect()
        } else {
            it.collect()
        }
    }

    fn bids_or_asks(&self, side: Side) -> &BTreeMap<Price, (Qty, u32)> {
        if side == Side::Buy {
            &self.bids
        } else {
            &self.asks
        }
    }
}
