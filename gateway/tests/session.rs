//! Session-layer behaviour beyond the acceptance suite: credentials, HeartBtInt limits,
//! messages sent while the counterparty is offline, resend after a restart of the process
//! (file store), and the slow-consumer cut-off.

use std::path::Path;
use std::sync::Arc;

use gateway::auth::PasswordHash;
use gateway::codec::{Encoder, Message};
use gateway::dictionary::Dictionary;
use gateway::session::{
    AppReject, Application, Authenticator, Dictionaries, Outgoing, Output, Session, SessionKey,
    SessionSettings,
};
use gateway::store::{FileStore, MemoryStore, MessageStore};
use gateway::time::{Millis, format_utc_millis};

struct Null;
impl Application for Null {
    fn on_app_message(
        &mut self,
        _: &SessionKey,
        _: &Message<'_>,
        _: &mut Vec<Outgoing>,
    ) -> Result<(), AppReject> {
        Ok(())
    }
}

const T0: Millis = 1_795_000_000_000;

fn dicts() -> Arc<Dictionaries> {
    let d = Dictionary::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fix-specs/FIX44.xml"))
        .unwrap();
    Arc::new(Dictionaries {
        session: d.clone(),
        app: d,
    })
}

fn settings(f: impl FnOnce(&mut SessionSettings)) -> Arc<SessionSettings> {
    let key = SessionKey {
        begin_string: "FIX.4.4".into(),
        sender_comp_id: "EXCH".into(),
        target_comp_id: "CLIENT".into(),
    };
    let mut s = SessionSettings::new(key);
    f(&mut s);
    Arc::new(s)
}

fn msg(now: Millis, seq: u64, msg_type: &str, body: &[(i32, &str)]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.start(msg_type.as_bytes())
        .uint(34, seq)
        .str(49, "CLIENT")
        .field(52, &format_utc_millis(now))
        .str(56, "EXCH");
    for (t, v) in body {
        e.str(*t, v);
    }
    e.finish(b"FIX.4.4").to_vec()
}

/// Drains outputs: the messages sent (MsgType, MsgSeqNum, raw) and whether it disconnected.
fn drain(s: &mut Session) -> (Vec<(String, u64, Vec<u8>)>, bool) {
    let mut sent = Vec::new();
    let mut closed = false;
    while let Some(o) = s.poll() {
        match o {
            Output::Send(b) => {
                let m = Message::parse(&b).unwrap();
                sent.push((
                    String::from_utf8_lossy(m.msg_type()).into_owned(),
                    m.get_u64(34).unwrap(),
                    b.clone(),
                ));
            }
            Output::Disconnect => closed = true,
        }
    }
    (sent, closed)
}

fn types(sent: &[(String, u64, Vec<u8>)]) -> Vec<&str> {
    sent.iter().map(|(t, _, _)| t.as_str()).collect()
}

fn logon(
    s: &mut Session,
    now: Millis,
    seq: u64,
    extra: &[(i32, &str)],
) -> (Vec<(String, u64, Vec<u8>)>, bool) {
    s.on_connect(now);
    let mut body = vec![(98, "0"), (108, "30")];
    body.extend_from_slice(extra);
    s.on_message(now, &msg(now, seq, "A", &body), &mut Null);
    drain(s)
}

fn report(id: &str) -> Outgoing {
    Outgoing::new(
        b"8",
        vec![
            (37, b"1".to_vec()),
            (17, id.as_bytes().to_vec()),
            (150, b"0".to_vec()),
            (39, b"0".to_vec()),
            (55, b"AAPL".to_vec()),
            (54, b"1".to_vec()),
            (151, b"10".to_vec()),
            (14, b"0".to_vec()),
            (6, b"0".to_vec()),
        ],
    )
}

#[test]
fn credentials_are_checked() {
    let hash = PasswordHash::new("pw", b"salt", 10);
    let auth: Authenticator = Arc::new(move |u: &str, p: &str| u == "alice" && hash.verify(p));
    let st = settings(|s| s.authenticator = Some(auth));
    let mut s = Session::new(Arc::clone(&st), dicts(), Box::new(MemoryStore::default()));
    let (sent, closed) = logon(&mut s, T0, 1, &[(553, "alice"), (554, "wrong")]);
    assert_eq!(types(&sent), ["5"]);
    assert!(String::from_utf8_lossy(&sent[0].2).contains("Invalid username or password"));
    assert!(closed && !s.is_logged_on());
    s.on_disconnect(&mut Null);
    let (sent, closed) = logon(&mut s, T0, 1, &[(553, "alice"), (554, "pw")]);
    assert_eq!(types(&sent), ["A"]);
    assert!(!closed && s.is_logged_on());
}

#[test]
fn heartbeat_interval_outside_the_limits_is_refused() {
    let st = settings(|s| s.max_heartbeat_secs = 60);
    let mut s = Session::new(st, dicts(), Box::new(MemoryStore::default()));
    s.on_connect(T0);
    s.on_message(T0, &msg(T0, 1, "A", &[(98, "0"), (108, "61")]), &mut Null);
    let (sent, closed) = drain(&mut s);
    assert_eq!(types(&sent), ["5"]);
    assert!(closed);
}

/// An empty directory for a file store.
fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("session-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A session over a file store in `dir`.
fn file_session(st: &Arc<SessionSettings>, dir: &Path) -> Session {
    Session::new(
        Arc::clone(st),
        dicts(),
        Box::new(FileStore::open(dir, false).unwrap()),
    )
}

#[test]
fn a_message_reaches_the_store_before_it_leaves_and_saves_are_written_together() {
    let dir = fresh_dir("flush");
    let mut s = file_session(&settings(|_| {}), &dir);
    logon(&mut s, T0, 1, &[]);
    let log = || std::fs::metadata(dir.join("messages")).unwrap().len();
    let start = log();
    s.send_app(T0, &report("E1"));
    s.send_app(T0, &report("E2"));
    assert_eq!(log(), start, "saves wait for a flush");
    assert!(matches!(s.poll(), Some(Output::Send(_))));
    let both = log();
    assert!(both > start, "written before the first one left");
    assert!(matches!(s.poll(), Some(Output::Send(_))));
    assert_eq!(log(), both, "one write held both");
    // Offline: the report thread flushes what it saved; a kill -9 then loses nothing.
    s.on_disconnect(&mut Null);
    s.send_app(T0 + 1, &report("E3"));
    s.flush_store();
    std::mem::forget(s);
    let mut store = FileStore::open(&dir, false).unwrap();
    assert_eq!(store.next_sender(), 5);
    let ids: Vec<String> = store
        .range(2, 4)
        .unwrap()
        .iter()
        .map(|(_, raw)| exec_id(raw))
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn messages_sent_while_offline_are_recovered_by_resend_after_a_restart() {
    let dir = fresh_dir("restart");
    let st = settings(|_| {});
    {
        let mut s = file_session(&st, &dir);
        let (sent, _) = logon(&mut s, T0, 1, &[]);
        assert_eq!(types(&sent), ["A"]);
        s.send_app(T0, &report("E1"));
        assert_eq!(types(&drain(&mut s).0), ["8"]);
        // The client goes away without a Logout; two more reports are produced meanwhile.
        s.on_disconnect(&mut Null);
        s.send_app(T0 + 1, &report("E2"));
        s.send_app(T0 + 2, &report("E3"));
        assert!(
            drain(&mut s).0.is_empty(),
            "nothing is written while offline"
        );
        assert_eq!(s.next_sender_seq(), 5);
        // The process is killed here: nothing but the file store survives.
    }
    let store = FileStore::open(&dir, false).unwrap();
    assert_eq!((store.next_sender(), store.next_target()), (5, 2));
    let mut s = Session::new(st, dicts(), Box::new(store));
    // The client saw up to 2 and logs on again, then asks for what it missed.
    let now = T0 + 10_000;
    let (sent, closed) = logon(&mut s, now, 2, &[]);
    assert_eq!(types(&sent), ["A"]);
    assert_eq!(sent[0].1, 5);
    assert!(!closed);
    s.on_message(now, &msg(now, 3, "2", &[(7, "3"), (16, "0")]), &mut Null);
    let (sent, _) = drain(&mut s);
    assert_eq!(types(&sent), ["8", "8", "4"]);
    let resent: Vec<u64> = sent.iter().map(|(_, n, _)| *n).collect();
    assert_eq!(resent, [3, 4, 5]);
    for (t, _, raw) in &sent[..2] {
        let m = Message::parse(raw).unwrap();
        assert_eq!(t, "8");
        assert!(m.flag(43), "resent with PossDupFlag");
        assert!(m.get(122).is_some(), "resent with OrigSendingTime");
    }
    let ids: Vec<_> = sent[..2].iter().map(|(_, _, raw)| exec_id(raw)).collect();
    assert_eq!(ids, ["E2", "E3"]);
    // The gap fill covers our Logon (5) and moves the client to 6.
    let gap = Message::parse(&sent[2].2).unwrap();
    assert_eq!(gap.get_u64(36), Some(6));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_slow_consumer_is_disconnected() {
    let st = settings(|s| s.max_outbound_queue = 10);
    let mut s = Session::new(st, dicts(), Box::new(MemoryStore::default()));
    logon(&mut s, T0, 1, &[]);
    for i in 0..11 {
        s.send_app(T0, &report(&format!("E{i}")));
    }
    let (sent, closed) = drain(&mut s);
    assert!(
        sent.is_empty(),
        "the backlog is dropped: it stays in the store for resend"
    );
    assert!(closed);
    assert_eq!(s.next_sender_seq(), 13);
}

#[test]
fn the_sendable_bytes_are_the_polled_messages_back_to_back() {
    let sent_by = |take_all: bool| {
        let mut s = Session::new(settings(|_| {}), dicts(), Box::new(MemoryStore::default()));
        logon(&mut s, T0, 1, &[]);
        let mut bytes = Vec::new();
        for round in 0..3 {
            for i in 0..=round {
                s.send_app(T0, &report(&format!("E{round}-{i}")));
            }
            if take_all {
                bytes.extend_from_slice(s.sendable());
                s.consume_sendable();
            } else {
                while let Some(Output::Send(b)) = s.poll() {
                    bytes.extend_from_slice(&b);
                }
            }
            assert_eq!(s.pending(), 0);
            assert_eq!(s.pending_bytes(), 0);
        }
        (bytes, s)
    };
    let (polled, _) = sent_by(false);
    let (taken, mut s) = sent_by(true);
    assert_eq!(taken, polled);
    assert!(!polled.is_empty());
    // A disconnect stays queued behind what may still be written, and is taken once.
    s.send_app(T0, &report("last"));
    s.on_message(T0, &msg(T0, 2, "5", &[]), &mut Null);
    let before = s.pending_bytes();
    assert!(
        before > 0 && s.sendable().len() == before,
        "the report and the Logout"
    );
    assert!(!s.take_disconnect(), "messages come first");
    s.consume_sendable();
    assert!(s.take_disconnect());
    assert!(!s.take_disconnect());
    assert!(s.sendable().is_empty());
}

#[test]
fn shutdown_logout_handshake() {
    let mut s = Session::new(settings(|_| {}), dicts(), Box::new(MemoryStore::default()));
    logon(&mut s, T0, 1, &[]);
    s.logout(T0, Some("shutting down"));
    let (sent, closed) = drain(&mut s);
    assert_eq!(types(&sent), ["5"]);
    assert!(!closed, "waits for the counterparty's Logout");
    s.on_message(T0 + 10, &msg(T0 + 10, 2, "5", &[]), &mut Null);
    let (sent, closed) = drain(&mut s);
    assert!(sent.is_empty() && closed);
    // Without an answer, the logout timeout closes the connection.
    let mut s = Session::new(settings(|_| {}), dicts(), Box::new(MemoryStore::default()));
    logon(&mut s, T0, 1, &[]);
    s.logout(T0, None);
    drain(&mut s);
    s.on_timer(T0 + 2_500);
    assert!(drain(&mut s).1);
}

/// The ExecID (17) of a stored or sent message.
fn exec_id(raw: &[u8]) -> String {
    Message::parse(raw)
        .unwrap()
        .get_str(17)
        .unwrap()
        .to_string()
}
