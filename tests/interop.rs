//! Interoperability with a FIX engine nobody here wrote: QuickFIX C++ (through quickfix-rs)
//! initiators against the `exchange` binary, validating every message the exchange sends
//! against the exchange's own dictionaries in `fix-specs/`. A message that failed QuickFIX's
//! validation would not reach the application and would be answered with a Reject (35=3): the
//! tests wait for the application messages and check that no Reject was sent.
//!
//! Built by the `exchange-examples` crate (it needs cmake for QuickFIX).

use std::time::Duration;

use exchange_examples::book::{Books, Update};
use exchange_examples::{Client, ClientOptions, FixMsg, run_client};
use exchange_tests::{Server, free_port, start_exchange, start_exchange_with, temp_dir};

const WAIT: Duration = Duration::from_secs(30);

fn options(ex: &Server, begin: &str, sender: &str, user: &str, password: &str) -> ClientOptions {
    let mut o = ClientOptions::new(ex.port, begin, sender, user, password);
    o.store_dir = ex.data.join(format!("client-{sender}"));
    o
}

fn client1(ex: &Server) -> ClientOptions {
    options(ex, "FIX.4.4", "CLIENT1", "client1", "demo1")
}

fn client2(ex: &Server) -> ClientOptions {
    options(ex, "FIXT.1.1", "CLIENT2", "client2", "demo2")
}

fn now() -> String {
    chrono::Utc::now().format("%Y%m%d-%H:%M:%S%.3f").to_string()
}

fn order(c: &mut Client, cl: &str, account: &str, symbol: &str, side: &str, qty: u64, px: &str) {
    c.send(
        "D",
        &[
            (11, cl.into()),
            (1, account.into()),
            (55, symbol.into()),
            (54, side.into()),
            (60, now()),
            (38, qty.to_string()),
            (40, "2".into()),
            (44, px.into()),
            (59, "0".into()),
        ],
    )
    .expect("send order");
}

fn expect(c: &mut Client, msg_type: &str) -> FixMsg {
    let Some(m) = c.recv(WAIT) else {
        panic!(
            "no {msg_type} arrived; Rejects QuickFIX sent: {:?}",
            c.rejects_sent
        );
    };
    assert_eq!(m.msg_type, msg_type, "{m:?}");
    m
}

fn assert_fields(m: &FixMsg, want: &[(i32, &str)]) {
    for (t, v) in want {
        assert_eq!(m.get(*t), Some(*v), "tag {t} in {m:?}");
    }
}

fn no_rejects(c: &Client) {
    assert!(
        c.rejects_sent.is_empty(),
        "QuickFIX rejected messages of the exchange: {:?}",
        c.rejects_sent
    );
}

#[test]
fn quickfix_clients_trade_cancel_and_replace_on_fix44_and_fixt11() {
    let ex = start_exchange(&temp_dir("interop-trade"), None);
    run_client(&client1(&ex), WAIT, |a| {
        run_client(&client2(&ex), WAIT, |b| {
            order(a, "Q1", "DEMO1", "AAPL", "2", 300, "190.00");
            assert_fields(&expect(a, "8"), &[(150, "0"), (39, "0"), (11, "Q1")]);
            order(b, "Q2", "DEMO2", "AAPL", "1", 100, "190.00");
            assert_fields(&expect(b, "8"), &[(150, "0"), (11, "Q2")]);
            let fill_b = expect(b, "8");
            assert_fields(&fill_b, &[(150, "F"), (39, "2"), (32, "100"), (31, "190")]);
            let fill_a = expect(a, "8");
            assert_fields(&fill_a, &[(150, "F"), (39, "1"), (14, "100"), (151, "200")]);
            assert_eq!(fill_a.get(880), fill_b.get(880), "one TrdMatchID");

            a.send(
                "G",
                &[
                    (11, "Q1R".into()),
                    (41, "Q1".into()),
                    (1, "DEMO1".into()),
                    (55, "AAPL".into()),
                    (54, "2".into()),
                    (60, now()),
                    (38, "250".into()),
                    (40, "2".into()),
                    (44, "190.05".into()),
                ],
            )
            .unwrap();
            assert_fields(
                &expect(a, "8"),
                &[(150, "5"), (11, "Q1R"), (41, "Q1"), (151, "150")],
            );
            a.send(
                "F",
                &[
                    (11, "Q1C".into()),
                    (41, "Q1R".into()),
                    (1, "DEMO1".into()),
                    (55, "AAPL".into()),
                    (54, "2".into()),
                    (60, now()),
                ],
            )
            .unwrap();
            assert_fields(&expect(a, "8"), &[(150, "4"), (39, "4"), (11, "Q1C")]);
            // A cancel of an order that is gone: OrderCancelReject.
            a.send(
                "F",
                &[
                    (11, "Q1X".into()),
                    (41, "Q1R".into()),
                    (1, "DEMO1".into()),
                    (55, "AAPL".into()),
                    (54, "2".into()),
                    (60, now()),
                ],
            )
            .unwrap();
            assert_fields(&expect(a, "9"), &[(11, "Q1X"), (434, "1")]);
            // A business reject: an order for an account CLIENT2 may not trade.
            order(b, "Q3", "DEMO1", "AAPL", "1", 1, "190.00");
            assert_fields(&expect(b, "8"), &[(150, "8"), (11, "Q3")]);
            // Order mass cancel: the cancelled order's report, then OrderMassCancelReport.
            order(a, "Q4", "DEMO1", "AAPL", "2", 10, "195.00");
            assert_fields(&expect(a, "8"), &[(150, "0"), (11, "Q4")]);
            let mass = |cl: &str, scope: &str| {
                let mut f = vec![(11, cl.to_string()), (530, scope.to_string()), (60, now())];
                if scope == "1" {
                    f.push((55, "AAPL".to_string()));
                }
                f
            };
            // Order mass status: Q4 as it stands; none for CLIENT2.
            a.send("AF", &[(584, "QS1".into()), (585, "6".into())])
                .unwrap();
            assert_fields(
                &expect(a, "8"),
                &[(150, "I"), (11, "Q4"), (584, "QS1"), (911, "1"), (912, "Y")],
            );
            b.send("AF", &[(584, "QS2".into()), (585, "6".into())])
                .unwrap();
            assert_fields(&expect(b, "8"), &[(150, "I"), (39, "8"), (911, "0")]);
            a.send("q", &mass("QM1", "1")).unwrap();
            assert_fields(&expect(a, "8"), &[(150, "4"), (11, "Q4")]);
            assert_fields(&expect(a, "r"), &[(11, "QM1"), (531, "1"), (533, "1")]);
            b.send("q", &mass("QM2", "7")).unwrap();
            assert_fields(&expect(b, "r"), &[(11, "QM2"), (531, "7"), (533, "0")]);
            no_rejects(a);
            no_rejects(b);
        })
        .expect("CLIENT2 logon")
    })
    .expect("CLIENT1 logon");
}

#[test]
fn a_quickfix_client_that_was_away_gets_the_missed_reports_by_resend() {
    let ex = start_exchange(&temp_dir("interop-resend"), None);
    run_client(&client1(&ex), WAIT, |a| {
        order(a, "R1", "DEMO1", "MSFT", "2", 500, "420.00");
        assert_fields(&expect(a, "8"), &[(150, "0")]);
    })
    .expect("CLIENT1 logon");
    // CLIENT1 is gone; CLIENT2 trades against its order.
    run_client(&client2(&ex), WAIT, |b| {
        order(b, "R2", "DEMO2", "MSFT", "1", 200, "420.00");
        expect(b, "8");
        assert_fields(&expect(b, "8"), &[(150, "F")]);
    })
    .expect("CLIENT2 logon");
    // Back with its stored sequence numbers, QuickFIX sees the gap and asks for a resend.
    run_client(&client1(&ex), WAIT, |a| {
        let fill = expect(a, "8");
        assert_fields(
            &fill,
            &[(150, "F"), (11, "R1"), (32, "200"), (151, "300"), (43, "Y")],
        );
        no_rejects(a);
    })
    .expect("CLIENT1 logon again");
}

#[test]
fn a_quickfix_client_cut_off_by_a_crash_reconnects_and_gets_its_fill() {
    let port = free_port();
    let p = port.to_string();
    let ex = start_exchange_with(&temp_dir("interop-crash"), None, &["--port", &p]);
    let (a_opts, b_opts) = (client1(&ex), client2(&ex));
    run_client(&a_opts, WAIT, |a| {
        order(a, "K1", "DEMO1", "GOOGL", "2", 100, "170.00");
        assert_fields(&expect(a, "8"), &[(150, "0")]);
        // The connection is cut without a Logout: the exchange dies and comes back on the
        // same port over the same data; QuickFIX reconnects on its own.
        let data = ex.kill9();
        let ex = start_exchange_with(&data, None, &["--port", &p]);
        let mut b_opts = b_opts.clone();
        b_opts.port = ex.port;
        run_client(&b_opts, WAIT, |b| {
            order(b, "K2", "DEMO2", "GOOGL", "1", 100, "170.00");
            expect(b, "8");
            assert_fields(&expect(b, "8"), &[(150, "F")]);
        })
        .expect("CLIENT2 logon");
        // Whether the fill came live or by resend after the reconnect, it comes once.
        let mut fills = Vec::new();
        while let Some(m) = a.recv(Duration::from_secs(5)) {
            if m.msg_type == "8" && m.get(150) == Some("F") {
                fills.push(m);
            }
        }
        assert!(!fills.is_empty(), "the fill never reached CLIENT1");
        assert!(
            fills
                .iter()
                .all(|m| m.get(11) == Some("K1") && m.get(32) == Some("100"))
        );
        let exec_ids: std::collections::BTreeSet<_> = fills.iter().map(|m| m.get(17)).collect();
        assert_eq!(exec_ids.len(), 1, "one execution: {fills:?}");
        no_rejects(a);
    })
    .expect("CLIENT1 logon");
}

#[test]
fn a_quickfix_market_data_session_rebuilds_the_book() {
    let ex = start_exchange(&temp_dir("interop-md"), None);
    run_client(&client1(&ex), WAIT, |a| {
        order(a, "M1", "DEMO1", "NVDA", "1", 40, "120.00");
        expect(a, "8");
        let md = options(&ex, "FIX.4.4", "MD1", "md1", "md1");
        run_client(&md, WAIT, |m| {
            // TradingSessionStatus comes first: the session is open.
            assert_fields(&expect(m, "h"), &[(340, "2"), (336, "1")]);
            m.market_data_request("sub1", "1", 0, &["0", "1", "2"], &["NVDA".into()])
                .unwrap();
            let mut books = Books::default();
            let w = expect(m, "W");
            assert_eq!(
                books.apply(&w),
                Update::Changed(vec!["NVDA".into()]),
                "{w:?}"
            );
            assert_eq!(books.books["NVDA"].bids.get(&1_200_000), Some(&40));
            order(a, "M2", "DEMO1", "NVDA", "2", 25, "121.00");
            expect(a, "8");
            let x = expect(m, "X");
            assert_eq!(books.apply(&x), Update::Changed(vec!["NVDA".into()]));
            assert_eq!(books.books["NVDA"].asks.get(&1_210_000), Some(&25));
            // An unknown symbol: MarketDataRequestReject.
            m.market_data_request("sub2", "0", 1, &["0"], &["NOPE".into()])
                .unwrap();
            assert_fields(&expect(m, "Y"), &[(262, "sub2"), (281, "0")]);
            no_rejects(m);
        })
        .expect("MD1 logon");
    })
    .expect("CLIENT1 logon");
}

#[test]
fn a_quickfix_drop_copy_session_receives_its_accounts_reports() {
    let ex = start_exchange(&temp_dir("interop-dc"), None);
    let dc = options(&ex, "FIX.4.4", "DC1", "dc1", "dc1");
    run_client(&dc, WAIT, |d| {
        run_client(&client1(&ex), WAIT, |a| {
            run_client(&client2(&ex), WAIT, |b| {
                order(a, "C1", "DEMO1", "AMZN", "2", 10, "180.00");
                expect(a, "8");
                order(b, "C2", "DEMO2", "AMZN", "1", 10, "180.00");
                expect(b, "8");
                expect(b, "8");
                expect(a, "8");
            })
            .expect("CLIENT2 logon");
        })
        .expect("CLIENT1 logon");
        let new = expect(d, "8");
        assert_fields(&new, &[(11, "C1"), (150, "0"), (1, "DEMO1"), (797, "Y")]);
        let fill = expect(d, "8");
        assert_fields(&fill, &[(11, "C1"), (150, "F"), (1, "DEMO1"), (797, "Y")]);
        assert!(d.recv(Duration::from_secs(1)).is_none(), "nothing of DEMO2");
        no_rejects(d);
    })
    .expect("DC1 logon");
}
