//! Market-data publishing cost: sequenced events in, encoded MarketDataIncrementalRefresh (X)
//! messages out, for 10 and 1,000 subscribers to 20 symbols (top 10 levels and trades).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::command::{Asset, CancelOrder, Command, NewOrder, OpenTrading, Transfer};
use engine::{
    AccountId, ClOrdId, Engine, EngineConfig, Event, OrdType, OrderId, SessionId, Side, SymbolId,
    TimeInForce,
};
use gateway::codec::Encoder;
use gateway::exchange::market_data::Renderer;
use marketdata::{Feed, FeedConfig, Out, Request, RequestKind};

const SYMBOLS: u16 = 20;

/// Events of a flow of limit orders, marketable orders and cancels, grouped by command.
fn flow(n: u32) -> (EngineConfig, Vec<Vec<Event>>) {
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

fn publish(c: &mut Criterion) {
    let (cfg, groups) = flow(20_000);
    let events: usize = groups.iter().map(Vec::len).sum();
    let names: Vec<String> = cfg.instruments.iter().map(|i| i.symbol.clone()).collect();
    let symbols: Vec<String> = names.iter().take(usize::from(SYMBOLS)).cloned().collect();
    let mut g = c.benchmark_group("market_data");
    g.throughput(Throughput::Elements(events as u64));
    g.sample_size(10);
    // Publishing after every command (a feed that keeps up) and every 64 commands (behind),
    // to 10 subscribers and to 1,000.
    for (subscribers, every) in [(10u32, 1usize), (10, 64), (1000, 64)] {
        let mut messages = 0usize;
        let name = format!("events_to_encoded_X_{subscribers}_subscribers_flush_every_{every}");
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut feed = Feed::new(names.clone(), FeedConfig::default());
                let mut out = Vec::new();
                for sub in 0..subscribers {
                    feed.request(
                        sub,
                        Request {
                            req_id: format!("R{sub}"),
                            kind: RequestKind::Subscribe,
                            depth: 10,
                            aggregated: true,
                            incremental: None,
                            entry_types: b"012".to_vec(),
                            symbols: symbols.clone(),
                        },
                        &mut out,
                    );
                }
                let mut renderer = Renderer::default();
                let mut enc = Encoder::new();
                let mut bytes = 0usize;
                messages = 0;
                for (seq, group) in groups.iter().enumerate() {
                    for e in group {
                        feed.apply(seq as u64 + 1, 1_700_000_000_000_000_000, e);
                    }
                    if seq % every == 0 {
                        out.clear();
                        feed.flush(&mut |_| true, &mut out);
                        for o in &out {
                            if let Out::Incremental { .. } = o {
                                let (_, msg) = renderer.render(o, &feed);
                                enc.start(&msg.msg_type);
                                for (t, v) in &msg.fields {
                                    enc.field(*t, v);
                                }
                                for piece in &msg.encoded {
                                    enc.encoded(piece);
                                }
                                bytes += enc.finish(b"FIX.4.4").len();
                                messages += 1;
                            }
                        }
                        renderer.clear();
                    }
                }
                black_box(bytes)
            })
        });
        eprintln!(
            "{subscribers} subscribers, flush every {every}: {events} events -> {messages} X messages per iteration"
        );
    }
    g.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
