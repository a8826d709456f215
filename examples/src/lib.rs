//! FIX client examples on QuickFIX C++ (through quickfix-rs), kept out of the core crates'
//! build so that the exchange itself builds without cmake.
//!
//! [`run_client`] connects one QuickFIX initiator session to the exchange, with the exchange's
//! own dictionaries from `fix-specs/` (QuickFIX validates every message the exchange sends
//! against them), logs on with a username and password, and hands the caller a [`Client`] to
//! send and receive messages. The `trader`, `md_subscriber` and `drop_copy` programs and the
//! interoperability tests are built on it.

pub mod book;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use quickfix::{
    Application, ApplicationCallback, ConnectionHandler, Dictionary, FieldMap,
    FileMessageStoreFactory, FixSocketServerKind, Initiator, LogFactory, Message,
    MsgFromAdminError, MsgFromAppError, NullLogger, SessionId, SessionSettings, send_to_target,
};

/// SOH, the FIX field separator.
const SOH: char = '\u{1}';

/// Where the exchange's dictionaries are: `fix-specs/` of this checkout.
pub fn fix_specs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fix-specs")
}

/// How to reach and log on to the exchange.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Exchange host.
    pub host: String,
    /// Exchange FIX port.
    pub port: u16,
    /// `FIX.4.4` or `FIXT.1.1`.
    pub begin_string: String,
    /// Our CompID (the exchange's TargetCompID for us).
    pub sender: String,
    /// The exchange's CompID.
    pub target: String,
    /// Username (553).
    pub username: String,
    /// Password (554).
    pub password: String,
    /// Where QuickFIX keeps the session's sequence numbers and messages.
    pub store_dir: PathBuf,
    /// Directory of the exchange's dictionaries.
    pub specs_dir: PathBuf,
    /// Heartbeat interval, seconds.
    pub heartbeat: u16,
    /// Start both sides' sequence numbers over at logon (ResetSeqNumFlag): for a fresh start,
    /// at the cost of the reports missed while away.
    pub reset: bool,
}

impl ClientOptions {
    /// Options for `sender` on the exchange at `port` of this machine.
    pub fn new(
        port: u16,
        begin_string: &str,
        sender: &str,
        username: &str,
        password: &str,
    ) -> Self {
        ClientOptions {
            host: "127.0.0.1".into(),
            port,
            begin_string: begin_string.into(),
            sender: sender.into(),
            target: "EXCH".into(),
            username: username.into(),
            password: password.into(),
            store_dir: std::env::temp_dir().join(format!("fix-client-{sender}")),
            specs_dir: fix_specs_dir(),
            heartbeat: 30,
            reset: false,
        }
    }
}

/// A FIX message as received: its type and every field in wire order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixMsg {
    /// MsgType (35).
    pub msg_type: String,
    /// All fields, header and trailer included, in wire order.
    pub fields: Vec<(i32, String)>,
}

impl FixMsg {
    /// Parses QuickFIX's text form of a message.
    pub fn parse(text: &str) -> FixMsg {
        let fields: Vec<(i32, String)> = text
            .split(SOH)
            .filter_map(|f| {
                let (t, v) = f.split_once('=')?;
                Some((t.parse().ok()?, v.to_string()))
            })
            .collect();
        let msg_type = fields
            .iter()
            .find(|(t, _)| *t == 35)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        FixMsg { msg_type, fields }
    }

    /// The first value of a tag.
    pub fn get(&self, tag: i32) -> Option<&str> {
        self.fields
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }

    /// A repeating group: the entries that start with `first` (each entry's fields up to the
    /// next `first`), after the count tag `count`.
    pub fn group(&self, count: i32, first: i32) -> Vec<Vec<(i32, String)>> {
        let Some(start) = self.fields.iter().position(|(t, _)| *t == count) else {
            return Vec::new();
        };
        let mut out: Vec<Vec<(i32, String)>> = Vec::new();
        for (t, v) in &self.fields[start + 1..] {
            if *t == 10 {
                break;
            }
            if *t == first {
                out.push(Vec::new());
            }
            if let Some(e) = out.last_mut() {
                e.push((*t, v.clone()));
            }
        }
        out
    }
}

/// What the session reports to the program.
#[derive(Clone, Debug)]
pub enum ClientEvent {
    /// Logged on.
    Logon,
    /// Logged out or disconnected.
    Logout,
    /// An application message from the exchange (QuickFIX validated it).
    App(FixMsg),
    /// A session-level message from the exchange.
    Admin(FixMsg),
    /// A session-level message we sent (a Reject here means QuickFIX refused something the
    /// exchange sent).
    SentAdmin(FixMsg),
}

struct Callbacks {
    tx: Mutex<Sender<ClientEvent>>,
    username: String,
    password: String,
}

impl Callbacks {
    fn emit(&self, e: ClientEvent) {
        if let Ok(tx) = self.tx.lock() {
            let _ = tx.send(e);
        }
    }
}

fn text(msg: &Message) -> FixMsg {
    FixMsg::parse(&msg.to_fix_string().unwrap_or_default())
}

impl ApplicationCallback for Callbacks {
    fn on_logon(&self, _session: &SessionId) {
        self.emit(ClientEvent::Logon);
    }

    fn on_logout(&self, _session: &SessionId) {
        self.emit(ClientEvent::Logout);
    }

    fn on_msg_to_admin(&self, msg: &mut Message, _session: &SessionId) {
        let m = text(msg);
        if m.msg_type == "A" {
            let _ = msg.set_field(553, self.username.as_str());
            let _ = msg.set_field(554, self.password.as_str());
        }
        self.emit(ClientEvent::SentAdmin(m));
    }

    fn on_msg_from_admin(
        &self,
        msg: &Message,
        _session: &SessionId,
    ) -> Result<(), MsgFromAdminError> {
        self.emit(ClientEvent::Admin(text(msg)));
        Ok(())
    }

    fn on_msg_from_app(&self, msg: &Message, _session: &SessionId) -> Result<(), MsgFromAppError> {
        self.emit(ClientEvent::App(text(msg)));
        Ok(())
    }
}

/// Why a client could not run.
#[derive(Debug)]
pub struct ClientError(pub String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

impl From<quickfix::QuickFixError> for ClientError {
    fn from(e: quickfix::QuickFixError) -> Self {
        ClientError(format!("quickfix: {e:?}"))
    }
}

/// A repeating group to send: its count tag, its first (delimiter) tag, and the fields of
/// each entry.
#[derive(Clone, Debug)]
pub struct RepeatingGroup {
    /// NoXXX tag.
    pub count: i32,
    /// The tag each entry starts with.
    pub delim: i32,
    /// The entries' fields.
    pub entries: Vec<Vec<(i32, String)>>,
}

/// A logged-on session, inside [`run_client`].
pub struct Client {
    session: SessionId,
    rx: Receiver<ClientEvent>,
    begin_string: String,
    next_id: u64,
    /// Start time in ms: ClOrdIDs stay unique across runs.
    started: u64,
    /// Rejects (35=3) QuickFIX sent the exchange: messages that failed its validation.
    pub rejects_sent: Vec<FixMsg>,
}

impl Client {
    /// Sends an application message of type `msg_type` with these body fields.
    pub fn send(&mut self, msg_type: &str, fields: &[(i32, String)]) -> Result<(), ClientError> {
        self.send_with_groups(msg_type, fields, &[])
    }

    /// Sends a message with body fields and repeating groups.
    pub fn send_with_groups(
        &mut self,
        msg_type: &str,
        fields: &[(i32, String)],
        groups: &[RepeatingGroup],
    ) -> Result<(), ClientError> {
        let mut msg = Message::new();
        msg.with_header_mut(|h| {
            let _ = h.set_field(8, self.begin_string.as_str());
            let _ = h.set_field(35, msg_type);
        });
        for (t, v) in fields {
            msg.set_field(*t, v.as_str())?;
        }
        for RepeatingGroup {
            count,
            delim,
            entries,
        } in groups
        {
            for entry in entries {
                let mut g = quickfix::Group::try_new(*count, *delim)?;
                for (t, v) in entry {
                    g.set_field(*t, v.as_str())?;
                }
                msg.add_group(&g)?;
            }
        }
        send_to_target(msg, &self.session)?;
        Ok(())
    }

    /// Sends a MarketDataRequest (V): `subscription` 0 snapshot, 1 snapshot + updates,
    /// 2 unsubscribe; `depth` 0 for the full book; aggregated price levels.
    pub fn market_data_request(
        &mut self,
        id: &str,
        subscription: &str,
        depth: u32,
        entry_types: &[&str],
        symbols: &[String],
    ) -> Result<(), ClientError> {
        let fields = [
            (262, id.to_string()),
            (263, subscription.to_string()),
            (264, depth.to_string()),
            (265, "1".to_string()),
            (266, "Y".to_string()),
        ];
        let types = entry_types
            .iter()
            .map(|t| vec![(269, t.to_string())])
            .collect();
        let syms = symbols.iter().map(|s| vec![(55, s.clone())]).collect();
        let groups = [
            RepeatingGroup {
                count: 267,
                delim: 269,
                entries: types,
            },
            RepeatingGroup {
                count: 146,
                delim: 55,
                entries: syms,
            },
        ];
        self.send_with_groups("V", &fields, &groups)
    }

    /// The next event, or `None` after `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<ClientEvent> {
        let e = self.rx.recv_timeout(timeout).ok()?;
        if let ClientEvent::SentAdmin(m) = &e
            && m.msg_type == "3"
        {
            self.rejects_sent.push(m.clone());
        }
        Some(e)
    }

    /// The next application message, skipping session events, or `None` after `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<FixMsg> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left)? {
                ClientEvent::App(m) => return Some(m),
                _ => continue,
            }
        }
    }

    /// A fresh ClOrdID.
    pub fn cl_ord_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:x}-{}", self.started, self.next_id)
    }

    /// Waits for the next logon (after a reconnect), up to `timeout`.
    pub fn wait_logon(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Some(ClientEvent::Logon) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    }
}

/// The session settings of one initiator session.
fn settings(o: &ClientOptions) -> Result<(SessionSettings, SessionId), ClientError> {
    let session = SessionId::try_new(&o.begin_string, &o.sender, &o.target, "")?;
    let store = o.store_dir.to_string_lossy().into_owned();
    let mut global = Dictionary::new();
    global.set("ConnectionType", "initiator".to_string())?;
    global.set("FileStorePath", store)?;
    let mut d = Dictionary::new();
    d.set("SocketConnectHost", o.host.clone())?;
    d.set("SocketConnectPort", o.port.to_string())?;
    d.set("HeartBtInt", o.heartbeat.to_string())?;
    d.set("StartTime", "00:00:00".to_string())?;
    d.set("EndTime", "00:00:00".to_string())?;
    d.set("ReconnectInterval", "1".to_string())?;
    d.set("UseDataDictionary", "Y".to_string())?;
    if o.reset {
        d.set("ResetOnLogon", "Y".to_string())?;
    }
    let spec = |f: &str| o.specs_dir.join(f).to_string_lossy().into_owned();
    if o.begin_string == "FIXT.1.1" {
        d.set("TransportDataDictionary", spec("FIXT11.xml"))?;
        d.set("AppDataDictionary", spec("FIX50SP2.xml"))?;
        d.set("DefaultApplVerID", "FIX.5.0SP2".to_string())?;
    } else {
        d.set("DataDictionary", spec("FIX44.xml"))?;
    }
    let mut s = SessionSettings::new();
    s.set(None, global)?;
    s.set(Some(&session), d)?;
    Ok((s, session))
}

/// Connects, logs on, and runs `f` with the logged-on [`Client`]; logs out when `f` returns.
pub fn run_client<T>(
    options: &ClientOptions,
    logon_timeout: Duration,
    f: impl FnOnce(&mut Client) -> T,
) -> Result<T, ClientError> {
    std::fs::create_dir_all(&options.store_dir)
        .map_err(|e| ClientError(format!("{}: {e}", options.store_dir.display())))?;
    let (settings, session) = settings(options)?;
    let (tx, rx) = channel();
    let callbacks = Callbacks {
        tx: Mutex::new(tx),
        username: options.username.clone(),
        password: options.password.clone(),
    };
    let store = FileMessageStoreFactory::try_new(&settings)?;
    let log = LogFactory::try_new(&NullLogger)?;
    let app = Application::try_new(&callbacks)?;
    let mut initiator = Initiator::try_new(
        &settings,
        &app,
        &store,
        &log,
        FixSocketServerKind::SingleThreaded,
    )?;
    initiator.start()?;
    let mut client = Client {
        session,
        rx,
        begin_string: options.begin_string.clone(),
        next_id: 0,
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        rejects_sent: Vec::new(),
    };
    if !client.wait_logon(logon_timeout) {
        let _ = initiator.stop();
        return Err(ClientError(format!(
            "no logon as {} within {logon_timeout:?}: the exchange is down, refused the \
             credentials, or its sequence numbers do not match this client's store (start \
             over with --reset)",
            options.sender
        )));
    }
    let out = f(&mut client);
    initiator.stop()?;
    Ok(out)
}

/// An ExecutionReport, OrderCancelReject or OrderMassCancelReport in one readable line.
pub fn describe(m: &FixMsg) -> String {
    let g = |t| m.get(t).unwrap_or("-");
    match m.msg_type.as_str() {
        "8" => {
            let exec = match g(150) {
                "0" => "new",
                "4" => "canceled",
                "5" => "replaced",
                "8" => "rejected",
                "C" => "expired",
                "F" => "trade",
                "I" => "status",
                other => other,
            };
            let side = if g(54) == "1" { "buy" } else { "sell" };
            let mut s = format!(
                "{exec:<8} {} {side} {} {} @ {}  order {} ClOrdID {}  filled {} left {} avg {}",
                g(1),
                g(38),
                g(55),
                m.get(44).unwrap_or("market"),
                g(37),
                g(11),
                g(14),
                g(151),
                g(6)
            );
            if exec == "trade" {
                s.push_str(&format!("  last {} @ {}", g(32), g(31)));
            }
            if let Some(t) = m.get(58) {
                s.push_str(&format!("  ({t})"));
            }
            if m.get(797) == Some("Y") {
                s.insert_str(0, "copy ");
            }
            s
        }
        "9" => format!(
            "cancel rejected  ClOrdID {} (for {}): {}",
            g(11),
            g(41),
            m.get(58).unwrap_or("")
        ),
        "r" if g(531) == "0" => format!(
            "mass cancel refused  ClOrdID {}: {}",
            g(11),
            m.get(58).unwrap_or("")
        ),
        "r" => format!(
            "mass cancel  ClOrdID {}  {} orders cancelled{}",
            g(11),
            g(533),
            m.get(55).map(|s| format!(" in {s}")).unwrap_or_default()
        ),
        "j" => format!("business reject: {}", m.get(58).unwrap_or("")),
        t => format!("{t}: {:?}", m.fields),
    }
}
