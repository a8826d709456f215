//! Report rendering cost: the engine's events in, ExecutionReports (and the flow's few other
//! answers) out, as the report thread renders them for every group commit.

mod common;

use std::hint::black_box;

use common::flow;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::reports::{Names, render};

fn bench(c: &mut Criterion) {
    let (cfg, groups) = flow(20_000);
    let events: usize = groups.iter().map(Vec::len).sum();
    let names = Names {
        accounts: (0..8).map(|a| format!("ACC{a}")).collect(),
        symbols: cfg.instruments.iter().map(|i| i.symbol.clone()).collect(),
    };
    let mut g = c.benchmark_group("reports");
    g.throughput(Throughput::Elements(events as u64));
    g.sample_size(20);
    g.bench_function("render", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            let mut reports = 0;
            for (seq, group) in groups.iter().enumerate() {
                out.clear();
                for e in group {
                    render(e, 1_700_000_000_000_000_000 + seq as i64, &names, &mut out);
                }
                reports += out.len();
            }
            black_box(reports)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
