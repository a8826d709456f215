//! A client that rebuilds the book from a snapshot followed by every incremental update holds
//! exactly the engine's book after every command, for random order flow: aggregated at full
//! depth, at limited depths, and order by order; subscriptions start at random moments, two to
//! a view.

use engine::command::{
    Asset, CancelOrder, CloseTrading, Command, NewOrder, OpenTrading, ReplaceOrder, Transfer,
};
use engine::{
    AccountId, ClOrdId, Engine, EngineConfig, OrdType, OrderId, Qty, SessionId, Side, SymbolId,
    TimeInForce,
};
use marketdata::feed::SubscriberId;
use marketdata::{Feed, FeedConfig, Out, Replica, Request, RequestKind};
use proptest::prelude::*;

const SYMBOLS: [u16; 2] = [0, 1];

fn cl(n: u16) -> ClOrdId {
    ClOrdId::new(&format!("C{n}")).unwrap()
}

fn arb_command() -> impl Strategy<Value = Command> {
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let tif = prop_oneof![
        5 => Just(TimeInForce::Day),
        2 => Just(TimeInForce::Gtc),
        1 => Just(TimeInForce::Ioc),
        1 => Just(TimeInForce::Fok)
    ];
    let new_order = (
        0u32..4,
        0u16..300,
        prop::sample::select(SYMBOLS.to_vec()),
        side.clone(),
        0u8..10,
        tif,
        -8i64..8,
        1u64..40,
    )
        .prop_map(|(a, c, s, side, kind, tif, t, q)| {
            Command::NewOrder(NewOrder {
                session: SessionId(a),
                account: AccountId(a),
                cl_ord_id: cl(c),
                symbol: SymbolId(s),
                side,
                ord_type: if kind == 0 {
                    OrdType::Market
                } else {
                    OrdType::Limit
                },
                tif,
                price: t,
                qty: q * 10,
            })
        });
    let cancel = (
        0u32..4,
        0u16..300,
        0u16..300,
        prop::sample::select(SYMBOLS.to_vec()),
        side.clone(),
    )
        .prop_map(|(a, c, o, s, side)| {
            Command::Cancel(CancelOrder {
                session: SessionId(a),
                account: AccountId(a),
                cl_ord_id: cl(c),
                orig_cl_ord_id: cl(o),
                order_id: OrderId(0),
                symbol: SymbolId(s),
                side,
            })
        });
    let replace = (
        0u32..4,
        0u16..300,
        0u16..300,
        prop::sample::select(SYMBOLS.to_vec()),
        side,
        -8i64..8,
        1u64..40,
    )
        .prop_map(|(a, c, o, s, side, t, q)| {
            Command::Replace(ReplaceOrder {
                session: SessionId(a),
                account: AccountId(a),
                cl_ord_id: cl(c),
                orig_cl_ord_id: cl(o),
                order_id: OrderId(0),
                symbol: SymbolId(s),
                side,
                price: t,
                qty: q * 10,
            })
        });
    prop_oneof![
        14 => new_order,
        3 => cancel,
        3 => replace,
        1 => Just(Command::CloseTrading(CloseTrading {})),
        1 => (2u32..4).prop_map(|d| Command::OpenTrading(OpenTrading { trading_day: d })),
    ]
}

/// Prices are generated as tick offsets from the reference price.
fn priced(cfg: &EngineConfig, c: &Command) -> Command {
    let price = |s: SymbolId, t: i64| {
        let i = &cfg.instruments[usize::from(s.0)];
        i.reference_price + t * i.tick
    };
    match *c {
        Command::NewOrder(mut o) => {
            o.price = price(o.symbol, o.price);
            Command::NewOrder(o)
        }
        Command::Replace(mut r) => {
            r.price = price(r.symbol, r.price);
            Command::Replace(r)
        }
        other => other,
    }
}

/// Trading open, four accounts with ample cash and shares.
fn setup() -> Vec<Command> {
    let mut setup = vec![Command::OpenTrading(OpenTrading { trading_day: 1 })];
    for a in 0..4 {
        setup.push(Command::Deposit(Transfer {
            account: AccountId(a),
            asset: Asset::Cash,
            amount: 1 << 50,
        }));
        for s in SYMBOLS {
            setup.push(Command::Deposit(Transfer {
                account: AccountId(a),
                asset: Asset::Shares(SymbolId(s)),
                amount: 1 << 30,
            }));
        }
    }
    setup
}

struct Client {
    id: SubscriberId,
    depth: u32,
    aggregated: bool,
    replicas: Vec<Replica>,
}

impl Client {
    fn take(&mut self, out: &[Out]) -> Result<(), TestCaseError> {
        for o in out {
            match o {
                Out::Snapshot {
                    subscriber,
                    symbol,
                    rpt_seq,
                    entries,
                    ..
                } if *subscriber == self.id => {
                    self.replicas[usize::from(symbol.0)].snapshot(*rpt_seq, entries)
                }
                Out::Incremental { subscriber, .. } if *subscriber == self.id => {
                    for e in o.entries() {
                        self.replicas[usize::from(e.symbol.0)]
                            .update(e)
                            .map_err(|g| TestCaseError::fail(format!("gap {g:?}")))?;
                    }
                }
                Out::Reject { subscriber, .. } if *subscriber == self.id => {
                    return Err(TestCaseError::fail(format!("rejected: {o:?}")));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check(&self, engine: &Engine) -> Result<(), TestCaseError> {
        for s in SYMBOLS {
            let r = &self.replicas[usize::from(s)];
            for side in [Side::Buy, Side::Sell] {
                if self.aggregated {
                    let mut want: Vec<(i64, Qty, u32)> = engine
                        .depth(SymbolId(s), side)
                        .map(|l| (l.price, l.qty, l.orders))
                        .collect();
                    if self.depth > 0 {
                        want.truncate(self.depth as usize);
                    }
                    prop_assert_eq!(r.levels(side), want, "depth {} {:?}", self.depth, side);
                } else {
                    let want: Vec<_> = engine
                        .orders_in_book(SymbolId(s), side)
                        .iter()
                        .map(|o| (o.order_id, o.price, o.qty - o.cum_qty))
                        .collect();
                    prop_assert_eq!(r.book_orders(side), want, "orders {:?}", side);
                }
            }
        }
        Ok(())
    }
}

fn run(cmds: &[Command], joins: &[usize]) -> Result<(), TestCaseError> {
    let cfg = EngineConfig::default_universe();
    let mut engine = Engine::new(cfg.clone());
    let names = cfg.instruments.iter().map(|i| i.symbol.clone()).collect();
    let mut feed = Feed::new(names, FeedConfig::default());
    let mut events = Vec::new();
    let mut out = Vec::new();
    let setup = setup();
    // Two clients of each view, joining at different moments: a view's updates and RptSeq
    // are shared by its subscribers, so the later one must fit in where the first one is.
    let views = [(0, true), (1, true), (3, true), (0, false)];
    let mut clients: Vec<Client> = views
        .iter()
        .chain(views.iter())
        .enumerate()
        .map(|(i, &(depth, aggregated))| Client {
            id: i as SubscriberId,
            depth,
            aggregated,
            replicas: vec![Replica::default(); cfg.instruments.len()],
        })
        .collect();
    let mut joined = vec![false; clients.len()];
    let mut seq = 0u64;
    let all = setup
        .iter()
        .cloned()
        .chain(cmds.iter().map(|c| priced(&cfg, c)));
    for (i, cmd) in all.enumerate() {
        seq += 1;
        events.clear();
        engine.apply(&cmd, &mut events);
        for e in &events {
            feed.apply(seq, seq as i64 * 1_000_000_000, e);
        }
        out.clear();
        feed.flush(&mut |_| true, &mut out);
        for (c, j) in clients.iter_mut().zip(joined.iter_mut()) {
            if *j {
                c.take(&out)?;
            } else if joins.get(c.id as usize).is_some_and(|&at| at <= i) {
                *j = true;
                let mut snap = Vec::new();
                feed.request(
                    c.id,
                    Request {
                        req_id: format!("R{}", c.id),
                        kind: RequestKind::Subscribe,
                        depth: c.depth,
                        aggregated: c.aggregated,
                        incremental: None,
                        entry_types: b"01".to_vec(),
                        symbols: SYMBOLS
                            .iter()
                            .map(|s| cfg.instruments[usize::from(*s)].symbol.clone())
                            .collect(),
                    },
                    &mut snap,
                );
                c.take(&snap)?;
            }
            if *j {
                c.check(&engine)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn rebuilt_books_equal_the_engines(
        cmds in proptest::collection::vec(arb_command(), 1..200),
        joins in proptest::collection::vec(0usize..120, 8),
    ) {
        run(&cmds, &joins)?;
    }
}

/// Runs the commands through an engine and a feed, restores a second feed from the first's
/// snapshot after `cut` commands, and feeds both the rest.
fn restore_at(cmds: &[Command], cut: usize) -> Result<(), TestCaseError> {
    let cfg = EngineConfig::default_universe();
    let mut engine = Engine::new(cfg.clone());
    let names: Vec<String> = cfg.instruments.iter().map(|i| i.symbol.clone()).collect();
    // Small rings, so that restoring also covers full rings.
    let config = FeedConfig {
        rings: marketdata::candles::RingSizes {
            capacity: [3, 2, 2, 2],
        },
        last_trades: 4,
        ..FeedConfig::default()
    };
    let mut feed = Feed::new(names.clone(), config.clone());
    let mut restored: Option<Feed> = None;
    let mut events = Vec::new();
    let setup = setup();
    let all: Vec<Command> = setup
        .iter()
        .cloned()
        .chain(cmds.iter().map(|c| priced(&cfg, c)))
        .collect();
    let cut = setup.len() + cut;
    for (i, cmd) in all.iter().enumerate() {
        if i == cut {
            let bytes = feed.save();
            let f = Feed::load(names.clone(), config.clone(), &bytes)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            restored = Some(f);
        }
        let seq = i as u64 + 1;
        events.clear();
        engine.apply(cmd, &mut events);
        // 40 s a command: candles of every resolution open and roll over.
        let time = seq as i64 * 40_000_000_000;
        for e in &events {
            feed.apply(seq, time, e);
            if let Some(r) = restored.as_mut() {
                r.apply(seq, time, e);
            }
        }
    }
    let Some(mut r) = restored else {
        return Ok(());
    };
    prop_assert_eq!(r.save(), feed.save());
    for s in SYMBOLS {
        let id = SymbolId(s);
        prop_assert_eq!(r.trades(id), feed.trades(id));
        prop_assert_eq!(r.stats(id), feed.stats(id));
        for res in marketdata::candles::Resolution::ALL {
            prop_assert_eq!(
                r.candles(id, res, 0, i64::MAX),
                feed.candles(id, res, 0, i64::MAX)
            );
        }
        for side in [Side::Buy, Side::Sell] {
            let book = r.book(id).unwrap();
            prop_assert_eq!(book.orders(side), feed.book(id).unwrap().orders(side));
            let levels: Vec<(i64, Qty)> = book.levels(side).map(|l| (l.price, l.qty)).collect();
            let want: Vec<(i64, Qty)> = engine.depth(id, side).map(|l| (l.price, l.qty)).collect();
            prop_assert_eq!(levels, want);
        }
    }
    prop_assert_eq!(r.trading_status(), feed.trading_status());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn a_feed_restored_from_its_snapshot_continues_like_the_original(
        cmds in proptest::collection::vec(arb_command(), 1..200),
        cut in any::<proptest::sample::Index>(),
    ) {
        let cut = cut.index(cmds.len() + 1);
        restore_at(&cmds, cut)?;
    }
}
