//! The event flow the gateway's benchmarks share: limit orders, marketable orders and cancels
//! from 8 accounts on 20 symbols, run through the engine.

use engine::command::{Asset, CancelOrder, Command, NewOrder, OpenTrading, Transfer};
use engine::{
    AccountId, ClOrdId, Engine, EngineConfig, Event, OrdType, OrderId, SessionId, Side, SymbolId,
    TimeInForce,
};

/// Symbols the flow trades.
pub const SYMBOLS: u16 = 20;

/// Events of a flow of limit orders, marketable orders and cancels, grouped by command.
pub fn flow(n: u32) -> (EngineConfig, Vec<Vec<Event>>) {
    let cfg = EngineConfig::default_universe();
    let mut engine = Engine::new(cfg.clone());
    let mut out = Vec::new();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut setup = vec![Command::OpenTrading(OpenTrading { trading_day: 1 })];
    for a in 0..8 {
        setup.push(Command::Deposit(Transfer {
            account: AccountId(a),
            asset: Asset::Cash,
            amount: 1 << 50,
        }));
        for s in 0..SYMBOLS {
            setup.push(Command::Deposit(Transfer {
                account: AccountId(a),
                asset: Asset::Shares(SymbolId(s)),
                amount: 1 << 30,
            }));
        }
    }
    for c in &setup {
        engine.apply(c, &mut out);
    }
    let mut groups = Vec::new();
    for i in 0..n {
        let a = rnd(8) as u32;
        let s = SymbolId(rnd(u64::from(SYMBOLS)) as u16);
        let side = if rnd(2) == 0 { Side::Buy } else { Side::Sell };
        let ins = &cfg.instruments[usize::from(s.0)];
        let cmd = if rnd(10) < 3 && i > 10 {
            Command::Cancel(CancelOrder {
                session: SessionId(a),
                account: AccountId(a),
                cl_ord_id: ClOrdId::new(&format!("X{i}")).unwrap(),
                orig_cl_ord_id: ClOrdId::new(&format!("C{}", i - 1 - rnd(10) as u32)).unwrap(),
                order_id: OrderId(0),
                symbol: s,
                side,
            })
        } else {
            let aggressive = rnd(10) == 0;
            let off = if aggressive { 5 } else { -1 - rnd(20) as i64 };
            let px = match side {
                Side::Buy => ins.reference_price + off * ins.tick,
                Side::Sell => ins.reference_price - off * ins.tick,
            };
            Command::NewOrder(NewOrder {
                session: SessionId(a),
                account: AccountId(a),
                cl_ord_id: ClOrdId::new(&format!("C{i}")).unwrap(),
                symbol: s,
                side,
                ord_type: OrdType::Limit,
                tif: if aggressive {
                    TimeInForce::Ioc
                } else {
                    TimeInForce::Day
                },
                price: px,
                qty: 100,
            })
        };
        out.clear();
        engine.apply(&cmd, &mut out);
        groups.push(out.clone());
    }
    (cfg, groups)
}
