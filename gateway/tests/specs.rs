//! The exchange's own dictionaries in `fix-specs/` load and accept every message the exchange
//! exchanges, and refuse what it does not support.

use std::path::Path;

use gateway::codec::{Encoder, Message};
use gateway::dictionary::{Dictionary, Invalid, RejectReason, validate};

fn dict(name: &str) -> Dictionary {
    Dictionary::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fix-specs")
            .join(name),
    )
    .unwrap()
}

fn build(begin: &str, msg_type: &str, body: &[(i32, &str)]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.start(msg_type.as_bytes())
        .uint(34, 2)
        .str(49, "CLIENT")
        .str(52, "20261123-14:30:00.000")
        .str(56, "EXCH");
    for (t, v) in body {
        e.str(*t, v);
    }
    e.finish(begin.as_bytes()).to_vec()
}

const NOW: &str = "20261123-14:30:00.000";

fn samples() -> Vec<(&'static str, Vec<(i32, &'static str)>)> {
    vec![
        (
            "D",
            vec![
                (11, "c1"),
                (1, "ACC1"),
                (55, "AAPL"),
                (54, "1"),
                (60, NOW),
                (38, "100"),
                (40, "2"),
                (44, "190.25"),
                (59, "0"),
            ],
        ),
        (
            "F",
            vec![(41, "c1"), (11, "c2"), (55, "AAPL"), (54, "1"), (60, NOW)],
        ),
        (
            "G",
            vec![
                (41, "c2"),
                (11, "c3"),
                (55, "AAPL"),
                (54, "1"),
                (60, NOW),
                (38, "50"),
                (40, "2"),
                (44, "190.30"),
            ],
        ),
        (
            "8",
            vec![
                (37, "1"),
                (11, "c1"),
                (17, "E1"),
                (150, "F"),
                (39, "1"),
                (55, "AAPL"),
                (54, "1"),
                (38, "100"),
                (31, "190.25"),
                (32, "40"),
                (151, "60"),
                (14, "40"),
                (6, "190.25"),
                (60, NOW),
            ],
        ),
        (
            "9",
            vec![
                (37, "NONE"),
                (11, "c9"),
                (41, "c8"),
                (39, "8"),
                (434, "1"),
                (102, "1"),
                (58, "unknown order"),
            ],
        ),
        (
            "j",
            vec![(45, "3"), (372, "x"), (380, "3"), (58, "unsupported")],
        ),
        (
            "V",
            vec![
                (262, "r1"),
                (263, "1"),
                (264, "0"),
                (267, "2"),
                (269, "0"),
                (269, "1"),
                (146, "2"),
                (55, "AAPL"),
                (55, "MSFT"),
            ],
        ),
        (
            "W",
            vec![
                (262, "r1"),
                (55, "AAPL"),
                (83, "7"),
                (268, "2"),
                (269, "0"),
                (270, "190.20"),
                (271, "300"),
                (269, "1"),
                (270, "190.25"),
                (271, "100"),
            ],
        ),
        (
            "X",
            vec![
                (268, "2"),
                (279, "0"),
                (269, "0"),
                (55, "AAPL"),
                (83, "8"),
                (270, "190.21"),
                (271, "50"),
                (279, "2"),
                (269, "1"),
                (55, "AAPL"),
                (83, "9"),
                (270, "190.25"),
            ],
        ),
        ("Y", vec![(262, "r2"), (281, "0"), (58, "unknown symbol")]),
        ("x", vec![(320, "s1"), (559, "4")]),
        (
            "y",
            vec![
                (322, "r1"),
                (560, "0"),
                (146, "1"),
                (55, "AAPL"),
                (969, "0.01"),
                (561, "1"),
            ],
        ),
        ("g", vec![(335, "t1"), (263, "1")]),
        ("h", vec![(336, "REGULAR"), (340, "2")]),
    ]
}

#[test]
fn fix44_accepts_every_supported_message() {
    let d = dict("FIX44.xml");
    assert_eq!(d.version, "FIX.4.4");
    for (mt, body) in samples() {
        let raw = build("FIX.4.4", mt, &body);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(validate(&m, &d, &d), Ok(()), "{mt}");
    }
}

#[test]
fn fixt11_with_fix50sp2_accepts_every_supported_message() {
    let t = dict("FIXT11.xml");
    let a = dict("FIX50SP2.xml");
    assert_eq!(
        (t.version.as_str(), a.version.as_str()),
        ("FIXT.1.1", "FIX.5.0SP2")
    );
    for (mt, body) in samples() {
        let raw = build("FIXT.1.1", mt, &body);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(validate(&m, &t, &a), Ok(()), "{mt}");
    }
    let logon = build("FIXT.1.1", "A", &[(98, "0"), (108, "30"), (1137, "9")]);
    assert_eq!(validate(&Message::parse(&logon).unwrap(), &t, &t), Ok(()));
}

#[test]
fn unsupported_values_are_refused() {
    let d = dict("FIX44.xml");
    let cases = [
        // Stop orders are not supported.
        (
            "D",
            vec![
                (11, "c"),
                (55, "AAPL"),
                (54, "1"),
                (60, NOW),
                (38, "1"),
                (40, "3"),
            ],
            RejectReason::ValueIncorrect,
            40,
        ),
        // Short selling is not supported.
        (
            "D",
            vec![
                (11, "c"),
                (55, "AAPL"),
                (54, "5"),
                (60, NOW),
                (38, "1"),
                (40, "1"),
            ],
            RejectReason::ValueIncorrect,
            54,
        ),
        (
            "D",
            vec![(11, "c"), (55, "AAPL"), (54, "1"), (60, NOW), (40, "1")],
            RejectReason::RequiredTagMissing,
            38,
        ),
        (
            "D",
            vec![
                (11, "c"),
                (55, "AAPL"),
                (54, "1"),
                (60, NOW),
                (38, "1"),
                (40, "2"),
                (59, "6"),
            ],
            RejectReason::ValueIncorrect,
            59,
        ),
    ];
    for (mt, body, reason, tag) in cases {
        let raw = build("FIX.4.4", mt, &body);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(
            validate(&m, &d, &d),
            Err(Invalid {
                reason,
                tag: Some(tag)
            })
        );
    }
}
