//! Table-driven matching scenarios: compact text tables of commands and the events they must
//! produce, in `tests/scenarios/*.scn`.
//!
//! Format, one directive per line (lines starting with `#` are comments):
//! - `=== name` starts a scenario (a fresh engine).
//! - Configuration, before the first command: `instrument SYM ref=P [tick=P] [lot=N] [band=PCT]
//!   [collar=PCT] [daily=N] [max-qty=N] [max-notional=P]`, `stp cancel-resting|cancel-incoming|
//!   cancel-both`, `max-open-orders N`, `max-resting N`, `account-limit ACCT SYM N`.
//!   Without instruments: AAPL at 100.00 and MSFT at 50.00, tick 0.01, band 10%, collar 5%.
//! - Commands: `open DAY`, `close`, `deposit ACCT cash|SYM AMOUNT`, `withdraw ...`,
//!   `buy|sell ACCT CLID SYM QTY @PRICE|mkt [day|gtc|ioc|fok]`, `cancel ACCT CLID ORIG|#ORDERID`,
//!   `replace ACCT CLID ORIG QTY @PRICE`, `status ACCT CLID|#ORDERID`,
//!   `mass-cancel ACCT CLID all|SYM [buy|sell]`, `mass-status ACCT REQID all|SYM [buy|sell]`,
//!   `disconnect ACCT` (cancel on disconnect).
//!   Accounts are letters (A is account 0, session 0).
//! - `> event` lines after a command list exactly the events it must produce, in order.
//! - Checks: `? book SYM bids|asks P:Q,P:Q` (levels best first, `-` for empty),
//!   `? cash ACCT TOTAL RESERVED`, `? shares ACCT SYM TOTAL RESERVED`, `? status open|closed`.
//!
//! After every command the engine's invariants are checked too.

use std::fmt::Write as _;
use std::str::FromStr;

use engine::command::{
    Asset, CancelOrder, CloseTrading, Command, MassCancelRequest, MassScope, MassStatusRequest,
    NewOrder, OpenTrading, ReplaceOrder, StatusRequest, Transfer,
};
use engine::config::{EngineConfig, decimal_to_units, units_to_decimal};
use engine::event::Event;
use engine::{
    AccountId, ClOrdId, Engine, OrdType, OrderId, SessionId, Side, SymbolId, TimeInForce,
};
use rust_decimal::Decimal;

fn acct_name(a: AccountId) -> char {
    (b'A' + a.0 as u8) as char
}

fn px(p: i64) -> String {
    format!("{:.2}", units_to_decimal(p))
}

/// Renders an event as a scenario line.
fn render(e: &Event, syms: &[String]) -> String {
    let sym = |s: SymbolId| {
        syms.get(usize::from(s.0))
            .cloned()
            .unwrap_or_else(|| format!("#{}", s.0))
    };
    match e {
        Event::Accepted(a) => format!(
            "accepted {} #{}",
            a.order.cl_ord_id,
            a.order.order_id.sequence()
        ),
        Event::Rejected(r) => format!("rejected {} {}", r.cl_ord_id, r.reason.name()),
        Event::Trade(t) => format!(
            "trade {} {}@{} maker={}/{} taker={}/{}",
            sym(t.symbol),
            t.qty,
            px(t.price),
            t.maker.cl_ord_id,
            t.maker.leaves_qty,
            t.taker.cl_ord_id,
            t.taker.leaves_qty
        ),
        Event::Canceled(c) => {
            let mut s = format!("canceled {}", c.order.cl_ord_id);
            if !c.orig_cl_ord_id.is_empty() {
                let _ = write!(s, " orig={}", c.orig_cl_ord_id);
            }
            let _ = write!(s, " {} qty={}", c.reason.name(), c.canceled_qty);
            s
        }
        Event::Replaced(r) => format!(
            "replaced {}->{} {}@{}{}",
            r.orig_cl_ord_id,
            r.order.cl_ord_id,
            r.order.leaves_qty,
            px(r.order.price),
            if r.kept_priority { " keep" } else { "" }
        ),
        Event::CancelRejected(c) => format!(
            "{} {} {}",
            if c.is_replace {
                "replace-rejected"
            } else {
                "cancel-rejected"
            },
            c.cl_ord_id,
            c.reason.name()
        ),
        Event::Expired(x) => format!(
            "expired {} qty={}",
            x.order.cl_ord_id,
            x.order.qty - x.order.cum_qty
        ),
        Event::TradingStatus(t) => format!(
            "{} {}",
            if t.open { "opened" } else { "closed" },
            t.trading_day
        ),
        Event::Status(st) => {
            let o = &st.order;
            match st.reason {
                None => format!(
                    "status {} #{} {:?} cum={} leaves={}",
                    o.cl_ord_id,
                    o.order_id.sequence(),
                    o.status,
                    o.cum_qty,
                    o.leaves_qty
                ),
                Some(r) => format!("status {} {}", o.cl_ord_id, r.name()),
            }
        }
        Event::MassStatus(m) if m.total == 0 => format!("mass-status {} none", m.request.req_id),
        Event::MassStatus(m) => {
            let o = &m.order;
            format!(
                "mass-status {} {} #{} {:?} cum={} leaves={} of={}{}",
                m.request.req_id,
                o.cl_ord_id,
                o.order_id.sequence(),
                o.status,
                o.cum_qty,
                o.leaves_qty,
                m.total,
                if m.last { " last" } else { "" }
            )
        }
        Event::MassCancel(m) => match m.reason {
            None => format!("mass-canceled {} n={}", m.request.cl_ord_id, m.canceled),
            Some(r) => format!("mass-cancel-rejected {} {}", m.request.cl_ord_id, r.name()),
        },
        Event::Transfer(t) => {
            let asset = match t.asset {
                Asset::Cash => "cash".to_string(),
                Asset::Shares(s) => sym(s),
            };
            let fmt_amt = |v: i64| match t.asset {
                Asset::Cash => px(v),
                Asset::Shares(_) => v.to_string(),
            };
            match t.reject {
                None => format!(
                    "transfer {} {} {} = {}",
                    acct_name(t.account),
                    asset,
                    fmt_amt(t.amount),
                    fmt_amt(t.balance)
                ),
                Some(r) => format!(
                    "transfer {} {} {} {}",
                    acct_name(t.account),
                    asset,
                    fmt_amt(t.amount),
                    r.name()
                ),
            }
        }
    }
}

struct Scenario {
    name: String,
    config: Vec<String>,
    steps: Vec<(usize, String, Vec<String>)>,
}

fn parse_file(text: &str) -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("===") {
            out.push(Scenario {
                name: name.trim().to_string(),
                config: Vec::new(),
                steps: Vec::new(),
            });
            continue;
        }
        let sc = out
            .last_mut()
            .unwrap_or_else(|| panic!("line {}: directive before the first ===", n + 1));
        if let Some(ev) = line.strip_prefix('>') {
            let step = sc
                .steps
                .last_mut()
                .unwrap_or_else(|| panic!("line {}: event before any command", n + 1));
            step.2.push(ev.trim().to_string());
        } else {
            let word = line.split_whitespace().next().unwrap();
            if matches!(
                word,
                "instrument" | "stp" | "max-open-orders" | "max-resting" | "account-limit"
            ) {
                assert!(
                    sc.steps.is_empty(),
                    "line {}: configuration after commands",
                    n + 1
                );
                sc.config.push(line.to_string());
            } else {
                sc.steps.push((n + 1, line.to_string(), Vec::new()));
            }
        }
    }
    out
}

fn build_config(lines: &[String]) -> EngineConfig {
    let mut stp = "cancel-resting".to_string();
    let mut max_open = 100;
    let mut max_resting = 100_000;
    let mut instruments = String::new();
    let mut account_limits = String::new();
    for l in lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w[0] {
            "stp" => stp = w[1].to_string(),
            "max-open-orders" => max_open = w[1].parse().unwrap(),
            "max-resting" => max_resting = w[1].parse().unwrap(),
            "account-limit" => {
                let a = w[1].as_bytes()[0] - b'A';
                let _ = write!(
                    account_limits,
                    "[[account_limits]]\naccount = {a}\nsymbol = \"{}\"\ndaily_limit = {}\n",
                    w[2], w[3]
                );
            }
            "instrument" => {
                let _ = writeln!(instruments, "[[instruments]]\nsymbol = \"{}\"", w[1]);
                for kv in &w[2..] {
                    let (k, v) = kv.split_once('=').unwrap();
                    let entry = match k {
                        "ref" => format!("reference_price = \"{v}\""),
                        "tick" => format!("tick_size = \"{v}\""),
                        "lot" => format!("lot_size = {v}"),
                        "band" => format!("band_percent = \"{v}\""),
                        "collar" => format!("collar_percent = \"{v}\""),
                        "daily" => format!("daily_limit = {v}"),
                        "max-qty" => format!("max_order_qty = {v}"),
                        "max-notional" => format!("max_notional = \"{v}\""),
                        other => panic!("unknown instrument key {other}"),
                    };
                    let _ = writeln!(instruments, "{entry}");
                }
            }
            _ => unreachable!(),
        }
    }
    if instruments.is_empty() {
        instruments = "[[instruments]]\nsymbol = \"AAPL\"\nreference_price = \"100.00\"\n[[instruments]]\nsymbol = \"MSFT\"\nreference_price = \"50.00\"\n".into();
    }
    let toml = format!(
        "[limits]\nmax_open_orders_per_account = {max_open}\nmax_resting_orders = {max_resting}\nmax_accounts = 26\nself_trade_prevention = \"{stp}\"\n\
         [defaults]\ntick_size = \"0.01\"\nlot_size = 1\nband_percent = \"10\"\ncollar_percent = \"5\"\ndaily_limit = 1000000\nmax_order_qty = 1000000\nmax_notional = \"100000000\"\n\
         {instruments}{account_limits}"
    );
    EngineConfig::from_toml(&toml).unwrap()
}

struct Runner {
    engine: Engine,
    symbols: Vec<String>,
    /// Symbol and side of every ClOrdID seen, so cancels and replaces can name them.
    orders: std::collections::HashMap<String, (SymbolId, Side)>,
    /// Exchange order ids by sequence number (the `#N` of the tables).
    ids: std::collections::HashMap<u64, OrderId>,
}

fn account(s: &str) -> AccountId {
    let b = s.as_bytes();
    assert!(
        b.len() == 1 && b[0].is_ascii_uppercase(),
        "account {s:?} must be a capital letter"
    );
    AccountId(u32::from(b[0] - b'A'))
}

fn units(s: &str) -> i64 {
    decimal_to_units(Decimal::from_str(s).unwrap()).unwrap()
}

impl Runner {
    /// An order named by ClOrdID, or by exchange id as `#N`.
    fn order_ref(&self, name: &str) -> (ClOrdId, OrderId) {
        match name.strip_prefix('#') {
            Some(n) => {
                let n: u64 = n.parse().unwrap();
                let id = self.ids.get(&n).copied().unwrap_or(OrderId::compose(n, 0));
                (ClOrdId::EMPTY, id)
            }
            None => (ClOrdId::new(name).unwrap(), OrderId(0)),
        }
    }

    fn symbol(&self, s: &str) -> SymbolId {
        match self.symbols.iter().position(|x| x == s) {
            Some(i) => SymbolId(i as u16),
            None => SymbolId(999),
        }
    }

    /// `all|SYM [buy|sell]` of a mass request.
    fn mass_scope(&self, w: &[&str]) -> (MassScope, SymbolId, Option<Side>) {
        let (scope, symbol) = match w[0] {
            "all" => (MassScope::All, SymbolId(0)),
            sym => (MassScope::Symbol, self.symbol(sym)),
        };
        let side = w.get(1).map(|s| match *s {
            "buy" => Side::Buy,
            "sell" => Side::Sell,
            other => panic!("unknown side {other}"),
        });
        (scope, symbol, side)
    }

    fn command(&mut self, line: &str) -> Command {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[0] {
            "open" => Command::OpenTrading(OpenTrading {
                trading_day: w[1].parse().unwrap(),
            }),
            "close" => Command::CloseTrading(CloseTrading {}),
            "deposit" | "withdraw" => {
                let (asset, amount) = if w[2] == "cash" {
                    (Asset::Cash, units(w[3]))
                } else {
                    (Asset::Shares(self.symbol(w[2])), w[3].parse().unwrap())
                };
                let t = Transfer {
                    account: account(w[1]),
                    asset,
                    amount,
                };
                if w[0] == "deposit" {
                    Command::Deposit(t)
                } else {
                    Command::Withdraw(t)
                }
            }
            "buy" | "sell" => {
                // A trailing `resent` flags the order as a possible resend.
                let resent = w.last() == Some(&"resent");
                let w = &w[..w.len() - usize::from(resent)];
                let side = if w[0] == "buy" { Side::Buy } else { Side::Sell };
                let a = account(w[1]);
                let symbol = self.symbol(w[3]);
                self.orders.insert(w[2].to_string(), (symbol, side));
                let (ord_type, price) = match w[5] {
                    "mkt" => (OrdType::Market, 0),
                    p => (
                        OrdType::Limit,
                        units(p.strip_prefix('@').expect("price starts with @")),
                    ),
                };
                let tif = match w.get(6).copied() {
                    None | Some("day") => TimeInForce::Day,
                    Some("gtc") => TimeInForce::Gtc,
                    Some("ioc") => TimeInForce::Ioc,
                    Some("fok") => TimeInForce::Fok,
                    Some(t) => panic!("unknown time in force {t}"),
                };
                let order = NewOrder {
                    session: SessionId(a.0),
                    account: a,
                    cl_ord_id: ClOrdId::new(w[2]).unwrap(),
                    symbol,
                    side,
                    ord_type,
                    tif,
                    price,
                    qty: w[4].parse().unwrap(),
                };
                if resent {
                    Command::ResentOrder(order)
                } else {
                    Command::NewOrder(order)
                }
            }
            "status" => {
                // status ACCOUNT CLORDID (`#N`: by exchange order id)
                let a = account(w[1]);
                let (symbol, side) = self
                    .orders
                    .get(w[2])
                    .copied()
                    .unwrap_or((SymbolId(0), Side::Buy));
                let (cl, order_id) = self.order_ref(w[2]);
                Command::Status(StatusRequest {
                    session: SessionId(a.0),
                    account: a,
                    cl_ord_id: cl,
                    order_id,
                    symbol,
                    side,
                    req_id: ClOrdId::EMPTY,
                })
            }
            "mass-cancel" => {
                let a = account(w[1]);
                let (scope, symbol, side) = self.mass_scope(&w[3..]);
                Command::MassCancel(MassCancelRequest {
                    session: SessionId(a.0),
                    account: None,
                    cl_ord_id: ClOrdId::new(w[2]).unwrap(),
                    scope,
                    symbol,
                    side,
                    on_disconnect: false,
                })
            }
            "mass-status" => {
                // mass-status ACCOUNT REQID all|SYM [buy|sell]
                let a = account(w[1]);
                let (scope, symbol, side) = self.mass_scope(&w[3..]);
                Command::MassStatus(MassStatusRequest {
                    session: SessionId(a.0),
                    account: None,
                    req_id: ClOrdId::new(w[2]).unwrap(),
                    scope,
                    symbol,
                    side,
                })
            }
            "disconnect" => {
                // The gateway's cancel on disconnect for the account's session.
                let a = account(w[1]);
                Command::MassCancel(MassCancelRequest::on_disconnect(SessionId(a.0)))
            }
            "cancel" => {
                let a = account(w[1]);
                let (symbol, side) = self
                    .orders
                    .get(w[3])
                    .copied()
                    .unwrap_or((SymbolId(0), Side::Buy));
                let (orig, order_id) = self.order_ref(w[3]);
                Command::Cancel(CancelOrder {
                    session: SessionId(a.0),
                    account: a,
                    cl_ord_id: ClOrdId::new(w[2]).unwrap(),
                    orig_cl_ord_id: orig,
                    order_id,
                    symbol,
                    side,
                })
            }
            "replace" => {
                let a = account(w[1]);
                let (symbol, side) = self
                    .orders
                    .get(w[3])
                    .copied()
                    .unwrap_or((SymbolId(0), Side::Buy));
                self.orders.insert(w[2].to_string(), (symbol, side));
                Command::Replace(ReplaceOrder {
                    session: SessionId(a.0),
                    account: a,
                    cl_ord_id: ClOrdId::new(w[2]).unwrap(),
                    orig_cl_ord_id: ClOrdId::new(w[3]).unwrap(),
                    order_id: OrderId(0),
                    symbol,
                    side,
                    price: units(w[5].strip_prefix('@').unwrap()),
                    qty: w[4].parse().unwrap(),
                })
            }
            other => panic!("unknown command {other}"),
        }
    }

    fn check(&self, line: &str) -> Result<(), String> {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[0] {
            "book" => {
                let side = if w[2] == "bids" {
                    Side::Buy
                } else {
                    Side::Sell
                };
                let got: Vec<String> = self
                    .engine
                    .depth(self.symbol(w[1]), side)
                    .map(|l| format!("{}:{}", px(l.price), l.qty))
                    .collect();
                let got = if got.is_empty() {
                    "-".to_string()
                } else {
                    got.join(",")
                };
                if got != w[3] {
                    return Err(format!(
                        "book {} {}: expected {} got {got}",
                        w[1], w[2], w[3]
                    ));
                }
            }
            "cash" => {
                let b = self.engine.balance(account(w[1]));
                let got = format!("{} {}", px(b.cash), px(b.cash_reserved));
                let want = format!("{} {}", px(units(w[2])), px(units(w[3])));
                if got != want {
                    return Err(format!("cash {}: expected {want} got {got}", w[1]));
                }
            }
            "shares" => {
                let h = self.engine.holding(account(w[1]), self.symbol(w[2]));
                let got = format!("{} {}", h.shares, h.reserved);
                let want = format!("{} {}", w[3], w[4]);
                if got != want {
                    return Err(format!(
                        "shares {} {}: expected {want} got {got}",
                        w[1], w[2]
                    ));
                }
            }
            "status" => {
                let got = if self.engine.is_open() {
                    "open"
                } else {
                    "closed"
                };
                if got != w[1] {
                    return Err(format!("status: expected {} got {got}", w[1]));
                }
            }
            other => return Err(format!("unknown check {other}")),
        }
        Ok(())
    }
}

fn run_scenario(sc: &Scenario) -> Result<(), String> {
    let config = build_config(&sc.config);
    let symbols = config
        .instruments
        .iter()
        .map(|i| i.symbol.clone())
        .collect();
    let mut r = Runner {
        engine: Engine::new(config),
        symbols,
        orders: Default::default(),
        ids: Default::default(),
    };
    let mut events = Vec::new();
    for (line_no, line, expected) in &sc.steps {
        if let Some(check) = line.strip_prefix('?') {
            r.check(check.trim())
                .map_err(|e| format!("line {line_no}: {e}"))?;
            continue;
        }
        let cmd = r.command(line);
        events.clear();
        r.engine.apply(&cmd, &mut events);
        for e in &events {
            if let Event::Accepted(a) = e {
                r.ids.insert(a.order.order_id.sequence(), a.order.order_id);
            }
        }
        let got: Vec<String> = events.iter().map(|e| render(e, &r.symbols)).collect();
        if &got != expected {
            return Err(format!(
                "line {line_no}: `{line}`\n  expected:\n    {}\n  got:\n    {}",
                expected.join("\n    "),
                got.join("\n    ")
            ));
        }
        r.engine
            .check_invariants()
            .map_err(|e| format!("line {line_no}: `{line}`: invariant broken: {e}"))?;
    }
    Ok(())
}

#[test]
fn scenario_tables() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut count = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for sc in parse_file(&text) {
            count += 1;
            if let Err(e) = run_scenario(&sc) {
                failures.push(format!(
                    "{} / {}: {e}",
                    f.file_name().unwrap().to_string_lossy(),
                    sc.name
                ));
            }
        }
    }
    assert!(count >= 20, "only {count} scenarios found");
    assert!(
        failures.is_empty(),
        "{} of {count} scenarios failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
