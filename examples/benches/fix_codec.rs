//! Parsing a NewOrderSingle and encoding an ExecutionReport: the gateway's codec against
//! QuickFIX C++ (through quickfix-rs), side by side in one run.
//!
//! `cargo bench -p exchange-examples --bench fix_codec`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::codec::{Encoder, Message};
use quickfix::{FieldMap, Message as QfMessage};

const NOS: &str = "8=FIX.4.4\x019=148\x0135=D\x0134=1080\x0149=CLIENT12\x0152=20261123-14:30:00.123\x0156=EXCH\x011=ACC1\x0111=ORD-20261123-000042\x0121=1\x0138=2700\x0140=2\x0144=100.11\x0154=1\x0155=AAPL\x0159=0\x0160=20261123-14:30:00.120\x0110=085\x01";

fn with_checksum(s: &str) -> String {
    // Recompute BodyLength and CheckSum so the sample is exact whatever its fields.
    let body_start = s.find("\x0135=").unwrap() + 1;
    let body_end = s.find("\x0110=").unwrap() + 1;
    let body = &s[body_start..body_end];
    let head = format!("8=FIX.4.4\x019={}\x01{}", body.len(), body);
    let sum: u32 = head.bytes().map(u32::from).sum::<u32>() % 256;
    format!("{head}10={sum:03}\x01")
}

fn bench(c: &mut Criterion) {
    let nos = with_checksum(NOS);
    assert!(Message::parse(nos.as_bytes()).is_ok());
    let mut g = c.benchmark_group("parse_new_order_single");
    g.bench_function("ours", |b| {
        let mut fields = Vec::with_capacity(32);
        b.iter(|| {
            gateway::codec::parse(black_box(nos.as_bytes()), &mut fields).unwrap();
            black_box(fields.len())
        })
    });
    g.bench_function("quickfix", |b| {
        b.iter(|| black_box(QfMessage::try_from_text(black_box(&nos)).unwrap()))
    });
    g.finish();

    let er: [(i32, &str); 18] = [
        (37, "1844674407"),
        (11, "ORD-20261123-000042"),
        (17, "98765"),
        (150, "F"),
        (39, "1"),
        (1, "ACC1"),
        (55, "AAPL"),
        (54, "1"),
        (38, "2700"),
        (40, "2"),
        (44, "100.11"),
        (32, "1800"),
        (31, "100.1"),
        (151, "900"),
        (14, "1800"),
        (6, "100.1"),
        (60, "20261123-14:30:00.121"),
        (880, "5521"),
    ];
    let mut g = c.benchmark_group("encode_execution_report");
    g.bench_function("ours", |b| {
        let mut e = Encoder::new();
        b.iter(|| {
            e.start(b"8")
                .uint(34, 2211)
                .str(49, "EXCH")
                .str(52, "20261123-14:30:00.122")
                .str(56, "CLIENT12");
            for (t, v) in &er {
                e.str(*t, v);
            }
            black_box(e.finish(b"FIX.4.4").len())
        })
    });
    g.bench_function("quickfix", |b| {
        b.iter(|| {
            let mut m = QfMessage::new();
            m.with_header_mut(|h| {
                h.set_field(8, "FIX.4.4").unwrap();
                h.set_field(35, "8").unwrap();
                h.set_field(34, "2211").unwrap();
                h.set_field(49, "EXCH").unwrap();
                h.set_field(52, "20261123-14:30:00.122").unwrap();
                h.set_field(56, "CLIENT12").unwrap();
            });
            for (t, v) in &er {
                m.set_field(*t, *v).unwrap();
            }
            black_box(m.to_fix_string().unwrap().len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
