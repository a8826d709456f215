//! The store against a real engine's event stream, on SQLite and on PostgreSQL: every row
//! stored exactly once however the batches fall, and reports that agree with the engine.
//!
//! The PostgreSQL tests need a server: `EXCHANGE_TEST_POSTGRES` is the URL of a role that may
//! create databases (the test command starts one and sets it).

use std::collections::BTreeMap;

mod common;

use common::{DAY_NS, DAY1, Flow, Lcg, all_rows, flow, names};
use engine::Event;
use engine::types::{AccountId, SymbolId};
use reporting::reports::{self, Range};
use reporting::{Rows, Store};

/// Applies the flow in batches of random sizes, each batch sent twice and some overlapping
/// the previous one, as a writer retrying after a failure would.
fn apply_in_batches(store: &mut dyn Store, f: &Flow, seed: u64) {
    let names = names();
    let mut rng = Lcg(seed);
    let last = f.events.last().unwrap().0;
    let mut from = 1u64;
    while from <= last {
        let to = (from + rng.next(60)).min(last);
        let start = from.saturating_sub(rng.next(5)).max(1);
        let mut rows = Rows::default();
        for (seq, ts, e) in f.events.iter().filter(|(s, _, _)| (start..=to).contains(s)) {
            rows.push(*seq, *ts, e, &names);
        }
        rows.last_seq = to;
        store.apply(&rows).unwrap();
        store.apply(&rows).unwrap();
        assert_eq!(store.last_seq().unwrap(), to);
        from = to + 1;
    }
}

fn check_exactly_once(store: &mut dyn Store, f: &Flow) {
    let want = all_rows(f);
    let all = reporting::Filter::default();
    let mut got = store.order_events(&all).unwrap();
    got.sort_by_key(|e| (e.seq, e.exec_id));
    let mut want_events = want.order_events.clone();
    want_events.sort_by_key(|e| (e.seq, e.exec_id));
    assert_eq!(got.len(), want_events.len());
    assert_eq!(got, want_events);
    assert_eq!(store.transfers(&all).unwrap(), want.transfers);
    assert_eq!(store.cancel_rejects(&all).unwrap(), want.cancel_rejects);
    assert!(want.order_events.iter().any(|e| e.exec_type == "trade"));
    assert!(want.order_events.iter().any(|e| e.exec_type == "expired"));
    assert!(want.order_events.iter().any(|e| e.exec_type == "replaced"));
    assert!(!want.cancel_rejects.is_empty());
}

fn check_reports(store: &mut dyn Store, f: &Flow) {
    let names = names();
    let whole = Range {
        from_ns: DAY1,
        to_ns: DAY1 + 2 * DAY_NS,
    };
    // Statements close on the engine's own balances and holdings.
    for (a, account) in names.accounts.iter().enumerate() {
        let lines = reports::statement(store, account, whole).unwrap();
        let cash = lines.iter().find(|l| l.kind == "cash").unwrap();
        let balance = f.engine.balance(AccountId(a as u32));
        assert_eq!(
            cash.amount,
            reports::decimal(balance.cash),
            "{account} cash"
        );
        for (s, symbol) in names.symbols.iter().enumerate() {
            let held = f
                .engine
                .holding(AccountId(a as u32), SymbolId(s as u16))
                .shares;
            let pos = lines
                .iter()
                .find(|l| l.kind == "position" && &l.symbol == symbol)
                .map_or(0, |l| l.qty);
            assert_eq!(pos, held, "{account} {symbol} position");
        }
    }
    for day in 0..2 {
        let range = Range {
            from_ns: DAY1 + day * DAY_NS,
            to_ns: DAY1 + (day + 1) * DAY_NS,
        };
        // End of day against the trades themselves.
        let mut want: BTreeMap<String, (i64, i64, i64, i64, i64, u64)> = BTreeMap::new();
        for (_, ts, e) in &f.events {
            if let Event::Trade(t) = e
                && (range.from_ns..range.to_ns).contains(ts)
            {
                let sym = names.symbols[t.symbol.0 as usize].clone();
                let q = t.qty as i64;
                let w = want
                    .entry(sym)
                    .or_insert((t.price, t.price, t.price, t.price, 0, 0));
                w.1 = w.1.max(t.price);
                w.2 = w.2.min(t.price);
                w.3 = t.price;
                w.4 += q;
                w.5 += 1;
            }
        }
        let eod = reports::end_of_day(store, range).unwrap();
        assert_eq!(eod.len(), want.len(), "day {day}");
        for d in &eod {
            let w = want[&d.symbol];
            assert_eq!(
                (&d.open[..], &d.high[..], &d.low[..], &d.close[..]),
                (
                    &reports::decimal(w.0)[..],
                    &reports::decimal(w.1)[..],
                    &reports::decimal(w.2)[..],
                    &reports::decimal(w.3)[..]
                )
            );
            assert_eq!((d.volume, d.trades), (w.4, w.5));
        }
        // Settlement nets to zero across accounts: every share bought was sold.
        let lines = reports::settlement(store, range).unwrap();
        for symbol in &names.symbols {
            let net: i64 = lines
                .iter()
                .filter(|l| &l.symbol == symbol)
                .map(|l| l.net_shares)
                .sum();
            assert_eq!(net, 0, "{symbol} day {day}");
        }
        let cash: rust_decimal::Decimal = lines
            .iter()
            .map(|l| l.net_cash.parse::<rust_decimal::Decimal>().unwrap())
            .sum();
        assert!(cash.is_zero(), "settlement cash nets to zero, got {cash}");
    }
    // Compliance lists the risk and wallet rejections, and only those.
    let lines = reports::compliance(store, whole).unwrap();
    let risk: Vec<_> = f
        .events
        .iter()
        .filter_map(|(_, _, e)| match e {
            Event::Rejected(r) if [7, 8, 9, 10, 11, 12, 13, 19, 20].contains(&r.reason.code()) => {
                Some(r.cl_ord_id.as_str().into_owned())
            }
            _ => None,
        })
        .collect();
    assert!(!risk.is_empty());
    assert_eq!(
        lines
            .iter()
            .map(|l| l.cl_ord_id.clone())
            .collect::<Vec<_>>(),
        risk
    );
    // Trade history by account and symbol is the matching subset.
    let hist = reports::trade_history(store, Some("ACC1"), Some("BBB"), whole).unwrap();
    let all = reports::trade_history(store, None, None, whole).unwrap();
    assert_eq!(
        hist,
        all.iter()
            .filter(|l| l.account == "ACC1" && l.symbol == "BBB")
            .cloned()
            .collect::<Vec<_>>()
    );
    assert!(!hist.is_empty());
}

#[test]
fn sqlite_stores_every_row_exactly_once_and_reports_agree_with_the_engine() {
    let dir = std::env::temp_dir().join(format!("reporting-sqlite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for seed in [1, 2] {
        let f = flow(seed);
        let path = dir.join(format!("r{seed}.db"));
        let mut store = reporting::open(&format!("sqlite:{}", path.display())).unwrap();
        apply_in_batches(store.as_mut(), &f, seed + 10);
        check_exactly_once(store.as_mut(), &f);
        check_reports(store.as_mut(), &f);
        drop(store);
        // Reopened, it knows where it was.
        let mut again = reporting::open(path.to_str().unwrap()).unwrap();
        assert_eq!(again.last_seq().unwrap(), f.events.last().unwrap().0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh database on the test server; its URL.
fn postgres_database(name: &str) -> String {
    let admin = std::env::var("EXCHANGE_TEST_POSTGRES").expect(
        "EXCHANGE_TEST_POSTGRES must name a PostgreSQL role that may create databases \
         (tests/run.sh starts a server and sets it)",
    );
    reporting::postgres::create_database(&admin, name).expect("create a test database")
}

#[test]
fn postgres_stores_every_row_exactly_once_and_reports_agree_with_the_engine() {
    let url = postgres_database(&format!("reporting_store_{}", std::process::id()));
    let f = flow(3);
    let mut store = reporting::open(&url).unwrap();
    apply_in_batches(store.as_mut(), &f, 13);
    check_exactly_once(store.as_mut(), &f);
    check_reports(store.as_mut(), &f);
    drop(store);
    let mut again = reporting::open(&url).unwrap();
    assert_eq!(again.last_seq().unwrap(), f.events.last().unwrap().0);
}

#[test]
fn a_bad_database_url_is_refused_with_a_reason() {
    for url in ["", "mysql://x/y", "sqlite:"] {
        let err = reporting::open(url).err().expect("refused");
        assert!(
            err.to_string().contains("expected sqlite:PATH"),
            "{url}: {err}"
        );
    }
}
