//! The reporting flow against a journal being written and a database that fails: it is
//! unreachable at first, refuses transactions, and loses the answer of some that did commit.
//! The database must end up with exactly the rows of the journal's events.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Flow, all_rows, config, flow, names};
use engine::journal::{Journal, JournalOptions, SyncPolicy};
use reporting::follow::{ReporterConfig, run_with};
use reporting::rows::{CancelRejectRow, OrderEvent, TransferRow};
use reporting::{Filter, Progress, Rows, Store, StoreError};

/// A store that fails on a schedule: every third transaction is refused before it commits,
/// and every fifth commits but reports a failure (the connection dropped before the answer).
struct Flaky {
    inner: Box<dyn Store>,
    calls: Arc<AtomicU64>,
}

fn outage() -> StoreError {
    StoreError::Invalid("connection lost".into())
}

impl Store for Flaky {
    fn last_seq(&mut self) -> Result<u64, StoreError> {
        self.inner.last_seq()
    }
    fn apply(&mut self, rows: &Rows) -> Result<(), StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n % 3 == 0 {
            return Err(outage());
        }
        self.inner.apply(rows)?;
        if n % 5 == 0 {
            return Err(outage());
        }
        Ok(())
    }
    fn order_events(&mut self, f: &Filter) -> Result<Vec<OrderEvent>, StoreError> {
        self.inner.order_events(f)
    }
    fn transfers(&mut self, f: &Filter) -> Result<Vec<TransferRow>, StoreError> {
        self.inner.transfers(f)
    }
    fn cancel_rejects(&mut self, f: &Filter) -> Result<Vec<CancelRejectRow>, StoreError> {
        self.inner.cancel_rejects(f)
    }
}

#[test]
fn a_failing_database_ends_with_exactly_the_journal_rows() {
    let dir = std::env::temp_dir().join(format!("reporting-follow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let journal_dir = dir.join("journal");
    let db = format!("sqlite:{}", dir.join("r.db").display());
    let f = flow(7);
    let options = JournalOptions {
        sync: SyncPolicy::Never,
        segment_bytes: 64 << 10,
        // Followed while preallocated segments fill: the harder case for a reader.
        preallocate: true,
    };
    let (mut journal, _) = Journal::open(&journal_dir, options, |_| {}).unwrap();

    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let connects = Arc::new(AtomicU64::new(0));
    let reporter = {
        let config = ReporterConfig {
            journal_dir: journal_dir.clone(),
            database: db.clone(),
            engine: config(),
            names: names(),
            snapshot_dir: None,
            stop_grace: ReporterConfig::STOP_GRACE,
        };
        let (progress, stop, calls, connects) = (
            Arc::clone(&progress),
            Arc::clone(&stop),
            Arc::clone(&calls),
            Arc::clone(&connects),
        );
        std::thread::spawn(move || {
            run_with(config, progress, stop, move || {
                // Unreachable for the first three attempts.
                if connects.fetch_add(1, Ordering::SeqCst) < 3 {
                    return Err(outage());
                }
                let inner = reporting::open(&db)?;
                Ok(Box::new(Flaky {
                    inner,
                    calls: Arc::clone(&calls),
                }) as Box<dyn Store>)
            })
        })
    };

    // The journal is written in group commits while the reporter follows it.
    for chunk in f.commands.chunks(37) {
        for (ts, c) in chunk {
            journal.append(*ts, c);
        }
        journal.commit().unwrap();
        progress
            .committed
            .store(journal.next_seq() - 1, Ordering::Release);
        // Slow enough that the reporter keeps up and commits many small transactions.
        std::thread::sleep(Duration::from_millis(60));
    }
    let last = journal.next_seq() - 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.applied.load(Ordering::Acquire) < last {
        assert!(Instant::now() < deadline, "the reporter never caught up");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Release);
    reporter.join().unwrap();
    assert!(
        calls.load(Ordering::SeqCst) >= 5,
        "the failures were exercised"
    );
    assert!(connects.load(Ordering::SeqCst) > 4, "it reconnected");

    let want = all_rows(&f);
    let mut store = reporting::open(&format!("sqlite:{}", dir.join("r.db").display())).unwrap();
    assert_eq!(store.last_seq().unwrap(), last);
    let all = Filter::default();
    assert_eq!(store.order_events(&all).unwrap(), want.order_events);
    assert_eq!(store.transfers(&all).unwrap(), want.transfers);
    assert_eq!(store.cancel_rejects(&all).unwrap(), want.cancel_rejects);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the reporting flow over a journal committed up to `committed` until the database holds
/// it all.
fn report_up_to(config: ReporterConfig, committed: u64) {
    let progress = Arc::new(Progress::default());
    progress.committed.store(committed, Ordering::Release);
    let stop = Arc::new(AtomicBool::new(false));
    let db = config.database.clone();
    let reporter = {
        let (progress, stop) = (Arc::clone(&progress), Arc::clone(&stop));
        std::thread::spawn(move || run_with(config, progress, stop, move || reporting::open(&db)))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.applied.load(Ordering::Acquire) < committed {
        assert!(
            !progress.failed.load(Ordering::Acquire),
            "the reporter stopped"
        );
        assert!(Instant::now() < deadline, "the reporter never caught up");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Release);
    reporter.join().unwrap();
}

/// A fresh directory (`journal/` in it) holding a committed flow, a commit per command; its
/// last sequence id.
fn journaled(name: &str, seed: u64, segment_bytes: u64) -> (std::path::PathBuf, Flow, u64) {
    let dir = std::env::temp_dir().join(format!("reporting-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let f = flow(seed);
    let options = JournalOptions {
        sync: SyncPolicy::Never,
        segment_bytes,
        preallocate: true,
    };
    let (mut journal, _) = Journal::open(&dir.join("journal"), options, |_| {}).unwrap();
    for (ts, c) in &f.commands {
        journal.append(*ts, c);
        journal.commit().unwrap();
    }
    let last = journal.next_seq() - 1;
    (dir, f, last)
}

#[test]
fn after_a_restart_the_replay_starts_at_the_newest_snapshot_the_database_holds() {
    let (dir, f, last) = journaled("snapshot", 11, 16 << 10);
    let (journal_dir, snapshot_dir) = (dir.join("journal"), dir.join("snapshots"));
    let db = format!("sqlite:{}", dir.join("r.db").display());
    let half = last / 2;
    // The engine's state after `half` commands, as the exchange's snapshot thread writes it;
    // and a newer snapshot the database does not hold yet, which must not be used.
    let mut engine = engine::Engine::new(config());
    let mut events = Vec::new();
    for (_, c) in &f.commands[..half as usize] {
        engine.apply(c, &mut events);
    }
    let fingerprint = config().fingerprint();
    let write = |seq, bytes: &[u8]| {
        engine::snapshot::write(
            &snapshot_dir,
            seq,
            0,
            fingerprint,
            &[(engine::Engine::SNAPSHOT_SECTION, bytes)],
        )
        .unwrap()
    };
    write(half, &engine.save());
    write(half + 10, b"not an engine");
    let reporter = |snapshots: bool| ReporterConfig {
        journal_dir: journal_dir.clone(),
        database: db.clone(),
        engine: config(),
        names: names(),
        snapshot_dir: snapshots.then(|| snapshot_dir.clone()),
        stop_grace: ReporterConfig::STOP_GRACE,
    };

    // The database first holds the rows up to the snapshot.
    report_up_to(reporter(false), half);
    // The segments wholly before the snapshot go: a replay from the start would fail.
    let segs = engine::journal::segments(&journal_dir).unwrap();
    let holding = segs
        .iter()
        .rposition(|(first, _)| *first <= half + 1)
        .unwrap();
    assert!(holding > 0, "the test needs several segments");
    for (_, path) in &segs[..holding] {
        std::fs::remove_file(path).unwrap();
    }
    report_up_to(reporter(true), last);
    assert_holds_the_journal_rows(&db, &f, last);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The database at `db` holds exactly the rows of the flow's journal, up to `last`.
fn assert_holds_the_journal_rows(db: &str, f: &Flow, last: u64) {
    let want = all_rows(f);
    let mut store = reporting::open(db).unwrap();
    assert_eq!(store.last_seq().unwrap(), last);
    let all = Filter::default();
    assert_eq!(store.order_events(&all).unwrap(), want.order_events);
    assert_eq!(store.transfers(&all).unwrap(), want.transfers);
    assert_eq!(store.cancel_rejects(&all).unwrap(), want.cancel_rejects);
}

#[test]
fn a_stop_waits_for_the_backlog_only_so_long_and_the_next_start_stores_the_rest() {
    let (dir, f, last) = journaled("grace", 5, 64 << 10);
    let journal_dir = dir.join("journal");
    let db = format!("sqlite:{}", dir.join("r.db").display());
    let reporter = |stop_grace| ReporterConfig {
        journal_dir: journal_dir.clone(),
        database: db.clone(),
        engine: config(),
        names: names(),
        snapshot_dir: None,
        stop_grace,
    };

    // Stopped before it began, with no grace: it returns at once, the backlog left behind.
    let progress = Arc::new(Progress::default());
    progress.committed.store(last, Ordering::Release);
    let started = Instant::now();
    let d = db.clone();
    run_with(
        reporter(Duration::ZERO),
        Arc::clone(&progress),
        Arc::new(AtomicBool::new(true)),
        move || reporting::open(&d),
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut store = reporting::open(&db).unwrap();
    assert!(store.last_seq().unwrap() < last, "the backlog was left");
    drop(store);

    // The next start stores the rest: the database then holds exactly the journal's rows.
    report_up_to(reporter(ReporterConfig::STOP_GRACE), last);
    assert_holds_the_journal_rows(&db, &f, last);
    let _ = std::fs::remove_dir_all(&dir);
}
