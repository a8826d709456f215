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

/// The shared QuickFIX acceptance suite, beside the checkout.
pub fn acceptance_dir() -> PathBuf {
    workspace_root().join("../shared/fix-at")
}

/// A running `exchange` process, killed when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub port: u16,
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
    Server { child, port, data }
}

/// Reads "... listening on HOST:PORT" from the child's stderr, then keeps draining it.
fn read_port(child: &mut Child) -> u16 {
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
            std::thread::spawn(move || {
                let mut sink = String::new();
                while lines.read_line(&mut sink).unwrap_or(0) > 0 {
                    sink.clear();
                }
            });
            return port;
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
