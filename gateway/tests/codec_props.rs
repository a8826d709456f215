//! Property tests of the codec: encoding a parsed message reproduces it, framing finds every
//! message in any split of a stream, and no input makes the parser or the session panic.

use std::sync::Arc;

use gateway::codec::{Encoder, Framing, Message, frame};
use gateway::dictionary::Dictionary;
use gateway::session::{
    AppReject, Application, Dictionaries, Outgoing, Session, SessionKey, SessionSettings,
};
use gateway::store::MemoryStore;
use proptest::prelude::*;

fn value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff], 1..12)
}

fn fields() -> impl Strategy<Value = Vec<(i32, Vec<u8>)>> {
    // Tags that are neither framing tags nor data-length tags.
    let tag = (11i32..5000).prop_filter("plain tags", |t| {
        ![89, 90, 91, 93, 95, 96].contains(t)
            && !(212..=213).contains(t)
            && !(348..=365).contains(t)
    });
    proptest::collection::vec((tag, value()), 0..20)
}

fn encode(msg_type: &[u8], fs: &[(i32, Vec<u8>)]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.start(msg_type);
    for (t, v) in fs {
        e.field(*t, v);
    }
    e.finish(b"FIX.4.4").to_vec()
}

proptest! {
    #[test]
    fn encode_parse_encode_is_identity(mt in prop_oneof![Just(b"D".to_vec()), Just(b"8".to_vec()), Just(b"AE".to_vec())], fs in fields()) {
        let raw = encode(&mt, &fs);
        let m = Message::parse(&raw).unwrap();
        prop_assert_eq!(m.msg_type(), &mt[..]);
        let body: Vec<(i32, Vec<u8>)> = m.fields[3..m.fields.len() - 1].iter().map(|f| (f.tag, f.value.to_vec())).collect();
        prop_assert_eq!(&body, &fs);
        prop_assert_eq!(encode(m.msg_type(), &body), raw);
    }

    #[test]
    fn framing_finds_messages_across_any_split(fs1 in fields(), fs2 in fields(), cut in 0usize..400) {
        let a = encode(b"D", &fs1);
        let b = encode(b"8", &fs2);
        let mut stream = a.clone();
        stream.extend_from_slice(&b);
        let cut = cut.min(stream.len());
        let mut buf = stream[..cut].to_vec();
        let mut found = Vec::new();
        let mut rest = &stream[cut..];
        loop {
            match frame(&buf, 1 << 16) {
                Framing::Frame(r) => {
                    found.push(buf[r.clone()].to_vec());
                    buf.drain(..r.end);
                }
                Framing::NeedMore { discard } => {
                    buf.drain(..discard);
                    if rest.is_empty() { break; }
                    buf.extend_from_slice(rest);
                    rest = &[];
                }
                Framing::Garbled { .. } => prop_assert!(false, "a well-formed stream is never garbled"),
            }
        }
        prop_assert_eq!(found, vec![a, b]);
    }

    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = frame(&bytes, 1 << 16);
        let _ = Message::parse(&bytes);
    }
}

struct Echo;
impl Application for Echo {
    fn on_app_message(
        &mut self,
        _: &SessionKey,
        _: &Message<'_>,
        _: &mut Vec<Outgoing>,
    ) -> Result<(), AppReject> {
        Err(AppReject::UnsupportedMessageType)
    }
}

fn session() -> Session {
    let d = Dictionary::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fix-specs/FIX44.xml"),
    )
    .unwrap();
    let key = SessionKey {
        begin_string: "FIX.4.4".into(),
        sender_comp_id: "EXCH".into(),
        target_comp_id: "C".into(),
    };
    let mut s = SessionSettings::new(key);
    s.check_latency = false;
    Session::new(
        Arc::new(s),
        Arc::new(Dictionaries {
            session: d.clone(),
            app: d,
        }),
        Box::new(MemoryStore::default()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random messages (well-formed frames with random fields, and raw noise) after a valid
    /// Logon: the session answers with messages and disconnects, and never panics.
    #[test]
    fn session_never_panics(msgs in proptest::collection::vec((prop_oneof![Just(b"0".to_vec()), Just(b"1".to_vec()), Just(b"2".to_vec()), Just(b"4".to_vec()), Just(b"5".to_vec()), Just(b"D".to_vec()), Just(b"A".to_vec()), Just(b"Z".to_vec())], fields(), any::<bool>()), 0..20)) {
        let mut s = session();
        s.on_connect(0);
        let mut e = Encoder::new();
        e.start(b"A").uint(34, 1).str(49, "C").str(52, "20261123-00:00:00").str(56, "EXCH").str(98, "0").str(108, "30");
        s.on_message(0, e.finish(b"FIX.4.4"), &mut Echo);
        for (i, (mt, fs, noise)) in msgs.iter().enumerate() {
            let mut e = Encoder::new();
            e.start(mt).uint(34, i as u64 + 2).str(49, "C").str(52, "20261123-00:00:00").str(56, "EXCH");
            for (t, v) in fs { e.field(*t, v); }
            let mut raw = e.finish(b"FIX.4.4").to_vec();
            if *noise && raw.len() > 20 { raw[15] ^= 0x55; }
            s.on_message(1000 * i as i64, &raw, &mut Echo);
            s.on_timer(1000 * i as i64);
            while s.poll().is_some() {}
        }
    }
}
