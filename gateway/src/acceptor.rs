//! The tokio shell around the session layer: one listener, a task per connection.
//!
//! A connection is bound to a configured session by its first message, which must be a Logon
//! whose (BeginString, SenderCompID, TargetCompID) names a configured session that is not
//! already connected; anything else closes the connection. Each session's state sits behind a
//! short-held mutex so that other tasks (the engine's execution reports) can send through it;
//! the connection task is woken to write. Outbound messages wait in the session's bounded queue:
//! a counterparty that does not read is disconnected, and recovers by resend at its next logon.
//! Connections of background sessions (market data) move, once their Logon names them, to a
//! runtime of their own whose threads run below the order flow's priority.

// Fx: keys come from the configuration; they are looked up for every message.
use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::codec::{Framing, Message, frame, tags};
use crate::session::{Application, Checked, Outgoing, Session, SessionKey};
use crate::time::now_millis;
use smallvec::SmallVec;

/// Largest message accepted, in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// How often timers run.
const TICK: Duration = Duration::from_millis(100);

/// Messages of one connection handled under one hold of the application's lock, at most:
/// enough to spare the lock round per message at the peak rate, few enough that the other
/// connections wait tens of microseconds for it, not milliseconds.
const BATCH: usize = 16;

struct SlotState {
    session: Session,
    /// The connection currently bound to the session.
    conn: Option<Bound>,
}

/// A connection bound to a session.
struct Bound {
    id: u64,
    /// Wakes the connection's task.
    notify: Arc<Notify>,
    /// A second handle on the socket (the same non-blocking socket), through which another
    /// thread writes what it queued when the connection's task is not writing: the report
    /// thread's reports then leave without a wake-up and a hop through the task.
    direct: Option<std::net::TcpStream>,
    /// The task has taken bytes from the session and may not have written them all yet: nobody
    /// else may write before it is done.
    writing: bool,
    /// Bytes taken from the session that a direct write could not finish; the task writes them
    /// before anything else.
    unsent: Vec<u8>,
}

impl Bound {
    /// Writes what the session has to send straight to the socket, as far as the socket takes
    /// it without blocking; whatever is left (bytes, or a disconnect) is the task's, and it is
    /// woken.
    fn write_through(&mut self, session: &mut Session) {
        use std::io::Write;
        let Some(sock) = self
            .direct
            .as_ref()
            .filter(|_| !self.writing && self.unsent.is_empty())
        else {
            self.notify.notify_one();
            return;
        };
        let mut sock = sock;
        let bytes = session.sendable();
        let mut done = 0;
        while done < bytes.len() {
            match sock.write(&bytes[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Full, or broken: the task finds out and deals with it.
                Err(_) => break,
            }
        }
        self.unsent.extend_from_slice(&bytes[done..]);
        session.consume_sendable();
        if !self.unsent.is_empty() || session.pending() > 0 {
            self.notify.notify_one();
        }
    }
}

/// A configured session and the connection bound to it, if any.
pub struct Slot {
    state: Mutex<SlotState>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic while holding the lock would be a bug; keep serving the other sessions.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The FIX acceptor.
pub struct Acceptor<A: Application + Send + 'static> {
    slots: HashMap<SessionKey, Arc<Slot>>,
    app: Arc<Mutex<A>>,
    next_conn: std::sync::atomic::AtomicU64,
    shutdown: watch::Sender<bool>,
    /// Where the connections of background sessions run, when set.
    background: std::sync::OnceLock<tokio::runtime::Handle>,
}

impl<A: Application + Send + 'static> Acceptor<A> {
    /// An acceptor for these sessions.
    pub fn new(sessions: Vec<Session>, app: Arc<Mutex<A>>) -> Arc<Acceptor<A>> {
        let slots = sessions
            .into_iter()
            .map(|s| {
                (
                    s.key().clone(),
                    Arc::new(Slot {
                        state: Mutex::new(SlotState {
                            session: s,
                            conn: None,
                        }),
                    }),
                )
            })
            .collect();
        let (shutdown, _) = watch::channel(false);
        Arc::new(Acceptor {
            slots,
            app,
            next_conn: 0.into(),
            shutdown,
            background: std::sync::OnceLock::new(),
        })
    }

    /// Serves the connections of background sessions (see
    /// [`crate::session::SessionSettings::background`]) on this runtime from now on.
    pub fn set_background(&self, runtime: tokio::runtime::Handle) {
        let _ = self.background.set(runtime);
    }

    /// The application.
    pub fn app(&self) -> &Arc<Mutex<A>> {
        &self.app
    }

    /// Sends an application message on a session (stored for resend if it is offline).
    pub fn send(&self, key: &SessionKey, msg: &Outgoing) -> bool {
        let Some(slot) = self.slots.get(key) else {
            return false;
        };
        let mut st = slot.lock();
        st.session.send_app(now_millis(), msg);
        if let Some(b) = &st.conn {
            b.notify.notify_one();
        }
        true
    }

    /// Queues an application message without waking the connection: a sender with many
    /// messages queues them all, then calls [`Acceptor::release`] once. (A connection that
    /// wakes for another reason meanwhile sends what is queued, after storing it.)
    pub fn queue(&self, key: &SessionKey, msg: &Outgoing) -> bool {
        let Some(slot) = self.slots.get(key) else {
            return false;
        };
        slot.lock().session.send_app(now_millis(), msg);
        true
    }

    /// Writes what a session saved to its store since the last flush (one write for all of
    /// it), then sends what was queued: with `direct`, straight to the socket from this thread
    /// when the connection's task is not writing; else by waking the task.
    pub fn release(&self, key: &SessionKey, direct: bool) {
        if let Some(slot) = self.slots.get(key) {
            let mut st = slot.lock();
            let SlotState { session, conn } = &mut *st;
            session.flush_store();
            match conn {
                Some(b) if direct => b.write_through(session),
                Some(b) => b.notify.notify_one(),
                None => {}
            }
        }
    }

    /// Bytes waiting to be written on a logged-on session; `None` when it is not logged on.
    pub fn backlog(&self, key: &SessionKey) -> Option<usize> {
        let st = self.slots.get(key)?.lock();
        st.session
            .is_logged_on()
            .then(|| st.session.pending_bytes())
    }

    /// Whether a session is logged on.
    pub fn is_logged_on(&self, key: &SessionKey) -> bool {
        self.slots
            .get(key)
            .is_some_and(|s| s.lock().session.is_logged_on())
    }

    /// Accepts connections until shutdown.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let mut stop = self.shutdown.subscribe();
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((sock, peer)) => {
                        tracing::debug!(%peer, "connection");
                        let me = Arc::clone(&self);
                        tokio::spawn(async move { me.connection(sock, Vec::new(), false).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    }

    /// Logs out every connected session and waits (up to `grace`) for them to close.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let now = now_millis();
        for slot in self.slots.values() {
            let mut st = slot.lock();
            st.session.logout(now, Some("exchange shutting down"));
            if let Some(b) = &st.conn {
                b.notify.notify_one();
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if self.slots.values().all(|s| s.lock().conn.is_none()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Finds the session a first message names, if it may bind to this connection.
    fn identify(&self, raw: &[u8]) -> Option<Arc<Slot>> {
        let msg = Message::parse(raw).ok()?;
        if msg.msg_type() != b"A" {
            tracing::info!("first message is not a Logon; closing");
            return None;
        }
        let key = SessionKey {
            begin_string: String::from_utf8_lossy(msg.begin_string()).into_owned(),
            sender_comp_id: msg.get_str(tags::TARGET_COMP_ID)?.to_string(),
            target_comp_id: msg.get_str(tags::SENDER_COMP_ID)?.to_string(),
        };
        let slot = self.slots.get(&key);
        if slot.is_none() {
            tracing::info!(session = %key, "logon for an unknown session; closing");
        }
        slot.cloned()
    }

    /// Moves a connection, with the bytes already read from it, to the background runtime.
    fn hand_over(self: &Arc<Self>, rt: &tokio::runtime::Handle, sock: TcpStream, read: Vec<u8>) {
        let me = Arc::clone(self);
        match sock.into_std() {
            Ok(std) => {
                rt.spawn(async move {
                    match TcpStream::from_std(std) {
                        Ok(sock) => me.moved(sock, read).await,
                        Err(e) => tracing::warn!(error = %e, "cannot move a connection"),
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot move a connection"),
        }
    }

    /// Serves a connection moved to the background runtime (boxed: the future names itself).
    fn moved(
        self: Arc<Self>,
        sock: TcpStream,
        buf: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.connection(sock, buf, true))
    }

    /// Serves a connection; `buf` holds what was read of it before (on another runtime, when
    /// `moved`).
    async fn connection(self: Arc<Self>, mut sock: TcpStream, mut buf: Vec<u8>, moved: bool) {
        // The slot's lock and the application's are taken for every read's messages: no await may
        // happen while they are held.
        let _ = sock.set_nodelay(true);
        let id = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let mut slot: Option<Arc<Slot>> = None;
        let mut handed_over = moved && !buf.is_empty();
        buf.reserve(16 * 1024);
        let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = now_millis();
        // Outside the loop: zeroing 16 KiB on every wake-up showed in the connections' samples.
        let mut read_buf = [0u8; 16 * 1024];
        // Where the complete frames of the last read lie in `buf`, once the session is bound.
        let mut frames: Vec<std::ops::Range<usize>> = Vec::new();
        'conn: loop {
            // Bytes handed over with the connection are handled before reading more.
            if !std::mem::take(&mut handed_over) {
                tokio::select! {
                    r = sock.read(&mut read_buf) => match r {
                        Ok(0) | Err(_) => break 'conn,
                        Ok(n) => buf.extend_from_slice(&read_buf[..n]),
                    },
                    _ = notify.notified() => {}
                    _ = tick.tick() => {
                        match &slot {
                            Some(s) => s.lock().session.on_timer(now_millis()),
                            None if now_millis() - started > 10_000 => break 'conn,
                            None => {}
                        }
                    }
                }
            }
            // Handle every complete frame in the buffer.
            let mut consumed = 0;
            frames.clear();
            loop {
                match frame(&buf[consumed..], MAX_MESSAGE) {
                    Framing::Frame(r) => {
                        let (start, end) = (consumed + r.start, consumed + r.end);
                        let raw = &buf[start..end];
                        if slot.is_some() {
                            frames.push(start..end);
                            consumed = end;
                            continue;
                        }
                        let Some(s) = self.identify(raw) else {
                            break 'conn;
                        };
                        // Before any move: the background runtime's threads run at a
                        // low priority, and a password check is CPU-bound.
                        if !moved {
                            pre_authenticate(&s, raw).await;
                        }
                        let (background, send_buffer) = {
                            let st = s.lock();
                            let set = st.session.settings();
                            (set.background, set.send_buffer)
                        };
                        if let (false, true, Some(rt)) = (moved, background, self.background.get())
                        {
                            // The Logon and what follows it are handled there.
                            self.hand_over(rt, sock, buf.split_off(consumed));
                            return;
                        }
                        if let Some(n) = send_buffer
                            && let Err(e) = socket2::SockRef::from(&sock).set_send_buffer_size(n)
                        {
                            tracing::warn!(error = %e, "cannot size the send buffer");
                        }
                        let mut st = s.lock();
                        if st.conn.is_some() {
                            tracing::info!(session = %st.session.key(), "session already connected; closing the new connection");
                            break 'conn;
                        }
                        // A second handle for direct writes; without one, every write
                        // goes through this task.
                        let direct = {
                            use std::os::fd::AsFd;
                            sock.as_fd()
                                .try_clone_to_owned()
                                .map(std::net::TcpStream::from)
                                .ok()
                        };
                        st.conn = Some(Bound {
                            id,
                            notify: Arc::clone(&notify),
                            direct,
                            writing: false,
                            unsent: Vec::new(),
                        });
                        st.session.on_connect(now_millis());
                        // The Logon that bound the session, at once: what follows it is the
                        // session's.
                        let checked = st.session.check(raw);
                        let mut app = self.app.lock().unwrap_or_else(|e| e.into_inner());
                        st.session.on_checked(now_millis(), checked, &mut *app);
                        drop((app, st));
                        slot = Some(s);
                        consumed = end;
                    }
                    Framing::NeedMore { discard } => {
                        consumed += discard;
                        break;
                    }
                    Framing::Garbled { discard } => {
                        if slot.is_none() {
                            break 'conn;
                        }
                        consumed += discard;
                    }
                }
            }
            // The frames of one read together: each is parsed and validated under the session's
            // lock only, then they are handled under one hold of the application's lock (which
            // every session shares) per `BATCH`, not one lock round per message.
            if let Some(s) = &slot {
                for batch in frames.chunks(BATCH) {
                    let mut st = s.lock();
                    let checked: SmallVec<[Checked<'_>; BATCH]> = batch
                        .iter()
                        .map(|r| st.session.check(&buf[r.clone()]))
                        .collect();
                    let now = now_millis();
                    let mut app = self.app.lock().unwrap_or_else(|e| e.into_inner());
                    for c in checked {
                        st.session.on_checked(now, c, &mut *app);
                    }
                }
            }
            buf.drain(..consumed);
            // Write what the session produced.
            let mut disconnect = false;
            if let Some(s) = &slot {
                let mut st = s.lock();
                let SlotState { session, conn } = &mut *st;
                // What a direct write left over goes first.
                if let Some(b) = conn.as_mut() {
                    out.append(&mut b.unsent);
                }
                out.extend_from_slice(session.sendable());
                session.consume_sendable();
                disconnect = session.take_disconnect();
                if let Some(b) = conn.as_mut() {
                    b.writing = !out.is_empty();
                }
            }
            if !out.is_empty() {
                if sock.write_all(&out).await.is_err() {
                    break 'conn;
                }
                out.clear();
                if let Some(s) = &slot
                    && let Some(b) = s.lock().conn.as_mut()
                {
                    b.writing = false;
                }
            }
            if disconnect {
                break 'conn;
            }
        }
        // The session is free before the socket closes: a counterparty that sees the close
        // and reconnects at once must not find it still taken.
        if let Some(s) = slot {
            let mut st = s.lock();
            if st.conn.as_ref().is_some_and(|b| b.id == id) {
                st.conn = None;
                let mut app = self.app.lock().unwrap_or_else(|e| e.into_inner());
                st.session.on_disconnect(&mut *app);
                tracing::info!(session = %st.session.key(), "disconnected");
            }
        }
        let _ = sock.shutdown().await;
    }
}

/// Checks a Logon's credentials on a blocking thread, outside every lock: a password hash
/// costs tens of milliseconds, which on an async worker (or under the application's lock)
/// would stall every other session. The session's own check then finds the answer
/// remembered (see [`crate::auth::CredentialCheck`]).
async fn pre_authenticate(slot: &Slot, logon: &[u8]) {
    let Some(auth) = slot.lock().session.settings().authenticator.clone() else {
        return;
    };
    let Ok(msg) = Message::parse(logon) else {
        return;
    };
    let user = msg.get_str(tags::USERNAME).unwrap_or("").to_string();
    let pass = msg.get_str(tags::PASSWORD).unwrap_or("").to_string();
    let _ = tokio::task::spawn_blocking(move || auth(&user, &pass)).await;
}
