//! `drop_copy`: prints the drop-copy stream of a broker's accounts, one line per
//! ExecutionReport, as a FIX drop-copy session on QuickFIX receives it.
//!
//! ```text
//! drop_copy --sender DC1 --user dc1 --password dc1
//! ```

use std::time::Duration;

use clap::Parser;
use exchange_examples::{ClientEvent, ClientOptions, describe, run_client};

#[derive(Parser)]
#[command(about = "Print the drop copy of a broker's executions")]
struct Args {
    /// Exchange host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Exchange FIX port.
    #[arg(long, default_value_t = 9878)]
    port: u16,
    /// Our SenderCompID (a drop-copy session).
    #[arg(long, default_value = "DC1")]
    sender: String,
    /// Username.
    #[arg(long, default_value = "dc1")]
    user: String,
    /// Start sequence numbers over at logon (reports missed while away are not resent).
    #[arg(long)]
    reset: bool,
    /// Password.
    #[arg(long, default_value = "dc1")]
    password: String,
    /// Stop after this many seconds (runs until interrupted when absent).
    #[arg(long)]
    seconds: Option<u64>,
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
    o.reset = args.reset;
    let until = args
        .seconds
        .map(|s| std::time::Instant::now() + Duration::from_secs(s));
    run_client(&o, Duration::from_secs(10), |c| {
        println!("logged on as {}: drop copies follow", args.sender);
        while until.is_none_or(|u| std::time::Instant::now() < u) {
            match c.next_event(Duration::from_millis(200)) {
                Some(ClientEvent::App(m)) => println!("{}", describe(&m)),
                Some(ClientEvent::Logout) => println!("disconnected; reconnecting"),
                Some(ClientEvent::Logon) => println!("logged on again"),
                _ => {}
            }
        }
    })?;
    Ok(())
}
