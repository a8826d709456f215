//! Market-data publishing cost: sequenced events in, encoded MarketDataIncrementalRefresh (X)
//! messages out, for 10 and 1,000 subscribers to 20 symbols (top 10 levels and trades).

use std::hint::black_box;

mod common;

use common::{SYMBOLS, flow};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::codec::Encoder;
use gateway::exchange::market_data::Renderer;
use marketdata::{Feed, FeedConfig, Out, Request, RequestKind};

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
