//! A deterministic order flow through a real engine, shared by the store and follower tests.

#![allow(dead_code)]

use engine::command::{
    Asset, CancelOrder, CloseTrading, NewOrder, OpenTrading, ReplaceOrder, Transfer,
};
use engine::config::EngineConfig;
use engine::types::{AccountId, ClOrdId, OrdType, OrderId, SessionId, Side, SymbolId, TimeInForce};
use engine::{Command, Engine, Event};
use reporting::{Names, Rows};

pub const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// 2026-11-24T00:00:00Z.
pub const DAY1: i64 = 1_795_478_400 * 1_000_000_000;

pub fn config() -> EngineConfig {
    EngineConfig::from_toml(
        "[limits]\nmax_open_orders_per_account = 40\nmax_resting_orders = 1000\nmax_accounts = 4\nself_trade_prevention = \"cancel-resting\"\n\
         [defaults]\ntick_size = \"0.01\"\nlot_size = 1\nband_percent = \"5\"\ncollar_percent = \"1\"\n\
         daily_limit = 3000\nmax_order_qty = 500\nmax_notional = \"40000\"\n\
         [[instruments]]\nsymbol = \"AAA\"\nreference_price = \"100.00\"\n\
         [[instruments]]\nsymbol = \"BBB\"\nreference_price = \"10.00\"\n",
    )
    .unwrap()
}

pub fn names() -> Names {
    Names {
        accounts: (0..4).map(|i| format!("ACC{i}")).collect(),
        symbols: vec!["AAA".into(), "BBB".into()],
    }
}

/// A small deterministic generator (the flow must be the same on every run).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The events of a random flow over two trading days, and the engine after it.
pub struct Flow {
    /// The commands with their timestamps, in sequence order from 1.
    pub commands: Vec<(i64, Command)>,
    /// The events with the sequence id and timestamp of their command.
    pub events: Vec<(u64, i64, Event)>,
    /// The engine after the flow.
    pub engine: Engine,
}

pub fn flow(seed: u64) -> Flow {
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
    let mut commands = Vec::new();
    for (i, c) in cmds.iter().enumerate() {
        // Spread evenly over the two days.
        let ts = DAY1 + i as i64 * (2 * DAY_NS - 1) / n;
        engine.apply(c, &mut out);
        events.extend(out.drain(..).map(|e| (i as u64 + 1, ts, e)));
        commands.push((ts, *c));
    }
    Flow {
        commands,
        events,
        engine,
    }
}

/// All rows of the flow in one set.
pub fn all_rows(f: &Flow) -> Rows {
    let names = names();
    let mut rows = Rows::default();
    for (seq, ts, e) in &f.events {
        rows.push(*seq, *ts, e, &names);
    }
    rows
}
