//! The store against a real engine's event stream, on SQLite and on PostgreSQL: every row
//! stored exactly once however the batches fall, and reports that agree with the engine.
//!
//! The PostgreSQL tests need a server: `EXCHANGE_TEST_POSTGRES` is the URL of a role that may
//! create databases (the test command starts one and sets it).

use std::collections::BTreeMap;

use engine::command::{
    Asset, CancelOrder, CloseTrading, NewOrder, OpenTrading, ReplaceOrder, Transfer,
};
use engine::config::EngineConfig;
use engine::types::{AccountId, ClOrdId, OrdType, OrderId, SessionId, Side, SymbolId, TimeInForce};
use engine::{Command, Engine, Event};
use reporting::reports::{self, Range};
use reporting::{Names, Rows, Store};

const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// 2026-11-24T00:00:00Z.
const DAY1: i64 = 1_795_478_400 * 1_000_000_000;

fn config() -> EngineConfig {
    EngineConfig::from_toml(
        "[limits]\nmax_open_orders_per_account = 40\nmax_resting_orders = 1000\nmax_accounts = 4\nself_trade_prevention = \"cancel-resting\"\n\
         [defaults]\ntick_size = \"0.01\"\nlot_size = 1\nband_percent = \"5\"\ncollar_percent = \"1\"\n\
         daily_limit = 3000\nmax_order_qty = 500\nmax_notional = \"40000\"\n\
         [[instruments]]\nsymbol = \"AAA\"\nreference_price = \"100.00\"\n\
         [[instruments]]\nsymbol = \"BBB\"\nreference_price = \"10.00\"\n",
    )
    .unwrap()
}

fn names() -> Names {
    Names {
        accounts: (0..4).map(|i| format!("ACC{i}")).collect(),
        symbols: vec!["AAA".into(), "BBB".into()],
    }
}

/// A small deterministic generator (the flow must be the same on every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The events of a random flow over two trading days, and the engine after it.
struct Flow {
    events: Vec<(u64, i64, Event)>,
    engine: Engine,
}

fn flow(seed: u64) -> Flow {
    let mut engine = Engine::new(config());
    let mut rng = Lcg(seed);
    let mut cmds = vec![Command::OpenTrading(OpenTrading {
        trading_day: 20261124,
    })];
    for a in 0..4 {
        cmds.push(Command::Deposit(Transfer {
            account: AccountId(a),
            asset: Asset::Cash,
            amount: 5_000_000_000,
        }));
        for s in 0..2 {
            cmds.push(Command::Deposit(Transfer {
                account: AccountId(a),
                asset: Asset::Shares(SymbolId(s)),
                amount: 2_000,
            }));
        }
    }
    let mut sent: Vec<(u32, u16, Side, ClOrdId)> = Vec::new();
    for i in 0..900u32 {
        if i == 450 {
            cmds.push(Command::CloseTrading(CloseTrading {}));
            cmds.push(Command::OpenTrading(OpenTrading {
                trading_day: 20261125,
            }));
        }
        let account = rng.next(4) as u32;
        let cl = ClOrdId::new(&format!("o{i}")).unwrap();
        let r = rng.next(100);
        if r < 15 && !sent.is_empty() {
            let (a, s, side, orig) = sent[rng.next(sent.len() as u64) as usize];
            cmds.push(Command::Cancel(CancelOrder {
                session: SessionId(a),
                account: AccountId(a),
                cl_ord_id: cl,
                orig_cl_ord_id: orig,
                order_id: OrderId(0),
                symbol: SymbolId(s),
                side,
            }));
            continue;
        }
        let symbol = rng.next(2) as u16;
        let side = if rng.next(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let base = if symbol == 0 { 1_000_000 } else { 100_000 };
        let price = base + (rng.next(21) as i64 - 10) * 100;
        let qty = 10 * (1 + rng.next(60));
        if r < 25 && !sent.is_empty() {
            let (a, s, side, orig) = sent[rng.next(sent.len() as u64) as usize];
            let base = if s == 0 { 1_000_000 } else { 100_000 };
            cmds.push(Command::Replace(ReplaceOrder {
                session: SessionId(a),
                account: AccountId(a),
                cl_ord_id: cl,
                orig_cl_ord_id: orig,
                order_id: OrderId(0),
                symbol: SymbolId(s),
                side,
                price: base + (rng.next(21) as i64 - 10) * 100,
                qty,
            }));
            sent.push((a, s, side, cl));
            continue;
        }
        let (ord_type, tif) = match rng.next(10) {
            0 => (OrdType::Market, TimeInForce::Ioc),
            1 => (OrdType::Limit, TimeInForce::Ioc),
            2 => (OrdType::Limit, TimeInForce::Gtc),
            _ => (OrdType::Limit, TimeInForce::Day),
        };
        cmds.push(Command::NewOrder(NewOrder {
            session: SessionId(account),
            account: AccountId(account),
            cl_ord_id: cl,
            symbol: SymbolId(symbol),
            side,
            ord_type,
            tif,
            price: if ord_type == OrdType::Market {
                0
            } else {
                price
            },
            qty,
        }));
        sent.push((account, symbol, side, cl));
        if r > 97 {
            cmds.push(Command::Withdraw(Transfer {
                account: AccountId(account),
                asset: Asset::Cash,
                amount: 1_000_000 * rng.next(3) as i64,
            }));
        }
    }
    cmds.push(Command::CloseTrading(CloseTrading {}));
    let mut events = Vec::new();
    let mut out = Vec::new();
    let n = cmds.len() as i64;
    for (i, c) in cmds.iter().enumerate() {
        // Spread evenly over the two days.
        let ts = DAY1 + i as i64 * (2 * DAY_NS - 1) / n;
        engine.apply(c, &mut out);
        events.extend(out.drain(..).map(|e| (i as u64 + 1, ts, e)));
    }
    Flow { events, engine }
}

/// All rows of the flow in one set.
fn all_rows(f: &Flow) -> Rows {
    let names = names();
    let mut rows = Rows::default();
    for (seq, ts, e) in &f.events {
        rows.push(*seq, *ts, e, &names);
    }
    rows
}

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
            Event::Rejected(r) if [7, 8, 9, 10, 11, 12, 13].contains(&r.reason.code()) => {
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
