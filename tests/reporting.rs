//! Reporting end to end against the `exchange` binary: after a load run and kill -9 in the
//! middle of it, the reporting database (SQLite, and PostgreSQL on a real server) holds
//! exactly the rows the journal's replay produces; and the broker HTTP API (POST /v1/order,
//! GET /v1/execution) with its API keys.

use std::process::Command;
use std::time::{Duration, Instant};

use exchange_tests::{
    FixClient, Server, http, sibling_binary, start_exchange, start_exchange_with, temp_dir,
};
use reporting::{Filter, Rows};

const KEY: &str = "demo-key-1";

/// Waits until the reporting store has everything the journal holds.
fn wait_for_reporting(ex: &Server) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(ex);
        assert_eq!(s["reportingFailed"], false, "{s}");
        let journal = s["journalSeq"].as_u64().unwrap();
        if journal > 0 && s["reportingSeq"].as_u64() == Some(journal) {
            return journal;
        }
        assert!(Instant::now() < deadline, "reporting never caught up: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The rows a replay of the journal in `data` produces.
fn journal_rows(data: &std::path::Path) -> Rows {
    let config = gateway::exchange::config::ExchangeConfig::embedded(data);
    let engine_config = engine::EngineConfig::default_universe();
    let names = gateway::exchange::names(&config, &engine_config);
    let mut engine = engine::Engine::new(engine_config);
    let mut events = Vec::new();
    let mut rows = Rows::default();
    engine::journal::scan(&gateway::exchange::journal_dir(data), false, |r| {
        engine.apply(&r.command, &mut events);
        for e in events.drain(..) {
            rows.push(r.seq, r.timestamp, &e, &names);
        }
        rows.last_seq = r.seq;
    })
    .expect("journal reads");
    rows
}

/// Every table of the store equals the journal's replay: no gap, no duplicate, no difference.
fn assert_store_matches_journal(url: &str, data: &std::path::Path) {
    let want = journal_rows(data);
    let mut store = reporting::open(url).expect("open the store");
    assert_eq!(store.last_seq().unwrap(), want.last_seq);
    let all = Filter::default();
    let got = store.order_events(&all).unwrap();
    let trades = got.iter().filter(|e| e.exec_type == "trade").count();
    assert!(trades > 100, "the load traded too little: {trades} fills");
    assert_eq!(got.len(), want.order_events.len(), "order events");
    assert!(
        got == want.order_events,
        "order events differ from the journal's"
    );
    assert_eq!(store.transfers(&all).unwrap(), want.transfers);
    assert_eq!(store.cancel_rejects(&all).unwrap(), want.cancel_rejects);
}

/// Runs the load generator against the exchange for `secs` seconds (it may lose the exchange
/// half-way: that is the point); its output goes to `log`.
fn load(port: u16, secs: u32, log: &std::path::Path) -> std::process::Child {
    let out = std::fs::File::create(log).expect("loadgen log");
    Command::new(sibling_binary("loadgen"))
        .args(["--port", &port.to_string(), "--sessions", "4"])
        .args(["--rate", "4000", "--symbols", "5"])
        .args(["--duration", &secs.to_string()])
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("start loadgen")
}

/// The fills a load generator's log reports at the end (0 when it did not finish).
fn fills(log: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("acknowledged") && l.contains("unacknowledged"))
        .filter_map(|l| {
            l.split("fills ")
                .nth(1)?
                .split(',')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .next_back()
        .unwrap_or(0)
}

/// GET /v1/status, retried while the exchange is too busy to answer (the load generator and
/// the rest of the suite share two cores with it).
fn status(ex: &Server) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match exchange_tests::try_http(ex.http_port, "GET", "/v1/status", &[], "") {
            Ok(r) => return r.json(),
            Err(e) if Instant::now() < deadline => {
                eprintln!("status not answered yet: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("the exchange never answered /v1/status: {e}"),
        }
    }
}

/// The journal's last sequence id.
fn journal_seq(ex: &Server) -> u64 {
    status(ex)["journalSeq"].as_u64().unwrap_or(0)
}

fn kill9_under_load_then_compare(args: &[&str], url: impl Fn(&std::path::Path) -> String) {
    let data = temp_dir("reporting-load");
    let logs = temp_dir("reporting-loadgen");
    let ex = start_exchange_with(&data, None, args);
    let boot = journal_seq(&ex);
    let mut loadgen = load(ex.port, 20, &logs.join("first.log"));
    // Kill once the load is well under way (on a busy machine that takes a while).
    let deadline = Instant::now() + Duration::from_secs(60);
    while journal_seq(&ex) < boot + 4000 {
        if Instant::now() > deadline || loadgen.try_wait().ok().flatten().is_some() {
            let log = std::fs::read_to_string(logs.join("first.log")).unwrap_or_default();
            panic!(
                "the load never got going: journal at {}\n{log}",
                journal_seq(&ex)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let data = ex.kill9();
    let _ = loadgen.wait();
    // Again over the same data: the reporting flow catches up from the journal, and more load
    // lands on top.
    let ex = start_exchange_with(&data, None, args);
    // Until the load has traded: on a machine busy with the rest of the suite, logging on can
    // take most of a short run.
    for attempt in 0..4 {
        let log = logs.join(format!("second-{attempt}.log"));
        let _ = load(ex.port, 3, &log).wait();
        if fills(&log) >= 200 {
            break;
        }
    }
    wait_for_reporting(&ex);
    let data = ex.kill9();
    assert_store_matches_journal(&url(&data), &data);
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&logs);
}

#[test]
fn sqlite_holds_exactly_the_journal_after_kill_9_under_load() {
    kill9_under_load_then_compare(&[], |data| {
        format!("sqlite:{}", data.join("reporting.db").display())
    });
}

#[test]
fn a_reporting_process_of_its_own_stores_exactly_the_journal_of_an_exchange_without_one() {
    let data = temp_dir("reporting-process");
    let logs = temp_dir("reporting-process-loadgen");
    let url = format!("sqlite:{}", data.join("own.db").display());
    // The exchange reads the database (its position, the HTTP API) but does not write it.
    let ex = start_exchange_with(&data, None, &["--database", &url, "--external-reporting"]);
    let reporter = || {
        Command::new(exchange_tests::exchange_binary())
            .args(["reporting", "--data"])
            .arg(&data)
            .args(["--database", &url])
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start exchange reporting")
    };
    // Started while the exchange trades, stopped (SIGTERM) half-way, started again.
    let first = reporter();
    let mut loadgen = load(ex.port, 3, &logs.join("load.log"));
    std::thread::sleep(Duration::from_millis(1500));
    let _ = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status();
    let out = first.wait_with_output().expect("reporting process");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("reporting stopped at sequence"), "{err}");
    let _ = loadgen.wait();
    assert!(fills(&logs.join("load.log")) > 0, "the load traded");
    let mut second = reporter();
    let journal = journal_seq(&ex);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stored = reporting::open(&url)
            .and_then(|mut s| s.last_seq())
            .unwrap_or(0);
        if stored >= journal {
            assert_eq!(
                stored, journal,
                "nothing beyond what the exchange journaled"
            );
            break;
        }
        assert!(
            second.try_wait().ok().flatten().is_none(),
            "the reporting process stopped"
        );
        assert!(Instant::now() < deadline, "stored {stored} of {journal}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The exchange follows the database's position (once a second) and serves what the
    // other process stored.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = status(&ex);
        assert_eq!(st["reportingEnabled"], true, "{st}");
        if st["reportingSeq"].as_u64() == Some(journal) {
            assert_eq!(st["reportingLag"], 0, "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = get(&ex, Some(KEY), "?symbol=AAPL");
    assert_eq!(r.status, 200, "{}", r.body);
    let _ = second.kill();
    let _ = second.wait();
    let data = ex.kill9();
    assert_store_matches_journal(&url, &data);
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&logs);
}

/// A fresh database on the test server; its URL.
fn postgres_database(name: &str) -> String {
    let admin = std::env::var("EXCHANGE_TEST_POSTGRES").expect(
        "EXCHANGE_TEST_POSTGRES must name a PostgreSQL role that may create databases \
         (tests/run.sh starts a server and sets it)",
    );
    reporting::postgres::create_database(&admin, name).expect("create a test database")
}

#[test]
fn postgres_holds_exactly_the_journal_after_kill_9_under_load() {
    let url = postgres_database(&format!("exchange_e2e_{}", std::process::id()));
    kill9_under_load_then_compare(&["--database", &url], |_| url.clone());
}

fn post(ex: &Server, key: Option<&str>, body: &str) -> exchange_tests::HttpResponse {
    let headers: Vec<(&str, &str)> = key.map(|k| ("X-API-Key", k)).into_iter().collect();
    http(ex.http_port, "POST", "/v1/order", &headers, body)
}

fn get(ex: &Server, key: Option<&str>, query: &str) -> exchange_tests::HttpResponse {
    let headers: Vec<(&str, &str)> = key.map(|k| ("X-API-Key", k)).into_iter().collect();
    http(
        ex.http_port,
        "GET",
        &format!("/v1/execution{query}"),
        &headers,
        "",
    )
}

#[test]
fn brokers_trade_and_read_executions_over_http_with_their_api_key() {
    let ex = start_exchange(&temp_dir("http-orders"), None);
    let mut c2 = FixClient::logon(ex.port, "FIXT.1.1", "CLIENT2", "client2", "demo2", false)
        .expect("CLIENT2 logon");
    let mut dc = FixClient::logon(ex.port, "FIX.4.4", "DC1", "dc1", "dc1", false).expect("DC1");

    // A resting sell over HTTP for DEMO1, the key's account.
    let r = post(
        &ex,
        Some(KEY),
        r#"{"symbol":"AAPL","side":"sell","type":"limit","price":"190.00","quantity":300,"clientOrderId":"H1"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sell = r.json();
    assert_eq!(sell["status"], "new");
    assert_eq!(sell["leavesQty"], 300);
    let sell_id = sell["orderId"].as_str().unwrap().to_string();

    // DEMO2 buys 100 of it over FIX.
    c2.limit("F1", "DEMO2", "AAPL", 1, 100, "190.00");
    assert_eq!(c2.expect("8").get(150), Some("0"));
    assert_eq!(c2.expect("8").get(150), Some("F"));

    // DEMO2 rests a buy; the key's IOC sell takes it: the answer carries the fill.
    c2.limit("F2", "DEMO2", "MSFT", 1, 50, "400.00");
    c2.expect("8");
    let r = post(
        &ex,
        Some(KEY),
        r#"{"symbol":"MSFT","side":"sell","type":"limit","price":400,"quantity":"80","timeInForce":"ioc","clientOrderId":"H2"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let ioc = r.json();
    assert_eq!(ioc["status"], "canceled", "{ioc}");
    assert_eq!(ioc["cumQty"], 50);
    assert_eq!(ioc["fills"][0]["quantity"], 50);
    assert_eq!(ioc["fills"][0]["price"], "400");
    assert_eq!(ioc["fills"][0]["liquidity"], "taker");

    // The engine's checks answer 422 with the reason; the same ClOrdID again is a duplicate.
    let r = post(
        &ex,
        Some(KEY),
        r#"{"symbol":"AAPL","side":"buy","price":"190","quantity":900000}"#,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["status"], "rejected");
    let r = post(
        &ex,
        Some(KEY),
        r#"{"symbol":"AAPL","side":"sell","price":"191","quantity":1,"clientOrderId":"H1"}"#,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["reason"], 14, "duplicate ClOrdID");

    // The gateway's checks: entitlement, bad values, bad bodies.
    let cases = [
        (
            r#"{"symbol":"AAPL","side":"buy","price":"190","quantity":1,"account":"DEMO2"}"#,
            403,
        ),
        (
            r#"{"symbol":"NOPE","side":"buy","price":"190","quantity":1}"#,
            400,
        ),
        (
            r#"{"symbol":"AAPL","side":"up","price":"190","quantity":1}"#,
            400,
        ),
        (r#"{"symbol":"AAPL","side":"buy","quantity":1}"#, 400),
        (
            r#"{"symbol":"AAPL","side":"buy","price":"-1","quantity":1}"#,
            400,
        ),
        (
            r#"{"symbol":"AAPL","side":"buy","price":"190","quantity":1.5}"#,
            400,
        ),
        (
            r#"{"symbol":"AAPL","side":"buy","price":"190","quantity":1,"colour":"red"}"#,
            400,
        ),
        ("not json", 400),
    ];
    for (body, status) in cases {
        let r = post(&ex, Some(KEY), body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{}", r.body);
    }
    for key in [None, Some("wrong-key")] {
        let r = post(
            &ex,
            key,
            r#"{"symbol":"AAPL","side":"buy","price":"190","quantity":1}"#,
        );
        assert_eq!(r.status, 401, "{}", r.body);
    }

    // The broker's drop copy sees the HTTP orders of DEMO1 like any other.
    let copies: Vec<_> = std::iter::from_fn(|| dc.recv(Duration::from_millis(1500))).collect();
    assert!(
        copies
            .iter()
            .any(|m| m.get(11) == Some("H1") && m.get(150) == Some("F")),
        "{copies:?}"
    );

    // Executions from the reporting store: the key's account only.
    wait_for_reporting(&ex);
    let r = get(&ex, Some(KEY), "");
    assert_eq!(r.status, 200, "{}", r.body);
    let ex_all = r.json()["executions"].as_array().unwrap().clone();
    assert_eq!(ex_all.len(), 2, "{ex_all:?}");
    assert!(ex_all.iter().all(|e| e["account"] == "DEMO1"));
    let r = get(&ex, Some(KEY), &format!("?symbol=AAPL&orderId={sell_id}"));
    let mine = r.json()["executions"].as_array().unwrap().clone();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["quantity"], 100);
    assert_eq!(mine[0]["price"], "190");
    assert_eq!(mine[0]["side"], "sell");
    assert_eq!(mine[0]["liquidity"], "maker");
    let t = mine[0]["time"].as_i64().unwrap();
    let window = |from: i64, to: i64| {
        get(
            &ex,
            Some(KEY),
            &format!("?symbol=AAPL&startTime={from}&endTime={to}"),
        )
        .json()["executions"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(window(t, t + 1), 1);
    assert_eq!(window(t + 1, t + 1000), 0);
    assert_eq!(window(t - 1000, t), 0);
    let r = get(&ex, Some(KEY), "?symbol=MSFT");
    assert_eq!(r.json()["executions"][0]["clientOrderId"], "H2");

    for (query, status) in [
        ("?orderId=abc", 400),
        ("?startTime=soon", 400),
        ("?startTime=10&endTime=5", 400),
        ("?limit=0", 400),
        ("?account=DEMO2", 403),
    ] {
        let r = get(&ex, Some(KEY), query);
        assert_eq!(r.status, status, "{query}: {}", r.body);
    }
    assert_eq!(get(&ex, None, "").status, 401);
    assert_eq!(get(&ex, Some("wrong-key"), "").status, 401);

    // The operators' reports read the same store.
    let report = |args: &[&str]| {
        let out = Command::new(exchange_tests::exchange_binary())
            .arg("report")
            .args(args)
            .arg("--data")
            .arg(&ex.data)
            .output()
            .expect("run exchange report");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let trades: serde_json::Value = serde_json::from_str(&report(&[
        "trades",
        "--account",
        "DEMO1",
        "--format",
        "json",
    ]))
    .expect("JSON");
    let trades = trades.as_array().unwrap();
    assert_eq!(trades.len(), 2, "{trades:?}");
    assert_eq!(trades[0]["cl_ord_id"], "H1");
    assert_eq!(trades[0]["notional"], "19000");
    let eod = report(&["eod"]);
    let mut lines = eod.lines();
    assert_eq!(
        lines.next(),
        Some("symbol,open,high,low,close,volume,vwap,trades")
    );
    assert_eq!(lines.next(), Some("AAPL,190,190,190,190,100,190,1"));
    assert_eq!(lines.next(), Some("MSFT,400,400,400,400,50,400,1"));
    let compliance = report(&["compliance"]);
    assert!(
        compliance.contains(",DEMO1,AAPL,")
            && compliance.contains(",buy,900000,190,9,order notional exceeds the maximum,true"),
        "{compliance}"
    );
    let settlement = report(&["settlement"]);
    assert!(
        settlement.contains("DEMO1,AAPL,0,100,-100,19000"),
        "{settlement}"
    );
    assert!(
        settlement.contains("DEMO2,AAPL,100,0,100,-19000"),
        "{settlement}"
    );
}
