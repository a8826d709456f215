//! Durability: kill -9 the exchange under load at random moments, restart it over the same
//! data, and check that every acknowledged order is still there, nothing acknowledged was
//! lost or doubled, and the journal replays deterministically.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exchange_tests::{
    FixClient, exchange_binary, http, sibling_binary, start_exchange_with, temp_dir,
};

/// A snapshot every this many journal records: several per run, so restarts restore them.
const SNAPSHOT_EVERY: &str = "150";

fn start(data: &std::path::Path) -> exchange_tests::Server {
    start_exchange_with(data, None, &["--snapshot-every", SNAPSHOT_EVERY])
}

/// The exchange's `/v1/status`.
fn status(ex: &exchange_tests::Server) -> serde_json::Value {
    http(ex.http_port, "GET", "/v1/status", &[], "").json()
}

/// Sends passive buy orders one after another, recording those the exchange acknowledged;
/// reconnects (with a sequence reset) whenever the exchange goes away.
fn order_flow(port: Arc<AtomicU16>, stop: Arc<AtomicBool>, acked: Arc<Mutex<BTreeSet<String>>>) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let p = port.load(Ordering::SeqCst);
        let Ok(mut c) = FixClient::logon(p, "FIX.4.4", "CLIENT1", "client1", "demo1", true) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        while !stop.load(Ordering::SeqCst) {
            // Stay well inside the account's limit of open orders.
            if acked.lock().unwrap().len() >= 4_000 {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            n += 1;
            let cl = format!("C{n}");
            // Prices 175.00..=184.99: inside the band, and nobody sells, so nothing trades.
            let px = format!("{}.{:02}", 175 + n % 10, n % 100);
            c.limit(&cl, "DEMO1", "AAPL", 1, 1, &px);
            match c.recv(Duration::from_secs(3)) {
                Some(m) if m.msg_type == "8" && m.get(11) == Some(cl.as_str()) => {
                    assert_eq!(m.get(150), Some("0"), "{m:?}");
                    acked.lock().unwrap().insert(cl);
                }
                Some(m) => panic!("unexpected {m:?}"),
                None => break,
            }
        }
    }
}

fn replay(data: &std::path::Path) -> String {
    journal(&["replay", "--data", &data.display().to_string()])
}

/// Runs `exchange journal <args>`, which must succeed; its output.
fn journal(args: &[&str]) -> String {
    let out = Command::new(exchange_binary())
        .arg("journal")
        .args(args)
        .output()
        .expect("run exchange journal");
    assert!(
        out.status.success(),
        "journal {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs the load generator against `ex` (4 sessions, 5 symbols); it must succeed.
fn load(ex: &exchange_tests::Server, rate: &str, secs: &str) {
    let out = Command::new(sibling_binary("loadgen"))
        .args(["--port", &ex.port.to_string(), "--sessions", "4"])
        .args(["--rate", rate, "--duration", secs, "--symbols", "5"])
        .output()
        .expect("run loadgen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until the reporting flow holds what the journal holds now and, with `snapshot_every`,
/// until the snapshot thread has written the last snapshot due before it. Both run below the
/// order flow: on a busy machine they take a while.
fn caught_up(ex: &exchange_tests::Server, snapshot_every: Option<u64>) {
    let committed = status(ex)["journalSeq"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let st = status(ex);
        let snapped = snapshot_every
            .is_none_or(|every| st["lastSnapshotSeq"].as_u64().unwrap_or(0) + every > committed);
        if snapped && st["reportingSeq"].as_u64() >= Some(committed) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "snapshots or reporting behind: {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The exchange started from a snapshot and replayed exactly the journal after it.
fn assert_restored_from_a_snapshot(ex: &exchange_tests::Server) {
    let st = status(ex);
    assert_eq!(
        st["restoredFromSnapshot"].as_u64().unwrap() + st["replayedRecords"].as_u64().unwrap(),
        st["journalSeq"].as_u64().unwrap(),
        "{st}"
    );
}

/// The value after `key` in a `journal replay` line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .skip_while(|w| *w != key)
        .nth(1)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

#[test]
fn acknowledged_orders_survive_kill_9_under_load() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };

    let data = temp_dir("crash");
    let mut ex = start(&data);
    let port = Arc::new(AtomicU16::new(ex.port));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let flow = {
        let (port, stop, acked) = (Arc::clone(&port), Arc::clone(&stop), Arc::clone(&acked));
        std::thread::spawn(move || order_flow(port, stop, acked))
    };
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(400 + next() % 900));
        let before = acked.lock().unwrap().len();
        let data = ex.kill9();
        eprintln!("round {round}: killed after {before} acknowledged orders");
        ex = start(&data);
        port.store(ex.port, Ordering::SeqCst);
        eprintln!("round {round}: restarted: {}", status(&ex));
    }
    // Let the flow run on the last incarnation, then stop it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    flow.join().expect("order flow");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "too little load: {} orders", acked.len());

    // The snapshot thread runs below the order flow: on a loaded machine it takes a while.
    let deadline = Instant::now() + Duration::from_secs(150);
    while status(&ex)["lastSnapshotSeq"].as_u64() == Some(0) {
        assert!(
            Instant::now() < deadline,
            "no snapshot written: {}",
            status(&ex)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let snapshot = status(&ex)["lastSnapshotSeq"].as_u64().unwrap();

    // One last crash, then every acknowledged order must still be working: each cancels.
    let data = ex.kill9();
    let a = replay(&data);
    let b = replay(&data);
    assert_eq!(a, b, "two replays of one journal differ");
    let ex = start(&data);
    // This start restored a snapshot and replayed only the journal after it.
    let st = status(&ex);
    let restored = st["restoredFromSnapshot"].as_u64();
    assert!(restored >= Some(snapshot), "{st}");
    let records: u64 = a
        .strip_prefix("records ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("record count");
    assert_eq!(
        restored.unwrap() + st["replayedRecords"].as_u64().unwrap(),
        records,
        "{st}"
    );
    let mut c =
        FixClient::logon(ex.port, "FIX.4.4", "CLIENT1", "client1", "demo1", true).expect("logon");
    for (i, cl) in acked.iter().enumerate() {
        c.cancel(&format!("X{i}"), cl, "DEMO1", "AAPL", 1);
        let m = c
            .recv(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no answer to the cancel of {cl}"));
        assert_eq!(
            (m.msg_type.as_str(), m.get(150), m.get(41)),
            ("8", Some("4"), Some(cl.as_str())),
            "acknowledged order {cl} was lost: {m:?}"
        );
        // The order was bought once: one share, nothing filled.
        assert_eq!((m.get(38), m.get(14)), (Some("1"), Some("0")), "{m:?}");
    }
    let after = replay(&data);
    assert_ne!(after, a, "the cancels were journaled");

    // Every snapshot on disk equals a replay of the journal up to it.
    let out = Command::new(exchange_binary())
        .args(["journal", "verify", "--data"])
        .arg(&data)
        .output()
        .expect("run journal verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("equals the replay"), "{text}");
}

#[test]
fn a_journal_trimmed_while_the_exchange_runs_restarts_and_replays_from_its_snapshots() {
    let data = temp_dir("trim");
    let config = gateway::exchange::config::DEFAULT_EXCHANGE_TOML
        .replace("journal_segment_mb = 256", "journal_segment_mb = 1");
    assert!(
        config.contains("journal_segment_mb = 1\n"),
        "1 MiB segments"
    );
    let args = ["--snapshot-every", "2500"];
    let ex = start_exchange_with(&data, Some(&config), &args);
    let cfg = data.join("exchange-test.toml").display().to_string();
    let dir = data.display().to_string();
    let trim = |extra: &[&str]| {
        let mut a = vec!["trim", "--config", &cfg, "--data", &dir];
        a.extend_from_slice(extra);
        journal(&a)
    };
    let segments = |d: &std::path::Path| engine::journal::segments(d).unwrap();
    let journal_dir = data.join("journal");
    let archive = data.join("archive");
    // Before any snapshot, a restart needs the whole journal.
    let out = trim(&[]);
    assert!(out.contains("nothing to trim"), "{out}");

    // Enough orders for several segments and snapshots.
    load(&ex, "12000", "3");
    caught_up(&ex, Some(2500));
    let before = segments(&journal_dir);
    assert!(before.len() >= 3, "{} segments", before.len());

    // While it runs: a dry run changes nothing; the trim moves the segments before the oldest
    // snapshot into the archive, and the exchange and its reporting flow go on.
    let out = trim(&["--dry-run"]);
    assert!(out.contains("would take out"), "{out}");
    assert_eq!(segments(&journal_dir), before);
    let out = trim(&["--archive", &archive.display().to_string()]);
    let after = segments(&journal_dir);
    assert!(after.len() < before.len(), "{out}");
    assert_eq!(after[..], before[before.len() - after.len()..], "{out}");
    assert_eq!(segments(&archive).len() + after.len(), before.len());
    let oldest = engine::snapshot::list(&data.join("snapshots")).unwrap()[0].0;
    assert!(
        after[0].0 <= oldest + 1,
        "the oldest snapshot's successor stays"
    );
    let mut c =
        FixClient::logon(ex.port, "FIX.4.4", "CLIENT1", "client1", "demo1", true).expect("logon");
    c.limit("T1", "DEMO1", "AAPL", 1, 1, "175.00");
    assert_eq!(c.expect("8").get(150), Some("0"));
    caught_up(&ex, None);
    let data = ex.kill9();

    // The replay starts from a snapshot; with the archive put back, a replay from the first
    // record ends in the same state.
    let trimmed = replay(&data);
    assert!(trimmed.contains("from_snapshot"), "{trimmed}");
    let out = journal(&["verify", "--data", &dir]);
    assert!(out.contains("the replay starts from it"), "{out}");
    let out = journal(&["dump", "--data", &dir, "--limit", "1"]);
    assert!(out.starts_with(&format!("{} ", after[0].0)), "{out}");
    for (_, p) in segments(&archive) {
        std::fs::rename(&p, journal_dir.join(p.file_name().unwrap())).unwrap();
    }
    let full = replay(&data);
    assert!(!full.contains("from_snapshot"), "{full}");
    assert_eq!(field(&trimmed, "state_hash"), field(&full, "state_hash"));

    // Trimmed again (deleted this time), the exchange restarts in the same state and trades.
    let out = trim(&[]);
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(segments(&journal_dir), after, "{out}");
    let ex = start_exchange_with(&data, Some(&config), &args);
    assert_restored_from_a_snapshot(&ex);
    let mut c =
        FixClient::logon(ex.port, "FIX.4.4", "CLIENT1", "client1", "demo1", true).expect("logon");
    c.limit("T2", "DEMO1", "AAPL", 1, 1, "175.00");
    assert_eq!(c.expect("8").get(150), Some("0"));
}

#[test]
fn a_start_that_fails_is_not_taken_for_a_crash_and_a_crash_is_not_forgotten() {
    let data = temp_dir("failed-start");
    let journal = data.join("journal");
    std::fs::create_dir_all(&journal).unwrap();
    // A journal that stops the start-up: corruption is reported, never skipped.
    std::fs::write(
        journal.join("00000000000000000001.journal"),
        b"not a journal segment at all",
    )
    .unwrap();
    let start = || {
        Command::new(exchange_binary())
            .args(["--port", "0", "--http-port", "0", "--data"])
            .arg(&data)
            .output()
            .expect("run the exchange")
    };
    let out = start();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // A clear error, and no panic on the way out (its market-data runtime was dropped on an
    // async thread before).
    assert!(err.contains("not a journal segment"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!data.join("running").exists(), "no run, no crash");
    // Left behind by a crash, the marker stays through a failed start: the next start that
    // gets through still cancels for the crashed run.
    std::fs::write(data.join("running"), b"1").unwrap();
    assert!(!start().status.success());
    assert!(data.join("running").exists());
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn with_journal_trim_on_the_exchange_archives_what_no_restart_needs_after_its_snapshots() {
    let data = temp_dir("auto-trim");
    let config = gateway::exchange::config::DEFAULT_EXCHANGE_TOML
        .replace("journal_segment_mb = 256", "journal_segment_mb = 1")
        .replace(
            "journal_trim = \"off\"",
            "journal_trim = \"archive:old-journal\"",
        );
    assert!(config.contains("archive:old-journal"));
    let args = ["--snapshot-every", "2500"];
    let ex = start_exchange_with(&data, Some(&config), &args);
    let archive = data.join("old-journal");
    let archived = || engine::journal::segments(&archive).unwrap().len();
    // Rounds of load, each followed by the reporting flow (idle priority: slow on a busy
    // machine) catching up: a snapshot taken once it holds the rows of the snapshot before
    // trims, so the second round or a later one archives.
    let deadline = Instant::now() + Duration::from_secs(300);
    while archived() == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing archived: {}",
            status(&ex)
        );
        load(&ex, "10000", "2");
        caught_up(&ex, None);
    }
    assert!(archived() > 0, "nothing archived: {}", status(&ex));
    let journal = engine::journal::segments(&data.join("journal")).unwrap();
    assert!(journal[0].0 > 1, "the journal starts later");
    // Every segment is in one place or the other, without a gap.
    let mut all: Vec<u64> = engine::journal::segments(&archive)
        .unwrap()
        .iter()
        .chain(&journal)
        .map(|(first, _)| *first)
        .collect();
    all.sort_unstable();
    assert_eq!(all[0], 1);
    assert_eq!(all.len(), archived() + journal.len());
    // A crash and a restart from what is left.
    let data = ex.kill9();
    let ex = start_exchange_with(&data, Some(&config), &args);
    assert_restored_from_a_snapshot(&ex);
}
