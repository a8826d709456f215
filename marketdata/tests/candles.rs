//! Candles against a brute-force aggregation of the trades, ring eviction included.

use std::collections::BTreeMap;

use marketdata::candles::{CandleSeries, RingSizes};
use marketdata::{Candle, Resolution};
use proptest::prelude::*;

/// Every trade grouped by interval start: the definition of a candle.
fn brute_force(trades: &[(i64, i64, u64)], r: Resolution) -> Vec<Candle> {
    let mut m: BTreeMap<i64, Candle> = BTreeMap::new();
    for &(t, p, q) in trades {
        let start = t.div_euclid(r.millis()) * r.millis();
        m.entry(start)
            .and_modify(|c| {
                c.high = c.high.max(p);
                c.low = c.low.min(p);
                c.close = p;
                c.volume += q;
                c.trades += 1;
            })
            .or_insert(Candle {
                start,
                open: p,
                high: p,
                low: p,
                close: p,
                volume: q,
                trades: 1,
            });
    }
    m.into_values().collect()
}

fn series(
    trades: &[(i64, i64, u64)],
    sizes: [usize; 4],
) -> (CandleSeries, Vec<(Resolution, Candle)>) {
    let mut s = CandleSeries::new(RingSizes { capacity: sizes });
    let mut evicted = Vec::new();
    for &(t, p, q) in trades {
        s.record(t, p, q, &mut |r, c| evicted.push((r, c)));
    }
    (s, evicted)
}

proptest! {
    #[test]
    fn candles_equal_the_brute_force_aggregation(
        gaps in proptest::collection::vec(prop_oneof![
            6 => 0i64..20_000,
            2 => 0i64..400_000,
            1 => 0i64..7_200_000,
            1 => 0i64..200_000_000,
        ], 1..400),
        prices in proptest::collection::vec(1i64..1_000_000, 400),
        qtys in proptest::collection::vec(1u64..1000, 400),
        sizes in proptest::array::uniform4(1usize..20),
    ) {
        let mut t = 1_700_000_000_000i64;
        let trades: Vec<_> = gaps.iter().enumerate().map(|(i, g)| {
            t += g;
            (t, prices[i], qtys[i])
        }).collect();
        let (s, evicted) = series(&trades, sizes);
        for r in Resolution::ALL {
            let mut got: Vec<Candle> = evicted.iter().filter(|(x, _)| *x == r).map(|(_, c)| *c).collect();
            got.extend(s.range(r, i64::MIN, i64::MAX));
            prop_assert_eq!(got, brute_force(&trades, r), "{}", r.name());
        }
    }
}

#[test]
fn boundaries_and_empty_intervals() {
    let m = 60_000;
    // The last millisecond of a minute, the first of the next, then nothing for three minutes.
    let trades = [(m - 1, 10, 1), (m, 20, 2), (m + 1, 5, 3), (5 * m, 7, 4)];
    let (s, evicted) = series(&trades, [100; 4]);
    assert!(evicted.is_empty());
    let m1 = s.range(Resolution::M1, 0, i64::MAX);
    assert_eq!(
        m1.iter().map(|c| c.start).collect::<Vec<_>>(),
        [0, m, 5 * m],
        "no candle for the empty minutes"
    );
    assert_eq!(
        (m1[1].open, m1[1].high, m1[1].low, m1[1].close),
        (20, 20, 5, 5)
    );
    assert_eq!((m1[1].volume, m1[1].trades), (5, 2));
    let m5 = s.range(Resolution::M5, 0, i64::MAX);
    assert_eq!(m5.iter().map(|c| c.start).collect::<Vec<_>>(), [0, 5 * m]);
    assert_eq!(m5[0].volume, 6);
    // The range is half-open: [from, to).
    assert_eq!(s.range(Resolution::M1, m, 5 * m).len(), 1);
    assert_eq!(s.range(Resolution::D1, 0, 1).len(), 1);
}
