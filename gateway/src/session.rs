//! The FIX session layer as a sans-IO state machine.
//!
//! A [`Session`] has no socket, clock or thread. The shell feeds it framed messages and timer
//! ticks with the current time; it answers with [`Output`]s to act on (bytes to write, a
//! disconnect) and calls the [`Application`] for application messages. The rules are those
//! of the FIX session protocol as the QuickFIX family implements them: logon and
//! authentication, sequence numbers (too high: ResendRequest and queueing; too low without
//! PossDupFlag: Logout), PossDup handling, ResendRequest served from the store with
//! SequenceReset-GapFill over admin messages, SequenceReset in both modes, heartbeats and
//! TestRequests, SendingTime accuracy, CompID checks, and the Logout handshake.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use smallvec::SmallVec;

use crate::codec::{Encoder, Message, Tag, tags};
use crate::dictionary::{Dictionary, Invalid, RejectReason, ShapeCache, validate, validate_cached};
use crate::store::MessageStore;
use crate::time::{Millis, format_utc_millis, parse_utc_timestamp};

/// Identifies a session: BeginString and the two CompIDs, ours first.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// `FIX.4.4` or `FIXT.1.1`.
    pub begin_string: String,
    /// Our CompID (SenderCompID on what we send).
    pub sender_comp_id: String,
    /// The counterparty's CompID.
    pub target_comp_id: String,
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}->{}",
            self.begin_string, self.sender_comp_id, self.target_comp_id
        )
    }
}

/// Checks a Logon's Username (553) and Password (554).
pub type Authenticator = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// How one session behaves.
#[derive(Clone)]
pub struct SessionSettings {
    /// Who we are and who the counterparty is.
    pub key: SessionKey,
    /// Reset both sequence numbers to 1 on every Logon.
    pub reset_on_logon: bool,
    /// Reject messages whose SendingTime is more than `max_latency_ms` from our clock.
    pub check_latency: bool,
    /// SendingTime accuracy window.
    pub max_latency_ms: Millis,
    /// DefaultApplVerID (1137) we send on Logon for FIXT.1.1 sessions.
    pub default_appl_ver_id: Option<String>,
    /// Username and password check; `None` accepts any Logon.
    pub authenticator: Option<Authenticator>,
    /// Smallest HeartBtInt accepted, seconds.
    pub min_heartbeat_secs: u64,
    /// Largest HeartBtInt accepted, seconds.
    pub max_heartbeat_secs: u64,
    /// How long to wait for the counterparty's Logout after ours.
    pub logout_timeout_ms: Millis,
    /// Messages waiting to be written beyond which the counterparty is a slow consumer and is
    /// disconnected (it recovers what it missed by resend when it logs on again).
    pub max_outbound_queue: usize,
    /// Keep sent application messages for resend (QuickFIX `PersistMessages`). When false,
    /// only sequence numbers are stored and a ResendRequest is answered with a gap fill: right
    /// for market data, which is stale by the time it could be resent.
    pub persist_messages: bool,
    /// Kernel send buffer (SO_SNDBUF) of the session's connections; `None` keeps the system's.
    /// Small for market data: a subscriber that stops reading then shows in the session's own
    /// queue at once, where it is conflated, instead of seconds of stale updates waiting in
    /// the kernel.
    pub send_buffer: Option<usize>,
    /// Serve the session's connections on the acceptor's background runtime, when it has one:
    /// threads of lower priority, so that writing to a thousand market-data subscribers
    /// never holds up order entry.
    pub background: bool,
}

impl SessionSettings {
    /// Settings with the usual defaults for a session.
    pub fn new(key: SessionKey) -> SessionSettings {
        SessionSettings {
            key,
            reset_on_logon: false,
            check_latency: true,
            max_latency_ms: 120_000,
            default_appl_ver_id: None,
            authenticator: None,
            min_heartbeat_secs: 1,
            max_heartbeat_secs: 300,
            logout_timeout_ms: 2_000,
            max_outbound_queue: 10_000,
            persist_messages: true,
            send_buffer: None,
            background: false,
        }
    }
}

/// The dictionaries a session validates with: transport and application (the same one for
/// FIX.4.x).
#[derive(Debug)]
pub struct Dictionaries {
    /// Header, trailer and session messages.
    pub session: Dictionary,
    /// Application messages.
    pub app: Dictionary,
}

impl Dictionaries {
    /// The dictionary a message's body is checked against.
    pub fn body(&self, msg_type: &[u8]) -> &Dictionary {
        if is_admin(msg_type) {
            &self.session
        } else {
            &self.app
        }
    }
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Close the connection (after writing what came before).
    Disconnect,
}

/// An entry of a session's outbound queue.
#[derive(Clone, Copy, Debug)]
enum Queued {
    /// A message of this many bytes, next in the outbox's buffer.
    Send(usize),
    /// Close the connection.
    Disconnect,
}

/// What waits to leave a session, in order. The messages' bytes lie back to back in one
/// buffer rather than one per message: a report then costs no allocation here, and none to
/// free on the connection's thread that writes it.
#[derive(Default)]
struct Outbox {
    queue: VecDeque<Queued>,
    buf: Vec<u8>,
    /// Bytes of `buf` that have left.
    read: usize,
}

impl Outbox {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.queue.push_back(Queued::Send(bytes.len()));
    }

    /// The next entry, a message's bytes copied out.
    fn pop(&mut self) -> Option<Output> {
        match self.queue.pop_front()? {
            Queued::Send(n) => {
                let bytes = self.buf[self.read..self.read + n].to_vec();
                self.advance(n);
                Some(Output::Send(bytes))
            }
            Queued::Disconnect => Some(Output::Disconnect),
        }
    }

    /// The bytes of the messages at the head, up to a disconnect.
    fn sendable(&self) -> &[u8] {
        let n: usize = self
            .queue
            .iter()
            .map_while(|q| match q {
                Queued::Send(n) => Some(*n),
                Queued::Disconnect => None,
            })
            .sum();
        &self.buf[self.read..self.read + n]
    }

    fn consume_sendable(&mut self) {
        let mut n = 0;
        while let Some(Queued::Send(len)) = self.queue.front() {
            n += len;
            self.queue.pop_front();
        }
        self.advance(n);
    }

    fn take_disconnect(&mut self) -> bool {
        let at_head = matches!(self.queue.front(), Some(Queued::Disconnect));
        if at_head {
            self.queue.pop_front();
        }
        at_head
    }

    fn sends_first(&self) -> bool {
        matches!(self.queue.front(), Some(Queued::Send(_)))
    }

    /// Marks `n` more bytes of the buffer as gone.
    fn advance(&mut self, n: usize) {
        self.read += n;
        if self.read == self.buf.len() {
            self.buf.clear();
            self.read = 0;
        } else if self.read >= 1 << 16 && self.read * 2 >= self.buf.len() {
            // A queue that never empties still reuses its buffer's front.
            self.buf.drain(..self.read);
            self.read = 0;
        }
    }

    fn clear(&mut self) {
        self.queue.clear();
        self.buf.clear();
        self.read = 0;
    }

    fn pending_bytes(&self) -> usize {
        self.buf.len() - self.read
    }
}

/// An application message to send: MsgType and fields (header fields such as PossResend or
/// routing fields may be included; they are placed in the header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// MsgType.
    pub msg_type: SmallVec<[u8; 4]>,
    /// Fields in order.
    pub fields: Vec<(Tag, Vec<u8>)>,
    /// Body fields already encoded (`tag=value<SOH>`...), written after `fields`: pieces shared
    /// by many messages, such as a market-data update sent to every subscriber of a view.
    pub encoded: SmallVec<[Arc<[u8]>; 1]>,
    /// Body fields already encoded and this message's own (an execution report), written last.
    pub body: Vec<u8>,
}

/// Body fields already encoded, as [`Outgoing`] carries them.
#[derive(Clone, Copy)]
struct Encoded<'a> {
    shared: &'a [Arc<[u8]>],
    own: &'a [u8],
}

impl Encoded<'_> {
    const NONE: Encoded<'static> = Encoded {
        shared: &[],
        own: &[],
    };
}

impl Outgoing {
    /// A message of `msg_type` with these fields.
    pub fn new(msg_type: &[u8], fields: Vec<(Tag, Vec<u8>)>) -> Outgoing {
        Outgoing {
            msg_type: SmallVec::from_slice(msg_type),
            fields,
            encoded: SmallVec::new(),
            body: Vec::new(),
        }
    }
}

/// A received message, parsed and validated (see [`Session::check`]).
pub struct Checked<'a> {
    parsed: Result<(Message<'a>, Result<(), Invalid>), crate::codec::Garbled>,
}

/// Why the application refused a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppReject {
    /// The message type is not supported: BusinessMessageReject with reason 3.
    UnsupportedMessageType,
    /// A BusinessMessageReject with this reason (380) and text.
    Business {
        /// BusinessRejectReason.
        reason: u32,
        /// Text.
        text: String,
    },
    /// A session-level Reject.
    Session(Invalid),
}

/// The application behind a session.
pub trait Application {
    /// The session completed a Logon.
    fn on_logon(&mut self, _session: &SessionKey) {}
    /// The session logged out or its connection closed.
    fn on_logout(&mut self, _session: &SessionKey) {}
    /// An application message arrived, validated and in sequence. Replies go in `reply`.
    fn on_app_message(
        &mut self,
        session: &SessionKey,
        msg: &Message<'_>,
        reply: &mut Vec<Outgoing>,
    ) -> Result<(), AppReject>;
}

/// Per-connection state; reset when a connection ends.
#[derive(Default)]
struct Conn {
    connected: bool,
    received_logon: bool,
    sent_logon: bool,
    sent_logout: bool,
    received_reset: bool,
    sent_reset: bool,
    logout_sent_at: Millis,
    heart_bt_int_ms: Millis,
    last_sent: Millis,
    last_received: Millis,
    test_requests: u32,
    resend_range: Option<(u64, u64)>,
    queue: BTreeMap<u64, Vec<u8>>,
    disconnecting: bool,
}

/// What `verify` decided.
enum Verdict {
    /// Process the message.
    Ok,
    /// Already handled (rejected, queued, ignored or disconnected).
    Stop,
}

/// One FIX session.
pub struct Session {
    settings: Arc<SessionSettings>,
    dicts: Arc<Dictionaries>,
    store: Box<dyn MessageStore>,
    c: Conn,
    out: Outbox,
    enc: Encoder,
    /// Shapes of this session's inbound messages that passed the structural checks.
    shapes: ShapeCache,
}

const ADMIN_TYPES: [&[u8]; 7] = [b"0", b"1", b"2", b"3", b"4", b"5", b"A"];

/// Whether a MsgType is a session-level (admin) message.
pub fn is_admin(msg_type: &[u8]) -> bool {
    ADMIN_TYPES.contains(&msg_type)
}

impl Session {
    /// A session over a store.
    pub fn new(
        settings: Arc<SessionSettings>,
        dicts: Arc<Dictionaries>,
        store: Box<dyn MessageStore>,
    ) -> Session {
        Session {
            settings,
            dicts,
            store,
            c: Conn::default(),
            out: Outbox::default(),
            enc: Encoder::new(),
            shapes: ShapeCache::default(),
        }
    }

    /// The session's identity.
    pub fn key(&self) -> &SessionKey {
        &self.settings.key
    }

    /// The settings.
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Whether both Logons have been exchanged on the current connection.
    pub fn is_logged_on(&self) -> bool {
        self.c.received_logon && self.c.sent_logon
    }

    /// Whether a connection is attached.
    pub fn is_connected(&self) -> bool {
        self.c.connected
    }

    /// Next sequence number we will send.
    pub fn next_sender_seq(&self) -> u64 {
        self.store.next_sender()
    }

    /// Next sequence number we expect.
    pub fn next_target_seq(&self) -> u64 {
        self.store.next_target()
    }

    /// Takes the next output. Messages saved but not yet written to the store are written
    /// first: nothing leaves for the socket before the store has it.
    pub fn poll(&mut self) -> Option<Output> {
        self.flush_before_sending();
        self.out.pop()
    }

    /// The bytes of every message at the head of the queue (up to a disconnect, if one is
    /// queued), back to back, once the store has them: what [`Session::poll`] would hand out
    /// one `Send` at a time. They stay queued until [`Session::consume_sendable`].
    pub fn sendable(&mut self) -> &[u8] {
        self.flush_before_sending();
        self.out.sendable()
    }

    /// Drops from the queue the messages [`Session::sendable`] returned.
    pub fn consume_sendable(&mut self) {
        self.out.consume_sendable();
    }

    /// Takes a disconnect at the head of the queue, if there is one.
    pub fn take_disconnect(&mut self) -> bool {
        self.out.take_disconnect()
    }

    /// Nothing leaves for the socket before the store has it; if the store fails, nothing
    /// leaves and the session disconnects.
    fn flush_before_sending(&mut self) {
        if self.out.sends_first()
            && let Err(e) = self.store.flush()
        {
            self.out.clear();
            self.store_failed(e);
        }
    }

    /// Writes the messages saved since the last flush to the store (a failure disconnects).
    pub fn flush_store(&mut self) {
        if let Err(e) = self.store.flush() {
            self.store_failed(e);
        }
    }

    /// Number of outputs waiting.
    pub fn pending(&self) -> usize {
        self.out.queue.len()
    }

    /// Bytes of the messages waiting to be written.
    pub fn pending_bytes(&self) -> usize {
        self.out.pending_bytes()
    }

    /// A connection was attached to this session.
    pub fn on_connect(&mut self, now: Millis) {
        self.c = Conn {
            connected: true,
            last_sent: now,
            last_received: now,
            ..Conn::default()
        };
    }

    /// The connection closed (whoever closed it).
    pub fn on_disconnect(&mut self, app: &mut dyn Application) {
        let was_logged_on = self.is_logged_on();
        self.c = Conn::default();
        self.out.clear();
        if was_logged_on {
            app.on_logout(&self.settings.key);
        }
    }

    fn disconnect(&mut self) {
        if !self.c.disconnecting {
            self.c.disconnecting = true;
            self.out.queue.push_back(Queued::Disconnect);
        }
    }

    fn store_failed(&mut self, e: std::io::Error) {
        tracing::error!(session = %self.settings.key, error = %e, "session store failed; disconnecting");
        self.disconnect();
    }

    // ----- sending ---------------------------------------------------------------------------

    /// Encodes and sends a message. `seq` is `Some` for a resend-time SequenceReset that reuses
    /// an old number (not stored, does not advance the sender sequence).
    fn send_raw(
        &mut self,
        now: Millis,
        msg_type: &[u8],
        seq: Option<u64>,
        header: &[(Tag, &[u8])],
        body: &[(Tag, &[u8])],
    ) {
        self.send_encoded(now, msg_type, seq, header, body, Encoded::NONE);
    }

    /// [`Session::send_raw`] with body fields already encoded, written after `body`: shared
    /// pieces, then the message's own.
    fn send_encoded(
        &mut self,
        now: Millis,
        msg_type: &[u8],
        seq: Option<u64>,
        header: &[(Tag, &[u8])],
        body: &[(Tag, &[u8])],
        encoded: Encoded<'_>,
    ) {
        let n = seq.unwrap_or_else(|| self.store.next_sender());
        let s = &self.settings.key;
        self.enc
            .start(msg_type)
            .uint(tags::MSG_SEQ_NUM, n)
            .str(tags::SENDER_COMP_ID, &s.sender_comp_id);
        self.enc.field(tags::SENDING_TIME, &format_utc_millis(now));
        self.enc.str(tags::TARGET_COMP_ID, &s.target_comp_id);
        for (t, v) in header {
            self.enc.field(*t, v);
        }
        for (t, v) in body {
            self.enc.field(*t, v);
        }
        for piece in encoded.shared {
            self.enc.encoded(piece);
        }
        self.enc.encoded(encoded.own);
        let deliver = self.c.connected
            && !self.c.disconnecting
            && (self.is_logged_on() || is_admin(msg_type));
        let bytes = self.enc.finish(s.begin_string.as_bytes());
        if seq.is_none() {
            let saved = if self.settings.persist_messages {
                self.store.save(n, bytes)
            } else {
                Ok(())
            };
            if let Err(e) = saved.and_then(|_| self.store.set_next_sender(n + 1)) {
                return self.store_failed(e);
            }
        }
        if deliver {
            // The encoder's buffer straight into the outbox's (fields apart: no copy between).
            self.out.push(bytes);
            self.queued(now);
        }
    }

    /// After a message joined the queue: a reader too slow for the queue's bound is cut off.
    fn queued(&mut self, now: Millis) {
        self.c.last_sent = now;
        if self.out.queue.len() > self.settings.max_outbound_queue {
            tracing::warn!(session = %self.settings.key, queued = self.out.queue.len(), "slow consumer: disconnecting");
            self.out.clear();
            self.disconnect();
        }
    }

    /// Sends an application message now (or stores it for resend if the counterparty is not
    /// logged on: it receives it through the resend mechanism when it logs on again).
    pub fn send_app(&mut self, now: Millis, msg: &Outgoing) {
        let dict = Arc::clone(&self.dicts);
        let fields = msg.fields.iter().filter(|(t, _)| !is_session_header(*t));
        let (header, body): (Vec<_>, Vec<_>) =
            fields.partition(|(t, _)| dict.session.is_header_field(*t));
        let header: Vec<(Tag, &[u8])> = header
            .into_iter()
            .map(|(t, v)| (*t, v.as_slice()))
            .collect();
        let body: Vec<(Tag, &[u8])> = body.into_iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let encoded = Encoded {
            shared: &msg.encoded,
            own: &msg.body,
        };
        self.send_encoded(now, &msg.msg_type, None, &header, &body, encoded);
    }

    fn generate_logon(&mut self, now: Millis, heart_bt_int: &[u8]) {
        let mut body: Vec<(Tag, &[u8])> = vec![
            (tags::ENCRYPT_METHOD, b"0"),
            (tags::HEART_BT_INT, heart_bt_int),
        ];
        let appl = self.settings.default_appl_ver_id.clone();
        if let Some(v) = &appl {
            body.push((tags::DEFAULT_APPL_VER_ID, v.as_bytes()));
        }
        if self.c.received_reset {
            body.push((tags::RESET_SEQ_NUM_FLAG, b"Y"));
        }
        self.send_raw(now, b"A", None, &[], &body);
        self.c.sent_logon = true;
    }

    fn generate_logout(&mut self, now: Millis, text: Option<&str>) {
        let body: Vec<(Tag, &[u8])> = text
            .map(|t| (tags::TEXT, t.as_bytes()))
            .into_iter()
            .collect();
        self.send_raw(now, b"5", None, &[], &body);
        self.c.sent_logout = true;
        self.c.logout_sent_at = now;
    }

    fn generate_heartbeat(&mut self, now: Millis, test_req_id: Option<&[u8]>) {
        let body: Vec<(Tag, &[u8])> = test_req_id
            .map(|t| (tags::TEST_REQ_ID, t))
            .into_iter()
            .collect();
        self.send_raw(now, b"0", None, &[], &body);
    }

    fn generate_resend_request(&mut self, now: Millis, msg_seq: u64) {
        let begin = self.store.next_target();
        let mut b = Vec::new();
        crate::codec::write_uint(&mut b, begin);
        // FIX.4.2 and later ask for "everything from begin" with EndSeqNo 0.
        self.send_raw(
            now,
            b"2",
            None,
            &[],
            &[(tags::BEGIN_SEQ_NO, &b), (tags::END_SEQ_NO, b"0")],
        );
        self.c.resend_range = Some((begin, msg_seq - 1));
    }

    fn generate_sequence_reset(&mut self, now: Millis, begin: u64, new_seq: u64) {
        let mut n = Vec::new();
        crate::codec::write_uint(&mut n, new_seq);
        let ts = format_utc_millis(now);
        self.send_raw(
            now,
            b"4",
            Some(begin),
            &[(tags::POSS_DUP_FLAG, b"Y"), (tags::ORIG_SENDING_TIME, &ts)],
            &[(tags::GAP_FILL_FLAG, b"Y"), (tags::NEW_SEQ_NO, &n)],
        );
    }

    /// Routing fields of a message we answer, reversed (OnBehalfOf <-> DeliverTo).
    fn reverse_route(msg: &Message) -> Vec<(Tag, Vec<u8>)> {
        let pairs = [
            (115, 128),
            (128, 115),
            (116, 129),
            (129, 116),
            (144, 145),
            (145, 144),
        ];
        let mut out: Vec<(Tag, Vec<u8>)> = Vec::new();
        for (from, to) in pairs {
            if let Some(v) = msg.get(from)
                && !v.is_empty()
            {
                out.push((to, v.to_vec()));
            }
        }
        out
    }

    fn generate_reject(
        &mut self,
        now: Millis,
        msg: &Message,
        reason: RejectReason,
        tag: Option<Tag>,
    ) {
        if !self.c.received_logon {
            // Nothing can be sent before a Logon: the connection is dropped instead.
            tracing::info!(session = %self.settings.key, ?reason, "invalid message before logon; disconnecting");
            return self.disconnect();
        }
        let msg_type = msg.msg_type().to_vec();
        let seq = msg
            .get(tags::MSG_SEQ_NUM)
            .filter(|v| !v.is_empty())
            .map(<[u8]>::to_vec);
        if msg_type.as_slice() != b"A"
            && msg_type.as_slice() != b"4"
            && seq.as_deref().and_then(crate::codec::parse_uint) == Some(self.store.next_target())
        {
            self.incr_target();
        }
        let route = Self::reverse_route(msg);
        let header: Vec<(Tag, &[u8])> = route.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let reason_code = (reason as u32).to_string();
        let tag_s = tag.map(|t| t.to_string());
        let mut body: Vec<(Tag, &[u8])> = Vec::new();
        if let Some(s) = &seq {
            body.push((tags::REF_SEQ_NUM, s));
        }
        body.push((tags::TEXT, reason.text().as_bytes()));
        if let Some(t) = &tag_s {
            body.push((tags::REF_TAG_ID, t.as_bytes()));
        }
        if !msg_type.is_empty() {
            body.push((tags::REF_MSG_TYPE, &msg_type));
        }
        body.push((tags::SESSION_REJECT_REASON, reason_code.as_bytes()));
        tracing::info!(session = %self.settings.key, ?reason, ?tag, "rejecting message");
        self.send_raw(now, b"3", None, &header, &body);
    }

    fn generate_business_reject(&mut self, now: Millis, msg: &Message, reason: u32, text: &str) {
        self.incr_target();
        let route = Self::reverse_route(msg);
        let header: Vec<(Tag, &[u8])> = route.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let code = reason.to_string();
        let msg_type = msg.msg_type().to_vec();
        let seq = msg.get(tags::MSG_SEQ_NUM).unwrap_or(b"0").to_vec();
        let appl = self.settings.default_appl_ver_id.clone();
        let mut body: Vec<(Tag, &[u8])> = vec![
            (tags::REF_SEQ_NUM, &seq),
            (tags::TEXT, text.as_bytes()),
            (tags::REF_MSG_TYPE, &msg_type),
            (tags::BUSINESS_REJECT_REASON, code.as_bytes()),
        ];
        // On FIXT.1.1 the reject says which application version it speaks.
        if let Some(v) = &appl {
            body.push((tags::DEFAULT_APPL_VER_ID, v.as_bytes()));
        }
        self.send_raw(now, b"j", None, &header, &body);
    }

    fn incr_target(&mut self) {
        let n = self.store.next_target() + 1;
        if let Err(e) = self.store.set_next_target(n) {
            self.store_failed(e);
        }
    }

    fn set_target(&mut self, n: u64) {
        if let Err(e) = self.store.set_next_target(n) {
            self.store_failed(e);
        }
    }

    fn reset_store(&mut self) {
        if let Err(e) = self.store.reset() {
            self.store_failed(e);
        }
    }

    // ----- receiving -------------------------------------------------------------------------

    /// Handles one framed message from the connection.
    pub fn on_message(&mut self, now: Millis, raw: &[u8], app: &mut dyn Application) {
        let checked = self.check(raw);
        self.on_checked(now, checked, app);
    }

    /// Parses a framed message and validates it against the dictionaries: the part of
    /// handling it that needs only the session's dictionaries, neither the application nor
    /// the sequence state, so a connection does it before taking the application's lock,
    /// which every session shares.
    pub fn check<'a>(&mut self, raw: &'a [u8]) -> Checked<'a> {
        let parsed = Message::parse(raw).map(|msg| {
            // The fields apart: the dictionaries are read while the shape cache is updated.
            let dicts = &*self.dicts;
            let app = dicts.body(msg.msg_type());
            let valid = validate_cached(&msg, &dicts.session, app, &mut self.shapes);
            (msg, valid)
        });
        Checked { parsed }
    }

    /// Handles a message [`Session::check`] parsed and validated.
    pub fn on_checked(&mut self, now: Millis, checked: Checked<'_>, app: &mut dyn Application) {
        if self.c.disconnecting {
            return;
        }
        match checked.parsed {
            Ok((msg, valid)) => {
                self.next(now, &msg, app, Some(valid));
                self.next_queued(now, app);
            }
            Err(e) => {
                if self.c.received_logon {
                    tracing::info!(session = %self.settings.key, error = %e, "garbled message ignored");
                } else {
                    tracing::info!(session = %self.settings.key, error = %e, "garbled logon; disconnecting");
                    self.disconnect();
                }
            }
        }
    }

    fn next_queued(&mut self, now: Millis, app: &mut dyn Application) {
        while !self.c.disconnecting {
            let expected = self.store.next_target();
            // Anything queued below the expected number is stale.
            while let Some((&k, _)) = self.c.queue.first_key_value() {
                if k >= expected {
                    break;
                }
                self.c.queue.pop_first();
            }
            let Some(raw) = self.c.queue.remove(&expected) else {
                return;
            };
            let Ok(msg) = Message::parse(&raw) else {
                return;
            };
            if matches!(msg.msg_type(), b"A" | b"2") {
                self.incr_target();
            } else {
                self.next(now, &msg, app, None);
            }
        }
    }

    /// Handles a message; `valid` is its validation when [`Session::check`] did it already.
    fn next(
        &mut self,
        now: Millis,
        msg: &Message,
        app: &mut dyn Application,
        valid: Option<Result<(), Invalid>>,
    ) {
        let msg_type = msg.msg_type();
        for t in [tags::SENDER_COMP_ID, tags::TARGET_COMP_ID] {
            if msg.get(t).is_none() {
                if msg_type == b"A" {
                    return self.disconnect();
                }
                if !is_admin(msg_type) {
                    return self.generate_business_reject(
                        now,
                        msg,
                        5,
                        "Conditionally Required Field Missing",
                    );
                }
                return self.generate_reject(now, msg, RejectReason::RequiredTagMissing, Some(t));
            }
        }
        if msg.begin_string() != self.settings.key.begin_string.as_bytes() {
            if msg_type == b"5" {
                return self.next_logout(now, msg, app);
            }
            self.generate_logout(now, Some("Incorrect BeginString"));
            self.incr_target();
            return;
        }
        if msg_type == b"A"
            && self.dicts.session.transport
            && msg.get(tags::DEFAULT_APPL_VER_ID).is_none()
        {
            tracing::info!(session = %self.settings.key, "logon without DefaultApplVerID; disconnecting");
            return self.disconnect();
        }
        let valid =
            valid.unwrap_or_else(|| validate(msg, &self.dicts.session, self.dicts.body(msg_type)));
        if let Err(inv) = valid {
            if msg_type == b"A" {
                tracing::info!(session = %self.settings.key, ?inv, "invalid logon; disconnecting");
                return self.disconnect();
            }
            return self.generate_reject(now, msg, inv.reason, inv.tag);
        }
        match msg_type {
            b"A" => self.next_logon(now, msg, app),
            b"0" => {
                if let Verdict::Ok = self.verify(now, msg, true, true, app) {
                    self.incr_target();
                }
            }
            b"1" => {
                if let Verdict::Ok = self.verify(now, msg, true, true, app) {
                    let id = msg.get(tags::TEST_REQ_ID).map(<[u8]>::to_vec);
                    self.generate_heartbeat(now, id.as_deref());
                    self.incr_target();
                }
            }
            b"4" => self.next_sequence_reset(now, msg, app),
            b"5" => self.next_logout(now, msg, app),
            b"2" => self.next_resend_request(now, msg, app),
            b"3" => {
                if let Verdict::Ok = self.verify(now, msg, false, true, app) {
                    self.incr_target();
                }
            }
            _ => {
                if let Verdict::Ok = self.verify(now, msg, true, true, app) {
                    self.deliver(now, msg, app);
                }
            }
        }
    }

    /// Hands an in-sequence application message to the application.
    fn deliver(&mut self, now: Millis, msg: &Message, app: &mut dyn Application) {
        let mut replies = Vec::new();
        match app.on_app_message(&self.settings.key, msg, &mut replies) {
            Ok(()) => {
                self.incr_target();
                for r in &replies {
                    self.send_app(now, r);
                }
            }
            Err(AppReject::UnsupportedMessageType) => {
                self.generate_business_reject(now, msg, 3, "Unsupported Message Type");
            }
            Err(AppReject::Business { reason, text }) => {
                self.generate_business_reject(now, msg, reason, &text);
            }
            Err(AppReject::Session(inv)) => {
                self.generate_reject(now, msg, inv.reason, inv.tag);
            }
        }
    }

    fn valid_logon_state(&self, msg_type: &[u8]) -> bool {
        let c = &self.c;
        if (msg_type == b"A" && c.sent_reset) || c.received_reset {
            return true;
        }
        if (msg_type == b"A" && !c.received_logon) || (msg_type != b"A" && c.received_logon) {
            return true;
        }
        if msg_type == b"5" && c.sent_logon {
            return true;
        }
        if msg_type != b"5" && c.sent_logout {
            return true;
        }
        matches!(msg_type, b"4" | b"3")
    }

    fn verify(
        &mut self,
        now: Millis,
        msg: &Message,
        too_high: bool,
        too_low: bool,
        _app: &mut dyn Application,
    ) -> Verdict {
        let msg_type = msg.msg_type();
        if !self.valid_logon_state(msg_type) {
            tracing::info!(session = %self.settings.key, "message not valid in this logon state; disconnecting");
            self.disconnect();
            return Verdict::Stop;
        }
        let sending_time = msg.get(tags::SENDING_TIME).and_then(parse_utc_timestamp);
        let good_time = match sending_time {
            Some(t) => {
                !self.settings.check_latency || (now - t).abs() <= self.settings.max_latency_ms
            }
            None => false,
        };
        if !good_time {
            self.generate_reject(now, msg, RejectReason::SendingTimeAccuracy, None);
            self.generate_logout(now, None);
            return Verdict::Stop;
        }
        let k = &self.settings.key;
        if msg.get(tags::SENDER_COMP_ID) != Some(k.target_comp_id.as_bytes())
            || msg.get(tags::TARGET_COMP_ID) != Some(k.sender_comp_id.as_bytes())
        {
            self.generate_reject(now, msg, RejectReason::CompIdProblem, None);
            self.generate_logout(now, None);
            return Verdict::Stop;
        }
        let seq = msg.get_u64(tags::MSG_SEQ_NUM).unwrap_or(0);
        let expected = self.store.next_target();
        if too_high && seq > expected {
            self.c.queue.insert(seq, msg.raw.to_vec());
            if let Some((begin, _)) = self.c.resend_range
                && seq >= begin
            {
                return Verdict::Stop;
            }
            self.generate_resend_request(now, seq);
            return Verdict::Stop;
        } else if too_low && seq < expected {
            if !msg.flag(tags::POSS_DUP_FLAG) {
                let text = format!("MsgSeqNum too low, expecting {expected} but received {seq}");
                tracing::info!(session = %self.settings.key, "{text}");
                self.generate_logout(now, Some(&text));
                self.disconnect();
                return Verdict::Stop;
            }
            if msg_type != b"4" {
                match msg
                    .get(tags::ORIG_SENDING_TIME)
                    .and_then(parse_utc_timestamp)
                {
                    None => self.generate_reject(
                        now,
                        msg,
                        RejectReason::RequiredTagMissing,
                        Some(tags::ORIG_SENDING_TIME),
                    ),
                    Some(orig) if sending_time.is_some_and(|s| orig > s) => {
                        self.generate_reject(now, msg, RejectReason::SendingTimeAccuracy, None);
                        self.generate_logout(now, None);
                    }
                    Some(_) => {}
                }
            }
            return Verdict::Stop;
        }
        if (too_high || too_low)
            && let Some((_, end)) = self.c.resend_range
            && seq >= end
        {
            self.c.resend_range = None;
        }
        self.c.last_received = now;
        self.c.test_requests = 0;
        Verdict::Ok
    }

    fn next_logon(&mut self, now: Millis, msg: &Message, app: &mut dyn Application) {
        let reset_flag = msg.flag(tags::RESET_SEQ_NUM_FLAG);
        self.c.received_reset = reset_flag;
        if reset_flag && !self.c.sent_reset {
            self.reset_store();
        }
        if self.settings.reset_on_logon && !self.c.received_logon {
            self.reset_store();
        }
        let hb = msg.get_u64(tags::HEART_BT_INT).unwrap_or(0);
        if hb < self.settings.min_heartbeat_secs || hb > self.settings.max_heartbeat_secs {
            tracing::info!(session = %self.settings.key, hb, "HeartBtInt out of range; refusing logon");
            self.c.received_logon = true;
            self.generate_logout(now, Some("HeartBtInt out of range"));
            return self.disconnect();
        }
        if let Some(auth) = self.settings.authenticator.clone() {
            let user = msg.get_str(tags::USERNAME).unwrap_or("");
            let pass = msg.get_str(tags::PASSWORD).unwrap_or("");
            if !auth(user, pass) {
                tracing::warn!(session = %self.settings.key, user, "logon refused: bad credentials");
                self.c.received_logon = true;
                self.generate_logout(now, Some("Invalid username or password"));
                return self.disconnect();
            }
        }
        if let Verdict::Stop = self.verify(now, msg, false, true, app) {
            return;
        }
        self.c.received_logon = true;
        self.c.heart_bt_int_ms = hb as Millis * 1000;
        let hb_raw = msg.get(tags::HEART_BT_INT).unwrap_or(b"30").to_vec();
        self.generate_logon(now, &hb_raw);
        tracing::info!(session = %self.settings.key, "logged on");
        self.c.sent_reset = false;
        self.c.received_reset = false;
        let seq = msg.get_u64(tags::MSG_SEQ_NUM).unwrap_or(0);
        if seq > self.store.next_target() && !reset_flag {
            self.c.queue.insert(seq, msg.raw.to_vec());
            self.generate_resend_request(now, seq);
        } else {
            self.incr_target();
        }
        if self.is_logged_on() {
            app.on_logon(&self.settings.key);
        }
    }

    fn next_logout(&mut self, now: Millis, msg: &Message, app: &mut dyn Application) {
        if let Verdict::Stop = self.verify(now, msg, false, false, app) {
            return;
        }
        if !self.c.sent_logout {
            tracing::info!(session = %self.settings.key, "logout requested; answering");
            self.generate_logout(now, None);
        } else {
            tracing::info!(session = %self.settings.key, "logout confirmed");
        }
        self.incr_target();
        self.disconnect();
    }

    fn next_sequence_reset(&mut self, now: Millis, msg: &Message, app: &mut dyn Application) {
        let gap_fill = msg.flag(tags::GAP_FILL_FLAG);
        if let Verdict::Stop = self.verify(now, msg, gap_fill, gap_fill, app) {
            return;
        }
        if let Some(new_seq) = msg.get_u64(tags::NEW_SEQ_NO) {
            let expected = self.store.next_target();
            if new_seq > expected {
                self.set_target(new_seq);
            } else if new_seq < expected {
                self.generate_reject(now, msg, RejectReason::ValueIncorrect, None);
            }
        }
    }

    fn next_resend_request(&mut self, now: Millis, msg: &Message, app: &mut dyn Application) {
        if let Verdict::Stop = self.verify(now, msg, false, false, app) {
            return;
        }
        let begin = msg.get_u64(tags::BEGIN_SEQ_NO).unwrap_or(1).max(1);
        let mut end = msg.get_u64(tags::END_SEQ_NO).unwrap_or(0);
        let next_sender = self.store.next_sender();
        if end == 0 || end >= next_sender {
            end = next_sender - 1;
        }
        tracing::info!(session = %self.settings.key, begin, end, "resend requested");
        let stored = match self.store.range(begin, end) {
            Ok(v) => v,
            Err(e) => return self.store_failed(e),
        };
        let mut gap_start: Option<u64> = None;
        let mut current = begin;
        let mut last_seq = 0u64;
        for (seq, bytes) in &stored {
            if *seq != current && gap_start.is_none() {
                gap_start = Some(current);
            }
            let Ok(m) = Message::parse(bytes) else {
                gap_start.get_or_insert(*seq);
                current = seq + 1;
                last_seq = *seq;
                continue;
            };
            if is_admin(m.msg_type()) {
                gap_start.get_or_insert(*seq);
            } else {
                if let Some(g) = gap_start.take() {
                    self.generate_sequence_reset(now, g, *seq);
                }
                let resent = self.possdup_copy(now, &m);
                self.out.push(&resent);
                self.queued(now);
            }
            current = seq + 1;
            last_seq = *seq;
        }
        if let Some(g) = gap_start {
            self.generate_sequence_reset(now, g, last_seq + 1);
        }
        if end > last_seq {
            // Nothing stored for the tail of the range (or at all): gap-fill it up to what we
            // will send next.
            let from = if last_seq == 0 { begin } else { last_seq + 1 };
            self.generate_sequence_reset(now, from, (end + 1).min(next_sender));
        }
        let seq = msg.get_u64(tags::MSG_SEQ_NUM).unwrap_or(0);
        if seq == self.store.next_target() {
            self.incr_target();
        }
    }

    /// A stored message re-encoded for a resend: PossDupFlag=Y, OrigSendingTime, new SendingTime.
    fn possdup_copy(&mut self, now: Millis, m: &Message) -> Vec<u8> {
        self.enc.start(m.msg_type());
        let orig = m.get(tags::SENDING_TIME).unwrap_or(b"").to_vec();
        for f in &m.fields[3..] {
            match f.tag {
                tags::CHECK_SUM | tags::POSS_DUP_FLAG | tags::ORIG_SENDING_TIME => {}
                tags::SENDING_TIME => {
                    self.enc.field(tags::POSS_DUP_FLAG, b"Y");
                    self.enc.field(tags::SENDING_TIME, &format_utc_millis(now));
                    self.enc.field(tags::ORIG_SENDING_TIME, &orig);
                }
                t => {
                    self.enc.field(t, f.value);
                }
            }
        }
        self.enc.finish(m.begin_string()).to_vec()
    }

    // ----- timers ------------------------------------------------------------------------------

    /// Advances timers: heartbeats, test requests, and timeouts. Call it about every 100 ms.
    pub fn on_timer(&mut self, now: Millis) {
        if !self.c.connected || self.c.disconnecting {
            return;
        }
        if !self.c.received_logon {
            if now - self.c.last_received >= 10_000 {
                tracing::info!(session = %self.settings.key, "no logon in time; disconnecting");
                self.disconnect();
            }
            return;
        }
        if self.c.sent_logout && now - self.c.logout_sent_at >= self.settings.logout_timeout_ms {
            tracing::info!(session = %self.settings.key, "timed out waiting for logout response");
            return self.disconnect();
        }
        let hb = self.c.heart_bt_int_ms;
        if hb == 0 {
            return;
        }
        let since_recv = now - self.c.last_received;
        let since_sent = now - self.c.last_sent;
        if since_sent < hb && since_recv < hb {
            return;
        }
        if since_recv as f64 >= 2.4 * hb as f64 {
            tracing::info!(session = %self.settings.key, "timed out waiting for heartbeat");
            self.disconnect();
        } else if since_recv as f64 >= 1.2 * f64::from(self.c.test_requests + 1) * hb as f64 {
            self.send_raw(now, b"1", None, &[], &[(tags::TEST_REQ_ID, b"TEST")]);
            self.c.test_requests += 1;
        } else if since_sent >= hb && self.c.test_requests == 0 {
            self.generate_heartbeat(now, None);
        }
    }

    /// Starts a Logout (for a shutdown); the connection closes when the counterparty answers
    /// or the logout timeout passes.
    pub fn logout(&mut self, now: Millis, text: Option<&str>) {
        if self.is_logged_on() && !self.c.sent_logout {
            self.generate_logout(now, text);
        } else if self.c.connected {
            self.disconnect();
        }
    }
}

/// Header fields the session itself writes on every message.
fn is_session_header(tag: Tag) -> bool {
    matches!(
        tag,
        tags::BEGIN_STRING
            | tags::BODY_LENGTH
            | tags::MSG_TYPE
            | tags::MSG_SEQ_NUM
            | tags::SENDER_COMP_ID
            | tags::TARGET_COMP_ID
            | tags::SENDING_TIME
            | tags::POSS_DUP_FLAG
            | tags::ORIG_SENDING_TIME
            | tags::CHECK_SUM
    )
}
