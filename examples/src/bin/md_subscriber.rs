//! `md_subscriber`: subscribes to market data for some symbols, rebuilds each book from the
//! snapshot (W) and the incremental refreshes (X), checks RptSeq for gaps (asking for a new
//! snapshot when one is missed) and prints the top levels whenever a book changes.
//!
//! ```text
//! md_subscriber --sender MD1 --user md1 --password md1 --depth 5 AAPL MSFT
//! ```

use std::time::Duration;

use clap::Parser;
use exchange_examples::book::{Books, Update};
use exchange_examples::{Client, ClientEvent, ClientOptions, run_client};

#[derive(Parser)]
#[command(about = "Print live order books rebuilt from FIX market data")]
struct Args {
    /// Exchange host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Exchange FIX port.
    #[arg(long, default_value_t = 9878)]
    port: u16,
    /// Our SenderCompID (a market-data session).
    #[arg(long, default_value = "MD1")]
    sender: String,
    /// Username.
    #[arg(long, default_value = "md1")]
    user: String,
    /// Password.
    #[arg(long, default_value = "md1")]
    password: String,
    /// Price levels to show per side.
    #[arg(long, default_value_t = 5)]
    depth: usize,
    /// Keep the sequence numbers of the last run instead of starting over (market data is not
    /// resent anyway).
    #[arg(long)]
    keep_sequence: bool,
    /// Stop after this many seconds (runs until interrupted when absent).
    #[arg(long)]
    seconds: Option<u64>,
    /// Symbols.
    #[arg(required = true)]
    symbols: Vec<String>,
}

fn subscribe(c: &mut Client, id: &str, symbols: &[String]) {
    // Bids, offers and trades; snapshot + updates; full depth.
    if let Err(e) = c.market_data_request(id, "1", 0, &["0", "1", "2"], symbols) {
        eprintln!("subscribe: {e}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut o = ClientOptions::new(
        args.port,
        "FIX.4.4",
        &args.sender,
        &args.user,
        &args.password,
    );
    o.host = args.host.clone();
    o.reset = !args.keep_sequence;
    let until = args
        .seconds
        .map(|s| std::time::Instant::now() + Duration::from_secs(s));
    run_client(&o, Duration::from_secs(10), |c| {
        let mut books = Books::default();
        let mut n = 0u32;
        n += 1;
        subscribe(c, &format!("md-{n}"), &args.symbols);
        while until.is_none_or(|u| std::time::Instant::now() < u) {
            let Some(ev) = c.next_event(Duration::from_millis(200)) else {
                continue;
            };
            let ClientEvent::App(m) = ev else { continue };
            match books.apply(&m) {
                Update::Changed(symbols) => {
                    for s in symbols {
                        println!("{}", books.render(&s, args.depth));
                    }
                }
                Update::Gap(symbol) => {
                    // A missed update: the book cannot be trusted; start over from a snapshot.
                    println!("{symbol}: gap in RptSeq; asking for a new snapshot");
                    n += 1;
                    subscribe(c, &format!("md-{n}"), std::slice::from_ref(&symbol));
                }
                Update::Rejected(text) => println!("request rejected: {text}"),
                Update::Other => {}
            }
        }
    })?;
    Ok(())
}
