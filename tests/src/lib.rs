//! Helpers shared by the end-to-end tests: finding and starting the `exchange` binary, and a
//! minimal blocking FIX client that frames messages with the gateway's codec.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway::codec::{Framing, frame};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The `exchange` binary built beside this test (same profile and target directory).
pub fn exchange_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/exchange
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = dir.join(format!("exchange{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build --workspace --bins)",
        bin.display()
    );
    bin
}

/// A TCP port that was free a moment ago (for a server that must come back on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Another binary of the workspace built beside this test (`loadgen`, ...).
pub fn sibling_binary(name: &str) -> PathBuf {
    exchange_binary().with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The shared QuickFIX acceptance suite, beside the checkout.
pub fn acceptance_dir() -> PathBuf {
    workspace_root().join("../shared/fix-at")
}

/// A running `exchange` process, killed when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Where it listens for FIX.
    pub port: u16,
    /// Where its HTTP API listens (0 when it has none).
    pub http_port: u16,
    /// Its data directory (removed when dropped).
    pub data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// A fresh, empty temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("exchange-test-{}-{}-{n}", std::process::id(), name));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Starts `exchange at-server` on a free port with the acceptance dictionaries.
pub fn start_at_server(name: &str) -> Server {
    let data = temp_dir(name);
    let mut child = Command::new(exchange_binary())
        .args(["at-server", "--port", "0", "--dictionaries"])
        .arg(acceptance_dir().join("spec"))
        .arg("--data")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start exchange at-server");
    let port = read_port(&mut child);
    Server {
        child,
        port,
        http_port: 0,
        data,
    }
}

/// Reads "... listening on HOST:PORT" from the child's stderr, then keeps draining it.
fn read_port(child: &mut Child) -> u16 {
    read_ports(child).0
}

/// Reads the FIX port (the last "listening on" line) and the HTTP port, if announced before it.
fn read_ports(child: &mut Child) -> (u16, u16) {
    let mut http = 0u16;
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > deadline {
            panic!("the server exited or said nothing before listening");
        }
        if let Some(addr) = line.trim().rsplit("listening on ").next()
            && line.contains("listening on")
        {
            let port = addr
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a port");
            if line.contains("HTTP") {
                http = port;
                continue;
            }
            // The server's warnings go to the test's stderr, which the test runner shows
            // when the test fails.
            std::thread::spawn(move || {
                let mut sink = String::new();
                while lines.read_line(&mut sink).unwrap_or(0) > 0 {
                    eprint!("server: {sink}");
                    sink.clear();
                }
            });
            return (port, http);
        }
    }
}

/// What reading from a connection produced.
#[derive(Debug)]
pub enum Received {
    /// One complete message.
    Message(Vec<u8>),
    /// The peer closed the connection.
    Closed,
    /// Nothing arrived in time.
    Timeout,
}

/// A blocking FIX connection for tests.
pub struct Client {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to 127.0.0.1:port.
    pub fn connect(port: u16) -> std::io::Result<Client> {
        let sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_nodelay(true)?;
        Ok(Client {
            sock,
            buf: Vec::new(),
        })
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Reads the next message, waiting at most `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            match frame(&self.buf, 1 << 20) {
                Framing::Frame(r) => {
                    let m = self.buf[r.clone()].to_vec();
                    self.buf.drain(..r.end);
                    return Received::Message(m);
                }
                Framing::NeedMore { discard } | Framing::Garbled { discard } => {
                    self.buf.drain(..discard);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Received::Timeout;
            }
            let _ = self.sock.set_read_timeout(Some(left));
            let mut chunk = [0u8; 8192];
            match self.sock.read(&mut chunk) {
                Ok(0) => return Received::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Received::Timeout;
                }
                Err(_) => return Received::Closed,
            }
        }
    }

    /// Closes the connection.
    pub fn close(self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}

/// Starts the exchange on a free port over `data`, with the embedded configuration or, when
/// `config` is given, that TOML text (written into `data`). The data directory survives the
/// process so a test can restart over it.
pub fn start_exchange(data: &Path, config: Option<&str>) -> Server {
    start_exchange_with(data, config, &[])
}

/// Like [`start_exchange`] with extra command-line arguments (a `--port` among them replaces
/// the free port).
pub fn start_exchange_with(data: &Path, config: Option<&str>, args: &[&str]) -> Server {
    let mut cmd = Command::new(exchange_binary());
    if !args.contains(&"--port") {
        cmd.args(["--port", "0"]);
    }
    cmd.args(["--http-port", "0", "--data"])
        .arg(data)
        .args(args);
    if let Some(text) = config {
        let path = data.join("exchange-test.toml");
        std::fs::create_dir_all(data).expect("data dir");
        std::fs::write(&path, text).expect("write config");
        cmd.arg("--config").arg(path);
    }
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start exchange");
    let (port, http_port) = read_ports(&mut child);
    Server {
        child,
        port,
        http_port,
        data: data.to_path_buf(),
    }
}

/// An HTTP answer: status code and body.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection: method, path with query, extra headers, body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    try_http(port, method, path, headers, body).expect("HTTP request")
}

/// Like [`http`], returning the error instead of failing the test (for polling a server that
/// may be slow to answer under load).
pub fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<HttpResponse> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok(HttpResponse { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Server {
    /// Stops the process with SIGTERM (a clean shutdown), leaving its data directory, and
    /// waits for it.
    pub fn terminate(mut self) -> PathBuf {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let data = std::mem::take(&mut self.data);
        std::mem::forget(self);
        data
    }

    /// Kills the process with SIGKILL, leaving its data directory, and waits for it.
    pub fn kill9(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data = std::mem::take(&mut self.data);
        std::mem::forget(self);
        data
    }
}

/// A parsed FIX message with owned fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    /// MsgType.
    pub msg_type: String,
    /// Every field in wire order.
    pub fields: Vec<(i32, String)>,
}

impl Msg {
    fn parse(raw: &[u8]) -> Msg {
        let m = gateway::codec::Message::parse(raw).expect("the exchange sends valid FIX");
        Msg {
            msg_type: String::from_utf8_lossy(m.msg_type()).into_owned(),
            fields: m
                .fields
                .iter()
                .map(|f| (f.tag, String::from_utf8_lossy(f.value).into_owned()))
                .collect(),
        }
    }

    /// The first value of a tag.
    pub fn get(&self, tag: i32) -> Option<&str> {
        self.fields
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a tag, which must be there.
    pub fn req(&self, tag: i32) -> &str {
        self.get(tag)
            .unwrap_or_else(|| panic!("tag {tag} missing from {self:?}"))
    }
}

/// A FIX initiator session for tests: logs on, numbers what it sends, answers test requests,
/// and hands over application messages.
pub struct FixClient {
    conn: Client,
    begin: String,
    sender: String,
    target: String,
    next_out: u64,
    /// The next MsgSeqNum expected from the exchange.
    pub next_in: u64,
    enc: gateway::codec::Encoder,
}

impl FixClient {
    /// Connects and logs on to the exchange as `sender` (FIX.4.4 unless `begin` says FIXT.1.1)
    /// with a username and password; `reset` sends ResetSeqNumFlag.
    pub fn logon(
        port: u16,
        begin: &str,
        sender: &str,
        user: &str,
        password: &str,
        reset: bool,
    ) -> Result<FixClient, String> {
        Self::logon_at(port, begin, sender, user, password, reset, 1, 1)
    }

    /// Like [`FixClient::logon`] with explicit sequence numbers (a client reconnecting).
    #[allow(clippy::too_many_arguments)]
    pub fn logon_at(
        port: u16,
        begin: &str,
        sender: &str,
        user: &str,
        password: &str,
        reset: bool,
        next_out: u64,
        next_in: u64,
    ) -> Result<FixClient, String> {
        let conn = Client::connect(port).map_err(|e| e.to_string())?;
        let mut c = FixClient {
            conn,
            begin: begin.into(),
            sender: sender.into(),
            target: "EXCH".into(),
            next_out,
            next_in,
            enc: gateway::codec::Encoder::new(),
        };
        let mut fields = vec![
            (98, "0".to_string()),
            (108, "30".to_string()),
            (553, user.to_string()),
            (554, password.to_string()),
        ];
        if reset {
            fields.push((141, "Y".into()));
        }
        if begin == "FIXT.1.1" {
            fields.push((1137, "9".into()));
        }
        c.send("A", &fields);
        match c.conn.recv(Duration::from_secs(20)) {
            Received::Message(raw) => {
                let m = Msg::parse(&raw);
                if m.msg_type != "A" {
                    return Err(format!("logon answered with {m:?}"));
                }
                c.next_in = m.req(34).parse::<u64>().unwrap_or(0) + 1;
                Ok(c)
            }
            other => Err(format!("no logon reply: {other:?}")),
        }
    }

    /// Shrinks the connection's kernel receive buffer: a reader that stops reading then
    /// pushes back on the exchange after a few kilobytes.
    pub fn shrink_receive_buffer(&self, bytes: usize) {
        socket2::SockRef::from(&self.conn.sock)
            .set_recv_buffer_size(bytes)
            .expect("SO_RCVBUF");
    }

    /// Sends an application or session message with these body fields.
    pub fn send(&mut self, msg_type: &str, fields: &[(i32, String)]) {
        let now = gateway::time::format_utc_millis(gateway::time::now_millis());
        self.enc
            .start(msg_type.as_bytes())
            .str(49, &self.sender)
            .str(56, &self.target)
            .uint(34, self.next_out)
            .field(52, &now);
        for (t, v) in fields {
            self.enc.str(*t, v);
        }
        self.next_out += 1;
        let bytes = self.enc.finish(self.begin.as_bytes()).to_vec();
        self.conn.send(&bytes).expect("send");
    }

    /// The next application message (or Reject, Logout), answering heartbeats on the way.
    pub fn recv(&mut self, timeout: Duration) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.conn.recv(left) {
                Received::Message(raw) => {
                    let m = Msg::parse(&raw);
                    let seq: u64 = m.req(34).parse().unwrap_or(0);
                    if seq >= self.next_in {
                        self.next_in = seq + 1;
                    }
                    match m.msg_type.as_str() {
                        "0" => {}
                        "4" => {
                            if let Some(n) = m.get(36).and_then(|v| v.parse().ok()) {
                                self.next_in = n;
                            }
                        }
                        "1" => {
                            let id = m.req(112).to_string();
                            self.send("0", &[(112, id)]);
                        }
                        _ => return Some(m),
                    }
                }
                Received::Closed | Received::Timeout => return None,
            }
        }
    }

    /// Waits for the next message of a type, failing the test if another application message
    /// or nothing comes first.
    pub fn expect(&mut self, msg_type: &str) -> Msg {
        let m = self
            .recv(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no {msg_type} arrived"));
        assert_eq!(m.msg_type, msg_type, "expected {msg_type}, got {m:?}");
        m
    }

    /// Sends an OrderCancelRequest for the order `orig` (its ClOrdID).
    pub fn cancel(&mut self, cl: &str, orig: &str, account: &str, symbol: &str, side: u8) {
        let now = gateway::time::format_utc_millis(gateway::time::now_millis());
        self.send(
            "F",
            &[
                (11, cl.to_string()),
                (41, orig.to_string()),
                (1, account.to_string()),
                (55, symbol.to_string()),
                (54, side.to_string()),
                (60, String::from_utf8_lossy(&now).into_owned()),
            ],
        );
    }

    /// Sends an OrderStatusRequest for the order `cl` (any ClOrdID it has had), with
    /// OrdStatusReqID `req_id`.
    pub fn status(&mut self, cl: &str, account: &str, symbol: &str, side: u8, req_id: &str) {
        self.send(
            "H",
            &[
                (11, cl.to_string()),
                (790, req_id.to_string()),
                (1, account.to_string()),
                (55, symbol.to_string()),
                (54, side.to_string()),
            ],
        );
    }

    /// Sends an OrderMassCancelRequest: `scope` 1 (one symbol) or 7 (all), with optional
    /// fields such as Account (1), Symbol (55) and Side (54).
    pub fn mass_cancel(&mut self, cl: &str, scope: &str, extra: &[(i32, &str)]) {
        let now = gateway::time::format_utc_millis(gateway::time::now_millis());
        let mut fields = vec![
            (11, cl.to_string()),
            (530, scope.to_string()),
            (60, String::from_utf8_lossy(&now).into_owned()),
        ];
        fields.extend(extra.iter().map(|(t, v)| (*t, v.to_string())));
        self.send("q", &fields);
    }

    /// Sends a limit NewOrderSingle.
    pub fn limit(&mut self, cl: &str, account: &str, symbol: &str, side: u8, qty: u64, px: &str) {
        self.new_order(cl, account, symbol, side, qty, Some(px), "0");
    }

    /// Sends a NewOrderSingle: limit when `px` is given, else market.
    #[allow(clippy::too_many_arguments)]
    pub fn new_order(
        &mut self,
        cl: &str,
        account: &str,
        symbol: &str,
        side: u8,
        qty: u64,
        px: Option<&str>,
        tif: &str,
    ) {
        let now = String::from_utf8_lossy(&gateway::time::format_utc_millis(
            gateway::time::now_millis(),
        ))
        .into_owned();
        let mut f = vec![
            (11, cl.to_string()),
            (1, account.to_string()),
            (55, symbol.to_string()),
            (54, side.to_string()),
            (60, now),
            (38, qty.to_string()),
            (40, if px.is_some() { "2" } else { "1" }.to_string()),
            (59, tif.to_string()),
        ];
        if let Some(p) = px {
            f.push((44, p.to_string()));
        }
        self.send("D", &f);
    }

    /// The MsgSeqNum the next message sent will carry.
    pub fn next_out(&self) -> u64 {
        self.next_out
    }

    /// Logs out and closes.
    pub fn logout(mut self) {
        self.send("5", &[]);
        let _ = self.recv(Duration::from_secs(2));
        self.conn.close();
    }

    /// Drops the connection without a Logout.
    pub fn drop_connection(self) {
        self.conn.close();
    }
}
