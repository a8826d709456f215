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
use gateway::store::FileStore;

#[derive(Parser)]
#[command(name = "exchange", version, about = "A FIX-first stock exchange")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Prints the salted hash of a password, for session and API credentials.
    HashPassword {
        /// The password.
        password: String,
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
        Command::AtServer {
            port,
            dictionaries,
            data,
        } => {
            init_logging("warn");
            let text = gateway::at::config_toml(port, &dictionaries, &data);
            let config = GatewayConfig::from_toml(&text, &std::env::current_dir()?)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(run_at(config))
        }
        Command::HashPassword { password } => {
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

async fn run_at(config: GatewayConfig) -> anyhow::Result<()> {
    let mut sessions = Vec::new();
    for s in config.resolve()? {
        let k = &s.settings.key;
        let dir = config.acceptor.store_path.join(format!(
            "{}-{}-{}",
            k.begin_string, k.sender_comp_id, k.target_comp_id
        ));
        let store = FileStore::open(&dir, config.acceptor.store_sync)
            .with_context(|| format!("opening {}", dir.display()))?;
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
