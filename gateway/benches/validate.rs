//! Inbound validation cost: parsing a NewOrderSingle and checking it against the FIX.4.4 data
//! dictionary (field types, enumerations, required fields, fields per message type), as the
//! session layer does for every application message; and the same with the session's cache of
//! message shapes, which leaves only the values to check once a shape is known.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::codec::{Encoder, Message};
use gateway::dictionary::{Dictionary, ShapeCache, validate, validate_cached};

fn new_order_single() -> Vec<u8> {
    let mut e = Encoder::new();
    e.start(b"D")
        .str(49, "CLIENT1")
        .str(56, "EXCHANGE")
        .uint(34, 1234)
        .field(52, b"20261125-14:30:00.123")
        .str(11, "ORD-000123")
        .str(1, "DEMO1")
        .str(55, "AAPL")
        .str(54, "1")
        .field(60, b"20261125-14:30:00.123")
        .str(38, "100")
        .str(40, "2")
        .str(44, "190.25")
        .str(59, "0");
    e.finish(b"FIX.4.4").to_vec()
}

fn bench(c: &mut Criterion) {
    let d = Dictionary::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fix-specs/FIX44.xml"))
        .expect("dictionary");
    let raw = new_order_single();
    assert!(validate(&Message::parse(&raw).expect("parses"), &d, &d).is_ok());
    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Elements(1));
    g.bench_function("new_order_single/parse", |b| {
        b.iter(|| black_box(Message::parse(black_box(&raw)).is_ok()))
    });
    g.bench_function("new_order_single/parse_and_validate", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(&raw)).expect("parses");
            black_box(validate(&m, &d, &d).is_ok())
        })
    });
    // What a session does: its shape cache holds the order's shape after the first one.
    let mut shapes = ShapeCache::default();
    g.bench_function("new_order_single/parse_and_validate_cached", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(&raw)).expect("parses");
            black_box(validate_cached(&m, &d, &d, &mut shapes).is_ok())
        })
    });
    assert_eq!(shapes.len(), 1);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
