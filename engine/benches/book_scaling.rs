//! Cost per operation as the book grows from a thousand to a million resting orders.
//!
//! One instrument with a wide band holds N resting orders spread over 2,000 price levels per
//! side. Each measured iteration is a pair of commands that leaves the book as it was:
//! - `add_cancel`: a passive order joins a random level and is cancelled by order id;
//! - `cancel_add`: a random resting order (anywhere in the book) is cancelled and replaced by a
//!   new one at the same price, so the touched memory is spread over the whole book;
//! - `execute`: an IOC order trades one share against the best offer and the share is offered
//!   again.
//!
//! Algorithmic cost is flat: no step walks the book. What still grows with N is the working set
//! (a random order of a million is rarely in cache), which `cancel_add` shows.
//!
//! `cargo bench -p engine --bench book_scaling`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use engine::command::{Asset, CancelOrder, Command, NewOrder, OpenTrading, Transfer};
use engine::{
    AccountId, ClOrdId, Engine, EngineConfig, OrdType, OrderId, SessionId, Side, SymbolId,
    TimeInForce,
};

const ACCOUNTS: u32 = 1_000;
const LEVELS: i64 = 2_000;

fn config() -> EngineConfig {
    EngineConfig::from_toml(
        "[limits]\nmax_open_orders_per_account = 100000000\nmax_resting_orders = 4000000\nmax_accounts = 1000\n\
         expected_orders_per_day = 8000000\nself_trade_prevention = \"cancel-resting\"\n\
         [defaults]\ntick_size = \"0.01\"\nlot_size = 1\nband_percent = \"50\"\ncollar_percent = \"5\"\n\
         daily_limit = 100000000000\nmax_order_qty = 1000000\nmax_notional = \"100000000\"\n\
         [[instruments]]\nsymbol = \"BIG\"\nreference_price = \"100.00\"\n",
    )
    .unwrap()
}

struct Driver {
    engine: Engine,
    out: Vec<Event>,
    next_cl: u64,
    rng: u64,
}

use engine::Event;

impl Driver {
    fn rand(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    fn cl(&mut self) -> ClOrdId {
        self.next_cl += 1;
        ClOrdId::new(&self.next_cl.to_string()).unwrap()
    }

    /// Sends a one-share order; returns its order id if it was accepted, and its account.
    fn place(&mut self, side: Side, price: i64, tif: TimeInForce) -> (Option<OrderId>, AccountId) {
        let account = AccountId(self.rand(ACCOUNTS.into()) as u32);
        let cmd = Command::NewOrder(NewOrder {
            session: SessionId(account.0),
            account,
            cl_ord_id: self.cl(),
            symbol: SymbolId(0),
            side,
            ord_type: OrdType::Limit,
            tif,
            price,
            qty: 1,
        });
        self.run(black_box(&cmd));
        let id = match self.out.first() {
            Some(Event::Accepted(a)) => Some(a.order.order_id),
            _ => None,
        };
        (id, account)
    }

    fn passive(&mut self) -> (Option<OrderId>, AccountId) {
        let lvl = 1 + self.rand(LEVELS as u64) as i64;
        if self.rand(2) == 0 {
            self.place(Side::Buy, 1_000_000 - lvl * 100, TimeInForce::Day)
        } else {
            self.place(Side::Sell, 1_000_000 + lvl * 100, TimeInForce::Day)
        }
    }

    fn cancel(&mut self, id: OrderId, account: AccountId) {
        let cmd = Command::Cancel(CancelOrder {
            session: SessionId(account.0),
            account,
            cl_ord_id: self.cl(),
            orig_cl_ord_id: ClOrdId::EMPTY,
            order_id: id,
            symbol: SymbolId(0),
            side: Side::Buy,
        });
        self.run(black_box(&cmd));
    }

    fn run(&mut self, c: &Command) {
        self.out.clear();
        self.engine.apply(c, &mut self.out);
    }
}

fn driver(resting: usize) -> (Driver, Vec<(OrderId, AccountId)>) {
    let mut d = Driver {
        engine: Engine::new(config()),
        out: Vec::new(),
        next_cl: 0,
        rng: 0x2545_f491_4f6c_dd1d,
    };
    d.run(&Command::OpenTrading(OpenTrading { trading_day: 1 }));
    for a in 0..ACCOUNTS {
        let account = AccountId(a);
        d.run(&Command::Deposit(Transfer {
            account,
            asset: Asset::Cash,
            amount: i64::MAX / 2,
        }));
        d.run(&Command::Deposit(Transfer {
            account,
            asset: Asset::Shares(SymbolId(0)),
            amount: 1 << 40,
        }));
    }
    let mut live = Vec::with_capacity(resting);
    for _ in 0..resting {
        let (id, account) = d.passive();
        live.push((id.expect("the preload is accepted"), account));
    }
    assert_eq!(d.engine.live_orders() as usize, resting);
    (d, live)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("book_scaling");
    group.sample_size(20);
    group.throughput(Throughput::Elements(2));
    for n in [1_000usize, 10_000, 100_000, 1_000_000] {
        let (mut d, mut live) = driver(n);
        group.bench_with_input(BenchmarkId::new("add_cancel", n), &n, |b, _| {
            b.iter(|| {
                let (id, account) = d.passive();
                d.cancel(id.unwrap(), account);
            })
        });
        group.bench_with_input(BenchmarkId::new("cancel_add", n), &n, |b, _| {
            b.iter(|| {
                let i = d.rand(live.len() as u64) as usize;
                let (id, account) = live[i];
                let info = d.engine.order(id).expect("tracked orders are live");
                d.cancel(id, account);
                let (new_id, account) = d.place(info.side, info.price, TimeInForce::Day);
                live[i] = (new_id.unwrap(), account);
            })
        });
        group.bench_with_input(BenchmarkId::new("execute", n), &n, |b, _| {
            b.iter(|| {
                let best = d.engine.best_ask(SymbolId(0)).unwrap();
                d.place(Side::Buy, best, TimeInForce::Ioc);
                d.place(Side::Sell, best, TimeInForce::Day);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
