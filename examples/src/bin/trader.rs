//! `trader`: a FIX order-entry client on QuickFIX. Sends limit and market orders, cancels and
//! replaces given as arguments, or typed at a prompt when there are none, and prints every
//! execution report as it arrives.
//!
//! ```text
//! trader --sender CLIENT1 --user client1 --password demo1 --account DEMO1 "buy AAPL 100 190.00"
//! trader --sender CLIENT2 --user client2 --password demo2 --account DEMO2 --begin FIXT.1.1
//! > sell AAPL 100 190.00        limit order (Day; add ioc, fok or gtc at the end)
//! > buy MSFT 10 market          market order
//! > cancel 1234-1               cancel by ClOrdID
//! > replace 1234-1 50 190.05    new quantity and price
//! > cancelall AAPL              mass cancel: every working order in AAPL (all of them without
//! >                             a symbol), for the trader's account
//! > orders                      mass status: every working order as it stands (or `orders
//! >                             AAPL`)
//! ```

use std::io::{BufRead, Write};
use std::time::Duration;

use clap::Parser;
use exchange_examples::{Client, ClientOptions, describe, run_client};

#[derive(Parser)]
#[command(about = "Send orders to the exchange over FIX and print the execution reports")]
struct Args {
    /// Exchange host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Exchange FIX port.
    #[arg(long, default_value_t = 9878)]
    port: u16,
    /// FIX.4.4 or FIXT.1.1.
    #[arg(long, default_value = "FIX.4.4")]
    begin: String,
    /// Our SenderCompID.
    #[arg(long, default_value = "CLIENT1")]
    sender: String,
    /// Username.
    #[arg(long, default_value = "client1")]
    user: String,
    /// Start sequence numbers over at logon (reports missed while away are not resent).
    #[arg(long)]
    reset: bool,
    /// Password.
    #[arg(long, default_value = "demo1")]
    password: String,
    /// Account to trade.
    #[arg(long, default_value = "DEMO1")]
    account: String,
    /// Orders to send, each one argument ("buy AAPL 100 190.00"); a prompt when none.
    commands: Vec<String>,
}

/// An order-entry command.
#[derive(Debug, PartialEq)]
enum Cmd {
    New {
        side: &'static str,
        symbol: String,
        qty: u64,
        price: Option<String>,
        tif: &'static str,
    },
    Cancel(String),
    Replace(String, u64, String),
    /// OrderMassCancelRequest: one symbol's orders, or all.
    CancelAll(Option<String>),
    /// OrderMassStatusRequest: one symbol's orders, or all.
    Orders(Option<String>),
}

fn parse(line: &str) -> Result<Cmd, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let qty = |s: &str| s.parse::<u64>().map_err(|_| format!("bad quantity {s:?}"));
    match w.as_slice() {
        [side @ ("buy" | "sell"), symbol, q, price, rest @ ..] => {
            let tif = match rest.first().copied() {
                None | Some("day") => "0",
                Some("gtc") => "1",
                Some("ioc") => "3",
                Some("fok") => "4",
                Some(t) => return Err(format!("time in force {t:?}: day, gtc, ioc or fok")),
            };
            Ok(Cmd::New {
                side: if *side == "buy" { "1" } else { "2" },
                symbol: symbol.to_uppercase(),
                qty: qty(q)?,
                price: (*price != "market").then(|| price.to_string()),
                tif,
            })
        }
        ["cancel", id] => Ok(Cmd::Cancel(id.to_string())),
        ["replace", id, q, price] => Ok(Cmd::Replace(id.to_string(), qty(q)?, price.to_string())),
        ["cancelall"] => Ok(Cmd::CancelAll(None)),
        ["cancelall", symbol] => Ok(Cmd::CancelAll(Some(symbol.to_uppercase()))),
        ["orders"] => Ok(Cmd::Orders(None)),
        ["orders", symbol] => Ok(Cmd::Orders(Some(symbol.to_uppercase()))),
        _ => Err("expected: buy|sell SYMBOL QTY PRICE|market [day|gtc|ioc|fok], cancel CLORDID, replace CLORDID QTY PRICE, cancelall [SYMBOL], orders [SYMBOL]".into()),
    }
}

/// What the trader remembers of its orders, to fill in cancels and replaces.
#[derive(Default)]
struct Book {
    orders: Vec<(String, String, &'static str)>,
}

fn now() -> String {
    chrono::Utc::now().format("%Y%m%d-%H:%M:%S%.3f").to_string()
}

fn execute(c: &mut Client, book: &mut Book, account: &str, cmd: Cmd) -> Result<String, String> {
    let cl = c.cl_ord_id();
    let sent = match cmd {
        Cmd::Orders(symbol) => {
            let mut f = vec![(584, cl.clone()), (1, account.to_string())];
            match symbol {
                Some(s) => f.extend([(585, "1".to_string()), (55, s)]),
                None => f.push((585, "6".to_string())),
            }
            c.send("AF", &f)
        }
        Cmd::CancelAll(symbol) => {
            let mut f = vec![(11, cl.clone()), (1, account.to_string()), (60, now())];
            match symbol {
                Some(s) => f.extend([(530, "1".to_string()), (55, s)]),
                None => f.push((530, "7".to_string())),
            }
            c.send("q", &f)
        }
        Cmd::New {
            side,
            symbol,
            qty,
            price,
            tif,
        } => {
            let mut f = vec![
                (11, cl.clone()),
                (1, account.to_string()),
                (55, symbol.clone()),
                (54, side.to_string()),
                (60, now()),
                (38, qty.to_string()),
                (40, if price.is_some() { "2" } else { "1" }.to_string()),
                (59, tif.to_string()),
            ];
            if let Some(p) = price {
                f.push((44, p));
            }
            book.orders.push((cl.clone(), symbol, side));
            c.send("D", &f)
        }
        Cmd::Cancel(ref orig) | Cmd::Replace(ref orig, ..) => {
            let Some((_, symbol, side)) = book.orders.iter().find(|o| &o.0 == orig).cloned() else {
                return Err(format!("no order {orig} sent in this session"));
            };
            let mut f = vec![
                (11, cl.clone()),
                (41, orig.clone()),
                (1, account.into()),
                (55, symbol.clone()),
                (54, side.into()),
                (60, now()),
            ];
            match cmd {
                Cmd::Replace(_, qty, price) => {
                    book.orders.push((cl.clone(), symbol, side));
                    f.extend([(38, qty.to_string()), (40, "2".into()), (44, price)]);
                    c.send("G", &f)
                }
                _ => c.send("F", &f),
            }
        }
    };
    sent.map_err(|e| e.to_string())?;
    Ok(cl)
}

/// Prints what arrives for `wait`.
fn drain(c: &mut Client, wait: Duration) {
    while let Some(m) = c.recv(wait) {
        println!("{}", describe(&m));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut o = ClientOptions::new(
        args.port,
        &args.begin,
        &args.sender,
        &args.user,
        &args.password,
    );
    o.host = args.host.clone();
    o.reset = args.reset;
    run_client(&o, Duration::from_secs(10), |c| {
        let mut book = Book::default();
        println!("logged on as {}", args.sender);
        if !args.commands.is_empty() {
            for line in &args.commands {
                match parse(line).and_then(|cmd| execute(c, &mut book, &args.account, cmd)) {
                    Ok(cl) => println!("sent {cl}: {line}"),
                    Err(e) => eprintln!("{line}: {e}"),
                }
                drain(c, Duration::from_millis(500));
            }
            return;
        }
        let stdin = std::io::stdin();
        print!("> ");
        let _ = std::io::stdout().flush();
        // Reports arrive while the prompt waits: a reader thread feeds the lines in.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in stdin.lock().lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            drain(c, Duration::from_millis(100));
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.trim() == "quit" => break,
                Ok(line) if line.trim().is_empty() => {}
                Ok(line) => {
                    match parse(&line).and_then(|cmd| execute(c, &mut book, &args.account, cmd)) {
                        Ok(cl) => println!("sent {cl}"),
                        Err(e) => eprintln!("{e}"),
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            print!("> ");
            let _ = std::io::stdout().flush();
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse("buy aapl 100 190.00 ioc"),
            Ok(Cmd::New {
                side: "1",
                symbol: "AAPL".into(),
                qty: 100,
                price: Some("190.00".into()),
                tif: "3"
            })
        );
        assert_eq!(
            parse("sell MSFT 5 market"),
            Ok(Cmd::New {
                side: "2",
                symbol: "MSFT".into(),
                qty: 5,
                price: None,
                tif: "0"
            })
        );
        assert_eq!(
            parse("replace X 10 1.5"),
            Ok(Cmd::Replace("X".into(), 10, "1.5".into()))
        );
        assert_eq!(parse("cancelall"), Ok(Cmd::CancelAll(None)));
        assert_eq!(parse("orders aapl"), Ok(Cmd::Orders(Some("AAPL".into()))));
        assert_eq!(
            parse("cancelall msft"),
            Ok(Cmd::CancelAll(Some("MSFT".into())))
        );
        assert!(parse("buy AAPL many 1").is_err());
        assert!(parse("hold").is_err());
    }
}
