//! `loadgen`: FIX initiator sessions that send orders to the exchange at a target rate and
//! measure order -> acknowledgement latency.
//!
//! Each session logs on (ResetSeqNumFlag), then every millisecond sends its share of the
//! rate: new limit orders around the reference price, cancels of its own open orders, and
//! marketable IOC orders that trade. The first ExecutionReport (or OrderCancelReject) for a
//! ClOrdID is its acknowledgement.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use gateway::codec::{Encoder, Framing, Message, frame};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::sync::Notify;

#[derive(Parser, Clone)]
#[command(name = "loadgen", about = "FIX load generator for the exchange")]
struct Args {
    /// Exchange host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Exchange FIX port.
    #[arg(long, default_value_t = 9878)]
    port: u16,
    /// Number of sessions (LOAD001, LOAD002, ...).
    #[arg(long, default_value_t = 8)]
    sessions: u32,
    /// Threads running the sessions. One keeps the load generator's own CPU and wake-ups low
    /// beside an exchange on the same machine (with two here and two in the exchange, the p99
    /// at 50,000/s on two cores was 0.1-0.5 ms higher than with one in each; see BENCHMARKS.md).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Orders per second across all sessions.
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Percent of messages that cancel an open order.
    #[arg(long, default_value_t = 30)]
    cancel_pct: u32,
    /// Percent of messages that are marketable IOC orders.
    #[arg(long, default_value_t = 10)]
    ioc_pct: u32,
    /// Session name prefix.
    #[arg(long, default_value = "LOAD")]
    prefix: String,
    /// Number of the first session (another load generator may use the ones before it).
    #[arg(long, default_value_t = 1)]
    first_session: u32,
    /// Password of the sessions.
    #[arg(long, default_value = "load")]
    password: String,
    /// Symbols to trade (the first N of the default universe).
    #[arg(long, default_value_t = 20)]
    symbols: usize,
    /// Market-data sessions that subscribe to the traded symbols while the load runs
    /// (MDS001, MDS002, ...; configure them with a market-data session group).
    #[arg(long, default_value_t = 0)]
    md_sessions: u32,
    /// Name prefix of the market-data sessions.
    #[arg(long, default_value = "MDS")]
    md_prefix: String,
    /// MarketDepth the market-data sessions ask for (0 is the full book).
    #[arg(long, default_value_t = 1)]
    md_depth: u32,
    /// The exchange's HTTP port: when given, the reporting lag (journaled sequence ids not yet
    /// in the reporting database, from GET /v1/status) is sampled every 100 ms and summarized.
    #[arg(long)]
    http_port: Option<u16>,
    /// Spread the sessions' sends evenly over each millisecond (session k of n at k/n ms past
    /// it), as independent clients' orders would arrive, instead of every session sending its
    /// share at the start of the millisecond.
    #[arg(long)]
    spread: bool,
}

/// Wakes the sessions in turn, each once a millisecond, spread evenly over the millisecond
/// (session k of n at k/n ms past it). A thread of its own: tokio's timers fire on whole
/// milliseconds, which would line every session's slice up on the same instant.
fn spread_clock(pacers: Vec<Arc<Notify>>, start: Instant, end: Instant) {
    let n = pacers.len().max(1) as u32;
    let step = Duration::from_millis(1) / n;
    std::thread::spawn(move || {
        let mut due = start;
        // A round past the end: every session then wakes once after it and stops.
        for p in pacers.iter().cycle() {
            if due > end + Duration::from_millis(1) {
                break;
            }
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            p.notify_one();
            due += step;
        }
    });
}

/// Samples of the reporting lag and when the database caught up after the load.
#[derive(Default)]
struct LagSamples {
    lags: Vec<u64>,
}

/// The exchange's /v1/status as JSON, over a plain HTTP/1.1 request.
async fn status(host: &str, port: u16) -> anyhow::Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((host, port)).await?;
    s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(serde_json::from_str(body)?)
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
    /// Rejected because the exchange's order queue was full (load shed, never journaled).
    shed: AtomicU64,
    fills: AtomicU64,
    /// When the last acknowledgement arrived, in microseconds from the start of sending.
    last_ack_us: AtomicU64,
    /// The slowest order->ack latency since the last progress line, in microseconds.
    worst_us: AtomicU64,
}

struct Pending {
    sent_at: SendTimes,
    hist: Histogram<u64>,
}

/// When each order still awaiting its first answer was sent. A session's ids are consecutive
/// and mostly answered in order, so a ring from the oldest unanswered id does without hashing
/// (a hash map here was a sixth of the load generator's CPU at the peak rate, taken from the
/// exchange it shares the machine with).
#[derive(Default)]
struct SendTimes {
    /// The id of `times[0]`.
    base: u64,
    times: VecDeque<Option<Instant>>,
}

impl SendTimes {
    /// Records the next id's send time; ids must come in order.
    fn insert(&mut self, id: u64, at: Instant) {
        if self.times.is_empty() {
            self.base = id;
        }
        debug_assert_eq!(id, self.base + self.times.len() as u64);
        self.times.push_back(Some(at));
    }

    /// Whether every order recorded has had its answer.
    fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Takes an id's send time, if it is still awaiting its answer.
    fn remove(&mut self, id: u64) -> Option<Instant> {
        let i = usize::try_from(id.checked_sub(self.base)?).ok()?;
        let at = self.times.get_mut(i)?.take();
        while self.times.front().is_some_and(Option::is_none) {
            self.times.pop_front();
            self.base += 1;
        }
        at
    }
}

/// MsgType, ClOrdID and ExecType of a message `frame` delimited: all the reader needs, without
/// a full parse (checksum included) of every report on a machine the exchange shares.
fn ack_fields(raw: &[u8]) -> [Option<&[u8]>; 3] {
    let mut found = [None; 3];
    for f in raw.split(|&c| c == 1) {
        let Some(eq) = f.iter().position(|&c| c == b'=') else {
            continue;
        };
        let slot = match &f[..eq] {
            b"35" => 0,
            b"11" => 1,
            b"150" => 2,
            _ => continue,
        };
        found[slot].get_or_insert(&f[eq + 1..]);
        // All three sit in a report's first dozen fields: the rest need not be read.
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    found
}

/// Whether a reject says the exchange's order queue was full: the order was shed, not traded
/// or refused on its merits.
fn is_shed(raw: &[u8]) -> bool {
    const BUSY: &[u8] = b"\x0158=exchange busy";
    raw.windows(BUSY.len()).any(|w| w == BUSY)
}

/// A tiny deterministic generator; the load's shape matters, not its randomness.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `<nonce>-<id>`, the load generator's ClOrdIDs, written into `buf`.
fn cl_ord_id(buf: &mut Vec<u8>, nonce: u64, id: u64) -> &[u8] {
    buf.clear();
    gateway::codec::write_uint(buf, nonce);
    buf.push(b'-');
    gateway::codec::write_uint(buf, id);
    buf
}

/// The id in a ClOrdID [`cl_ord_id`] wrote.
fn id_of(cl_ord_id: &[u8]) -> Option<u64> {
    let dash = cl_ord_id.iter().position(|&c| c == b'-')?;
    gateway::codec::parse_uint(&cl_ord_id[dash + 1..])
}

fn now_text() -> [u8; 21] {
    gateway::time::format_utc_millis(gateway::time::now_millis())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(args)));
    // The error and its causes on one line: a failed session is an outcome of the run, not a
    // crash, so no backtrace even when RUST_BACKTRACE is set.
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let universe = engine::EngineConfig::default_universe();
    let symbols: Vec<(String, i64, i64)> = universe
        .instruments
        .iter()
        .take(args.symbols.max(1))
        .map(|i| (i.symbol.clone(), i.reference_price, i.tick))
        .collect();
    let counters = Arc::new(Counters::default());
    let nonce = gateway::time::now_millis() as u64 % 1_000_000_000;
    let mut tasks = Vec::new();
    let hists = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    // Subscribers first: the load starts once every one has its snapshot.
    let delays = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new(3)?));
    let updates = Arc::new(AtomicU64::new(0));
    let md_ready = Arc::new(AtomicU64::new(0));
    let md_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut md_tasks = Vec::new();
    let names: Vec<String> = symbols.iter().map(|s| s.0.clone()).collect();
    for i in 1..=args.md_sessions {
        let (args, names, delays, updates) = (
            args.clone(),
            names.clone(),
            Arc::clone(&delays),
            Arc::clone(&updates),
        );
        let (ready, done) = (Arc::clone(&md_ready), Arc::clone(&md_done));
        md_tasks.push(tokio::spawn(async move {
            subscriber(i, args, names, delays, updates, ready, done).await
        }));
    }
    let waiting = Instant::now();
    while md_ready.load(Ordering::Relaxed) < u64::from(args.md_sessions) {
        if let Some(i) = md_tasks.iter().position(|t| t.is_finished()) {
            let why = match md_tasks.swap_remove(i).await {
                Ok(Err(e)) => e.to_string(),
                other => format!("{other:?}"),
            };
            bail!("a market-data session did not subscribe: {why}");
        }
        if waiting.elapsed() > Duration::from_secs(300) {
            bail!("market-data sessions did not all subscribe within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if args.md_sessions > 0 {
        eprintln!(
            "{} market-data sessions subscribed in {:.1}s",
            args.md_sessions,
            waiting.elapsed().as_secs_f64()
        );
    }
    let start = Instant::now() + Duration::from_millis(500);
    let pacers: Vec<Arc<Notify>> = (0..args.sessions)
        .map(|_| Arc::new(Notify::new()))
        .collect();
    if args.spread {
        spread_clock(
            pacers.clone(),
            start,
            start + Duration::from_secs(args.duration),
        );
    }
    for (i, pacer) in (args.first_session..).zip(&pacers) {
        let (args, symbols, counters, hists) = (
            args.clone(),
            symbols.clone(),
            Arc::clone(&counters),
            Arc::clone(&hists),
        );
        let pacer = args.spread.then(|| Arc::clone(pacer));
        tasks.push(tokio::spawn(async move {
            session(i, nonce, args, symbols, counters, hists, start, pacer).await
        }));
    }
    let progress = {
        let counters = Arc::clone(&counters);
        let secs = args.duration;
        tokio::spawn(async move {
            let mut last = 0;
            for s in 1..=secs + 5 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let sent = counters.sent.load(Ordering::Relaxed);
                let acked = counters.acked.load(Ordering::Relaxed);
                let worst = counters.worst_us.swap(0, Ordering::Relaxed);
                eprintln!(
                    "[{s:>3}s] sent {sent:>10}  acked {acked:>10}  {:>8}/s  fills {}  slowest ack {:.1} ms",
                    sent - last,
                    counters.fills.load(Ordering::Relaxed),
                    worst as f64 / 1000.0
                );
                last = sent;
            }
        })
    };
    let lag = Arc::new(std::sync::Mutex::new(LagSamples::default()));
    let lag_task = args.http_port.map(|port| {
        let (lag, host) = (Arc::clone(&lag), args.host.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if let Ok(s) = status(&host, port).await
                    && let Some(l) = s["reportingLag"].as_u64()
                {
                    lag.lock().unwrap_or_else(|e| e.into_inner()).lags.push(l);
                }
            }
        })
    });
    let mut errors = 0;
    for t in tasks {
        if let Err(e) = t.await? {
            eprintln!("session failed: {e:#}");
            errors += 1;
        }
    }
    md_done.store(true, Ordering::Relaxed);
    for t in md_tasks {
        if let Err(e) = t.await? {
            eprintln!("market-data session failed: {e:#}");
            errors += 1;
        }
    }
    progress.abort();
    let h = hists.lock().await;
    let sent = counters.sent.load(Ordering::Relaxed);
    let acked = counters.acked.load(Ordering::Relaxed);
    let us = |v: u64| v as f64 / 1000.0;
    println!(
        "sessions {} target {}/s duration {}s: sent {sent}, acknowledged {acked} ({} rejected, {} of them for a full order queue), fills {}, unacknowledged {}",
        args.sessions,
        args.rate,
        args.duration,
        counters.rejected.load(Ordering::Relaxed),
        counters.shed.load(Ordering::Relaxed),
        counters.fills.load(Ordering::Relaxed),
        sent - acked
    );
    // Over the time until the last acknowledgement: orders a backlog acknowledges after the
    // sending stopped do not count as if they had been acknowledged within it.
    let acking =
        (counters.last_ack_us.load(Ordering::Relaxed) as f64 / 1e6).max(args.duration as f64);
    println!(
        "throughput {:.0} orders/s acknowledged (the last after {acking:.2} s of a {} s run)",
        acked as f64 / acking,
        args.duration
    );
    println!(
        "order->ack latency us: p50 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.max())
    );
    if args.md_sessions > 0 {
        // The delays are recorded in whole milliseconds.
        let ms = |v: u64| v as f64;
        let d = delays.lock().unwrap_or_else(|e| e.into_inner());
        println!(
            "market data: {} subscribers, {} incremental refreshes received; trade->incremental delay ms (1 ms resolution): p50 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0} over {} trade entries",
            args.md_sessions,
            updates.load(Ordering::Relaxed),
            ms(d.value_at_quantile(0.5)),
            ms(d.value_at_quantile(0.99)),
            ms(d.value_at_quantile(0.999)),
            ms(d.max()),
            d.len()
        );
    }
    let enabled = match args.http_port {
        Some(port) => status(&args.host, port)
            .await
            .is_ok_and(|s| s["reportingEnabled"] != false),
        None => false,
    };
    if let (Some(task), Some(port), true) = (lag_task, args.http_port, enabled) {
        task.abort();
        let done = Instant::now();
        let mut caught_up = None;
        while done.elapsed() < Duration::from_secs(120) {
            if let Ok(s) = status(&args.host, port).await
                && s["reportingLag"].as_u64() == Some(0)
            {
                caught_up = Some(done.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut l = lag.lock().unwrap_or_else(|e| e.into_inner()).lags.clone();
        l.sort_unstable();
        let q = |p: f64| {
            l.get(((l.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0)
        };
        println!(
            "reporting lag (sequence ids journaled, not yet in the database; {} samples every 100 ms): p50 {}  p99 {}  max {}; caught up {} after the load",
            l.len(),
            q(0.5),
            q(0.99),
            l.last().copied().unwrap_or(0),
            caught_up.map_or("not within 120 s".into(), |d| format!(
                "{} ms",
                d.as_millis()
            ))
        );
    }
    if errors > 0 {
        bail!("{errors} sessions failed");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn session(
    index: u32,
    nonce: u64,
    args: Args,
    symbols: Vec<(String, i64, i64)>,
    counters: Arc<Counters>,
    hists: Arc<Mutex<Histogram<u64>>>,
    start: Instant,
    pacer: Option<Arc<Notify>>,
) -> anyhow::Result<()> {
    let name = format!("{}{index:03}", args.prefix);
    let (mut rd, mut wr, mut buf) = logon(&args, &name).await?;
    let mut enc = Encoder::new();
    let mut seq = 2u64;
    let header = |enc: &mut Encoder, t: &[u8], seq: u64, sending_time: &[u8]| {
        enc.start(t)
            .str(49, &name)
            .str(56, "EXCH")
            .uint(34, seq)
            .field(52, sending_time);
    };

    let pending = Arc::new(std::sync::Mutex::new(Pending {
        sent_at: SendTimes::default(),
        hist: Histogram::new(3)?,
    }));
    let reader = {
        let (pending, counters) = (Arc::clone(&pending), Arc::clone(&counters));
        tokio::spawn(async move {
            let mut chunk = vec![0u8; 1 << 16];
            loop {
                let n = match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut used = 0;
                let now = Instant::now();
                while let Framing::Frame(r) = frame(&buf[used..], 1 << 20) {
                    let raw = &buf[used + r.start..used + r.end];
                    used += r.end;
                    let [Some(t), Some(cl), exec_type] = ack_fields(raw) else {
                        continue;
                    };
                    let Some(id) = id_of(cl) else { continue };
                    if exec_type == Some(b"F") {
                        counters.fills.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(sent) = p.sent_at.remove(id) {
                        let took = now - sent;
                        let _ = p.hist.record(took.as_nanos() as u64);
                        counters
                            .worst_us
                            .fetch_max(took.as_micros() as u64, Ordering::Relaxed);
                        counters.acked.fetch_add(1, Ordering::Relaxed);
                        let at = now.saturating_duration_since(start).as_micros() as u64;
                        counters.last_ack_us.fetch_max(at, Ordering::Relaxed);
                        if t == b"9" || exec_type == Some(b"8") {
                            counters.rejected.fetch_add(1, Ordering::Relaxed);
                            if is_shed(raw) {
                                counters.shed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                buf.drain(..used);
            }
        })
    };

    // Send at this session's share of the rate, in 1 ms slices.
    let per_ms = args.rate as f64 / args.sessions as f64 / 1000.0;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (u64::from(index) * 0x1000_0001));
    let mut next_id = 1u64;
    let end = start + Duration::from_secs(args.duration);
    let mut tick = tokio::time::interval_at(start.into(), Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut out = Vec::with_capacity(1 << 16);
    let mut opens: VecDeque<(u64, usize, u8)> = VecDeque::new();
    let (mut cl_buf, mut orig_buf) = (Vec::new(), Vec::new());
    let mut slice = 0u64;
    let mut sent = 0u64;
    while Instant::now() < end {
        match &pacer {
            Some(p) => p.notified().await,
            None => {
                tick.tick().await;
            }
        }
        slice += 1;
        out.clear();
        let now = Instant::now();
        // Timestamps have millisecond resolution and a slice is a millisecond: one for all.
        let ts = now_text();
        // What is owed by now: a late wake-up sends more, none is lost.
        let due = (now.saturating_duration_since(start).as_secs_f64() * 1000.0 * per_ms) as u64;
        let n = due.saturating_sub(sent);
        sent += n;
        let mut ids = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let id = next_id;
            next_id += 1;
            let cl = cl_ord_id(&mut cl_buf, nonce, id);
            let roll = rng.below(100) as u32;
            if roll < args.cancel_pct && !opens.is_empty() || opens.len() > 2_000 {
                let (orig, s, side) = opens.pop_front().expect("not empty");
                header(&mut enc, b"F", seq, &ts);
                enc.field(11, cl)
                    .field(41, cl_ord_id(&mut orig_buf, nonce, orig))
                    .str(55, &symbols[s].0)
                    .uint(54, u64::from(side))
                    .field(60, &ts);
            } else {
                let s = rng.below(symbols.len() as u64) as usize;
                let (sym, reference, tick_size) = &symbols[s];
                let side = 1 + rng.below(2) as u8;
                let ioc = roll >= 100 - args.ioc_pct;
                // Passive orders rest up to 20 ticks behind the reference; IOC orders
                // cross it by 5 ticks and trade with whatever rests there.
                let offset = if ioc { 5 } else { -(1 + rng.below(20) as i64) };
                let px = if side == 1 {
                    reference + offset * tick_size
                } else {
                    reference - offset * tick_size
                };
                header(&mut enc, b"D", seq, &ts);
                enc.field(11, cl)
                    .str(55, sym)
                    .uint(54, u64::from(side))
                    .field(60, &ts)
                    .str(38, "100")
                    .str(40, "2")
                    .str(44, &gateway::reports::fmt_price(px))
                    .str(59, if ioc { "3" } else { "0" });
                if !ioc {
                    opens.push_back((id, s, side));
                }
            }
            seq += 1;
            out.extend_from_slice(enc.finish(b"FIX.4.4"));
            ids.push(id);
        }
        if !ids.is_empty() {
            {
                let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                for id in &ids {
                    p.sent_at.insert(*id, now);
                }
            }
            counters.sent.fetch_add(ids.len() as u64, Ordering::Relaxed);
            wr.write_all(&out).await?;
        }
        if slice % 10_000 == 0 {
            // A heartbeat keeps the session alive on long runs.
            header(&mut enc, b"0", seq, &now_text());
            seq += 1;
            wr.write_all(enc.finish(b"FIX.4.4")).await?;
        }
    }
    // Give outstanding orders time to be acknowledged.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sent_at
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    header(&mut enc, b"5", seq, &now_text());
    let _ = wr.write_all(enc.finish(b"FIX.4.4")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    reader.abort();
    let hist = pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .hist
        .clone();
    hists.lock().await.add(&hist)?;
    Ok(())
}

type Halves = (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
    Vec<u8>,
);

/// Connects and logs on as `name` (MsgSeqNum 1, ResetSeqNumFlag); returns the connection and
/// whatever arrived after the Logon answer.
async fn logon(args: &Args, name: &str) -> anyhow::Result<Halves> {
    let sock = TcpStream::connect((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("{name}: connecting"))?;
    sock.set_nodelay(true)?;
    let (mut rd, mut wr) = sock.into_split();
    let mut enc = Encoder::new();
    enc.start(b"A")
        .str(49, name)
        .str(56, "EXCH")
        .uint(34, 1)
        .field(52, &now_text());
    enc.str(98, "0")
        .str(108, "60")
        .str(141, "Y")
        .str(553, &name.to_lowercase())
        .str(554, &args.password);
    wr.write_all(enc.finish(b"FIX.4.4")).await?;
    let mut buf = Vec::with_capacity(1 << 16);
    loop {
        let mut chunk = [0u8; 4096];
        // A thousand subscribers logging on at once wait for each other's password checks.
        let n = tokio::time::timeout(Duration::from_secs(120), rd.read(&mut chunk))
            .await
            .with_context(|| format!("{name}: no logon answer"))??;
        if n == 0 {
            bail!("{name}: connection closed at logon");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Framing::Frame(r) = frame(&buf, 1 << 20) {
            let m = Message::parse(&buf[r.clone()]).map_err(|e| anyhow::anyhow!("{e}"))?;
            if m.msg_type() != b"A" {
                bail!("{name}: logon refused: {:?}", m.get_str(58));
            }
            buf.drain(..r.end);
            return Ok((rd, wr, buf));
        }
    }
}

/// A market-data subscriber: subscribes to the symbols and records, for every trade entry of
/// an incremental refresh, the delay from the trade (MDEntryDate/MDEntryTime, ms) to arrival.
async fn subscriber(
    index: u32,
    args: Args,
    symbols: Vec<String>,
    delays: Arc<std::sync::Mutex<Histogram<u64>>>,
    updates: Arc<AtomicU64>,
    ready: Arc<AtomicU64>,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let name = format!("{}{index:03}", args.md_prefix);
    let (mut rd, mut wr, mut buf) = logon(&args, &name).await?;
    let mut enc = Encoder::new();
    enc.start(b"V")
        .str(49, &name)
        .str(56, "EXCH")
        .uint(34, 2)
        .field(52, &now_text())
        .str(262, "L")
        .str(263, "1")
        .uint(264, u64::from(args.md_depth))
        .str(267, "3")
        .str(269, "0")
        .str(269, "1")
        .str(269, "2")
        .uint(146, symbols.len() as u64);
    for s in &symbols {
        enc.str(55, s);
    }
    wr.write_all(enc.finish(b"FIX.4.4")).await?;
    let mut hist = Histogram::<u64>::new(3)?;
    let mut chunk = vec![0u8; 1 << 16];
    let mut subscribed = false;
    while !done.load(Ordering::Relaxed) {
        let n = match tokio::time::timeout(Duration::from_millis(200), rd.read(&mut chunk)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => bail!("{name}: disconnected"),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let now_ms = gateway::time::now_millis();
        let mut used = 0;
        let mut fields = Vec::with_capacity(256);
        while let Framing::Frame(r) = frame(&buf[used..], 1 << 24) {
            let raw = &buf[used + r.start..used + r.end];
            used += r.end;
            if gateway::codec::parse(raw, &mut fields).is_err() {
                continue;
            }
            match fields.get(2).map(|f| f.value) {
                Some(b"W") if !subscribed => {
                    subscribed = true;
                    ready.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Some(b"Y") => bail!("{name}: subscription rejected"),
                Some(b"X") => {}
                _ => continue,
            }
            updates.fetch_add(1, Ordering::Relaxed);
            let mut trade = false;
            let mut date = None;
            for f in &fields {
                match f.tag {
                    279 => trade = false,
                    269 => trade = f.value == b"2",
                    272 if trade => {
                        date = gateway::time::parse_date(f.value).map(|d| d * 86_400_000)
                    }
                    273 if trade => {
                        if let (Some(d), Some(t)) = (date, gateway::time::parse_time_only(f.value))
                        {
                            let delay = (now_ms - (d + t)).max(0) as u64;
                            let _ = hist.record(delay);
                        }
                    }
                    _ => {}
                }
            }
        }
        buf.drain(..used);
    }
    let _ = wr.shutdown().await;
    delays
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .add(&hist)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_times_answer_each_id_once_in_any_order() {
        let t0 = Instant::now();
        let at = |i: u64| t0 + Duration::from_micros(i);
        let mut s = SendTimes::default();
        for id in 5..10 {
            s.insert(id, at(id));
        }
        assert_eq!(s.remove(7), Some(at(7)));
        assert_eq!(s.remove(7), None, "answered once");
        assert_eq!(s.remove(4), None, "before the first id");
        assert_eq!(s.remove(10), None, "not sent yet");
        assert_eq!(s.remove(5), Some(at(5)));
        assert_eq!(s.remove(6), Some(at(6)));
        // 5..=7 answered: the ring starts at 8 now.
        assert_eq!((s.base, s.times.len()), (8, 2));
        s.insert(10, at(10));
        for id in [9, 10, 8] {
            assert_eq!(s.remove(id), Some(at(id)));
        }
        assert!(s.is_empty());
        s.insert(11, at(11));
        assert_eq!(s.remove(11), Some(at(11)));
    }

    #[test]
    fn ack_fields_reads_the_first_of_each_tag() {
        let raw =
            b"8=FIX.4.4\x019=50\x0135=8\x0111=7-42\x01150=F\x01111=x\x0111=again\x0110=000\x01";
        let [t, cl, et] = ack_fields(raw);
        assert_eq!(
            (t, cl, et),
            (Some(&b"8"[..]), Some(&b"7-42"[..]), Some(&b"F"[..]))
        );
        assert_eq!(ack_fields(b"8=FIX.4.4\x0135=9\x01")[1], None);
        let mut buf = Vec::new();
        assert_eq!(cl_ord_id(&mut buf, 12, 345), b"12-345");
        assert_eq!(id_of(b"12-345"), Some(345));
        assert_eq!(id_of(b"12345"), None);
        assert!(is_shed(
            b"35=8\x0111=1-2\x01150=8\x0158=exchange busy: order queue full, try again\x01"
        ));
        assert!(!is_shed(
            b"35=8\x0111=1-2\x01150=8\x0158=unknown symbol\x01"
        ));
    }
}
