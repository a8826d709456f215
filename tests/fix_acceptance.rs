//! Runs QuickFIX's server acceptance definitions (FIX.4.4 and FIXT.1.1/FIX.5.0SP2) against
//! `exchange at-server` over TCP, one fresh server process per definition.
//!
//! The `.def` format and the comparison rules are those of the suite's README: `I` lines are
//! sent (with `<TIME>` substituted and BodyLength/CheckSum filled in where absent), `E` lines
//! are compared with the next message received by content (timestamps and Text by presence),
//! `iCONNECT`/`iDISCONNECT` open and close connections, `eDISCONNECT` expects the acceptor to
//! close the connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exchange_tests::{Client, Received, acceptance_dir, start_at_server};
use gateway::codec::{Message, checksum};
use gateway::time::{format_utc_seconds, now_millis};
use libtest_mimic::{Arguments, Failed, Trial};

const SOH: u8 = 1;
/// How long an expected message may take (the heartbeat tests wait several intervals).
const RECV_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the acceptor may take to close a connection.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Replaces `<TIME>`, `<TIME+N>` and `<TIME-N>` with the current UTC time shifted by N seconds.
fn substitute_time(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 16);
    let mut i = 0;
    while i < line.len() {
        if line[i..].starts_with(b"<TIME") {
            let end = i + line[i..]
                .iter()
                .position(|&c| c == b'>')
                .expect("closing >");
            let shift: i64 = std::str::from_utf8(&line[i + 5..end])
                .ok()
                .and_then(|s| {
                    if s.is_empty() {
                        Some(0)
                    } else {
                        s.parse().ok()
                    }
                })
                .expect("time shift");
            out.extend_from_slice(&format_utc_seconds(now_millis() + shift * 1000));
            i = end + 1;
        } else {
            out.push(line[i]);
            i += 1;
        }
    }
    out
}

fn split_fields(msg: &[u8]) -> Vec<&[u8]> {
    msg.split(|&c| c == SOH).filter(|f| !f.is_empty()).collect()
}

/// Completes a message to send: BodyLength after BeginString when there is none, CheckSum at
/// the end when there is none. Values the definition gives on purpose are kept.
fn prepare(line: &[u8]) -> Vec<u8> {
    let msg = substitute_time(line);
    let fields = split_fields(&msg);
    let has_len = fields.iter().any(|f| f.starts_with(b"9="));
    let has_cks = fields.last().is_some_and(|f| f.starts_with(b"10="));
    let mut out = Vec::with_capacity(msg.len() + 16);
    let body_fields = &fields[1..fields.len() - usize::from(has_cks)];
    out.extend_from_slice(fields[0]);
    out.push(SOH);
    if !has_len {
        let body_len: usize = body_fields.iter().map(|f| f.len() + 1).sum();
        out.extend_from_slice(format!("9={body_len}").as_bytes());
        out.push(SOH);
    }
    for f in body_fields {
        out.extend_from_slice(f);
        out.push(SOH);
    }
    if has_cks {
        out.extend_from_slice(fields[fields.len() - 1]);
    } else {
        out.extend_from_slice(format!("10={:03}", checksum(&out)).as_bytes());
    }
    out.push(SOH);
    out
}

/// Tags compared by presence only.
fn presence_only(tag: &[u8]) -> bool {
    matches!(tag, b"52" | b"60" | b"122" | b"42" | b"58")
}

fn show(m: &[u8]) -> String {
    String::from_utf8_lossy(m).replace('\x01', "|")
}

/// Compares a received message with an expected line by content.
fn compare(expected: &[u8], got: &[u8]) -> Result<(), String> {
    let parsed = Message::parse(got)
        .map_err(|e| format!("received a broken message ({e}): {}", show(got)))?;
    let entry = |t: &[u8], v: &[u8]| -> (Vec<u8>, Vec<u8>) {
        let v = if presence_only(t) {
            Vec::new()
        } else {
            v.to_vec()
        };
        (t.to_vec(), v)
    };
    let mut want: Vec<_> = split_fields(expected)
        .into_iter()
        .map(|f| match f.iter().position(|&c| c == b'=') {
            Some(p) => entry(&f[..p], &f[p + 1..]),
            None => entry(f, b""),
        })
        .filter(|(t, _)| t != b"9" && t != b"10")
        .collect();
    let mut have: Vec<_> = parsed
        .fields
        .iter()
        .map(|f| entry(f.tag.to_string().as_bytes(), f.value))
        .filter(|(t, _)| t != b"9" && t != b"10")
        .collect();
    want.sort();
    have.sort();
    if want != have {
        return Err(format!(
            "expected {}\n     got {}",
            show(expected),
            show(got)
        ));
    }
    Ok(())
}

fn run_definition(path: &Path) -> Result<(), Failed> {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let server = start_at_server(&name);
    let mut conns: HashMap<u32, Client> = HashMap::new();
    for (n, raw_line) in text.split(|&c| c == b'\n').enumerate() {
        let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        let line = line.trim_ascii_start();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let ctx = |e: String| -> Failed { format!("{name} line {}: {e}", n + 1).into() };
        let verb = line[0];
        let rest = &line[1..];
        // An optional connection number: "1,8=FIX..." or "2,CONNECT".
        let (conn, body) = match rest.iter().position(|&c| c == b',') {
            Some(p) if p > 0 && rest[..p].iter().all(u8::is_ascii_digit) => (
                std::str::from_utf8(&rest[..p]).unwrap().parse().unwrap(),
                &rest[p + 1..],
            ),
            _ => (1u32, rest),
        };
        match (verb, body) {
            (b'i', b"CONNECT") => {
                let c = Client::connect(server.port).map_err(|e| ctx(format!("connect: {e}")))?;
                conns.insert(conn, c);
            }
            (b'i', b"DISCONNECT") => {
                if let Some(c) = conns.remove(&conn) {
                    c.close();
                }
            }
            (b'e', b"DISCONNECT") => {
                let c = conns
                    .get_mut(&conn)
                    .ok_or_else(|| ctx("no such connection".into()))?;
                match c.recv(DISCONNECT_TIMEOUT) {
                    Received::Closed => {
                        conns.remove(&conn);
                    }
                    Received::Message(m) => {
                        return Err(ctx(format!("expected a disconnect, received {}", show(&m))));
                    }
                    Received::Timeout => {
                        return Err(ctx(
                            "expected a disconnect, the connection stayed open".into()
                        ));
                    }
                }
            }
            (b'I', msg) => {
                let c = conns
                    .get_mut(&conn)
                    .ok_or_else(|| ctx("no such connection".into()))?;
                c.send(&prepare(msg))
                    .map_err(|e| ctx(format!("send: {e}")))?;
            }
            (b'E', msg) => {
                let c = conns
                    .get_mut(&conn)
                    .ok_or_else(|| ctx("no such connection".into()))?;
                match c.recv(RECV_TIMEOUT) {
                    Received::Message(m) => compare(msg, &m).map_err(ctx)?,
                    Received::Closed => {
                        return Err(ctx(format!("connection closed; expected {}", show(msg))));
                    }
                    Received::Timeout => {
                        return Err(ctx(format!("nothing received; expected {}", show(msg))));
                    }
                }
            }
            _ => return Err(ctx(format!("unknown step {}", show(line)))),
        }
    }
    for (_, c) in conns.drain() {
        c.close();
    }
    Ok(())
}

fn definitions(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "def"))
        .collect();
    v.sort();
    v
}

fn main() {
    let args = Arguments::from_args();
    let root = acceptance_dir().join("definitions/server");
    let mut trials = Vec::new();
    for suite in ["fix44", "fix50sp2"] {
        for path in definitions(&root.join(suite)) {
            let name = format!("{suite}::{}", path.file_stem().unwrap().to_string_lossy());
            trials.push(Trial::test(name, move || run_definition(&path)));
        }
    }
    assert_eq!(trials.len(), 119, "the suite has 119 definitions");
    libtest_mimic::run(&args, trials).exit();
}
