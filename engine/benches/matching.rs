//! Single-thread throughput of a realistic command mix, ours against peer matching crates.
//!
//! The default 100-symbol universe starts with about 2,000 resting orders per symbol and ends
//! a run near 4,000. The stream is mostly passive limit orders, cancels and replaces, with some
//! aggressive IOC and market orders; our engine runs its risk and wallet checks on every order.
//! The same stream is translated up front into each peer's own commands (`lobster`,
//! `matchcore`): what a peer lacks (IOC in lobster, replace in lobster) is emulated the way its
//! user would, with a cancel.
//!
//! `cargo bench -p engine --bench matching`
//!
//! To see how the working set's size matters, the shape can be changed from the environment
//! (the figures in BENCHMARKS.md use the defaults): `MATCHING_SYMBOLS` (first N instruments,
//! default all 100), `MATCHING_PRELOAD` (resting orders per symbol before the run, default
//! 2,000), `MATCHING_COMMANDS` (stream length, default 1,000,000) and
//! `MATCHING_EXPECTED_ORDERS` (the ClOrdID index's sizing, default the configuration's).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use engine::command::{Asset, CancelOrder, Command, NewOrder, OpenTrading, ReplaceOrder, Transfer};
use engine::{
    AccountId, ClOrdId, Engine, EngineConfig, Event, OrdType, OrderId, SessionId, Side, SymbolId,
    TimeInForce,
};

/// Deterministic splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One operation of the workload, independent of any engine's API.
#[derive(Clone, Copy)]
enum Op {
    New {
        id: u64,
        sym: u16,
        side: Side,
        ticks: i64,
        qty: u64,
        kind: Kind,
        account: u32,
    },
    Cancel {
        id: u64,
        sym: u16,
    },
    Replace {
        id: u64,
        new_id: u64,
        sym: u16,
        side: Side,
        ticks: i64,
        qty: u64,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Passive,
    Ioc,
    Market,
}

const ACCOUNTS: u32 = 1_000;
const PRELOAD_PER_SYMBOL: usize = 2_000;

struct Workload {
    preload: Vec<Op>,
    stream: Vec<Op>,
    ticks: Vec<(i64, i64)>,
}

/// Builds the preload and the measured stream. Order ids are assigned in submission order,
/// as every engine here does (or is told to).
fn workload(cfg: &EngineConfig, len: usize, preload_per_symbol: usize) -> Workload {
    let mut rng = Rng(42);
    let symbols = cfg.instruments.len() as u16;
    let ticks: Vec<(i64, i64)> = cfg
        .instruments
        .iter()
        .map(|i| (i.reference_price, i.tick))
        .collect();
    let mut next_id = 1u64;
    let mut live: Vec<Vec<(u64, Side, i64, u64)>> = vec![Vec::new(); symbols as usize];
    let passive =
        |rng: &mut Rng, next_id: &mut u64, live: &mut Vec<Vec<(u64, Side, i64, u64)>>, sym: u16| {
            let side = if rng.below(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let off = 1 + rng.below(50) as i64;
            let t = if side == Side::Buy { -off } else { off };
            let qty = 100 * (1 + rng.below(10));
            let id = *next_id;
            *next_id += 1;
            live[sym as usize].push((id, side, t, qty));
            Op::New {
                id,
                sym,
                side,
                ticks: t,
                qty,
                kind: Kind::Passive,
                account: rng.below(ACCOUNTS.into()) as u32,
            }
        };
    let mut preload = Vec::new();
    for _ in 0..preload_per_symbol {
        for sym in 0..symbols {
            preload.push(passive(&mut rng, &mut next_id, &mut live, sym));
        }
    }
    let mut stream = Vec::with_capacity(len);
    while stream.len() < len {
        let sym = rng.below(symbols.into()) as u16;
        let roll = rng.below(100);
        let op = if roll < 45 {
            passive(&mut rng, &mut next_id, &mut live, sym)
        } else if roll < 77 {
            let l = &mut live[sym as usize];
            if l.is_empty() {
                continue;
            }
            let i = rng.below(l.len() as u64) as usize;
            let (id, ..) = l.swap_remove(i);
            Op::Cancel { id, sym }
        } else if roll < 90 {
            let l = &mut live[sym as usize];
            if l.is_empty() {
                continue;
            }
            let i = rng.below(l.len() as u64) as usize;
            let (id, side, t, qty) = l[i];
            // Half keep priority (smaller quantity), half move one tick away from the touch.
            let (t2, q2) = if rng.below(2) == 0 && qty > 100 {
                (t, qty - 100)
            } else {
                (if side == Side::Buy { t - 1 } else { t + 1 }, qty)
            };
            l[i] = (id, side, t2, q2);
            let new_id = next_id;
            next_id += 1;
            Op::Replace {
                id,
                new_id,
                sym,
                side,
                ticks: t2,
                qty: q2,
            }
        } else {
            let side = if rng.below(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let kind = if roll < 97 { Kind::Ioc } else { Kind::Market };
            let id = next_id;
            next_id += 1;
            let t = if side == Side::Buy { 5 } else { -5 };
            let qty = 100 * (1 + rng.below(5));
            Op::New {
                id,
                sym,
                side,
                ticks: t,
                qty,
                kind,
                account: rng.below(ACCOUNTS.into()) as u32,
            }
        };
        stream.push(op);
    }
    Workload {
        preload,
        stream,
        ticks,
    }
}

fn price(w: &Workload, sym: u16, ticks: i64) -> i64 {
    let (r, t) = w.ticks[sym as usize];
    r + ticks * t
}

fn cl(n: u64) -> ClOrdId {
    let mut b = [0u8; 20];
    let mut i = b.len();
    let mut v = n;
    loop {
        i -= 1;
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    ClOrdId::from_bytes(&b[i..]).unwrap()
}

/// Our engine's commands. Each passive order's account is its own session; cancels and
/// replaces name the order by its current ClOrdID (OrigClOrdID), as FIX clients do.
fn our_commands(
    w: &Workload,
    ops: &[Op],
    current: &mut std::collections::HashMap<u64, ClOrdId>,
) -> Vec<Command> {
    let mut out = Vec::with_capacity(ops.len());
    let account_of = |id: u64| (id % u64::from(ACCOUNTS)) as u32;
    for op in ops {
        match *op {
            Op::New {
                id,
                sym,
                side,
                ticks,
                qty,
                kind,
                account,
            } => {
                let account = if kind == Kind::Passive {
                    account_of(id)
                } else {
                    account
                };
                current.insert(id, cl(id));
                out.push(Command::NewOrder(NewOrder {
                    session: SessionId(account),
                    account: AccountId(account),
                    cl_ord_id: cl(id),
                    symbol: SymbolId(sym),
                    side,
                    ord_type: if kind == Kind::Market {
                        OrdType::Market
                    } else {
                        OrdType::Limit
                    },
                    tif: if kind == Kind::Passive {
                        TimeInForce::Day
                    } else {
                        TimeInForce::Ioc
                    },
                    price: price(w, sym, ticks),
                    qty,
                }))
            }
            Op::Cancel { id, sym } => {
                let a = account_of(id);
                out.push(Command::Cancel(CancelOrder {
                    session: SessionId(a),
                    account: AccountId(a),
                    cl_ord_id: cl(1_000_000_000 + id),
                    orig_cl_ord_id: current[&id],
                    order_id: OrderId(0),
                    symbol: SymbolId(sym),
                    side: Side::Buy,
                }))
            }
            Op::Replace {
                id,
                new_id,
                sym,
                side,
                ticks,
                qty,
            } => {
                let a = account_of(id);
                let new_cl = cl(2_000_000_000 + new_id);
                out.push(Command::Replace(ReplaceOrder {
                    session: SessionId(a),
                    account: AccountId(a),
                    cl_ord_id: new_cl,
                    orig_cl_ord_id: current[&id],
                    order_id: OrderId(0),
                    symbol: SymbolId(sym),
                    side,
                    price: price(w, sym, ticks),
                    qty,
                }));
                current.insert(id, new_cl);
            }
        }
    }
    out
}

fn funded_engine(cfg: &EngineConfig) -> Engine {
    let mut e = Engine::new(cfg.clone());
    let mut out = Vec::new();
    e.apply(
        &Command::OpenTrading(OpenTrading {
            trading_day: 20261123,
        }),
        &mut out,
    );
    for a in 0..ACCOUNTS {
        let account = AccountId(a);
        e.apply(
            &Command::Deposit(Transfer {
                account,
                asset: Asset::Cash,
                amount: 1_000_000_000 * 10_000,
            }),
            &mut out,
        );
        for s in 0..cfg.instruments.len() {
            e.apply(
                &Command::Deposit(Transfer {
                    account,
                    asset: Asset::Shares(SymbolId(s as u16)),
                    amount: 100_000_000,
                }),
                &mut out,
            );
        }
    }
    e
}

fn lobster_ops(w: &Workload, ops: &[Op], out: &mut Vec<(u16, lobster::OrderType)>) {
    use lobster::{OrderType, Side as LSide};
    let side = |s: Side| {
        if s == Side::Buy {
            LSide::Bid
        } else {
            LSide::Ask
        }
    };
    let mut current = std::collections::HashMap::new();
    for op in ops {
        match *op {
            Op::New {
                id,
                sym,
                side: s,
                ticks,
                qty,
                kind,
                ..
            } => {
                let p = price(w, sym, ticks) as u64;
                match kind {
                    Kind::Market => out.push((
                        sym,
                        OrderType::Market {
                            id: id.into(),
                            side: side(s),
                            qty,
                        },
                    )),
                    Kind::Passive => {
                        current.insert(id, id);
                        out.push((
                            sym,
                            OrderType::Limit {
                                id: id.into(),
                                side: side(s),
                                qty,
                                price: p,
                            },
                        ))
                    }
                    Kind::Ioc => {
                        out.push((
                            sym,
                            OrderType::Limit {
                                id: id.into(),
                                side: side(s),
                                qty,
                                price: p,
                            },
                        ));
                        out.push((sym, OrderType::Cancel { id: id.into() }));
                    }
                }
            }
            Op::Cancel { id, sym } => {
                let cur = current.get(&id).copied().unwrap_or(id);
                out.push((sym, OrderType::Cancel { id: cur.into() }))
            }
            Op::Replace {
                id,
                new_id,
                sym,
                side: s,
                ticks,
                qty,
            } => {
                let cur = current.get(&id).copied().unwrap_or(id);
                out.push((sym, OrderType::Cancel { id: cur.into() }));
                out.push((
                    sym,
                    OrderType::Limit {
                        id: new_id.into(),
                        side: side(s),
                        qty,
                        price: price(w, sym, ticks) as u64,
                    },
                ));
                current.insert(id, new_id);
            }
        }
    }
}

fn matchcore_ops(
    w: &Workload,
    ops: &[Op],
    seqs: &mut [u64],
    ids: &mut std::collections::HashMap<u64, u64>,
) -> Vec<(u16, matchcore::Command)> {
    use matchcore::*;
    let mut out = Vec::with_capacity(ops.len());
    let mut meta = |sym: u16| {
        let s = seqs[sym as usize];
        seqs[sym as usize] += 1;
        CommandMeta {
            sequence_number: SequenceNumber(s),
            timestamp: Timestamp(s),
        }
    };
    let side = |s: engine::Side| {
        if s == engine::Side::Buy {
            matchcore::Side::Buy
        } else {
            matchcore::Side::Sell
        }
    };
    for op in ops {
        match *op {
            Op::New {
                id,
                sym,
                side: s,
                ticks,
                qty,
                kind,
                ..
            } => {
                let m = meta(sym);
                ids.insert(id, m.sequence_number.0);
                let order = match kind {
                    Kind::Market => {
                        NewOrder::Market(MarketOrder::new(Quantity(qty), side(s), false))
                    }
                    Kind::Passive | Kind::Ioc => NewOrder::Limit(LimitOrder::new(
                        Price(price(w, sym, ticks) as u64),
                        QuantityPolicy::Standard {
                            quantity: Quantity(qty),
                        },
                        OrderFlags::new(
                            side(s),
                            false,
                            if kind == Kind::Ioc {
                                TimeInForce::Ioc
                            } else {
                                TimeInForce::Gtc
                            },
                        ),
                    )),
                };
                out.push((
                    sym,
                    Command {
                        meta: m,
                        kind: CommandKind::Submit(SubmitCmd { order }),
                    },
                ));
            }
            Op::Cancel { id, sym } => {
                let m = meta(sym);
                let order_id = matchcore::OrderId(ids[&id]);
                out.push((
                    sym,
                    Command {
                        meta: m,
                        kind: CommandKind::Cancel(CancelCmd {
                            order_id,
                            order_kind: OrderKind::Limit,
                        }),
                    },
                ));
            }
            Op::Replace {
                id,
                sym,
                ticks,
                qty,
                ..
            } => {
                let m = meta(sym);
                let order_id = matchcore::OrderId(ids[&id]);
                let patch = LimitOrderPatch::new()
                    .with_price(Price(price(w, sym, ticks) as u64))
                    .with_quantity_policy(QuantityPolicy::Standard {
                        quantity: Quantity(qty),
                    });
                out.push((
                    sym,
                    Command {
                        meta: m,
                        kind: CommandKind::Amend(AmendCmd {
                            order_id,
                            patch: AmendPatch::Limit(patch),
                        }),
                    },
                ));
            }
        }
    }
    out
}

/// A setting from the environment, or its default.
fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench_matching(c: &mut Criterion) {
    let mut cfg = EngineConfig::default_universe();
    let symbols = knob("MATCHING_SYMBOLS", cfg.instruments.len());
    cfg.instruments.truncate(symbols.max(1));
    let expected = cfg.limits.expected_orders_per_day as usize;
    cfg.limits.expected_orders_per_day =
        u32::try_from(knob("MATCHING_EXPECTED_ORDERS", expected)).unwrap_or(u32::MAX);
    let len = knob("MATCHING_COMMANDS", 1_000_000);
    let w = workload(&cfg, len, knob("MATCHING_PRELOAD", PRELOAD_PER_SYMBOL));

    // Ours: preload once, then clone the loaded engine for every measured run.
    let mut current = std::collections::HashMap::new();
    let preload = our_commands(&w, &w.preload, &mut current);
    let stream = our_commands(&w, &w.stream, &mut current);
    let mut loaded = funded_engine(&cfg);
    let mut out = Vec::new();
    for cmd in &preload {
        loaded.apply(cmd, &mut out);
    }
    assert!(
        out.iter().all(|e| !matches!(e, Event::Rejected(_))),
        "the preload must be accepted"
    );
    {
        let mut e = loaded.clone();
        let mut out = Vec::new();
        let count = |out: &[Event], f: fn(&Event) -> bool| out.iter().filter(|e| f(e)).count();
        let (mut rejects, mut cancel_rejects, mut trades) = (0, 0, 0);
        for cmd in &stream {
            out.clear();
            e.apply(cmd, &mut out);
            rejects += count(&out, |e| matches!(e, Event::Rejected(_)));
            cancel_rejects += count(&out, |e| matches!(e, Event::CancelRejected(_)));
            trades += count(&out, |e| matches!(e, Event::Trade(_)));
        }
        // Cancels and replaces of orders the aggressive flow already filled are refused; they
        // must stay the exception, or the stream measures rejects instead of book work.
        assert!(rejects * 100 < stream.len(), "{rejects} rejects");
        assert!(
            cancel_rejects * 10 < stream.len(),
            "{cancel_rejects} cancel rejects"
        );
        println!(
            "workload: {} commands, {trades} trades, {rejects} rejects, {cancel_rejects} cancel rejects, \
             {} orders resting at the end ({} per symbol)",
            stream.len(),
            e.live_orders(),
            e.live_orders() as usize / cfg.instruments.len()
        );
    }

    let mut lobster_preload = Vec::new();
    lobster_ops(&w, &w.preload, &mut lobster_preload);
    let mut lobster_stream = Vec::new();
    lobster_ops(&w, &w.stream, &mut lobster_stream);
    // lobster books cannot be cloned: each run rebuilds them from the preload (not timed).
    let lobster_loaded = || {
        let mut books: Vec<lobster::OrderBook> = (0..cfg.instruments.len())
            .map(|_| lobster::OrderBook::new(16_384, 16, false))
            .collect();
        for (s, op) in &lobster_preload {
            books[*s as usize].execute(*op);
        }
        books
    };

    let mut seqs = vec![0u64; cfg.instruments.len()];
    let mut ids = std::collections::HashMap::new();
    let mc_preload = matchcore_ops(&w, &w.preload, &mut seqs, &mut ids);
    let mc_stream = matchcore_ops(&w, &w.stream, &mut seqs, &mut ids);
    let mut mc_books: Vec<matchcore::OrderBook> = cfg
        .instruments
        .iter()
        .map(|i| matchcore::OrderBook::new(&i.symbol))
        .collect();
    for (s, cmd) in &mc_preload {
        let outcome = mc_books[*s as usize].execute(cmd);
        assert!(matches!(outcome, matchcore::CommandOutcome::Applied(_)));
    }

    let mut group = c.benchmark_group("matching");
    group.sample_size(10);
    group.throughput(Throughput::Elements(len as u64));
    group.bench_function("ours", |b| {
        b.iter_batched(
            || (loaded.clone(), Vec::with_capacity(1024)),
            |(mut e, mut out)| {
                // Batches as the sequencer hands them over.
                for batch in stream.chunks(64) {
                    out.clear();
                    e.apply_batch(batch, &mut out);
                    black_box(&out);
                }
                e
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("ours-unbatched", |b| {
        b.iter_batched(
            || (loaded.clone(), Vec::with_capacity(1024)),
            |(mut e, mut out)| {
                for batch in stream.chunks(64) {
                    out.clear();
                    for c in batch {
                        e.apply(c, &mut out);
                    }
                    black_box(&out);
                }
                e
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("lobster", |b| {
        b.iter_batched(
            lobster_loaded,
            |mut books| {
                for (s, op) in &lobster_stream {
                    black_box(books[*s as usize].execute(*op));
                }
                books
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("matchcore", |b| {
        b.iter_batched(
            || mc_books.clone(),
            |mut books| {
                for (s, cmd) in &mc_stream {
                    black_box(books[*s as usize].execute(cmd));
                }
                books
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_matching);
criterion_main!(benches);
