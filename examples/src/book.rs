//! Order books rebuilt from FIX market data: a MarketDataSnapshotFullRefresh (W) per symbol,
//! then MarketDataIncrementalRefresh (X) entries applied in RptSeq order.

use std::collections::{BTreeMap, HashMap};

use crate::FixMsg;

/// A price in 1/10,000 units, parsed from FIX decimal text.
fn units(px: &str) -> Option<i64> {
    let (int, frac) = px.split_once('.').unwrap_or((px, ""));
    if frac.len() > 4 {
        return None;
    }
    let neg = int.starts_with('-');
    let i: i64 = int.trim_start_matches('-').parse().ok()?;
    let f: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<4}").parse().ok()?
    };
    let v = i * 10_000 + f;
    Some(if neg { -v } else { v })
}

fn show(units: i64) -> String {
    format!("{}.{:04}", units / 10_000, (units % 10_000).abs())
}

/// One symbol's book.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Book {
    /// Bid levels: price units -> size.
    pub bids: BTreeMap<i64, u64>,
    /// Offer levels: price units -> size.
    pub asks: BTreeMap<i64, u64>,
    /// Last trade: price units and size.
    pub last_trade: Option<(i64, u64)>,
    /// The RptSeq of the last entry applied.
    pub rpt_seq: u64,
}

/// What a message did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// These books changed.
    Changed(Vec<String>),
    /// An entry for this symbol was missed: its book is dropped until a new snapshot.
    Gap(String),
    /// A MarketDataRequestReject, with its text.
    Rejected(String),
    /// Not market data.
    Other,
}

/// Every subscribed symbol's book.
#[derive(Clone, Debug, Default)]
pub struct Books {
    /// Books by symbol.
    pub books: HashMap<String, Book>,
}

impl Books {
    /// Applies a W, X or Y.
    pub fn apply(&mut self, m: &FixMsg) -> Update {
        match m.msg_type.as_str() {
            "W" => {
                let Some(symbol) = m.get(55).map(str::to_string) else {
                    return Update::Other;
                };
                let mut b = Book {
                    rpt_seq: m.get(83).and_then(|v| v.parse().ok()).unwrap_or(0),
                    ..Book::default()
                };
                for e in m.group(268, 269) {
                    apply_entry(&mut b, "0", &e);
                }
                self.books.insert(symbol.clone(), b);
                Update::Changed(vec![symbol])
            }
            "X" => {
                let mut changed: Vec<String> = Vec::new();
                for e in m.group(268, 279) {
                    let get = |t| e.iter().find(|(k, _)| *k == t).map(|(_, v)| v.as_str());
                    let Some(symbol) = get(55).map(str::to_string) else {
                        continue;
                    };
                    let Some(b) = self.books.get_mut(&symbol) else {
                        continue;
                    };
                    let seq: u64 = get(83).and_then(|v| v.parse().ok()).unwrap_or(0);
                    if seq != b.rpt_seq + 1 {
                        self.books.remove(&symbol);
                        return Update::Gap(symbol);
                    }
                    b.rpt_seq = seq;
                    apply_entry(b, get(279).unwrap_or("0"), &e);
                    if !changed.contains(&symbol) {
                        changed.push(symbol);
                    }
                }
                Update::Changed(changed)
            }
            "Y" => Update::Rejected(m.get(58).unwrap_or("").to_string()),
            _ => Update::Other,
        }
    }

    /// The top `depth` levels of a book as text.
    pub fn render(&self, symbol: &str, depth: usize) -> String {
        let Some(b) = self.books.get(symbol) else {
            return format!("{symbol}: no book");
        };
        let mut s = format!("{symbol}  (RptSeq {})", b.rpt_seq);
        if let Some((px, qty)) = b.last_trade {
            s.push_str(&format!("  last {qty} @ {}", show(px)));
        }
        let bids: Vec<_> = b.bids.iter().rev().take(depth).collect();
        let asks: Vec<_> = b.asks.iter().take(depth).collect();
        for i in 0..bids.len().max(asks.len()) {
            let cell = |l: Option<&(&i64, &u64)>| {
                l.map_or(String::new(), |(p, q)| {
                    format!("{q:>8} @ {:<12}", show(**p))
                })
            };
            s.push_str(&format!(
                "\n  {:>24}  |  {}",
                cell(bids.get(i)),
                cell(asks.get(i))
            ));
        }
        s
    }
}

fn apply_entry(b: &mut Book, action: &str, e: &[(i32, String)]) {
    let get = |t| e.iter().find(|(k, _)| *k == t).map(|(_, v)| v.as_str());
    let (Some(kind), Some(px)) = (get(269), get(270).and_then(units)) else {
        return;
    };
    let size: u64 = get(271).and_then(|v| v.parse().ok()).unwrap_or(0);
    let side = match kind {
        "0" => &mut b.bids,
        "1" => &mut b.asks,
        "2" => {
            b.last_trade = Some((px, size));
            return;
        }
        _ => return,
    };
    match action {
        "2" => {
            side.remove(&px);
        }
        _ => {
            side.insert(px, size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: &str, fields: &[(i32, &str)]) -> FixMsg {
        FixMsg {
            msg_type: t.into(),
            fields: fields.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        }
    }

    #[test]
    fn snapshot_then_increments_and_a_gap() {
        let mut b = Books::default();
        let w = msg(
            "W",
            &[
                (55, "AAPL"),
                (83, "4"),
                (268, "2"),
                (269, "0"),
                (270, "190"),
                (271, "100"),
                (269, "1"),
                (270, "190.05"),
                (271, "50"),
            ],
        );
        assert_eq!(b.apply(&w), Update::Changed(vec!["AAPL".into()]));
        let x = msg(
            "X",
            &[
                (268, "2"),
                (279, "1"),
                (269, "0"),
                (55, "AAPL"),
                (83, "5"),
                (270, "190"),
                (271, "70"),
                (279, "2"),
                (269, "1"),
                (55, "AAPL"),
                (83, "6"),
                (270, "190.05"),
            ],
        );
        b.apply(&x);
        let book = &b.books["AAPL"];
        assert_eq!(book.bids.get(&1_900_000), Some(&70));
        assert!(book.asks.is_empty());
        let skipped = msg(
            "X",
            &[
                (268, "1"),
                (279, "0"),
                (269, "0"),
                (55, "AAPL"),
                (83, "9"),
                (270, "189"),
                (271, "1"),
            ],
        );
        assert_eq!(b.apply(&skipped), Update::Gap("AAPL".into()));
        assert!(!b.books.contains_key("AAPL"));
        assert_eq!(units("0.0005"), Some(5));
        assert_eq!(units("12.5"), Some(125_000));
    }
}
