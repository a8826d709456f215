//! Candlesticks at 1m, 5m, 1h and 1d, in preallocated ring buffers.
//!
//! A candle exists only for an interval that saw a trade: an empty interval has no candle
//! (charting clients carry the last close forward). When a ring is full, its oldest candle is
//! handed to the caller to archive (see [`crate::archive`]), so older candles can still be
//! served.

use engine::snapshot::{Reader, SnapshotError, Writer};
use engine::types::{Price, Qty};

/// A candle resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// One minute.
    M1,
    /// Five minutes.
    M5,
    /// One hour.
    H1,
    /// One day (UTC).
    D1,
}

impl Resolution {
    /// Every resolution, finest first.
    pub const ALL: [Resolution; 4] = [
        Resolution::M1,
        Resolution::M5,
        Resolution::H1,
        Resolution::D1,
    ];

    /// Interval length in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Resolution::M1 => 60_000,
            Resolution::M5 => 300_000,
            Resolution::H1 => 3_600_000,
            Resolution::D1 => 86_400_000,
        }
    }

    /// The name used in APIs and file names: `1m`, `5m`, `1h`, `1d`.
    pub fn name(self) -> &'static str {
        match self {
            Resolution::M1 => "1m",
            Resolution::M5 => "5m",
            Resolution::H1 => "1h",
            Resolution::D1 => "1d",
        }
    }

    /// Parses a name such as `5m`.
    pub fn parse(s: &str) -> Option<Resolution> {
        Resolution::ALL.into_iter().find(|r| r.name() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One candle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Candle {
    /// Start of the interval, ms since the Unix epoch (a multiple of the resolution).
    pub start: i64,
    /// First trade price.
    pub open: Price,
    /// Highest trade price.
    pub high: Price,
    /// Lowest trade price.
    pub low: Price,
    /// Last trade price.
    pub close: Price,
    /// Shares traded.
    pub volume: Qty,
    /// Number of trades.
    pub trades: u64,
}

impl Candle {
    /// Size of [`Candle::to_bytes`].
    pub const BYTES: usize = 56;

    /// Fixed little-endian record, as archived.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0u8; Self::BYTES];
        let fields = [
            self.start,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume as i64,
            self.trades as i64,
        ];
        for (i, f) in fields.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&f.to_le_bytes());
        }
        b
    }

    /// Reads a record written by [`Candle::to_bytes`].
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Candle {
        let f = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            i64::from_le_bytes(w)
        };
        Candle {
            start: f(0),
            open: f(1),
            high: f(2),
            low: f(3),
            close: f(4),
            volume: f(5) as u64,
            trades: f(6) as u64,
        }
    }
}

/// A fixed-capacity ring of candles, oldest first.
#[derive(Debug)]
struct Ring {
    buf: Vec<Candle>,
    head: usize,
    len: usize,
}

impl Ring {
    fn new(capacity: usize) -> Ring {
        Ring {
            buf: vec![Candle::default(); capacity.max(1)],
            head: 0,
            len: 0,
        }
    }

    fn get(&self, i: usize) -> &Candle {
        &self.buf[(self.head + i) % self.buf.len()]
    }

    fn last_mut(&mut self) -> Option<&mut Candle> {
        if self.len == 0 {
            return None;
        }
        let i = (self.head + self.len - 1) % self.buf.len();
        Some(&mut self.buf[i])
    }

    /// Appends; returns the evicted oldest candle when full.
    fn push(&mut self, c: Candle) -> Option<Candle> {
        let cap = self.buf.len();
        if self.len == cap {
            let old = self.buf[self.head];
            self.buf[self.head] = c;
            self.head = (self.head + 1) % cap;
            Some(old)
        } else {
            self.buf[(self.head + self.len) % cap] = c;
            self.len += 1;
            None
        }
    }
}

/// How many candles each ring keeps in memory.
#[derive(Clone, Copy, Debug)]
pub struct RingSizes {
    /// Per resolution, in [`Resolution::ALL`] order.
    pub capacity: [usize; 4],
}

impl Default for RingSizes {
    /// A day of minutes, three days of 5 minutes, a month of hours, a year of days.
    fn default() -> RingSizes {
        RingSizes {
            capacity: [1440, 864, 720, 366],
        }
    }
}

/// One instrument's candles at every resolution.
#[derive(Debug)]
pub struct CandleSeries {
    rings: [Ring; 4],
}

impl CandleSeries {
    /// Empty rings of these sizes, allocated now.
    pub fn new(sizes: RingSizes) -> CandleSeries {
        CandleSeries {
            rings: sizes.capacity.map(Ring::new),
        }
    }

    /// Adds a trade at `time_ms`; `evicted` receives every candle pushed out of a full ring.
    pub fn record(
        &mut self,
        time_ms: i64,
        price: Price,
        qty: Qty,
        evicted: &mut impl FnMut(Resolution, Candle),
    ) {
        for r in Resolution::ALL {
            let start = time_ms - time_ms.rem_euclid(r.millis());
            let ring = &mut self.rings[r.index()];
            match ring.last_mut() {
                // Timestamps never go back (the sequencer's), so an older trade cannot occur;
                // if it did, it joins the newest candle rather than reorder the ring.
                Some(c) if c.start >= start => {
                    c.high = c.high.max(price);
                    c.low = c.low.min(price);
                    c.close = price;
                    c.volume += qty;
                    c.trades += 1;
                }
                _ => {
                    let c = Candle {
                        start,
                        open: price,
                        high: price,
                        low: price,
                        close: price,
                        volume: qty,
                        trades: 1,
                    };
                    if let Some(old) = ring.push(c) {
                        evicted(r, old);
                    }
                }
            }
        }
    }

    /// Candles in memory whose start lies in `[from, to)`, oldest first.
    pub fn range(&self, r: Resolution, from: i64, to: i64) -> Vec<Candle> {
        let ring = &self.rings[r.index()];
        (0..ring.len)
            .map(|i| *ring.get(i))
            .filter(|c| c.start >= from && c.start < to)
            .collect()
    }

    /// Every ring's candles, oldest first, as snapshot bytes.
    pub fn save(&self, w: &mut Writer) {
        for ring in &self.rings {
            w.count(ring.len);
            for i in 0..ring.len {
                w.bytes(&ring.get(i).to_bytes());
            }
        }
    }

    /// Rings of these sizes holding the candles [`CandleSeries::save`] wrote (the newest ones
    /// if the rings are now smaller).
    pub fn load(sizes: RingSizes, r: &mut Reader<'_>) -> Result<CandleSeries, SnapshotError> {
        let mut s = CandleSeries::new(sizes);
        for ring in &mut s.rings {
            for _ in 0..r.count(Candle::BYTES)? {
                let mut b = [0u8; Candle::BYTES];
                b.copy_from_slice(r.bytes(Candle::BYTES)?);
                ring.push(Candle::from_bytes(&b));
            }
        }
        Ok(s)
    }

    /// Start of the oldest candle still in memory.
    pub fn oldest(&self, r: Resolution) -> Option<i64> {
        let ring = &self.rings[r.index()];
        (ring.len > 0).then(|| ring.get(0).start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Resolution::ALL {
            assert_eq!(Resolution::parse(r.name()), Some(r));
        }
        assert_eq!(Resolution::parse("2m"), None);
    }

    #[test]
    fn records_round_trip() {
        let c = Candle {
            start: 60_000,
            open: 1,
            high: 5,
            low: -2,
            close: 3,
            volume: 9,
            trades: 2,
        };
        assert_eq!(Candle::from_bytes(&c.to_bytes()), c);
    }

    #[test]
    fn a_full_ring_evicts_the_oldest() {
        let mut s = CandleSeries::new(RingSizes {
            capacity: [2, 2, 2, 2],
        });
        let mut out = Vec::new();
        for minute in 0..4 {
            s.record(minute * 60_000, 100 + minute, 1, &mut |r, c| {
                out.push((r, c))
            });
        }
        let m1: Vec<_> = out.iter().filter(|(r, _)| *r == Resolution::M1).collect();
        assert_eq!(m1.len(), 2);
        assert_eq!(m1[0].1.start, 0);
        assert_eq!(m1[1].1.start, 60_000);
        assert_eq!(s.oldest(Resolution::M1), Some(120_000));
        assert_eq!(s.range(Resolution::M5, 0, i64::MAX).len(), 1);
    }
}
