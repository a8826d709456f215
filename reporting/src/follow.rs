//! The reporting flow: follows the journal, replays it through its own engine (the engine is
//! deterministic, so its events are the trading flow's events) and stores the rows.
//!
//! It shares nothing with the trading flow but the journal files and one counter, the last
//! committed sequence id: the trading flow never waits for it, and the journal is its buffer.
//! When the database is unreachable it retries with backoff and catches up from the journal;
//! after a restart it replays the journal and skips what the database already holds.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use engine::journal::Follower;
use engine::{Engine, EngineConfig};

use crate::rows::{Names, Rows};
use crate::store::{Store, StoreError, open};

/// Rows gathered before a transaction at most.
const MAX_ROWS: usize = 20_000;
/// A transaction at least this often while rows are waiting.
const MAX_DELAY: Duration = Duration::from_millis(20);

/// Where the reporting flow is, shared with the trading flow and the operators.
#[derive(Debug, Default)]
pub struct Progress {
    /// The last sequence id the journal holds (set by the trading flow).
    pub committed: AtomicU64,
    /// The last sequence id whose rows are in the database.
    pub applied: AtomicU64,
    /// Set when the reporting flow stopped on an error it cannot get past (a corrupt journal).
    pub failed: AtomicBool,
}

impl Progress {
    /// Sequence ids journaled but not yet in the database.
    pub fn lag(&self) -> u64 {
        self.committed
            .load(Ordering::Acquire)
            .saturating_sub(self.applied.load(Ordering::Acquire))
    }
}

/// Follows the position of a database that another process fills (`exchange reporting`) into
/// `progress.applied`, once a second, until `stop` is set: for an exchange that runs its
/// reporting flow elsewhere but still reads the database (its lag, the journal trim). A
/// database it cannot read is logged and tried again; the position it last read stays (it only
/// ever grows, so a stale one errs on the safe side).
pub fn watch(database: &str, progress: &Progress, stop: &AtomicBool) {
    engine::priority::idle_priority("reporting-position");
    let mut store = None;
    let mut warned = false;
    while !stop.load(Ordering::Acquire) {
        if store.is_none() {
            store = crate::open(database)
                .inspect_err(|e| {
                    if !std::mem::replace(&mut warned, true) {
                        tracing::warn!(error = %e, database, "cannot open the reporting database");
                    }
                })
                .ok();
        }
        if let Some(s) = store.as_mut() {
            match s.last_seq() {
                Ok(seq) => {
                    progress.applied.fetch_max(seq, Ordering::AcqRel);
                    warned = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, database, "cannot read the reporting database's position");
                    store = None;
                }
            }
        }
        // A second between reads, in short sleeps so that a stop is quick.
        for _ in 0..20 {
            if stop.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What the reporting flow reads and where it writes.
pub struct ReporterConfig {
    /// The journal directory.
    pub journal_dir: PathBuf,
    /// The database URL (see [`crate::store::open`]).
    pub database: String,
    /// The engine configuration the exchange runs with.
    pub engine: EngineConfig,
    /// Account and symbol names.
    pub names: Names,
    /// Where the exchange writes snapshots: the replay starts from the newest one the
    /// database already holds the rows of.
    pub snapshot_dir: Option<PathBuf>,
    /// How long a stop may wait for the database to catch up with the journal; what is left
    /// after it is stored at the next start.
    pub stop_grace: Duration,
}

impl ReporterConfig {
    /// The exchange's: a stop waits at most this long for the reporting backlog (after a busy
    /// hour it can be millions of rows: minutes), then leaves it to the next start.
    pub const STOP_GRACE: Duration = Duration::from_secs(10);
}

/// An engine and a journal position to follow from: the newest snapshot at or below `stored`
/// when there is one, else the start of the journal.
fn start_at(config: &ReporterConfig, stored: u64) -> (Engine, Follower) {
    if let Some(dir) = &config.snapshot_dir {
        let load = |s: &engine::snapshot::Snapshot| {
            let bytes = s.section(&Engine::SNAPSHOT_SECTION).ok_or_else(|| {
                engine::snapshot::SnapshotError::Corrupt("no engine section".into())
            })?;
            Engine::load(config.engine.clone(), bytes)
        };
        match engine::snapshot::newest_usable(dir, stored, config.engine.fingerprint(), load) {
            Ok((Some((s, engine)), _)) => {
                tracing::info!(snapshot = s.seq, "reporting replays from a snapshot");
                return (engine, Follower::at(&config.journal_dir, s.seq + 1));
            }
            Ok((None, _)) => {}
            Err(e) => tracing::warn!(error = %e, "reporting cannot read snapshots"),
        }
    }
    (
        Engine::new(config.engine.clone()),
        Follower::new(&config.journal_dir),
    )
}

/// Runs the reporting flow until `stop` is set and everything committed is stored, or for
/// `stop_grace` after it (or the database stays unreachable at stop).
pub fn run(config: ReporterConfig, progress: Arc<Progress>, stop: Arc<AtomicBool>) {
    engine::priority::idle_priority("reporting");
    let url = config.database.clone();
    run_with(config, progress, stop, move || open(&url))
}

/// [`run`] with the way to reach the database given (tests put failures in it).
pub fn run_with(
    config: ReporterConfig,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    mut open_store: impl FnMut() -> Result<Box<dyn Store>, StoreError>,
) {
    let mut engine = Engine::new(config.engine.clone());
    let mut follower = Follower::new(&config.journal_dir);
    let mut store: Option<Box<dyn Store>> = None;
    let mut stored = 0u64;
    let mut rows = Rows::default();
    let mut events = Vec::new();
    let mut records = Vec::new();
    let mut backoff = Duration::from_millis(50);
    let mut last_flush = Instant::now();
    let mut outage: Option<Instant> = None;
    let mut stop_seen: Option<Instant> = None;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if stopping {
            stop_seen.get_or_insert_with(Instant::now);
        }
        // Past the grace, what is gathered is stored and the rest waits for the next start.
        let give_up = stop_seen.is_some_and(|t| t.elapsed() >= config.stop_grace);
        if store.is_none() {
            match open_store().and_then(|mut s| s.last_seq().map(|last| (s, last))) {
                Ok((s, last)) => {
                    if outage.take().is_some() {
                        tracing::info!(last_seq = last, "reporting database reachable again");
                    }
                    // Rows gathered for an older position are thrown away and read again.
                    if last != stored || rows.last_seq <= last {
                        rows = Rows::default();
                        stored = last;
                        // Behind the database (a fresh start) or ahead of it (a database
                        // restored from a backup): start again from the best place.
                        if follower.next_seq() > last + 1 || follower.next_seq() == 1 {
                            (engine, follower) = start_at(&config, last);
                        }
                    }
                    progress.applied.store(last, Ordering::Release);
                    store = Some(s);
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    if outage.is_none() {
                        tracing::warn!(error = %e, "reporting database unreachable; the journal keeps the rows until it is back");
                        outage = Some(Instant::now());
                    }
                    if stopping {
                        return;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        let committed = progress.committed.load(Ordering::Acquire);
        let mut read = 0;
        if rows.len() < MAX_ROWS && !give_up {
            records.clear();
            let polled = follower.poll(committed, 4096, |r| records.push(*r));
            engine.apply_records(&records, &mut events, |r, events| {
                if r.seq > stored {
                    for e in events.iter() {
                        rows.push(r.seq, r.timestamp, e, &config.names);
                    }
                    rows.last_seq = r.seq;
                }
                events.clear();
            });
            match polled {
                Ok(n) => read = n,
                Err(e) => {
                    tracing::error!(error = %e, "reporting stopped: the journal cannot be read");
                    progress.failed.store(true, Ordering::Release);
                    return;
                }
            }
        }
        let caught_up = follower.next_seq() > committed;
        let pending = rows.last_seq > stored;
        if pending
            && (rows.len() >= MAX_ROWS || caught_up || give_up || last_flush.elapsed() >= MAX_DELAY)
        {
            let s = store.as_mut().expect("connected");
            match s.apply(&rows) {
                Ok(()) => {
                    stored = rows.last_seq;
                    progress.applied.store(stored, Ordering::Release);
                    rows.clear();
                    last_flush = Instant::now();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reporting transaction failed; reconnecting");
                    outage.get_or_insert_with(Instant::now);
                    store = None;
                }
            }
            continue;
        }
        if give_up && !pending && !caught_up {
            tracing::warn!(
                stored,
                committed,
                "reporting stopped behind the journal; the next start stores the rest"
            );
            return;
        }
        if caught_up && !pending {
            if stopping && follower.next_seq() > progress.committed.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        } else if read == 0 && !caught_up {
            // Committed records that cannot be read (a journal removed under a running
            // exchange): wait for them rather than spin on the directory.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
