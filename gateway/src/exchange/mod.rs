//! The running exchange: FIX sessions -> order entry -> sequencer and journal -> engine ->
//! execution reports.
//!
//! Threads: tokio runs the sessions; one engine thread owns the journal and the engine; one
//! report thread turns events into FIX messages for their sessions.
//!
//! The engine thread takes the commands waiting in its bounded queue as a batch, stamps each
//! with the next sequence id and the batch's timestamp, writes them to the journal and syncs
//! them (group commit), and only then applies them: nothing is reported that the journal could
//! lose. At start-up the journal is replayed into a fresh engine. The report thread records,
//! in `delivered`, the last sequence id whose reports are in the session stores; reports of
//! later commands are re-delivered after a crash, flagged PossResend (97=Y), so a client gets
//! every report at least once and can tell a repeat by its ExecID.

pub mod config;
pub mod market_data;
pub mod order_entry;
pub mod snapshots;
pub mod trim;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use engine::command::{Asset, CloseTrading, MassCancelRequest, OpenTrading, Transfer};
use engine::config::decimal_to_units;
use engine::journal::{Journal, JournalOptions, Record};
use engine::types::{AccountId, ClOrdId, SessionId};
use engine::{Command, Engine, EngineConfig, Event};

use marketdata::archive::Archive;

use crate::acceptor::Acceptor;
use crate::config::Role;
use crate::reports::{Names, Report, render, tag};
use crate::session::{Session, SessionKey};
use crate::time::{now_millis, now_nanos, yyyymmdd};
use config::ExchangeConfig;
use market_data::{MarketData, MdInput};
use order_entry::{OrderEntry, SessionInfo};

/// Commands the engine thread takes in one group commit at most.
const MAX_BATCH: usize = 4096;

/// An event with the sequence id and timestamp of the command that caused it.
#[derive(Clone, Copy, Debug)]
pub struct Stamped {
    /// The command's sequence id.
    pub seq: u64,
    /// The command's timestamp, ns since the Unix epoch.
    pub timestamp: i64,
    /// The event.
    pub event: Event,
}

/// A group commit's events.
struct Batch {
    last_seq: u64,
    events: Vec<Stamped>,
}

/// A running exchange.
pub struct Exchange {
    /// The FIX acceptor.
    pub acceptor: Arc<Acceptor<OrderEntry>>,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    engine_thread: Option<JoinHandle<()>>,
    report_thread: Option<JoinHandle<()>>,
    md_thread: Option<JoinHandle<()>>,
    md_stop: Arc<AtomicBool>,
    /// Books, trades and candles, shared with the HTTP data service.
    pub market_data: Arc<Mutex<MarketData>>,
    /// Order entry, shared with the HTTP API.
    pub order_entry: Arc<Mutex<OrderEntry>>,
    /// HTTP API clients.
    pub api_clients: Vec<ApiClient>,
    /// HTTP orders waiting for their events.
    pub waiters: Arc<Waiters>,
    /// Where the reporting flow is.
    pub reporting: Arc<reporting::Progress>,
    /// The reporting database's URL.
    pub database: String,
    reporting_thread: Option<JoinHandle<()>>,
    reporting_stop: Arc<AtomicBool>,
    /// Where market-data connections run: one thread below the order flow's priority.
    md_io: Option<BackgroundRuntime>,
    snapshot_thread: Option<JoinHandle<()>>,
    snapshot_stop: Arc<AtomicBool>,
    /// How the start-up recovered, and the snapshots since.
    pub recovery: Arc<RecoveryInfo>,
    /// Removed by a clean stop.
    run_marker: Option<RunMarker>,
}

/// A runtime that shuts down without waiting when dropped: the exchange starts and stops on an
/// async thread (the binary's), where dropping a runtime the usual way panics, also when a
/// start fails half-way.
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A file that exists in the data directory while the exchange runs: found at a start, it
/// says the last run did not stop cleanly. Its lock keeps a second exchange off the same
/// journal (the kernel drops it with the process, however it ends).
struct RunMarker {
    path: PathBuf,
    _locked: File,
    /// Whether the file stays when this is dropped without [`RunMarker::remove`]: once the
    /// exchange runs (sessions may be connected), or when it was already there (a crash whose
    /// cancels a failed start may not have sequenced). A start that fails before that leaves
    /// no trace, so the next start does not take a clean stop for a crash.
    keep: bool,
}

impl RunMarker {
    const NAME: &'static str = "running";

    /// Marks `data` as in use by this process, durably; fails when another exchange holds it.
    /// Also says whether the last run left the file behind (it crashed).
    fn create(data: &Path) -> anyhow::Result<(RunMarker, bool)> {
        let path = data.join(Self::NAME);
        let crashed = path.exists();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                anyhow::bail!(
                    "{} is locked: another exchange runs over this data directory",
                    path.display()
                );
            }
        }
        file.set_len(0)
            .and_then(|()| file.write_all_at(std::process::id().to_string().as_bytes(), 0))
            .and_then(|()| file.sync_all())
            .and_then(|()| File::open(data)?.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        let marker = RunMarker {
            path,
            _locked: file,
            keep: crashed,
        };
        Ok((marker, crashed))
    }

    /// Records a clean stop.
    fn remove(mut self) {
        self.keep = false;
    }
}

impl Drop for RunMarker {
    fn drop(&mut self) {
        if !self.keep
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::error!(error = %e, path = %self.path.display(), "cannot record the clean stop");
        }
    }
}

/// How the exchange recovered at start-up, and the snapshots written since.
#[derive(Debug, Default)]
pub struct RecoveryInfo {
    /// The sequence id of the snapshot the start-up restored, if any.
    pub restored_from: Option<u64>,
    /// Journal records replayed after it.
    pub replayed: u64,
    /// The sequence id of the newest snapshot written since (0: none).
    pub last_snapshot: Arc<AtomicU64>,
}

/// The last sequence id whose reports reached the session stores.
struct Watermark {
    file: File,
}

impl Watermark {
    /// Its file in the data directory.
    const FILE: &'static str = "delivered";

    fn open(path: &Path) -> anyhow::Result<(Watermark, u64)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut b = [0u8; 12];
        let seq = match file.read_exact_at(&mut b, 0) {
            Ok(()) => Watermark::decode(&b).unwrap_or_else(|| {
                // A torn update: re-deliver everything; PossResend makes it harmless.
                tracing::warn!("report watermark unreadable; re-delivering all reports");
                0
            }),
            Err(_) => 0,
        };
        Ok((Watermark { file }, seq))
    }

    /// The sequence id a watermark's 12 bytes hold, or `None` when their CRC does not match.
    fn decode(b: &[u8; 12]) -> Option<u64> {
        let seq = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(b[8..].try_into().unwrap_or_default());
        (crc32c::crc32c(&b[..8]) == crc).then_some(seq)
    }

    fn set(&self, seq: u64) {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32c::crc32c(&b[..8]);
        b[8..].copy_from_slice(&crc.to_le_bytes());
        if let Err(e) = self.file.write_all_at(&b, 0) {
            tracing::error!(error = %e, "cannot record delivered reports");
        }
    }
}

/// The names of the accounts and symbols behind the engine's ids, for reports and rows.
pub fn names(config: &ExchangeConfig, engine_config: &EngineConfig) -> Names {
    Names {
        accounts: config.accounts.iter().map(|a| a.name.clone()).collect(),
        symbols: engine_config
            .instruments
            .iter()
            .map(|i| i.symbol.clone())
            .collect(),
    }
}

/// The last sequence id whose reports a run of the exchange over `data_dir` recorded as
/// delivered: `None` before any run, an error when the record is unreadable.
pub fn delivered_through(data_dir: &Path) -> anyhow::Result<Option<u64>> {
    let path = data_dir.join(Watermark::FILE);
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let b: [u8; 12] = b
        .get(..12)
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{}: cut short", path.display()))?;
    Watermark::decode(&b)
        .map(Some)
        .with_context(|| format!("{}: unreadable (CRC mismatch)", path.display()))
}

/// The delivered watermark, on disk for restarts and in memory for the snapshot thread.
struct Delivered {
    file: Watermark,
    seq: Arc<AtomicU64>,
}

impl Delivered {
    fn set(&self, seq: u64) {
        self.file.set(seq);
        self.seq.store(seq, Ordering::Release);
    }
}

/// An HTTP API client: an API key with the accounts it may trade, and the engine session its
/// orders carry.
#[derive(Clone, Debug)]
pub struct ApiClient {
    /// Who the key belongs to.
    pub name: String,
    /// The key's hash.
    pub hash: crate::auth::ApiKeyHash,
    /// Accounts it may trade and read.
    pub accounts: Vec<String>,
    /// Its order-entry session (not a FIX session: `begin_string` is `HTTP`).
    pub key: SessionKey,
}

/// Where an HTTP order's events go.
type Answer = tokio::sync::oneshot::Sender<Vec<Event>>;

/// HTTP orders waiting for the events of their command, by (session, ClOrdID).
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<(u32, ClOrdId), Answer>>,
}

impl Waiters {
    /// Registers an order about to be submitted; the receiver gets its command's events.
    pub fn wait(
        &self,
        session: SessionId,
        cl: ClOrdId,
    ) -> tokio::sync::oneshot::Receiver<Vec<Event>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.map).insert((session.0, cl), tx);
        rx
    }

    /// Forgets an order that was not submitted.
    pub fn cancel(&self, session: SessionId, cl: ClOrdId) {
        lock(&self.map).remove(&(session.0, cl));
    }

    fn complete(&self, done: &mut HashMap<(u32, ClOrdId), Vec<Event>>) {
        if done.is_empty() {
            return;
        }
        let mut map = lock(&self.map);
        for (k, events) in done.drain() {
            if let Some(tx) = map.remove(&k) {
                let _ = tx.send(events);
            }
        }
    }
}

/// Locks a mutex; a panic elsewhere while holding it leaves the data usable (every update
/// under these locks is complete or not started).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The (session, ClOrdID) pairs an event answers.
fn answers(e: &Event) -> [Option<(SessionId, ClOrdId)>; 2] {
    let o = |v: &engine::event::OrderView| Some((v.session, v.cl_ord_id));
    match e {
        Event::Accepted(x) => [o(&x.order), None],
        Event::Replaced(x) => [o(&x.order), None],
        Event::Canceled(x) => [o(&x.order), None],
        Event::Expired(x) => [o(&x.order), None],
        Event::Rejected(x) => [Some((x.session, x.cl_ord_id)), None],
        Event::CancelRejected(x) => [Some((x.session, x.cl_ord_id)), None],
        Event::Trade(t) => [
            Some((t.maker.session, t.maker.cl_ord_id)),
            Some((t.taker.session, t.taker.cl_ord_id)),
        ],
        Event::Status(x) => [o(&x.order), None],
        Event::MassCancel(x) => [Some((x.request.session, x.request.cl_ord_id)), None],
        Event::MassStatus(_) => [None, None],
        Event::TradingStatus(_) | Event::Transfer(_) => [None, None],
    }
}

/// Where reports go: to the session that owns the order, and as a drop copy to every drop-copy
/// session covering the order's account.
struct Routes {
    keys: Vec<SessionKey>,
    /// Drop-copy sessions (indices into `keys`) by account id.
    copies: Vec<Vec<usize>>,
    /// HTTP orders waiting for their events (sessions from `keys.len()` on).
    waiters: Arc<Waiters>,
}

impl Routes {
    /// Gathers the events that answer waiting HTTP orders.
    fn collect_http(&self, e: &Event, done: &mut HashMap<(u32, ClOrdId), Vec<Event>>) {
        for (session, cl) in answers(e).into_iter().flatten() {
            if session.0 as usize >= self.keys.len() {
                done.entry((session.0, cl)).or_default().push(*e);
            }
        }
    }

    /// Sends a report and its drop copies; a re-delivery is flagged PossResend (97=Y). The
    /// sessions it went to are added to `touched`.
    fn deliver(
        &self,
        acceptor: &Acceptor<OrderEntry>,
        mut r: Report,
        resend: bool,
        touched: &mut Vec<usize>,
    ) {
        if resend {
            r.msg.fields.push((tag::POSS_RESEND, b"Y".to_vec()));
        }
        if r.drop_copy
            && let Some(copies) = self.copies.get(r.account.0 as usize)
        {
            for &i in copies {
                acceptor.queue(&self.keys[i], &r.copy());
                touched.push(i);
            }
        }
        let i = r.session.0 as usize;
        if let Some(k) = self.keys.get(i) {
            acceptor.queue(k, &r.msg);
            touched.push(i);
        }
    }

    /// Writes the reports queued for the `touched` sessions to their stores and sends them:
    /// one store write and one socket write or wake-up per session and group commit instead
    /// of one per report. Done before the reports are recorded as delivered, so a crash never
    /// skips a report nobody stored. `direct`: this thread writes to the sockets itself (see
    /// [`Acceptor::release`]).
    fn flush(&self, acceptor: &Acceptor<OrderEntry>, touched: &mut Vec<usize>, direct: bool) {
        touched.sort_unstable();
        touched.dedup();
        for i in touched.drain(..) {
            acceptor.release(&self.keys[i], direct);
        }
    }
}

/// Where the candle archive lives under the data directory.
pub fn candle_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("candles")
}

/// Where the exchange keeps its files under the data directory.
pub fn journal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("journal")
}

impl Exchange {
    /// Recovers from the journal and starts the engine and report threads. Sessions accept
    /// connections once [`Acceptor::serve`] runs on a listener.
    pub fn start(config: &ExchangeConfig, engine_config: EngineConfig) -> anyhow::Result<Exchange> {
        let data = &config.exchange.data_dir;
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let journal_trim = config.journal_trim()?;
        // Before anything in the directory is read or repaired.
        let (mut run_marker, crashed) = RunMarker::create(data)?;
        anyhow::ensure!(
            config.accounts.len() <= engine_config.limits.max_accounts as usize,
            "{} accounts configured but the engine holds {}",
            config.accounts.len(),
            engine_config.limits.max_accounts
        );
        let names = names(config, &engine_config);
        let account_ids: HashMap<&str, AccountId> = config
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.as_str(), AccountId(i as u32)))
            .collect();

        // Sessions, each with its store.
        let mut sessions = Vec::new();
        let mut infos = rustc_hash::FxHashMap::default();
        let mut keys: Vec<SessionKey> = Vec::new();
        let mut copies = vec![Vec::new(); config.accounts.len()];
        let mut cancel_on_disconnect = Vec::new();
        let gateway = config.gateway();
        for (i, s) in gateway.resolve()?.into_iter().enumerate() {
            let k = s.settings.key.clone();
            let store = gateway.acceptor.open_store(&s.settings)?;
            let accounts = s
                .config
                .accounts
                .iter()
                .map(|a| (a.clone(), account_ids[a.as_str()]))
                .collect();
            let role = s.config.role()?;
            if role == Role::DropCopy {
                for a in &s.config.accounts {
                    copies[account_ids[a.as_str()].0 as usize].push(i);
                }
            }
            let mut info = SessionInfo::new(SessionId(i as u32), accounts, role);
            info.cancel_on_disconnect = s.config.cancel_on_disconnect;
            if info.cancel_on_disconnect {
                cancel_on_disconnect.push(info.id);
            }
            infos.insert(k.clone(), info);
            keys.push(k);
            sessions.push(Session::new(s.settings, s.dictionaries, Box::new(store)));
        }
        // HTTP API keys trade through sessions of their own, numbered after the FIX ones.
        let mut api = Vec::new();
        for (i, k) in config.api_keys.iter().enumerate() {
            let key = SessionKey {
                begin_string: "HTTP".into(),
                sender_comp_id: "EXCH".into(),
                target_comp_id: k.name.clone(),
            };
            let accounts = k
                .accounts
                .iter()
                .map(|a| (a.clone(), account_ids[a.as_str()]))
                .collect();
            let id = SessionId((keys.len() + i) as u32);
            infos.insert(
                key.clone(),
                SessionInfo::new(id, accounts, Role::OrderEntry),
            );
            api.push(ApiClient {
                name: k.name.clone(),
                hash: crate::auth::ApiKeyHash::parse(&k.key_hash).map_err(anyhow::Error::msg)?,
                accounts: k.accounts.clone(),
                key,
            });
        }
        let (tx, rx) = sync_channel::<Command>(config.exchange.engine_queue.max(1));
        let symbols: Vec<_> = engine_config
            .instruments
            .iter()
            .map(|i| (i.symbol.clone(), i.id))
            .collect();
        let has_md = infos.values().any(|i| i.role == Role::MarketData);
        let (md_tx, md_rx) = sync_channel::<MdInput>(65_536);
        let entry = OrderEntry::new(
            infos,
            symbols,
            account_ids.iter().map(|(n, id)| (n.to_string(), *id)),
            tx.clone(),
            has_md.then(|| md_tx.clone()),
            config.exchange.max_orders_per_second,
        );
        let order_entry = Arc::new(Mutex::new(entry));
        let acceptor = Acceptor::new(sessions, Arc::clone(&order_entry));
        let md_io = if has_md {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("md-io")
                .on_thread_start(|| engine::priority::lower_priority("market-data connections"))
                .enable_all()
                .build()
                .context("starting the market-data connections' runtime")?;
            acceptor.set_background(rt.handle().clone());
            Some(BackgroundRuntime(Some(rt)))
        } else {
            None
        };
        let waiters = Arc::new(Waiters::default());
        let routes = Routes {
            keys: keys.clone(),
            copies,
            waiters: Arc::clone(&waiters),
        };

        // Recovery: the newest snapshot the reports were delivered for, then the journal after
        // it; re-deliver what may not have reached the sessions.
        let (watermark, delivered) = Watermark::open(&data.join(Watermark::FILE))?;
        let feed_spec = snapshots::FeedSpec::of(&engine_config);
        let started = std::time::Instant::now();
        let snapshot_dir = snapshots::snapshot_dir(data);
        let restored = snapshots::restore(&snapshot_dir, delivered, &engine_config, &feed_spec)
            .with_context(|| format!("reading {}", snapshot_dir.display()))?;
        let restored_from = restored.as_ref().map(|r| r.seq);
        let restore_ms = started.elapsed().as_millis() as u64;
        let (mut engine, feed) = match restored {
            Some(r) => (r.engine, r.feed),
            None => (Engine::new(engine_config.clone()), feed_spec.empty()),
        };
        let mut events = Vec::new();
        let mut reports = Vec::new();
        let mut redelivered = 0u64;
        let mut touched = Vec::new();
        let candles = candle_dir(data);
        let mut md = MarketData {
            feed,
            archive: Some(
                Archive::create(&candles)
                    .with_context(|| format!("creating {}", candles.display()))?,
            ),
        };
        let options = JournalOptions {
            sync: config.sync_policy()?,
            segment_bytes: config.exchange.journal_segment_mb.max(1) << 20,
            preallocate: config.exchange.journal_preallocate,
        };
        let from = restored_from.map_or(1, |s| s + 1);
        // Replayed in batches, so the engine prefetches across commands as the live flow does.
        const REPLAY_BATCH: usize = 1024;
        let mut pending: Vec<Record> = Vec::with_capacity(REPLAY_BATCH);
        let mut replay = |records: &[Record]| {
            engine.apply_records(records, &mut events, |r, events| {
                for e in events.iter() {
                    md.feed.apply(r.seq, r.timestamp, e);
                }
                if r.seq > delivered {
                    for e in events.iter() {
                        render(e, r.timestamp, &names, &mut reports);
                    }
                    for r in reports.drain(..) {
                        routes.deliver(&acceptor, r, true, &mut touched);
                        redelivered += 1;
                    }
                }
                events.clear();
            });
        };
        let (journal, recovery) = Journal::open_from(&journal_dir(data), options, from, |r| {
            pending.push(*r);
            if pending.len() == REPLAY_BATCH {
                replay(&pending);
                pending.clear();
            }
        })?;
        replay(&pending);
        let populated = std::time::Instant::now();
        engine.populate_memory();
        tracing::info!(
            ms = populated.elapsed().as_millis() as u64,
            "engine memory faulted in"
        );
        let last = journal.next_seq() - 1;
        routes.flush(&acceptor, &mut touched, false);
        watermark.set(last);
        let progress = Arc::new(reporting::Progress::default());
        progress.committed.store(last, Ordering::Release);
        md.archive_evicted();
        let market_data = Arc::new(Mutex::new(md));
        tracing::info!(
            snapshot = restored_from.unwrap_or(0),
            records = recovery.records,
            segments = recovery.segments,
            segments_skipped = recovery.skipped_segments,
            torn_bytes = recovery.truncated_bytes,
            redelivered,
            state_hash = format_args!("{:016x}", engine.state_hash()),
            restore_ms,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "journal replayed"
        );

        // First start: fund the configured accounts. Every start: open today's session.
        let mut boot = Vec::new();
        if last == 0 {
            for (i, a) in config.accounts.iter().enumerate() {
                let account = AccountId(i as u32);
                let cash = decimal_to_units(a.cash)
                    .with_context(|| format!("account {}: cash {}", a.name, a.cash))?;
                if cash > 0 {
                    boot.push(Command::Deposit(Transfer {
                        account,
                        asset: Asset::Cash,
                        amount: cash,
                    }));
                }
                if a.shares > 0 {
                    for ins in &engine_config.instruments {
                        boot.push(Command::Deposit(Transfer {
                            account,
                            asset: Asset::Shares(ins.id),
                            amount: a.shares as i64,
                        }));
                    }
                }
            }
        }
        // A run that did not stop cleanly (a crash, kill -9) took its sessions' connections
        // down with it: the sessions that cancel on disconnect lose their working orders now,
        // as they would have had each connection dropped on its own. A clean stop keeps them
        // (the venue closing is not the client going away).
        if crashed && last > 0 {
            tracing::warn!(
                sessions = cancel_on_disconnect.len(),
                "the last run did not stop cleanly: cancel on disconnect for its sessions"
            );
            boot.extend(
                cancel_on_disconnect
                    .iter()
                    .map(|&id| Command::MassCancel(MassCancelRequest::on_disconnect(id))),
            );
        }
        // With trading hours the engine thread opens and closes the session itself.
        let schedule = config.schedule()?;
        if schedule.is_none() {
            let open = config.exchange.open_on_start;
            boot.extend(session_changes(&engine, open, yyyymmdd(now_millis())));
        }

        // The start-up commands (funding, the open) are the engine's first batch; the exchange
        // is ready once their events are out, market data included.
        let ready_at = last + boot.len() as u64;
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        let (out_tx, out_rx) = sync_channel::<Batch>(256);
        let database = config.database_url();
        let reporting_stop = Arc::new(AtomicBool::new(false));
        // "none" leaves reporting to another process following the same journal, and so does
        // `in_process = false`, which still follows the database's position.
        let in_process = database != "none" && config.reporting_in_process();
        let reporting_thread = if database == "none" {
            None
        } else if !in_process {
            let (progress, stop, url) = (
                Arc::clone(&progress),
                Arc::clone(&reporting_stop),
                database.clone(),
            );
            Some(
                std::thread::Builder::new()
                    .name("reporting-position".into())
                    .spawn(move || reporting::follow::watch(&url, &progress, &stop))?,
            )
        } else {
            let reporter = reporting::ReporterConfig {
                journal_dir: journal_dir(data),
                database: database.clone(),
                engine: engine_config.clone(),
                names: names.clone(),
                snapshot_dir: Some(snapshot_dir.clone()),
                stop_grace: reporting::ReporterConfig::STOP_GRACE,
            };
            let (progress, stop) = (Arc::clone(&progress), Arc::clone(&reporting_stop));
            Some(
                std::thread::Builder::new()
                    .name("reporting".into())
                    .spawn(move || reporting::follow::run(reporter, progress, stop))?,
            )
        };
        let engine_thread = {
            let (stop, failed) = (Arc::clone(&stop), Arc::clone(&failed));
            let progress = Arc::clone(&progress);
            std::thread::Builder::new()
                .name("engine".into())
                .spawn(move || {
                    let run = Run {
                        boot,
                        schedule,
                        stop: &stop,
                        progress: &progress,
                    };
                    if let Err(e) = run_engine(engine, journal, rx, out_tx, run) {
                        tracing::error!(error = %e, "engine stopped: the journal cannot be written");
                        failed.store(true, Ordering::SeqCst);
                    }
                })?
        };
        let md_stop = Arc::new(AtomicBool::new(false));
        let md_thread = {
            let (acceptor, keys) = (Arc::clone(&acceptor), keys.clone());
            let (md, stop) = (Arc::clone(&market_data), Arc::clone(&md_stop));
            std::thread::Builder::new()
                .name("market-data".into())
                .spawn(move || market_data::run(md_rx, md, acceptor, keys, &stop))?
        };
        let delivered = Arc::new(AtomicU64::new(last));
        let recovery = Arc::new(RecoveryInfo {
            restored_from,
            replayed: recovery.records,
            last_snapshot: Arc::new(AtomicU64::new(restored_from.unwrap_or(0))),
        });
        let snapshot_stop = Arc::new(AtomicBool::new(false));
        let snapshot_thread = if config.exchange.snapshot_every > 0 {
            let s = snapshots::Snapshotter {
                dir: snapshot_dir,
                journal_dir: journal_dir(data),
                engine: engine_config.clone(),
                feed: feed_spec,
                every: config.exchange.snapshot_every,
                keep: config.exchange.snapshots_kept,
                trim: journal_trim.map(|archive| snapshots::AutoTrim {
                    data_dir: data.clone(),
                    reporting: (database != "none").then(|| Arc::clone(&progress)),
                    archive,
                }),
                idle: !in_process,
            };
            let (limit, stop) = (Arc::clone(&delivered), Arc::clone(&snapshot_stop));
            let written = Arc::clone(&recovery.last_snapshot);
            Some(
                std::thread::Builder::new()
                    .name("snapshots".into())
                    .spawn(move || snapshots::run(s, limit, written, stop))?,
            )
        } else {
            None
        };
        let report_thread = {
            let acceptor = Arc::clone(&acceptor);
            let watermark = Delivered {
                file: watermark,
                seq: Arc::clone(&delivered),
            };
            std::thread::Builder::new()
                .name("reports".into())
                .spawn(move || {
                    run_reports(out_rx, &acceptor, &routes, &names, &watermark, &md_tx)
                })?
        };
        drop(tx);
        // Nobody connects before the start-up batch is through: a client (a market-data one
        // above all) must not see the exchange before the open it was started with.
        let booting = std::time::Instant::now();
        while delivered.load(Ordering::Acquire) < ready_at {
            anyhow::ensure!(
                !failed.load(Ordering::SeqCst),
                "the engine stopped while starting up"
            );
            anyhow::ensure!(
                booting.elapsed() < Duration::from_secs(300),
                "the start-up commands were not through after 300 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        run_marker.keep = true;
        Ok(Exchange {
            acceptor,
            stop,
            failed,
            engine_thread: Some(engine_thread),
            report_thread: Some(report_thread),
            md_thread: Some(md_thread),
            md_stop,
            market_data,
            order_entry,
            api_clients: api,
            waiters,
            reporting: progress,
            database,
            reporting_thread,
            reporting_stop,
            md_io,
            snapshot_thread,
            snapshot_stop,
            recovery,
            run_marker: Some(run_marker),
        })
    }

    /// Whether the engine stopped on an error (the exchange must not go on accepting orders).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Stops the engine after the commands already queued, and waits for the last reports.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.engine_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.report_thread.take() {
            let _ = t.join();
        }
        self.md_stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.md_thread.take() {
            let _ = t.join();
        }
        self.snapshot_stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.snapshot_thread.take() {
            let _ = t.join();
        }
        // The reporting flow stores what the journal holds, then stops.
        self.reporting_stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.reporting_thread.take() {
            let _ = t.join();
        }
        drop(self.md_io.take());
        // Only a stop whose engine wrote everything it was given is clean.
        if !self.failed()
            && let Some(m) = self.run_marker.take()
        {
            m.remove();
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The commands that bring the trading session to `open` on `today`: close a session left
/// open from another day (expiring its Day orders), open today's.
fn session_changes(engine: &Engine, open: bool, today: u32) -> Vec<Command> {
    let mut out = Vec::new();
    if engine.is_open() && (engine.trading_day() != today || !open) {
        out.push(Command::CloseTrading(CloseTrading {}));
    }
    if open && (!engine.is_open() || engine.trading_day() != today) {
        out.push(Command::OpenTrading(OpenTrading { trading_day: today }));
    }
    out
}

/// What the engine thread runs with besides the engine, the journal and its channels.
struct Run<'a> {
    boot: Vec<Command>,
    schedule: Option<config::Schedule>,
    stop: &'a AtomicBool,
    progress: &'a reporting::Progress,
}

/// A journal commit (write and sync) that takes longer is logged.
const SLOW_COMMIT: Duration = Duration::from_millis(50);

fn run_engine(
    mut engine: Engine,
    mut journal: Journal,
    rx: Receiver<Command>,
    out: SyncSender<Batch>,
    run: Run<'_>,
) -> anyhow::Result<()> {
    let Run {
        boot,
        schedule,
        stop,
        progress,
    } = run;
    let mut batch: Vec<Command> = boot;
    let mut events = Vec::new();
    let mut last_ts = 0i64;
    loop {
        // Trading hours: the open and the close are commands like any other, sequenced and
        // journaled, so a replay opens and closes at the same points of the stream.
        if let Some(s) = schedule {
            let now = now_millis();
            batch.extend(session_changes(&engine, s.is_open(now), yyyymmdd(now)));
        }
        if batch.is_empty() {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(c) => batch.push(c),
                Err(RecvTimeoutError::Timeout) => {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        // The sequencer: gap-free ids, a timestamp that never goes back.
        let ts = now_nanos().max(last_ts);
        last_ts = ts;
        let first = journal.next_seq();
        for c in &batch {
            journal.append(ts, c);
        }
        let started = std::time::Instant::now();
        journal.commit()?;
        let took = started.elapsed();
        if took >= SLOW_COMMIT {
            // Every order in the batch and behind it waited this long for its acknowledgement:
            // worth an operator's eye (a disk or a host in trouble).
            tracing::warn!(
                ms = took.as_millis() as u64,
                commands = batch.len(),
                "slow journal commit"
            );
        }
        progress
            .committed
            .store(journal.next_seq() - 1, Ordering::Release);
        let mut stamped = Vec::with_capacity(batch.len() * 2);
        engine.apply_batch_each(&batch, &mut events, |i, events| {
            let seq = first + i as u64;
            stamped.extend(events.drain(..).map(|event| Stamped {
                seq,
                timestamp: ts,
                event,
            }));
        });
        batch.clear();
        let last_seq = journal.next_seq() - 1;
        if out
            .send(Batch {
                last_seq,
                events: stamped,
            })
            .is_err()
        {
            break;
        }
    }
    journal.sync()?;
    Ok(())
}

/// Batches of at most this many events have their reports written by the report thread.
const DIRECT_WRITE_EVENTS: usize = 8;

fn run_reports(
    rx: Receiver<Batch>,
    acceptor: &Acceptor<OrderEntry>,
    routes: &Routes,
    names: &Names,
    watermark: &Delivered,
    md: &SyncSender<MdInput>,
) {
    let mut reports: Vec<Report> = Vec::new();
    let mut http = HashMap::new();
    let mut touched = Vec::new();
    for batch in rx {
        for s in &batch.events {
            render(&s.event, s.timestamp, names, &mut reports);
            for r in reports.drain(..) {
                routes.deliver(acceptor, r, false, &mut touched);
            }
            routes.collect_http(&s.event, &mut http);
        }
        // A small batch's reports leave from here, saving each connection a wake-up; a large
        // one's are written by the connections' threads, in parallel, while this one moves on
        // (written here, the socket writes made this thread the pipeline's bottleneck at
        // 50,000 orders/s: p50 +7%, CPU +12%).
        routes.flush(
            acceptor,
            &mut touched,
            batch.events.len() <= DIRECT_WRITE_EVENTS,
        );
        routes.waiters.complete(&mut http);
        // After the reports: market data never delays an execution report.
        if md.send(MdInput::Events(batch.events)).is_err() {
            tracing::error!("market data stopped");
        }
        // Delivered once market data has the events too: a subscriber that logs on after
        // this is connected behind them.
        watermark.set(batch.last_seq);
    }
}
