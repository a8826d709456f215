//! Cost of an order mass cancel in a full book.
//!
//! The default 100-symbol universe holds 300,000 resting orders from 1,000 sessions (3,000 per
//! symbol, about 300 per session, interleaved as the orders arrived). One measured iteration is
//! one session's mass cancel: of all its orders (`all`, about 300 cancelled) or of one
//! symbol's (`symbol`, about 3). The session's orders are placed again between iterations,
//! outside the timing, so every iteration finds the same book size. The engine thread does
//! nothing else meanwhile, so this is how long a kill switch holds up every other order.
//!
//! `cargo bench -p engine --bench mass_cancel`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use engine::command::{
    Asset, Command, MassCancelRequest, MassScope, NewOrder, OpenTrading, Transfer,
};
use engine::{
    AccountId, ClOrdId, Engine, EngineConfig, Event, OrdType, SessionId, Side, SymbolId,
    TimeInForce,
};

const SESSIONS: u32 = 1_000;
const PER_SYMBOL: u32 = 3_000;

struct Book {
    engine: Engine,
    symbols: u16,
    out: Vec<Event>,
    next_cl: u64,
    rng: u64,
}

impl Book {
    fn rand(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    fn run(&mut self, c: &Command) {
        self.out.clear();
        self.engine.apply(c, &mut self.out);
    }

    /// A passive one-share order of `session` in `symbol`, up to 20 ticks off its reference.
    fn place(&mut self, session: u32, symbol: u16) {
        self.next_cl += 1;
        let reference = self.engine.instruments()[usize::from(symbol)].reference_price;
        let tick = self.engine.instruments()[usize::from(symbol)].tick;
        let ticks = 1 + self.rand(20) as i64;
        let side = if self.rand(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let price = match side {
            Side::Buy => reference - ticks * tick,
            Side::Sell => reference + ticks * tick,
        };
        let cmd = Command::NewOrder(NewOrder {
            session: SessionId(session),
            account: AccountId(session),
            cl_ord_id: ClOrdId::new(&self.next_cl.to_string()).expect("short"),
            symbol: SymbolId(symbol),
            side,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price,
            qty: 1,
        });
        self.run(&cmd);
        assert!(
            matches!(self.out.first(), Some(Event::Accepted(_))),
            "{:?}",
            self.out
        );
    }

    fn mass_cancel(&mut self, session: u32, scope: MassScope, symbol: u16) -> u32 {
        // A request's ClOrdID is used once, like an order's.
        self.next_cl += 1;
        let cmd = Command::MassCancel(MassCancelRequest {
            session: SessionId(session),
            account: None,
            cl_ord_id: ClOrdId::new(&format!("k{}", self.next_cl)).expect("short"),
            scope,
            symbol: SymbolId(symbol),
            side: None,
            on_disconnect: false,
        });
        self.run(black_box(&cmd));
        match self.out.last() {
            Some(Event::MassCancel(m)) if m.reason.is_none() => m.canceled,
            other => panic!("{other:?}"),
        }
    }
}

fn loaded() -> Book {
    let cfg = EngineConfig::default_universe();
    let symbols = cfg.instruments.len() as u16;
    let mut b = Book {
        engine: Engine::new(cfg),
        symbols,
        out: Vec::new(),
        next_cl: 0,
        rng: 0x2545_f491_4f6c_dd1d,
    };
    b.run(&Command::OpenTrading(OpenTrading {
        trading_day: 20261126,
    }));
    for s in 0..SESSIONS {
        let account = AccountId(s);
        b.run(&Command::Deposit(Transfer {
            account,
            asset: Asset::Cash,
            amount: 1_000_000_000 * 10_000,
        }));
        for sym in 0..symbols {
            b.run(&Command::Deposit(Transfer {
                account,
                asset: Asset::Shares(SymbolId(sym)),
                amount: 1_000_000,
            }));
        }
    }
    for _ in 0..PER_SYMBOL {
        for sym in 0..symbols {
            let session = b.rand(u64::from(SESSIONS)) as u32;
            b.place(session, sym);
        }
    }
    b
}

fn bench(c: &mut Criterion) {
    let mut b = loaded();
    let mut g = c.benchmark_group("mass_cancel");
    g.sample_size(20);
    for (name, scope) in [("all", MassScope::All), ("symbol", MassScope::Symbol)] {
        let mut next = 0u32;
        g.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let session = next % SESSIONS;
                    let symbol = (next % u32::from(b.symbols)) as u16;
                    next += 1;
                    let started = Instant::now();
                    let n = b.mass_cancel(session, scope, symbol);
                    took += started.elapsed();
                    // The same number of orders back, at new places in the book.
                    for i in 0..n {
                        let sym = match scope {
                            MassScope::All => (i % u32::from(b.symbols)) as u16,
                            MassScope::Symbol => symbol,
                        };
                        b.place(session, sym);
                    }
                }
                took
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
