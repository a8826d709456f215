//! The `exchange` binary.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::acceptor::Acceptor;
use gateway::at::AtApplication;
use gateway::config::GatewayConfig;
use gateway::session::Session;

#[derive(Parser)]
#[command(name = "exchange", version, about = "A FIX-first stock exchange")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

/// Options of the exchange itself (no subcommand).
#[derive(clap::Args)]
struct RunArgs {
    /// Exchange configuration (TOML); the embedded default when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Instrument universe and limits (TOML); the embedded 100 symbols when absent.
    #[arg(long)]
    instruments: Option<PathBuf>,
    /// Data directory (journal, session stores), overriding the configuration's.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Threads running the FIX and HTTP connections; by default one per CPU less the two the
    /// engine and report threads keep busy, at least one. On two cores, one instead of two
    /// took the p99 at 50,000 orders/s from 0.82-1.14 to 0.69-0.91 ms (see BENCHMARKS.md).
    #[arg(long)]
    io_threads: Option<usize>,
    /// FIX port, overriding the configuration's (0 picks a free port).
    #[arg(long)]
    port: Option<u16>,
    /// HTTP API port, overriding the configuration's (0 picks a free port).
    #[arg(long)]
    http_port: Option<u16>,
    /// Reporting database (sqlite:PATH or postgres://user:password@host/db), overriding the
    /// configuration's.
    #[arg(long)]
    database: Option<String>,
    /// The reporting flow runs in another process (`exchange reporting`): no reporting thread
    /// here; the HTTP API, /v1/status and the journal trim still read the database.
    #[arg(long)]
    external_reporting: bool,
    /// Journal sync policy (batch, none, or an interval such as 10ms), overriding the
    /// configuration's.
    #[arg(long)]
    journal_sync: Option<String>,
    /// Journal records between snapshots (0: none), overriding the configuration's.
    #[arg(long)]
    snapshot_every: Option<u64>,
}

/// Which report.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportKind {
    /// Trades (one line per side) of an account and/or symbol.
    Trades,
    /// Open, high, low, close, volume, VWAP and trade count per symbol.
    Eod,
    /// An account's fills and transfers, closing positions and cash (needs --account).
    Statement,
    /// Orders refused by the risk and wallet checks.
    Compliance,
    /// Net shares and cash per account and symbol.
    Settlement,
}

/// Output format of a report.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    /// CSV with a header line.
    Csv,
    /// A JSON array.
    Json,
}

/// Options of `exchange report`.
#[derive(clap::Args)]
struct ReportArgs {
    /// The report.
    #[arg(value_enum)]
    kind: ReportKind,
    /// The UTC day (YYYY-MM-DD); today when absent.
    #[arg(long)]
    day: Option<String>,
    /// Only this account.
    #[arg(long)]
    account: Option<String>,
    /// Only this symbol (trades).
    #[arg(long)]
    symbol: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    format: ReportFormat,
    /// The reporting database; by default the one the configuration names.
    #[arg(long)]
    database: Option<String>,
    /// Exchange configuration (TOML); the embedded default when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory, overriding the configuration's.
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the FIX session layer with QuickFIX's acceptance-test application.
    AtServer {
        /// TCP port to listen on (127.0.0.1).
        #[arg(long)]
        port: u16,
        /// Directory holding FIX44.xml, FIXT11.xml and FIX50SP2.xml.
        #[arg(long)]
        dictionaries: PathBuf,
        /// Directory for the session stores.
        #[arg(long)]
        data: PathBuf,
    },
    /// Operator tools for the journal.
    Journal {
        #[command(subcommand)]
        action: JournalAction,
    },
    /// Prints the hash of an HTTP API key, for `KeyHash`.
    HashApiKey {
        /// The key.
        key: String,
    },
    /// Writes a report from the reporting database as CSV or JSON.
    Report(ReportArgs),
    /// Follows the journal of a running (or stopped) exchange into a reporting database, as
    /// the exchange's own reporting thread does, until Ctrl-C or SIGTERM: for an exchange run
    /// with `--external-reporting` (or `database = "none"`), so that the reporting flow runs in
    /// a process of its own.
    Reporting {
        /// Exchange configuration (data directory, accounts); the embedded default when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Instrument universe the exchange runs with; the embedded one when absent.
        #[arg(long)]
        instruments: Option<PathBuf>,
        /// Data directory, overriding the configuration's.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The reporting database (sqlite:PATH or postgres://...); the configuration's when
        /// absent.
        #[arg(long)]
        database: Option<String>,
    },
    /// Prints the salted hash of a password, for session and API credentials.
    HashPassword {
        /// The password.
        password: String,
    },
}

#[derive(Subcommand)]
enum JournalAction {
    /// Checks every record (CRC, sequence, decoding) without changing anything, and every
    /// snapshot against a replay of the journal up to it.
    Verify {
        /// The exchange's data directory.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Instrument universe the exchange ran with; the embedded one when absent.
        #[arg(long)]
        instruments: Option<PathBuf>,
    },
    /// Replays the journal into a fresh engine and prints the record count, the hash of the
    /// event stream and the engine's state hash (two replays must print the same).
    Replay {
        /// The exchange's data directory.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Instrument universe the exchange ran with; the embedded one when absent.
        #[arg(long)]
        instruments: Option<PathBuf>,
    },
    /// Takes out the journal segments no restart needs any more: those whose records all lie
    /// at or before the oldest readable snapshot, once the delivered reports and the reporting
    /// database have reached it. Safe while the exchange runs.
    Trim {
        /// Exchange configuration (for the data directory and the reporting database); the
        /// embedded default when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory, overriding the configuration's.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The reporting database whose position to respect, overriding the configuration's
        /// (that of an `exchange reporting` process, when the exchange runs without one).
        #[arg(long)]
        database: Option<String>,
        /// Moves the segments into this directory instead of deleting them.
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Only prints what would be taken out.
        #[arg(long)]
        dry_run: bool,
    },
    /// Prints records as text.
    Dump {
        /// The exchange's data directory.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// First sequence id to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Records to print at most.
        #[arg(long)]
        limit: Option<u64>,
    },
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => {
            init_logging("info");
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            let io_threads = cli.run.io_threads.unwrap_or(cpus.saturating_sub(2));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(io_threads.max(1))
                .enable_all()
                .build()?;
            rt.block_on(run_exchange(cli.run))
        }
        Some(Command::Journal { action }) => journal(action),
        Some(Command::AtServer {
            port,
            dictionaries,
            data,
        }) => {
            init_logging("warn");
            let text = gateway::at::config_toml(port, &dictionaries, &data);
            let config = GatewayConfig::from_toml(&text, &std::env::current_dir()?)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(run_at(config))
        }
        Some(Command::HashApiKey { key }) => {
            println!("{}", gateway::auth::ApiKeyHash::of(&key));
            Ok(())
        }
        Some(Command::Report(args)) => report(args),
        Some(Command::Reporting {
            config,
            instruments,
            data,
            database,
        }) => {
            init_logging("info");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(run_reporting(config, instruments, data, database))
        }
        Some(Command::HashPassword { password }) => {
            let mut salt = [0u8; 16];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut salt)
                .context("reading a random salt")?;
            println!(
                "{}",
                gateway::auth::PasswordHash::new(&password, &salt, gateway::auth::DEFAULT_ROUNDS)
            );
            Ok(())
        }
    }
}

fn journal(action: JournalAction) -> anyhow::Result<()> {
    use std::io::Write;
    match action {
        JournalAction::Verify { data, instruments } => {
            let dir = gateway::exchange::journal_dir(&data);
            let (mut first, mut last) = (None, 0);
            let config = engine_config(instruments.as_ref())?;
            let start = replay_start(&data, &config)?;
            let from = start.as_ref().map_or(1, |r| r.seq + 1);
            let mut snapshots = SnapshotCheck::new(&data, config, start)?;
            let r = engine::journal::scan_from(&dir, false, from, |r| {
                first.get_or_insert(r.seq);
                last = r.seq;
                snapshots.apply(r);
            })?;
            println!(
                "{}: {} records in {} segments, sequence {}..={}{}",
                dir.display(),
                r.records,
                r.segments,
                first.unwrap_or(0),
                last,
                if r.truncated_bytes > 0 {
                    format!(
                        "; a torn tail of {} bytes will be cut at the next start",
                        r.truncated_bytes
                    )
                } else {
                    String::new()
                }
            );
            snapshots.finish()
        }
        JournalAction::Replay { data, instruments } => {
            let config = engine_config(instruments.as_ref())?;
            let start = replay_start(&data, &config)?;
            let from = start.as_ref().map_or(1, |r| r.seq + 1);
            let mut engine = match start {
                Some(r) => r.engine,
                None => engine::Engine::new(config),
            };
            let mut events = Vec::new();
            let mut hash = engine::hash::StableHasher::new();
            let mut buf = [0u8; engine::event::MAX_EVENT_LEN];
            let mut count = 0u64;
            let dir = gateway::exchange::journal_dir(&data);
            let r = engine::journal::scan_from(&dir, false, from, |r| {
                engine.apply(&r.command, &mut events);
                for e in events.drain(..) {
                    let n = e.encode(&mut buf);
                    hash.bytes(&buf[..n]);
                    count += 1;
                }
            })?;
            println!(
                "records {} events {count} event_hash {:016x} state_hash {:016x}{}",
                r.records,
                hash.finish(),
                engine.state_hash(),
                if from > 1 {
                    format!(" from_snapshot {}", from - 1)
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        JournalAction::Trim {
            config,
            data,
            database,
            archive,
            dry_run,
        } => {
            use gateway::exchange::trim::{TrimPoint, reporting_position, trim_point};
            let config = load_config(config.as_ref(), data.as_ref())?;
            let data = config.exchange.data_dir.clone();
            let dir = gateway::exchange::journal_dir(&data);
            let database = database.unwrap_or_else(|| config.database_url());
            let through = match trim_point(&data, reporting_position(&database)?)? {
                TrimPoint::Through(seq) => seq,
                TrimPoint::Nothing(why) => {
                    println!("{}: nothing to trim: {why}", dir.display());
                    return Ok(());
                }
            };
            let t = engine::journal::trim(&dir, through, archive.as_deref(), dry_run)?;
            println!(
                "{}: {} {} segment(s), {} bytes, records before {} (snapshot at {through}); \
                 the journal {} at sequence {}",
                dir.display(),
                match (dry_run, archive.is_some()) {
                    (true, _) => "would take out",
                    (false, true) => "moved to the archive",
                    (false, false) => "deleted",
                },
                t.segments.len(),
                t.bytes,
                t.first_seq,
                if dry_run { "would start" } else { "starts" },
                t.first_seq,
            );
            Ok(())
        }
        JournalAction::Dump { data, from, limit } => {
            let dir = gateway::exchange::journal_dir(&data);
            let out = std::io::stdout();
            let mut out = std::io::BufWriter::new(out.lock());
            let mut printed = 0u64;
            let mut result = Ok(());
            // A trimmed journal starts later: print from where it starts.
            let first = engine::journal::first_seq(&dir)?;
            engine::journal::scan_from(&dir, false, from.max(first), |r| {
                if r.seq < from || limit.is_some_and(|l| printed >= l) || result.is_err() {
                    return;
                }
                printed += 1;
                result = writeln!(out, "{} {} {:?}", r.seq, r.timestamp, r.command);
            })?;
            result?;
            out.flush()?;
            Ok(())
        }
    }
}

/// The instrument universe a file names (the embedded one when none).
fn engine_config(file: Option<&PathBuf>) -> anyhow::Result<engine::EngineConfig> {
    Ok(match file {
        Some(p) => engine::EngineConfig::from_toml(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        None => engine::EngineConfig::default_universe(),
    })
}

/// Where a replay of the journal in `data` starts: `None` for the first record with a fresh
/// engine, or, when the journal was trimmed, the oldest snapshot that reaches back to its start,
/// restored.
fn replay_start(
    data: &std::path::Path,
    config: &engine::EngineConfig,
) -> anyhow::Result<Option<gateway::exchange::snapshots::Restored>> {
    use gateway::exchange::snapshots;
    let first = engine::journal::first_seq(&gateway::exchange::journal_dir(data))?;
    if first <= 1 {
        return Ok(None);
    }
    let dir = snapshots::snapshot_dir(data);
    let feed = snapshots::FeedSpec::of(config);
    for (seq, _) in engine::snapshot::list(&dir)? {
        if seq + 1 < first {
            continue;
        }
        if let Some(r) = snapshots::restore(&dir, seq, config, &feed)?
            && r.seq == seq
        {
            return Ok(Some(r));
        }
    }
    anyhow::bail!(
        "the journal starts at sequence {first} (it was trimmed) and no usable snapshot reaches \
         back to it"
    )
}

/// Checks snapshots against a replay of the journal: at each snapshot's sequence id, the
/// replayed engine and feed must write exactly the snapshot's bytes.
struct SnapshotCheck {
    config: engine::EngineConfig,
    /// Snapshots still ahead of the replay, newest first.
    pending: Vec<(u64, PathBuf)>,
    replay: Option<(engine::Engine, marketdata::Feed)>,
    events: Vec<engine::Event>,
    failures: Vec<String>,
}

impl SnapshotCheck {
    /// A check of the snapshots in `data` by a replay from `start` (a restored snapshot, when
    /// the journal was trimmed) or from the first record.
    fn new(
        data: &std::path::Path,
        config: engine::EngineConfig,
        start: Option<gateway::exchange::snapshots::Restored>,
    ) -> anyhow::Result<SnapshotCheck> {
        let dir = gateway::exchange::snapshots::snapshot_dir(data);
        let mut pending = engine::snapshot::list(&dir)?;
        if let Some(r) = &start {
            for (seq, _) in pending.iter().filter(|(seq, _)| *seq <= r.seq) {
                if *seq == r.seq {
                    println!("snapshot {seq}: the replay starts from it (the journal was trimmed)");
                } else {
                    println!("snapshot {seq}: before the trimmed journal's start; not checked");
                }
            }
            pending.retain(|(seq, _)| *seq > r.seq);
        }
        pending.reverse();
        // Only a replay that reaches a snapshot can check it.
        let replay = (!pending.is_empty()).then(|| match start {
            Some(r) => (r.engine, r.feed),
            None => (
                engine::Engine::new(config.clone()),
                gateway::exchange::snapshots::FeedSpec::of(&config).empty(),
            ),
        });
        Ok(SnapshotCheck {
            config,
            pending,
            replay,
            events: Vec::new(),
            failures: Vec::new(),
        })
    }

    fn apply(&mut self, r: &engine::journal::Record) {
        let Some((engine, feed)) = self.replay.as_mut() else {
            return;
        };
        engine.apply(&r.command, &mut self.events);
        for e in self.events.drain(..) {
            feed.apply(r.seq, r.timestamp, &e);
        }
        while let Some((seq, path)) = self.pending.last().cloned() {
            if seq > r.seq {
                break;
            }
            self.pending.pop();
            let verdict = match engine::snapshot::read(&path) {
                // A running exchange keeps only its newest snapshots: one listed at the start
                // may be gone by the time the replay reaches it. Nothing to check, nothing wrong.
                Err(engine::snapshot::SnapshotError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    println!("snapshot {seq}: removed while verifying (newer ones were kept)");
                    continue;
                }
                Err(e) => Err(e.to_string()),
                Ok(s) if s.fingerprint != self.config.fingerprint() => {
                    Err("taken under another instrument configuration".into())
                }
                Ok(s) => {
                    let same = |name: &[u8; 4], bytes: Vec<u8>| s.section(name) == Some(&bytes[..]);
                    if !same(&engine::Engine::SNAPSHOT_SECTION, engine.save()) {
                        Err("the engine state differs from the replay's".into())
                    } else if !same(&marketdata::Feed::SNAPSHOT_SECTION, feed.save()) {
                        Err("the market-data state differs from the replay's".into())
                    } else {
                        Ok(())
                    }
                }
            };
            match verdict {
                Ok(()) => println!("snapshot {seq}: equals the replay of the journal"),
                Err(e) => {
                    println!("snapshot {seq}: {e}");
                    self.failures.push(format!("{}: {e}", path.display()));
                }
            }
        }
        if self.pending.is_empty() {
            self.replay = None;
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        for (seq, _) in &self.pending {
            println!("snapshot {seq}: beyond the end of the journal");
        }
        anyhow::ensure!(
            self.failures.is_empty() && self.pending.is_empty(),
            "{} snapshot(s) do not match the journal",
            self.failures.len() + self.pending.len()
        );
        Ok(())
    }
}

/// The configuration a file names (the embedded one when none), with `--data` applied.
fn load_config(
    file: Option<&PathBuf>,
    data: Option<&PathBuf>,
) -> anyhow::Result<gateway::exchange::config::ExchangeConfig> {
    use gateway::exchange::config::{DEFAULT_EXCHANGE_TOML, ExchangeConfig};
    let cwd = std::env::current_dir()?;
    let mut config = match file {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let base = p.parent().map_or(cwd.clone(), |b| cwd.join(b));
            ExchangeConfig::from_toml(&text, &base)?
        }
        None => ExchangeConfig::from_toml(DEFAULT_EXCHANGE_TOML, &cwd)?,
    };
    if let Some(d) = data {
        config.exchange.data_dir = cwd.join(d);
    }
    Ok(config)
}

fn report(args: ReportArgs) -> anyhow::Result<()> {
    use reporting::reports::{self, Format, Range, write};
    let url = match &args.database {
        Some(u) => u.clone(),
        None => load_config(args.config.as_ref(), args.data.as_ref())?.database_url(),
    };
    let day = args
        .day
        .clone()
        .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%d").to_string());
    let range = Range::day(&day).map_err(anyhow::Error::msg)?;
    let mut store = reporting::open(&url).with_context(|| format!("opening {url}"))?;
    let store = store.as_mut();
    let format = match args.format {
        ReportFormat::Csv => Format::Csv,
        ReportFormat::Json => Format::Json,
    };
    let out = std::io::stdout().lock();
    let (account, symbol) = (args.account.as_deref(), args.symbol.as_deref());
    match args.kind {
        ReportKind::Trades => write(
            &reports::trade_history(store, account, symbol, range)?,
            format,
            out,
        )?,
        ReportKind::Eod => write(&reports::end_of_day(store, range)?, format, out)?,
        ReportKind::Statement => {
            let account = account.context("a statement needs --account")?;
            write(&reports::statement(store, account, range)?, format, out)?
        }
        ReportKind::Compliance => write(&reports::compliance(store, range)?, format, out)?,
        ReportKind::Settlement => write(&reports::settlement(store, range)?, format, out)?,
    }
    Ok(())
}

async fn run_exchange(args: RunArgs) -> anyhow::Result<()> {
    use gateway::exchange::Exchange;
    let mut config = load_config(args.config.as_ref(), args.data.as_ref())?;
    if let Some(p) = args.port {
        config.acceptor.port = p;
    }
    if let Some(p) = args.http_port {
        match &mut config.http {
            Some(h) => h.port = p,
            None => {
                config.http = Some(gateway::exchange::config::HttpConfig {
                    address: config.acceptor.address.clone(),
                    port: p,
                })
            }
        }
    }
    if let Some(s) = args.journal_sync {
        config.exchange.journal_sync = s;
    }
    if let Some(n) = args.snapshot_every {
        config.exchange.snapshot_every = n;
    }
    if args.database.is_some() || args.external_reporting {
        config.reporting = Some(gateway::exchange::config::ReportingConfig {
            in_process: config.reporting_in_process() && !args.external_reporting,
            database: args.database.unwrap_or_else(|| config.database_url()),
        });
    }
    let engine_config = match &args.instruments {
        Some(p) => engine::EngineConfig::from_toml(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        None => engine::EngineConfig::default_universe(),
    };
    let mut exchange = Exchange::start(&config, engine_config)?;
    let http = match &config.http {
        Some(h) => {
            let addr = format!("{}:{}", h.address, h.port);
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            eprintln!("exchange HTTP API listening on {}", listener.local_addr()?);
            let state = Arc::new(gateway::http::HttpState {
                market_data: Arc::clone(&exchange.market_data),
                broker: gateway::broker_api::BrokerApi {
                    order_entry: Arc::clone(&exchange.order_entry),
                    clients: exchange.api_clients.clone(),
                    waiters: Arc::clone(&exchange.waiters),
                    reporting: Arc::clone(&exchange.reporting),
                    database: exchange.database.clone(),
                    reader: Arc::new(Mutex::new(None)),
                    next_id: std::sync::atomic::AtomicU64::new(
                        gateway::time::now_millis() as u64 * 1000,
                    ),
                    recovery: Arc::clone(&exchange.recovery),
                },
            });
            let app = gateway::http::router(state);
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "HTTP API stopped");
                }
            }))
        }
        None => None,
    };
    let addr = format!("{}:{}", config.acceptor.address, config.acceptor.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        data = %config.exchange.data_dir.display(),
        sessions = config.sessions.len(),
        "exchange started"
    );
    eprintln!("exchange FIX acceptor listening on {local}");
    let acceptor = Arc::clone(&exchange.acceptor);
    let serve = tokio::spawn(Arc::clone(&acceptor).serve(listener));
    let failed = async {
        while !exchange.failed() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        _ = failed => tracing::error!("engine failed; shutting down"),
    }
    gateway::exchange::lock(acceptor.app()).shutting_down();
    acceptor.shutdown(Duration::from_secs(3)).await;
    serve.abort();
    if let Some(h) = http {
        h.abort();
    }
    let failed = exchange.failed();
    tokio::task::spawn_blocking(move || exchange.stop()).await?;
    anyhow::ensure!(!failed, "the engine stopped on an error");
    Ok(())
}

async fn run_at(config: GatewayConfig) -> anyhow::Result<()> {
    let mut sessions = Vec::new();
    for s in config.resolve()? {
        let store = config.acceptor.open_store(&s.settings)?;
        sessions.push(Session::new(s.settings, s.dictionaries, Box::new(store)));
    }
    let acceptor = Acceptor::new(sessions, Arc::new(Mutex::new(AtApplication::default())));
    let addr = format!("{}:{}", config.acceptor.address, config.acceptor.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    eprintln!("at-server listening on {}", listener.local_addr()?);
    let serve = tokio::spawn(Arc::clone(&acceptor).serve(listener));
    shutdown_signal().await;
    acceptor.shutdown(Duration::from_secs(3)).await;
    serve.abort();
    Ok(())
}

/// The reporting flow in a process of its own: it stores what the exchange has recorded as
/// delivered (the `delivered` file), which is never beyond what the journal holds durably and
/// wholly written, and stops on Ctrl-C or SIGTERM.
async fn run_reporting(
    config: Option<PathBuf>,
    instruments: Option<PathBuf>,
    data: Option<PathBuf>,
    database: Option<String>,
) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let config = load_config(config.as_ref(), data.as_ref())?;
    let url = database.unwrap_or_else(|| config.database_url());
    anyhow::ensure!(
        url != "none",
        "no reporting database: give --database or set one in the configuration"
    );
    let engine = engine_config(instruments.as_ref())?;
    let data = config.exchange.data_dir.clone();
    let reporter = reporting::ReporterConfig {
        journal_dir: gateway::exchange::journal_dir(&data),
        database: url.clone(),
        names: gateway::exchange::names(&config, &engine),
        engine,
        snapshot_dir: Some(gateway::exchange::snapshots::snapshot_dir(&data)),
        stop_grace: reporting::ReporterConfig::STOP_GRACE,
    };
    let progress = Arc::new(reporting::Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    // The exchange's reporting thread is told each commit; this process reads the mark the
    // exchange's report thread leaves after each batch.
    let watcher = {
        let (progress, stop, data) = (Arc::clone(&progress), Arc::clone(&stop), data.clone());
        std::thread::Builder::new()
            .name("delivered".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match gateway::exchange::delivered_through(&data) {
                        Ok(Some(seq)) => {
                            progress.committed.fetch_max(seq, Ordering::AcqRel);
                        }
                        Ok(None) => {}
                        // A torn read of a mark being rewritten: the next read has it.
                        Err(e) => tracing::debug!(error = %e, "delivered mark unreadable"),
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })?
    };
    let flow = {
        let (progress, stop) = (Arc::clone(&progress), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("reporting".into())
            .spawn(move || reporting::follow::run(reporter, progress, stop))?
    };
    eprintln!("reporting {} into {url}", data.display());
    shutdown_signal().await;
    stop.store(true, Ordering::Release);
    let _ = watcher.join();
    let _ = flow.join();
    let applied = progress.applied.load(Ordering::Acquire);
    eprintln!("reporting stopped at sequence {applied}");
    anyhow::ensure!(
        !progress.failed.load(Ordering::Acquire),
        "the reporting flow stopped on an error (see the log)"
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
