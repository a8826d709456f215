//! The feed's state as snapshot bytes, and back: books (order by order, in priority order),
//! session statistics, the last trades and the candles. Subscriptions are not kept: nobody is
//! connected after a restart, and RptSeq starts again with each new subscription's snapshot.

use engine::snapshot::{Reader, SnapshotError, Writer};
use engine::types::{OrderId, Price, Qty, Side};

use super::{Feed, FeedConfig, Stats, Tick};
use crate::candles::CandleSeries;

/// Layout version of the feed section.
const VERSION: u32 = 1;

fn corrupt(what: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt(format!("market data: {}", what.into()))
}

impl Feed {
    /// Name of the feed's section in a snapshot file.
    pub const SNAPSHOT_SECTION: [u8; 4] = *b"FEED";

    /// The state as canonical snapshot bytes. Orders of the last command still being matched
    /// are put into their books first, as the next command would.
    pub fn save(&mut self) -> Vec<u8> {
        self.settle();
        let mut w = Writer::new();
        w.put(&VERSION);
        w.put(&self.trading_day);
        w.put(&self.open);
        w.put(&self.last_time);
        w.count(self.instruments.len());
        for ins in &self.instruments {
            for side in [Side::Buy, Side::Sell] {
                let orders = ins.book.orders(side);
                w.count(orders.len());
                for o in orders {
                    w.put(&o.id);
                    w.put(&o.price);
                    w.put(&o.qty);
                }
            }
            let s = &ins.stats;
            for p in [s.open, s.high, s.low, s.close, s.last] {
                w.opt_i64(p);
            }
            w.put(&s.volume);
            w.count(ins.trades.len());
            for t in &ins.trades {
                w.put(&t.price);
                w.put(&t.qty);
                w.put(&t.time);
                w.put(&t.aggressor);
            }
            ins.candles.save(&mut w);
        }
        w.into_bytes()
    }

    /// A feed in the state `bytes` hold, with no subscriptions.
    pub fn load(
        symbols: Vec<String>,
        config: FeedConfig,
        bytes: &[u8],
    ) -> Result<Feed, SnapshotError> {
        let mut f = Feed::new(symbols, config);
        let mut r = Reader::new(bytes);
        let version: u32 = r.get()?;
        if version != VERSION {
            return Err(corrupt(format!("layout version {version}")));
        }
        f.trading_day = r.get()?;
        f.open = r.get()?;
        f.last_time = r.get()?;
        let n = r.count(1)?;
        if n != f.instruments.len() {
            return Err(corrupt(format!(
                "{n} instruments, configured {}",
                f.instruments.len()
            )));
        }
        let (last_trades, rings) = (f.config.last_trades, f.config.rings);
        for (i, ins) in f.instruments.iter_mut().enumerate() {
            for side in [Side::Buy, Side::Sell] {
                for _ in 0..r.count(24)? {
                    let (id, price, qty): (OrderId, Price, Qty) = (r.get()?, r.get()?, r.get()?);
                    if qty == 0 || ins.book.order(id).is_some() {
                        return Err(corrupt(format!("order {id} of symbol {i}")));
                    }
                    ins.book.add(id, side, price, qty);
                }
            }
            let mut p = [None; 5];
            for v in &mut p {
                *v = r.opt_i64()?;
            }
            ins.stats = Stats {
                open: p[0],
                high: p[1],
                low: p[2],
                close: p[3],
                last: p[4],
                volume: r.get()?,
            };
            for _ in 0..r.count(25)? {
                let t = Tick {
                    price: r.get()?,
                    qty: r.get()?,
                    time: r.get()?,
                    aggressor: r.get()?,
                };
                if ins.trades.len() == last_trades {
                    ins.trades.pop_front();
                }
                ins.trades.push_back(t);
            }
            ins.candles = CandleSeries::load(rings, &mut r)?;
        }
        r.finish()?;
        Ok(f)
    }
}
