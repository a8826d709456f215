//! End to end over TCP against the `exchange` binary on its embedded configuration: two
//! sessions trade, cancel and replace; every reject path; reconnect and resend; restart.

use std::time::Duration;

use exchange_tests::{FixClient, Msg, start_exchange, temp_dir};

fn client1(port: u16) -> FixClient {
    FixClient::logon(port, "FIX.4.4", "CLIENT1", "client1", "demo1", false).expect("CLIENT1 logon")
}

fn client2(port: u16) -> FixClient {
    FixClient::logon(port, "FIXT.1.1", "CLIENT2", "client2", "demo2", false).expect("CLIENT2 logon")
}

fn er(c: &mut FixClient) -> Msg {
    c.expect("8")
}

/// What `exchange journal dump` prints for a data directory: one command per line.
fn journal_dump(data: &std::path::Path) -> String {
    let out = std::process::Command::new(exchange_tests::exchange_binary())
        .args(["journal", "dump", "--data"])
        .arg(data)
        .output()
        .expect("journal dump");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_fields(m: &Msg, want: &[(i32, &str)]) {
    for (t, v) in want {
        assert_eq!(m.get(*t), Some(*v), "tag {t} in {m:?}");
    }
}

#[test]
fn two_sessions_trade_with_partial_fills_cancel_and_replace() {
    let ex = start_exchange(&temp_dir("trade"), None);
    let mut c1 = client1(ex.port);
    let mut c2 = client2(ex.port);

    c1.limit("S1", "DEMO1", "AAPL", 2, 300, "190.00");
    let ack = er(&mut c1);
    assert_fields(
        &ack,
        &[
            (150, "0"),
            (39, "0"),
            (11, "S1"),
            (1, "DEMO1"),
            (55, "AAPL"),
            (54, "2"),
        ],
    );
    assert_fields(&ack, &[(38, "300"), (44, "190"), (151, "300"), (14, "0")]);
    let order_id = ack.req(37).to_string();

    // CLIENT2 buys 100 at a higher limit: it trades at the resting order's price.
    c2.limit("B1", "DEMO2", "AAPL", 1, 100, "190.05");
    let ack2 = er(&mut c2);
    assert_fields(&ack2, &[(150, "0"), (11, "B1")]);
    let fill2 = er(&mut c2);
    assert_fields(
        &fill2,
        &[
            (150, "F"),
            (39, "2"),
            (32, "100"),
            (31, "190"),
            (14, "100"),
            (151, "0"),
            (6, "190"),
            (1057, "Y"),
        ],
    );
    let fill1 = er(&mut c1);
    assert_fields(
        &fill1,
        &[
            (150, "F"),
            (39, "1"),
            (32, "100"),
            (31, "190"),
            (14, "100"),
            (151, "200"),
            (1057, "N"),
        ],
    );
    assert_eq!(fill1.req(37), order_id);
    assert_eq!(fill1.req(880), fill2.req(880), "one trade, one TrdMatchID");
    assert_ne!(fill1.req(17), fill2.req(17), "each side its own ExecID");

    // Replace the rest down to 250 total (keeps priority), then cancel it.
    c1.send(
        "G",
        &[
            (11, "S1R".into()),
            (41, "S1".into()),
            (1, "DEMO1".into()),
            (55, "AAPL".into()),
            (54, "2".into()),
            (60, "20261124-10:00:00.000".into()),
            (38, "250".into()),
            (40, "2".into()),
            (44, "190.00".into()),
        ],
    );
    let rep = er(&mut c1);
    assert_fields(
        &rep,
        &[
            (150, "5"),
            (11, "S1R"),
            (41, "S1"),
            (38, "250"),
            (14, "100"),
            (151, "150"),
        ],
    );
    assert_eq!(rep.req(37), order_id, "a replace keeps the OrderID");

    c1.cancel("S1C", "S1R", "DEMO1", "AAPL", 2);
    let cxl = er(&mut c1);
    assert_fields(
        &cxl,
        &[
            (150, "4"),
            (39, "4"),
            (11, "S1C"),
            (41, "S1R"),
            (14, "100"),
            (151, "0"),
        ],
    );

    // Cancelling it again: OrderCancelReject, too late.
    c1.cancel("S1C2", "S1R", "DEMO1", "AAPL", 2);
    let rej = c1.expect("9");
    assert_fields(&rej, &[(11, "S1C2"), (41, "S1R"), (434, "1")]);
    c1.logout();
    c2.logout();
}

#[test]
fn every_reject_path_answers_with_a_reason() {
    let ex = start_exchange(&temp_dir("rejects"), None);
    let mut c1 = client1(ex.port);
    // (ClOrdID, account, symbol, side, qty, price, OrdRejReason or "0" for accepted, text)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        u8,
        u64,
        Option<&'a str>,
        &'a str,
        &'a str,
    );
    let cases: [Case; 12] = [
        ("R1", "DEMO2", "AAPL", 1, 10, Some("190"), "15", "account"),
        (
            "R2",
            "DEMO1",
            "NOPE",
            1,
            10,
            Some("190"),
            "1",
            "unknown symbol",
        ),
        (
            "R3",
            "DEMO1",
            "AAPL",
            1,
            2_000_000,
            Some("190"),
            "3",
            "quantity exceeds",
        ),
        (
            "R4",
            "DEMO1",
            "AAPL",
            1,
            900_000,
            Some("190"),
            "3",
            "notional",
        ),
        ("R5", "DEMO1", "AAPL", 1, 10, Some("500"), "16", "band"),
        ("R6", "DEMO1", "AAPL", 1, 10, Some("190.001"), "18", "tick"),
        ("R7", "DEMO1", "AAPL", 1, 0, Some("190"), "13", "positive"),
        ("R8", "DEMO1", "AAPL", 1, 10, None, "11", "opposite side"),
        // Wallet: what the first order reserves cannot fund the second.
        ("F1", "DEMO1", "AAPL", 1, 500_000, Some("175"), "0", ""),
        ("F2", "DEMO1", "AAPL", 1, 100_000, Some("175"), "3", "cash"),
        // Risk: resting orders count toward the daily traded-quantity limit.
        ("Q1", "DEMO1", "BAC", 2, 999_000, Some("40"), "0", ""),
        ("Q2", "DEMO1", "BAC", 2, 2_000, Some("40"), "3", "daily"),
    ];
    for (cl, acct, sym, side, qty, px, reason, text) in cases {
        c1.new_order(
            cl,
            acct,
            sym,
            side,
            qty,
            px,
            if px.is_some() { "0" } else { "3" },
        );
        let m = er(&mut c1);
        assert_eq!(m.get(11), Some(cl), "{m:?}");
        if reason == "0" {
            assert_fields(&m, &[(150, "0"), (39, "0")]);
            continue;
        }
        assert_fields(&m, &[(150, "8"), (39, "8"), (103, reason)]);
        assert!(
            m.req(58).to_lowercase().contains(text),
            "{cl}: text {:?} lacks {text:?}",
            m.req(58)
        );
    }
    // A duplicate ClOrdID on the session.
    c1.limit("D1", "DEMO1", "MSFT", 1, 10, "1");
    let first = er(&mut c1);
    if first.req(150) == "0" {
        c1.limit("D1", "DEMO1", "MSFT", 1, 10, "1");
        let dup = er(&mut c1);
        assert_fields(&dup, &[(150, "8"), (103, "6")]);
    }
    // A ClOrdID longer than the exchange keeps.
    let long = "L".repeat(41);
    c1.limit(&long, "DEMO1", "MSFT", 1, 10, "400");
    let m = er(&mut c1);
    assert_fields(&m, &[(150, "8"), (103, "99"), (11, long.as_str())]);
    assert!(m.req(58).contains("40 characters"), "{m:?}");
    // Cancel of an order that never existed.
    c1.cancel("C9", "NEVER", "DEMO1", "AAPL", 1);
    let m = c1.expect("9");
    assert_fields(&m, &[(11, "C9"), (102, "1"), (37, "NONE")]);
    // A cancel of its own working order for an account it may not trade: refused before the
    // engine, yet journaled (so reported and stored like an engine reject) and answered with
    // the order's real status.
    c1.cancel("C10", "F1", "DEMO2", "AAPL", 1);
    let m = c1.expect("9");
    assert_fields(
        &m,
        &[(11, "C10"), (41, "F1"), (434, "1"), (102, "99"), (39, "0")],
    );
    assert_ne!(m.get(37), Some("NONE"), "{m:?}");
    let dump = journal_dump(&ex.data);
    assert!(
        dump.lines()
            .any(|l| l.contains("RefuseCancel") && l.contains("NotEntitled")),
        "the refusal is not in the journal"
    );
    // An unsupported message type: BusinessMessageReject.
    c1.send("x", &[(320, "1".into()), (559, "0".into())]);
    let m = c1.recv(Duration::from_secs(10)).expect("an answer");
    assert!(m.msg_type == "j" || m.msg_type == "3", "{m:?}");
    c1.logout();
}

/// A NewOrderSingle flagged as a possible resend (PossResend or PossDupFlag) whose ClOrdID
/// the session has used is the order received before: not executed again and not answered
/// (FIX's rule for possible resends; a "duplicate ClOrdID" reject would tell the client its
/// live order was rejected). One whose ClOrdID is new is executed.
#[test]
fn a_possible_resend_of_a_received_order_is_ignored_and_a_new_one_executed() {
    let ex = start_exchange(&temp_dir("resend"), None);
    let mut c1 = client1(ex.port);
    let order = |cl: &str, flags: &[(i32, String)]| {
        let mut f = flags.to_vec();
        f.extend([
            (11, cl.to_string()),
            (1, "DEMO1".to_string()),
            (55, "AAPL".to_string()),
            (54, "1".to_string()),
            (60, "20260101-00:00:00.000".to_string()),
            (38, "10".to_string()),
            (40, "2".to_string()),
            (59, "0".to_string()),
            (44, "180".to_string()),
        ]);
        f
    };
    let poss_resend = [(97, "Y".to_string())];
    let poss_dup = [
        (43, "Y".to_string()),
        (122, "20260101-00:00:00.000".to_string()),
    ];
    c1.send("D", &order("P1", &[]));
    assert_fields(&er(&mut c1), &[(150, "0"), (39, "0"), (11, "P1")]);
    c1.send("D", &order("P1", &poss_resend));
    c1.send("D", &order("P1", &poss_dup));
    // Answers come in order: the next report is P2's, so the two resends of P1 got none.
    c1.send("D", &order("P2", &poss_resend));
    let ack = er(&mut c1);
    assert_fields(&ack, &[(150, "0"), (39, "0"), (11, "P2")]);
    // Without the flag, a used ClOrdID is a duplicate, rejected as before.
    c1.send("D", &order("P1", &[]));
    assert_fields(&er(&mut c1), &[(150, "8"), (103, "6"), (11, "P1")]);
    // P1 is working once: one cancel takes it, a second finds it done.
    c1.cancel("X1", "P1", "DEMO1", "AAPL", 1);
    assert_fields(&er(&mut c1), &[(150, "4"), (41, "P1"), (151, "0")]);
    c1.cancel("X2", "P1", "DEMO1", "AAPL", 1);
    assert_fields(&c1.expect("9"), &[(11, "X2"), (102, "0")]);
    c1.logout();
    let dump = journal_dump(&ex.data);
    assert_eq!(
        dump.lines().filter(|l| l.contains("ResentOrder")).count(),
        3,
        "{dump}"
    );
}

/// OrderStatusRequest (H): the order as it stands (ExecType I), by any ClOrdID it has had;
/// an unknown order, or another session's, is answered OrdStatus Rejected, UnknownOrder; a
/// request for an account the session may not trade is refused before the engine.
#[test]
fn order_status_requests_show_the_order_as_it_stands() {
    let ex = start_exchange(&temp_dir("status"), None);
    let mut c1 = client1(ex.port);
    let mut c2 = client2(ex.port);
    c1.limit("T1", "DEMO1", "AAPL", 2, 300, "190.00");
    let ack = er(&mut c1);
    c2.limit("T2", "DEMO2", "AAPL", 1, 100, "190.00");
    er(&mut c2);
    er(&mut c2);
    er(&mut c1);
    c1.status("T1", "DEMO1", "AAPL", 2, "Q1");
    let m = er(&mut c1);
    assert_fields(
        &m,
        &[
            (150, "I"),
            (39, "1"),
            (11, "T1"),
            (790, "Q1"),
            (14, "100"),
            (151, "200"),
            (38, "300"),
            (6, "190"),
            (37, ack.req(37)),
        ],
    );
    assert_ne!(m.req(17), ack.req(17), "a fresh ExecID");
    // Replaced: asked by the first ClOrdID, answered with the order's current one.
    c1.send(
        "G",
        &[
            (11, "T3".to_string()),
            (41, "T1".to_string()),
            (1, "DEMO1".to_string()),
            (55, "AAPL".to_string()),
            (54, "2".to_string()),
            (60, "20260101-00:00:00.000".to_string()),
            (38, "250".to_string()),
            (40, "2".to_string()),
            (44, "190.00".to_string()),
        ],
    );
    assert_fields(&er(&mut c1), &[(150, "5"), (11, "T3")]);
    c1.status("T1", "DEMO1", "AAPL", 2, "Q2");
    assert_fields(
        &er(&mut c1),
        &[(150, "I"), (39, "1"), (11, "T3"), (151, "150"), (790, "Q2")],
    );
    // Not known to the session: its own unknown ClOrdID, or another session's order.
    c1.status("NOPE", "DEMO1", "AAPL", 2, "Q3");
    assert_fields(
        &er(&mut c1),
        &[(150, "I"), (39, "8"), (103, "5"), (11, "NOPE"), (790, "Q3")],
    );
    c2.status("T3", "DEMO2", "AAPL", 2, "Q4");
    assert_fields(&er(&mut c2), &[(150, "I"), (39, "8"), (103, "5")]);
    // Done: filled, cancelled or expired, with its OrderID.
    c2.status("T2", "DEMO2", "AAPL", 1, "Q5");
    let m = er(&mut c2);
    assert_fields(&m, &[(150, "I"), (39, "8"), (11, "T2")]);
    assert_ne!(m.get(37), Some("NONE"), "{m:?}");
    // An account the session may not trade: refused at the gateway, answered the same way.
    c1.status("T3", "DEMO2", "AAPL", 2, "Q6");
    assert_fields(
        &er(&mut c1),
        &[(150, "I"), (39, "8"), (103, "15"), (790, "Q6")],
    );
    c1.logout();
    c2.logout();
}

#[test]
fn order_mass_cancel_cancels_the_sessions_orders_that_match_and_counts_them() {
    let ex = start_exchange(&temp_dir("mass_cancel"), None);
    let mut c1 = client1(ex.port);
    let mut c2 = client2(ex.port);
    // CLIENT1: two AAPL sells, one AAPL buy, one MSFT sell; CLIENT2: one AAPL sell.
    let mut ids = std::collections::HashMap::new();
    for (cl, sym, side, px) in [
        ("M1", "AAPL", 2, "191.00"),
        ("M2", "AAPL", 2, "192.00"),
        ("M3", "AAPL", 1, "185.00"),
        ("M4", "MSFT", 2, "420.00"),
    ] {
        c1.limit(cl, "DEMO1", sym, side, 10, px);
        let ack = er(&mut c1);
        assert_fields(&ack, &[(150, "0"), (11, cl)]);
        ids.insert(cl, ack.req(37).to_string());
    }
    c2.limit("N1", "DEMO2", "AAPL", 2, 10, "193.00");
    assert_fields(&er(&mut c2), &[(150, "0")]);

    // AAPL sells only: M1 and M2, each an ExecutionReport, then the report counting them.
    c1.mass_cancel("K1", "1", &[(55, "AAPL"), (54, "2")]);
    for cl in ["M1", "M2"] {
        let m = er(&mut c1);
        assert_fields(
            &m,
            &[(150, "4"), (39, "4"), (11, cl), (151, "0"), (55, "AAPL")],
        );
        assert_eq!(m.req(37), ids[cl]);
        assert!(m.req(58).contains("mass cancel"), "{m:?}");
    }
    let r = c1.expect("r");
    assert_fields(
        &r,
        &[
            (11, "K1"),
            (530, "1"),
            (531, "1"),
            (533, "2"),
            (55, "AAPL"),
            (54, "2"),
        ],
    );
    assert!(r.get(37).is_some_and(|id| !id.is_empty()));
    // Everything left of DEMO1: M3 and M4; CLIENT2's order is not the session's.
    c1.mass_cancel("K2", "7", &[(1, "DEMO1")]);
    let mut canceled: Vec<String> = (0..2).map(|_| er(&mut c1).req(11).to_string()).collect();
    canceled.sort();
    assert_eq!(canceled, ["M3", "M4"]);
    assert_fields(
        &c1.expect("r"),
        &[(11, "K2"), (531, "7"), (533, "2"), (1, "DEMO1")],
    );
    // Nothing left: a count of zero.
    c1.mass_cancel("K3", "7", &[]);
    assert_fields(&c1.expect("r"), &[(11, "K3"), (531, "7"), (533, "0")]);
    // A resend of K1 (its ClOrdID used before) is refused, not carried out again.
    c1.mass_cancel("K1", "7", &[]);
    let dup = c1.expect("r");
    assert_fields(&dup, &[(11, "K1"), (531, "0"), (532, "99"), (533, "0")]);
    assert!(dup.req(58).contains("ClOrdID"), "{dup:?}");
    // Refused before the engine: an unknown symbol, an account the session may not trade.
    c1.mass_cancel("K4", "1", &[(55, "NOPE")]);
    assert_fields(
        &c1.expect("r"),
        &[(11, "K4"), (530, "1"), (531, "0"), (532, "1"), (533, "0")],
    );
    c1.mass_cancel("K5", "7", &[(1, "DEMO2")]);
    assert_fields(&c1.expect("r"), &[(11, "K5"), (531, "0"), (532, "99")]);
    // A request type the exchange does not support fails validation: a session Reject.
    c1.mass_cancel("K6", "3", &[]);
    assert_fields(&c1.expect("3"), &[(371, "530"), (373, "5")]);
    // CLIENT2's order still rests: it trades.
    c1.limit("M5", "DEMO1", "AAPL", 1, 10, "193.00");
    assert_fields(&er(&mut c1), &[(150, "0")]);
    assert_fields(&er(&mut c1), &[(150, "F"), (32, "10")]);
    assert_fields(&er(&mut c2), &[(150, "F"), (11, "N1")]);
    c1.logout();
    c2.logout();
    // Requests the engine saw are journaled like any command (K1-K3 and K1 again; those
    // refused before the engine are not).
    let dump = journal_dump(&ex.data);
    assert_eq!(
        dump.lines().filter(|l| l.contains("MassCancel(")).count(),
        4,
        "{dump}"
    );
}

/// The ExecutionReports answering a mass status request: `n` of them.
fn mass_status_answers(c: &mut FixClient, n: usize) -> Vec<Msg> {
    (0..n).map(|_| er(c)).collect()
}

#[test]
fn order_mass_status_reports_each_working_order_of_the_session() {
    let ex = start_exchange(&temp_dir("mass_status"), None);
    let mut c1 = client1(ex.port);
    let mut c2 = client2(ex.port);
    c1.limit("W1", "DEMO1", "AAPL", 2, 300, "191.00");
    let w1 = er(&mut c1);
    c1.limit("W2", "DEMO1", "MSFT", 1, 10, "410.00");
    er(&mut c1);
    c2.limit("W3", "DEMO2", "AAPL", 1, 100, "191.00");
    er(&mut c2);
    er(&mut c2);
    er(&mut c1);
    // All of CLIENT1's orders: W1 partly filled, W2 new; counted, the last marked.
    c1.send("AF", &[(584, "MS1".into()), (585, "6".into())]);
    let got = mass_status_answers(&mut c1, 2);
    assert_fields(
        &got[0],
        &[
            (150, "I"),
            (39, "1"),
            (11, "W1"),
            (14, "100"),
            (151, "200"),
            (584, "MS1"),
            (911, "2"),
        ],
    );
    assert_eq!(got[0].req(37), w1.req(37));
    assert_eq!(got[0].get(912), None);
    assert_fields(
        &got[1],
        &[
            (150, "I"),
            (39, "0"),
            (11, "W2"),
            (584, "MS1"),
            (911, "2"),
            (912, "Y"),
        ],
    );
    // One symbol, one side.
    c1.send(
        "AF",
        &[
            (584, "MS2".into()),
            (585, "1".into()),
            (55, "MSFT".into()),
            (54, "1".into()),
        ],
    );
    assert_fields(&er(&mut c1), &[(11, "W2"), (911, "1"), (912, "Y")]);
    // None: one answer saying so. CLIENT2's filled order is not working.
    c2.send("AF", &[(584, "MS3".into()), (585, "6".into())]);
    assert_fields(
        &er(&mut c2),
        &[
            (150, "I"),
            (39, "8"),
            (37, "NONE"),
            (584, "MS3"),
            (911, "0"),
            (912, "Y"),
        ],
    );
    // Refused before the engine: an account CLIENT1 may not trade.
    c1.send(
        "AF",
        &[(584, "MS4".into()), (585, "6".into()), (1, "DEMO2".into())],
    );
    assert_fields(
        &er(&mut c1),
        &[(39, "8"), (584, "MS4"), (911, "0"), (912, "Y")],
    );
    // A request type the exchange does not support fails validation: a session Reject.
    c1.send("AF", &[(584, "MS5".into()), (585, "8".into())]);
    assert_fields(&c1.expect("3"), &[(371, "585"), (373, "5")]);
    c1.logout();
    c2.logout();
}

/// The ClOrdIDs of the cancels (ExecType 4) that arrive within `wait`, with their Text.
/// CLIENT1 logging on again where it left off (`at`: its next outbound and inbound numbers).
fn client1_again(port: u16, at: (u64, u64), when: &str) -> FixClient {
    let (out, inn) = at;
    FixClient::logon_at(
        port, "FIX.4.4", "CLIENT1", "client1", "demo1", false, out, inn,
    )
    .unwrap_or_else(|e| panic!("CLIENT1 logon {when}: {e}"))
}

/// Asks for everything from `from` on again and checks that it holds the cancels of `orders`,
/// all for the disconnect, and no other cancel.
fn assert_cancelled_on_disconnect(c: &mut FixClient, from: u64, orders: [&str; 2]) {
    c.send("2", &[(7, from.to_string()), (16, "0".into())]);
    let want: Vec<(String, String)> = orders
        .iter()
        .map(|o| (o.to_string(), "cancelled on disconnect".to_string()))
        .collect();
    assert_eq!(cancels(c, Duration::from_millis(1500)), want);
}

fn cancels(c: &mut FixClient, wait: Duration) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(m) = c.recv(wait) {
        if m.msg_type == "8" && m.get(150) == Some("4") {
            out.push((m.req(11).to_string(), m.get(58).unwrap_or("").to_string()));
        }
    }
    out.sort();
    out
}

#[test]
fn cancel_on_disconnect_cancels_when_the_session_or_the_exchange_crashes_not_when_it_stops() {
    let config = gateway::exchange::config::DEFAULT_EXCHANGE_TOML.replace(
        "TargetCompID = \"CLIENT1\"",
        "TargetCompID = \"CLIENT1\"\nCancelOnDisconnect = true",
    );
    let ex = start_exchange(&temp_dir("cod"), Some(&config));
    let mut c1 = client1(ex.port);
    let mut c2 = client2(ex.port);
    c1.limit("C1", "DEMO1", "AAPL", 2, 10, "195.00");
    er(&mut c1);
    c1.limit("C2", "DEMO1", "MSFT", 1, 10, "410.00");
    er(&mut c1);
    // The connection drops: both orders are cancelled, and the client learns it when it is
    // back (by resend, or live if it came back first).
    let at = (c1.next_out(), c1.next_in);
    c1.drop_connection();
    std::thread::sleep(Duration::from_millis(300));
    let mut c1 = client1_again(ex.port, at, "again");
    assert_cancelled_on_disconnect(&mut c1, at.1, ["C1", "C2"]);
    // C1 is gone from the book: a buy at its price rests instead of trading.
    c2.limit("B1", "DEMO2", "AAPL", 1, 10, "195.00");
    assert_fields(&er(&mut c2), &[(150, "0"), (11, "B1")]);
    assert!(c2.recv(Duration::from_millis(500)).is_none(), "no fill");
    // A clean shutdown of the exchange is not the client going away: C3 survives it.
    c1.limit("C3", "DEMO1", "AAPL", 2, 10, "196.00");
    er(&mut c1);
    // Still connected when the exchange stops: it logs the session out itself.
    let at = (c1.next_out(), c1.next_in);
    let data = ex.terminate();
    drop(c1);
    let ex = start_exchange(&data, Some(&config));
    let mut c1 = client1_again(ex.port, at, "after the restart");
    c1.status("C3", "DEMO1", "AAPL", 2, "S1");
    let m = loop {
        let m = c1.recv(Duration::from_secs(10)).expect("the status answer");
        if m.msg_type == "8" && m.get(150) == Some("I") {
            break m;
        }
    };
    assert_fields(&m, &[(11, "C3"), (39, "0"), (151, "10")]);
    // A crash takes the connection down too: after it, the session's orders are cancelled
    // at the start, and the client learns it when it logs on again.
    c1.limit("C4", "DEMO1", "MSFT", 1, 10, "411.00");
    let m = loop {
        let m = er(&mut c1);
        if m.get(11) == Some("C4") {
            break m;
        }
    };
    assert_fields(&m, &[(150, "0")]);
    let at = (c1.next_out(), c1.next_in);
    let data = ex.kill9();
    drop(c1);
    // A second exchange over the same data directory is refused while one runs.
    let ex = start_exchange(&data, Some(&config));
    let second = std::process::Command::new(exchange_tests::exchange_binary())
        .args(["--port", "0", "--http-port", "0", "--data"])
        .arg(&data)
        .output()
        .expect("run a second exchange");
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another exchange runs"), "{err}");
    let mut c1 = client1_again(ex.port, at, "after the crash");
    assert_cancelled_on_disconnect(&mut c1, at.1, ["C3", "C4"]);
}

#[test]
fn rate_limit_and_closed_market_reject_without_disconnecting() {
    let config = gateway::exchange::config::DEFAULT_EXCHANGE_TOML
        .replace(
            "max_orders_per_second = 100000",
            "max_orders_per_second = 5",
        )
        .replace("open_on_start = true", "open_on_start = false");
    let ex = start_exchange(&temp_dir("limits"), Some(&config));
    let mut c1 = client1(ex.port);
    let n = 30;
    for i in 0..n {
        c1.limit(&format!("L{i}"), "DEMO1", "AAPL", 1, 1, "190");
    }
    let mut limited = 0;
    let mut closed = 0;
    for _ in 0..n {
        let m = er(&mut c1);
        assert_eq!(m.req(150), "8", "{m:?}");
        match m.req(103) {
            "2" => closed += 1,
            _ if m.req(58).contains("rate limit") => limited += 1,
            other => panic!("unexpected reason {other}: {m:?}"),
        }
    }
    assert!(limited >= n - 10, "{limited} rate-limited of {n}");
    assert!(closed >= 1, "orders within the rate see a closed market");
    // Still logged on: a heartbeat round trip works.
    c1.send("1", &[(112, "still-there".into())]);
    let hb = c1.recv(Duration::from_secs(5));
    assert!(hb.is_none_or(|m| m.msg_type == "0"));
    c1.logout();
}

#[test]
fn a_reconnecting_client_gets_the_reports_it_missed_and_orders_survive_kill_9() {
    let data = temp_dir("recover");
    let ex = start_exchange(&data, None);
    let mut c1 = client1(ex.port);
    c1.limit("K1", "DEMO1", "MSFT", 2, 500, "420.00");
    let ack = er(&mut c1);
    assert_fields(&ack, &[(150, "0")]);
    let (out, inn) = (c1.next_out(), c1.next_in);
    c1.drop_connection();

    // While CLIENT1 is away, CLIENT2 trades against its order.
    let mut c2 = client2(ex.port);
    c2.limit("K2", "DEMO2", "MSFT", 1, 200, "420.00");
    assert_fields(&er(&mut c2), &[(150, "0")]);
    assert_fields(&er(&mut c2), &[(150, "F"), (32, "200")]);

    // Kill the exchange without warning and start it again over the same data.
    let data = ex.kill9();
    let ex = start_exchange(&data, None);

    // CLIENT1 logs on with its own sequence numbers, sees the gap and asks for a resend.
    let mut c1 = client1_again(ex.port, (out, inn), "after restart");
    c1.send("2", &[(7, inn.to_string()), (16, "0".into())]);
    let mut fill = None;
    for _ in 0..20 {
        match c1.recv(Duration::from_secs(5)) {
            Some(m) if m.msg_type == "8" && m.get(150) == Some("F") => {
                fill = Some(m);
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    let fill = fill.expect("the missed fill was resent");
    assert_fields(&fill, &[(11, "K1"), (32, "200"), (151, "300"), (43, "Y")]);

    // The order survived the crash: the rest of it trades.
    c2 = FixClient::logon(ex.port, "FIXT.1.1", "CLIENT2", "client2", "demo2", true)
        .expect("CLIENT2 logon with reset");
    c2.limit("K3", "DEMO2", "MSFT", 1, 300, "420.00");
    assert_fields(&er(&mut c2), &[(150, "0"), (11, "K3")]);
    assert_fields(&er(&mut c2), &[(150, "F"), (32, "300"), (39, "2")]);
    // Reports whose delivery the crash may have interrupted come again flagged PossResend
    // (97=Y) with their original ExecID; a client skips the ones it has.
    let mut last = er(&mut c1);
    while last.get(17) == fill.get(17) {
        assert_eq!(
            last.get(97),
            Some("Y"),
            "a repeat must be flagged: {last:?}"
        );
        last = er(&mut c1);
    }
    assert_fields(&last, &[(11, "K1"), (150, "F"), (39, "2"), (14, "500")]);
}

#[test]
fn trading_hours_close_the_session_and_expire_day_orders() {
    // Open since a minute ago, closing a few seconds from now (UTC, wrapping past midnight).
    let now = gateway::time::now_millis() / 1000;
    let hms = |t: i64| {
        let t = t.rem_euclid(86_400);
        format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
    };
    let hours = format!("{}-{}", hms(now - 60), hms(now + 12));
    let config = gateway::exchange::config::DEFAULT_EXCHANGE_TOML.replace(
        "open_on_start = true",
        &format!("open_on_start = false\ntrading_hours = \"{hours}\""),
    );
    let ex = start_exchange(&temp_dir("hours"), Some(&config));
    let mut c1 = client1(ex.port);
    c1.limit("H1", "DEMO1", "AAPL", 1, 10, "185.00");
    assert_fields(&er(&mut c1), &[(150, "0"), (11, "H1")]);
    // At the close the Day order expires.
    let expired = c1
        .recv(Duration::from_secs(40))
        .expect("the close expires the order");
    assert_fields(&expired, &[(150, "C"), (39, "C"), (11, "H1")]);
    // After it, orders are refused: the market is closed.
    c1.limit("H2", "DEMO1", "AAPL", 1, 10, "185.00");
    assert_fields(&er(&mut c1), &[(150, "8"), (103, "2"), (11, "H2")]);
}
