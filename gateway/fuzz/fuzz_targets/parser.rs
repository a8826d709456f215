//! Fuzzes framing and parsing: any bytes, split at any point, must never panic, and every frame
//! that parses must re-encode to the same bytes.
#![no_main]

use gateway::codec::{Encoder, Framing, Message, frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    let mut guard = 0;
    while !buf.is_empty() && guard < 1000 {
        guard += 1;
        match frame(buf, 1 << 16) {
            Framing::Frame(r) => {
                let raw = &buf[r.clone()];
                if let Ok(m) = Message::parse(raw) {
                    let mut e = Encoder::new();
                    e.start(m.msg_type());
                    for f in &m.fields[3..m.fields.len() - 1] {
                        e.field(f.tag, f.value);
                    }
                    let out = e.finish(m.begin_string()).to_vec();
                    // FIX ints may carry leading zeros: a BodyLength of "08" is valid and is
                    // re-encoded as "8" (and the CheckSum follows); everything else must match.
                    if m.fields[1].value.starts_with(b"0") {
                        let again = Message::parse(&out).expect("re-encoded frame parses");
                        let body = |m: &Message<'_>| {
                            m.fields
                                .iter()
                                .filter(|f| f.tag != 9 && f.tag != 10)
                                .map(|f| (f.tag, f.value.to_vec()))
                                .collect::<Vec<_>>()
                        };
                        assert_eq!(body(&again), body(&m));
                    } else {
                        assert_eq!(out, raw);
                    }
                }
                buf = &buf[r.end..];
            }
            Framing::NeedMore { discard } => {
                if discard == 0 {
                    break;
                }
                buf = &buf[discard..];
            }
            Framing::Garbled { discard } => buf = &buf[discard.max(1)..],
        }
    }
});
