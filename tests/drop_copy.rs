//! Drop copy over TCP against the `exchange` binary: the broker session DC1 covers account
//! DEMO1 (not DEMO2) and receives a copy of each of DEMO1's ExecutionReports, and only those.

use std::time::Duration;

use exchange_tests::{FixClient, Msg, start_exchange, temp_dir};

fn drop_copy(port: u16) -> FixClient {
    FixClient::logon(port, "FIX.4.4", "DC1", "dc1", "dc1", false).expect("DC1 logon")
}

/// The next copies until none arrives for a while.
fn copies(dc: &mut FixClient) -> Vec<Msg> {
    let mut out = Vec::new();
    while let Some(m) = dc.recv(Duration::from_millis(1500)) {
        out.push(m);
    }
    out
}

fn summary(m: &Msg) -> (String, String, String) {
    (
        m.req(11).to_string(),
        m.req(150).to_string(),
        m.req(1).to_string(),
    )
}

#[test]
fn a_drop_copy_session_gets_exactly_its_accounts_reports_and_catches_up() {
    let ex = start_exchange(&temp_dir("dropcopy"), None);
    let mut dc = drop_copy(ex.port);
    let mut c1 = FixClient::logon(ex.port, "FIX.4.4", "CLIENT1", "client1", "demo1", false)
        .expect("CLIENT1 logon");
    let mut c2 = FixClient::logon(ex.port, "FIXT.1.1", "CLIENT2", "client2", "demo2", false)
        .expect("CLIENT2 logon");

    // DEMO1 rests a sell; DEMO2 trades against part of it; DEMO1 cancels the rest; DEMO1's
    // oversized buy is refused by the wallet; DEMO2 rests an order of its own.
    c1.limit("D1", "DEMO1", "AAPL", 2, 300, "190.00");
    c1.expect("8");
    c2.limit("D2", "DEMO2", "AAPL", 1, 100, "190.00");
    c2.expect("8");
    c2.expect("8");
    c1.expect("8");
    // A status answer is for the asker alone: no copy.
    c1.status("D1", "DEMO1", "AAPL", 2, "Q1");
    assert_eq!(c1.expect("8").get(150), Some("I"));
    c1.cancel("D1C", "D1", "DEMO1", "AAPL", 2);
    c1.expect("8");
    c1.limit("D3", "DEMO1", "AAPL", 1, 900_000, "190.00");
    let reject = c1.expect("8");
    assert_eq!(reject.get(150), Some("8"), "{reject:?}");
    c2.limit("D4", "DEMO2", "MSFT", 1, 10, "400.00");
    c2.expect("8");
    // CLIENT2 tries to trade for DEMO1: the gateway refuses it, and the refusal is journaled
    // like any reject, so DEMO1's broker sees the attempt.
    c2.limit("D7", "DEMO1", "AAPL", 1, 10, "190.00");
    let refused = c2.expect("8");
    assert_eq!(refused.get(150), Some("8"), "{refused:?}");
    assert_eq!(refused.get(103), Some("15"), "{refused:?}");

    // A mass cancel's cancels are copied; its OrderMassCancelReport answers the asker alone.
    c1.limit("D8", "DEMO1", "AAPL", 2, 10, "195.00");
    c1.expect("8");
    c1.mass_cancel("K1", "1", &[(55, "AAPL")]);
    c1.expect("8");
    assert_eq!(c1.expect("r").get(533), Some("1"));

    let got = copies(&mut dc);
    let want = [
        ("D1", "0"), // new
        ("D1", "F"), // DEMO1's side of the trade only
        ("D1C", "4"),
        ("D3", "8"),
        ("D7", "8"),
        ("D8", "0"),
        ("D8", "4"),
    ];
    let seen: Vec<_> = got.iter().map(summary).collect();
    assert_eq!(
        seen,
        want.iter()
            .map(|(c, e)| (c.to_string(), e.to_string(), "DEMO1".to_string()))
            .collect::<Vec<_>>()
    );
    for m in &got {
        assert_eq!(m.msg_type, "8");
        assert_eq!(m.get(797), Some("Y"), "CopyMsgIndicator on {m:?}");
    }
    assert_eq!(got[1].get(32), Some("100"));
    assert_eq!(got[1].get(1057), Some("N"), "the resting side's copy");

    // A drop-copy session is read-only.
    dc.limit("X1", "DEMO1", "AAPL", 1, 1, "190.00");
    let bmr = dc.expect("j");
    assert_eq!(bmr.get(380), Some("6"), "{bmr:?}");

    // Away, DC1 misses a fill; back with its sequence numbers, it asks for a resend.
    let (out, inn) = (dc.next_out(), dc.next_in);
    dc.drop_connection();
    c1.limit("D5", "DEMO1", "AAPL", 2, 50, "191.00");
    c1.expect("8");
    c2.limit("D6", "DEMO2", "AAPL", 1, 50, "191.00");
    c2.expect("8");
    c2.expect("8");
    c1.expect("8");
    let mut dc = FixClient::logon_at(ex.port, "FIX.4.4", "DC1", "dc1", "dc1", false, out, inn)
        .expect("DC1 logon again");
    dc.send("2", &[(7, inn.to_string()), (16, "0".into())]);
    let resent = copies(&mut dc);
    let seen: Vec<_> = resent.iter().map(summary).collect();
    assert_eq!(
        seen,
        [("D5", "0"), ("D5", "F")]
            .iter()
            .map(|(c, e)| (c.to_string(), e.to_string(), "DEMO1".to_string()))
            .collect::<Vec<_>>()
    );
    for m in &resent {
        assert_eq!(m.get(43), Some("Y"), "resent as PossDup: {m:?}");
        assert_eq!(m.get(797), Some("Y"));
    }
}
