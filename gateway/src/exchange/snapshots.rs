//! Snapshots of the engine and the market-data feed, taken off the trading path, so that a
//! restart replays only the journal after the newest one.
//!
//! A thread of its own (below the order flow: nice 10 beside an in-process reporting flow,
//! else idle priority, see [`Snapshotter::idle`]) follows the journal with its
//! own engine and feed, exactly as a restart would replay it, and every `snapshot_every`
//! records writes their state (see [`engine::snapshot`]; later in a busy day, less often: see
//! [`snapshot_due`]). It never reads past what the execution reports have been delivered for:
//! a restart replays from the snapshot on, and must still be able to re-deliver every report
//! the sessions may not have stored.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use engine::journal::Follower;
use engine::snapshot::{self, Snapshot, SnapshotError};
use engine::{Engine, EngineConfig};
use marketdata::{Feed, FeedConfig};

/// Where snapshots live under the data directory.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// State restored from a snapshot.
pub struct Restored {
    /// The last sequence id the state includes.
    pub seq: u64,
    /// The engine.
    pub engine: Engine,
    /// The market-data feed.
    pub feed: Feed,
    /// The size of the engine's and the feed's sections.
    pub bytes: u64,
}

/// What the market-data feed is built from.
#[derive(Clone)]
pub struct FeedSpec {
    /// Symbol names by id.
    pub symbols: Vec<String>,
    /// Tuning.
    pub config: FeedConfig,
}

impl FeedSpec {
    /// The feed the exchange runs for an instrument universe (default tuning).
    pub fn of(engine: &EngineConfig) -> FeedSpec {
        FeedSpec {
            symbols: engine
                .instruments
                .iter()
                .map(|i| i.symbol.clone())
                .collect(),
            config: FeedConfig::default(),
        }
    }

    /// An empty feed.
    pub fn empty(&self) -> Feed {
        Feed::new(self.symbols.clone(), self.config.clone())
    }
}

/// The state of the newest usable snapshot at or below `max_seq`, if any. Snapshots passed over
/// (damaged, or taken under another configuration) are logged: they cost replay time only.
pub fn restore(
    dir: &Path,
    max_seq: u64,
    engine: &EngineConfig,
    feed: &FeedSpec,
) -> Result<Option<Restored>, SnapshotError> {
    let load = |s: &Snapshot| {
        let section = |name: &[u8; 4]| {
            s.section(name).ok_or_else(|| {
                SnapshotError::Corrupt(format!("no {} section", name.escape_ascii()))
            })
        };
        let e = Engine::load(engine.clone(), section(&Engine::SNAPSHOT_SECTION)?)?;
        let f = Feed::load(
            feed.symbols.clone(),
            feed.config.clone(),
            section(&Feed::SNAPSHOT_SECTION)?,
        )?;
        Ok((e, f))
    };
    let (found, skipped) = snapshot::newest_usable(dir, max_seq, engine.fingerprint(), load)?;
    for (path, e) in skipped {
        tracing::warn!(snapshot = %path.display(), error = %e, "snapshot passed over");
    }
    Ok(found.map(|(s, (engine, feed))| Restored {
        seq: s.seq,
        engine,
        feed,
        bytes: [Engine::SNAPSHOT_SECTION, Feed::SNAPSHOT_SECTION]
            .iter()
            .filter_map(|name| s.section(name))
            .map(|b| b.len() as u64)
            .sum(),
    }))
}

/// What the snapshot thread works with.
pub struct Snapshotter {
    /// Where snapshots are written.
    pub dir: PathBuf,
    /// The journal it follows.
    pub journal_dir: PathBuf,
    /// The engine configuration.
    pub engine: EngineConfig,
    /// The feed's.
    pub feed: FeedSpec,
    /// Records between snapshots.
    pub every: u64,
    /// Snapshots kept on disk.
    pub keep: usize,
    /// Trimming the journal after each snapshot, when on.
    pub trim: Option<AutoTrim>,
    /// Whether the thread runs under SCHED_IDLE instead of at nice 10: when no reporting flow
    /// runs in the process. Beside one (also idle priority), at the peak, where the CPUs are
    /// never idle, both would fall behind; alone, it only waits for the peak to pass.
    pub idle: bool,
}

/// The journal trimmed after each snapshot (`journal_trim` in the configuration).
pub struct AutoTrim {
    /// The exchange's data directory.
    pub data_dir: PathBuf,
    /// The reporting database's position to respect, when there is one (kept by the
    /// in-process reporting flow, or read from the database when the flow runs elsewhere).
    pub reporting: Option<Arc<reporting::Progress>>,
    /// Where segments go; deleted when `None`.
    pub archive: Option<PathBuf>,
}

impl AutoTrim {
    /// Takes out the segments no restart needs any more once the snapshot at `written` is on
    /// disk, logging what it did.
    fn run(&self, journal_dir: &Path, written: u64) {
        let stored = self
            .reporting
            .as_ref()
            .map(|p| p.applied.load(Ordering::Acquire));
        let point = super::trim::trim_point_after(&self.data_dir, stored, Some(written));
        let through = match point {
            Ok(super::trim::TrimPoint::Through(seq)) => seq,
            Ok(super::trim::TrimPoint::Nothing(why)) => {
                tracing::debug!(why, "journal not trimmed");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "journal not trimmed");
                return;
            }
        };
        match engine::journal::trim(journal_dir, through, self.archive.as_deref(), false) {
            Ok(t) if !t.segments.is_empty() => tracing::info!(
                segments = t.segments.len(),
                bytes = t.bytes,
                first_seq = t.first_seq,
                archived = self.archive.is_some(),
                "journal trimmed"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "journal trim failed"),
        }
    }
}

/// Whether a snapshot is due: `every` records since the last one and, once snapshots pass
/// [`SMALL_SNAPSHOT`], at least as many journal bytes as the last one held. A snapshot holds
/// the day's state, which only grows (every ClOrdID of the day: 25 MB per million orders), so
/// at a fixed interval in records their writing grows with the square of the day's orders (a
/// 60 s run at 215,000 orders/s wrote 2.3 GB of snapshots beside 1.4 GB of journal, and each
/// held the journal's syncs up). The second condition keeps the snapshots' bytes at most the
/// journal's, and a restart's work balanced: the journal it replays after the newest snapshot
/// is at most about as many bytes as the snapshot it loads. Small snapshots cost little, and
/// an operator who asks for frequent snapshots of a small state gets them.
fn snapshot_due(records_since: u64, every: u64, journal_bytes_since: u64, last_bytes: u64) -> bool {
    records_since >= every && (last_bytes < SMALL_SNAPSHOT || journal_bytes_since >= last_bytes)
}

/// Snapshots smaller than this are taken every `every` records whatever their size (64 MiB:
/// about 2.5 M orders' state, written in well under a second).
const SMALL_SNAPSHOT: u64 = 64 << 20;

/// Follows the journal up to `limit` (the last sequence id whose reports were delivered) and
/// writes a snapshot when one is due ([`snapshot_due`]), setting `written` to its sequence id,
/// until `stop` is set.
pub fn run(s: Snapshotter, limit: Arc<AtomicU64>, written: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    // Idle priority took the 50,000/s p99 from 0.98-1.03 to 0.79-0.84 ms without a reporting
    // flow in the process (see BENCHMARKS.md).
    if s.idle {
        engine::priority::idle_priority("snapshots");
    } else {
        engine::priority::lower_priority("snapshots");
    }
    let (mut engine, mut feed, mut last_snapshot, mut last_bytes) =
        match restore(&s.dir, u64::MAX, &s.engine, &s.feed) {
            Ok(Some(r)) => (r.engine, r.feed, r.seq, r.bytes),
            Ok(None) => (Engine::new(s.engine.clone()), s.feed.empty(), 0, 0),
            Err(e) => {
                tracing::error!(error = %e, "snapshots stopped: their directory cannot be read");
                return;
            }
        };
    let mut follower = Follower::at(&s.journal_dir, last_snapshot + 1);
    // The journal bytes read since the last snapshot (the follower starts right after it).
    let mut journal_at_last = 0u64;
    let (mut events, mut out, mut records) = (Vec::new(), Vec::new(), Vec::new());
    let mut timestamp = 0;
    while !stop.load(Ordering::Acquire) {
        let up_to = limit.load(Ordering::Acquire);
        records.clear();
        let polled = follower.poll(up_to, 4096, |r| records.push(*r));
        engine.apply_records(&records, &mut events, |r, events| {
            for e in events.iter() {
                feed.apply(r.seq, r.timestamp, e);
            }
            events.clear();
            timestamp = r.timestamp;
        });
        match polled {
            Err(e) => {
                tracing::error!(error = %e, "snapshots stopped: the journal cannot be read");
                return;
            }
            Ok(0) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Ok(_) => {}
        }
        // Nobody subscribes to this feed: a flush just forgets the changes.
        feed.flush(&mut |_| true, &mut out);
        out.clear();
        feed.take_evicted();
        let seq = follower.next_seq() - 1;
        let journal_since = follower.bytes_read() - journal_at_last;
        if snapshot_due(seq - last_snapshot, s.every, journal_since, last_bytes) {
            let started = Instant::now();
            let (e, f) = (engine.save(), feed.save());
            let result = engine::journal::sync_through(&s.journal_dir, seq)
                .map_err(|e| SnapshotError::Io {
                    path: s.journal_dir.clone(),
                    source: std::io::Error::other(e.to_string()),
                })
                .and_then(|()| {
                    snapshot::write(
                        &s.dir,
                        seq,
                        timestamp,
                        s.engine.fingerprint(),
                        &[(Engine::SNAPSHOT_SECTION, &e), (Feed::SNAPSHOT_SECTION, &f)],
                    )
                })
                .and_then(|_| snapshot::prune(&s.dir, s.keep.max(1)));
            match result {
                Ok(()) => {
                    last_bytes = (e.len() + f.len()) as u64;
                    written.store(seq, Ordering::Release);
                    tracing::info!(
                        seq,
                        bytes = e.len() + f.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "snapshot written"
                    );
                    if let Some(t) = &s.trim {
                        t.run(&s.journal_dir, seq);
                    }
                }
                Err(e) => tracing::error!(seq, error = %e, "snapshot not written"),
            }
            last_snapshot = seq;
            journal_at_last = follower.bytes_read();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::snapshot_due;

    #[test]
    fn snapshots_wait_for_records_then_for_as_many_journal_bytes_as_they_hold() {
        // Small snapshots: every `every` records, even past their size in journal bytes.
        assert!(!snapshot_due(999_999, 1_000_000, 110_000_000, 25_000_000));
        assert!(snapshot_due(1_000_000, 1_000_000, 110_000_000, 25_000_000));
        assert!(snapshot_due(150, 150, 16_000, 200_000));
        // A 300 MB snapshot: not before 300 MB of journal, however many records.
        assert!(!snapshot_due(
            2_000_000,
            1_000_000,
            220_000_000,
            300_000_000
        ));
        assert!(snapshot_due(2_800_000, 1_000_000, 300_000_000, 300_000_000));
        // None before: the records alone decide.
        assert!(snapshot_due(1_000_000, 1_000_000, 0, 0));
    }
}
