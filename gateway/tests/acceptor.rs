//! The tokio acceptor with thousands of concurrent sessions, and the clean Logout of every
//! session on shutdown.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::acceptor::Acceptor;
use gateway::at::AtApplication;
use gateway::codec::{Encoder, Framing, Message, frame};
use gateway::dictionary::Dictionary;
use gateway::session::{Dictionaries, Session, SessionKey, SessionSettings};
use gateway::store::MemoryStore;
use gateway::time::{format_utc_millis, now_millis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn acceptor(n: usize) -> Arc<Acceptor<AtApplication>> {
    let d = Dictionary::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fix-specs/FIX44.xml"))
        .unwrap();
    let dicts = Arc::new(Dictionaries {
        session: d.clone(),
        app: d,
    });
    let sessions = (0..n)
        .map(|i| {
            let key = SessionKey {
                begin_string: "FIX.4.4".into(),
                sender_comp_id: "EXCH".into(),
                target_comp_id: format!("C{i}"),
            };
            Session::new(
                Arc::new(SessionSettings::new(key)),
                Arc::clone(&dicts),
                Box::new(MemoryStore::default()),
            )
        })
        .collect();
    Acceptor::new(sessions, Arc::new(Mutex::new(AtApplication::default())))
}

struct Client {
    sock: TcpStream,
    buf: Vec<u8>,
    name: String,
    seq: u64,
}

impl Client {
    async fn send(&mut self, msg_type: &str, body: &[(i32, &str)]) {
        let mut e = Encoder::new();
        e.start(msg_type.as_bytes())
            .uint(34, self.seq)
            .str(49, &self.name)
            .field(52, &format_utc_millis(now_millis()))
            .str(56, "EXCH");
        for (t, v) in body {
            e.str(*t, v);
        }
        self.seq += 1;
        self.sock.write_all(e.finish(b"FIX.4.4")).await.unwrap();
    }

    /// The next message's MsgType, or None when the connection closed.
    async fn recv(&mut self) -> Option<String> {
        loop {
            match frame(&self.buf, 1 << 16) {
                Framing::Frame(r) => {
                    let m = Message::parse(&self.buf[r.clone()]).unwrap();
                    let t = String::from_utf8_lossy(m.msg_type()).into_owned();
                    self.buf.drain(..r.end);
                    return Some(t);
                }
                Framing::NeedMore { discard } | Framing::Garbled { discard } => {
                    self.buf.drain(..discard);
                }
            }
            let mut chunk = [0u8; 4096];
            match self.sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

async fn connect(port: u16, i: usize) -> Client {
    let sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut c = Client {
        sock,
        buf: Vec::new(),
        name: format!("C{i}"),
        seq: 1,
    };
    c.send("A", &[(98, "0"), (108, "30")]).await;
    assert_eq!(c.recv().await.as_deref(), Some("A"), "logon of C{i}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_sessions_trade_at_once() {
    const N: usize = 2000;
    let acc = acceptor(N);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(Arc::clone(&acc).serve(listener));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = connect(port, i).await;
                let now = String::from_utf8(format_utc_millis(now_millis()).to_vec()).unwrap();
                c.send(
                    "D",
                    &[
                        (11, "o1"),
                        (55, "AAPL"),
                        (54, "1"),
                        (60, &now),
                        (38, "100"),
                        (40, "2"),
                        (44, "1.5"),
                    ],
                )
                .await;
                assert_eq!(c.recv().await.as_deref(), Some("D"), "echo for C{i}");
                c.send("5", &[]).await;
                assert_eq!(c.recv().await.as_deref(), Some("5"));
                assert_eq!(c.recv().await, None, "closed after the logout handshake");
            })
        })
        .collect();
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("all sessions finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_logs_every_session_out() {
    let acc = acceptor(3);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(Arc::clone(&acc).serve(listener));
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(connect(port, i).await);
    }
    let acc2 = Arc::clone(&acc);
    let shutdown = tokio::spawn(async move { acc2.shutdown(Duration::from_secs(5)).await });
    for c in &mut clients {
        assert_eq!(
            c.recv().await.as_deref(),
            Some("5"),
            "a Logout from the exchange"
        );
        c.send("5", &[]).await;
        assert_eq!(c.recv().await, None);
    }
    shutdown.await.unwrap();
    // No new connection is accepted after shutdown.
    let refused = async {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Err(_) => true,
            Ok(mut s) => {
                let mut b = [0u8; 1];
                matches!(
                    tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await,
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_)
                )
            }
        }
    };
    assert!(refused.await);
}
