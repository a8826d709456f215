//! Fuzzes the session state machine: after a valid Logon, the input is cut into messages fed
//! to the session with advancing time and timer ticks. Nothing may panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use gateway::codec::{Encoder, Framing, Message, frame};
use gateway::dictionary::Dictionary;
use gateway::session::{AppReject, Application, Dictionaries, Outgoing, Session, SessionKey, SessionSettings};
use gateway::store::MemoryStore;
use libfuzzer_sys::fuzz_target;

struct Echo;
impl Application for Echo {
    fn on_app_message(&mut self, _: &SessionKey, m: &Message<'_>, reply: &mut Vec<Outgoing>) -> Result<(), AppReject> {
        if m.msg_type() == b"D" {
            reply.push(Outgoing::new(b"8", vec![(37, b"1".to_vec())]));
            Ok(())
        } else {
            Err(AppReject::UnsupportedMessageType)
        }
    }
}

fn dicts() -> Arc<Dictionaries> {
    static D: OnceLock<Arc<Dictionaries>> = OnceLock::new();
    D.get_or_init(|| {
        let d = Dictionary::parse(include_str!("../../../fix-specs/FIX44.xml")).expect("dictionary");
        Arc::new(Dictionaries { session: d.clone(), app: d })
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let key = SessionKey { begin_string: "FIX.4.4".into(), sender_comp_id: "EXCH".into(), target_comp_id: "C".into() };
    let mut settings = SessionSettings::new(key);
    settings.check_latency = false;
    let mut s = Session::new(Arc::new(settings), dicts(), Box::new(MemoryStore::default()));
    s.on_connect(0);
    let mut e = Encoder::new();
    e.start(b"A").uint(34, 1).str(49, "C").str(52, "20261123-00:00:00").str(56, "EXCH").str(98, "0").str(108, "5");
    s.on_message(0, e.finish(b"FIX.4.4"), &mut Echo);
    let mut now = 0;
    let mut buf = data;
    while !buf.is_empty() {
        now += 700;
        match frame(buf, 1 << 16) {
            Framing::Frame(r) => {
                s.on_message(now, &buf[r.clone()], &mut Echo);
                buf = &buf[r.end..];
            }
            Framing::NeedMore { .. } => break,
            Framing::Garbled { discard } => buf = &buf[discard.max(1)..],
        }
        s.on_timer(now);
        while s.poll().is_some() {}
    }
});
