//! QuickFIX's acceptance-test application, for running the FIX session acceptance suite
//! against this session layer (`exchange at-server`).
//!
//! It echoes NewOrderSingle (D), SecurityDefinition (d) and Email (C) back to their sender,
//! except a NewOrderSingle with PossResend=Y whose ClOrdID this session has already seen
//! (forgotten at logout); any other application message gets a BusinessMessageReject
//! (unsupported message type).

use std::collections::HashSet;

use crate::codec::{Message, tags};
use crate::session::{AppReject, Application, Outgoing, SessionKey};

/// The acceptance-test application.
#[derive(Default)]
pub struct AtApplication {
    seen: HashSet<(SessionKey, Vec<u8>)>,
}

/// The same message back: every field but those the session writes itself.
fn echo(msg: &Message) -> Outgoing {
    let fields = msg
        .fields
        .iter()
        .filter(|f| {
            !matches!(
                f.tag,
                tags::BEGIN_STRING
                    | tags::BODY_LENGTH
                    | tags::MSG_TYPE
                    | tags::MSG_SEQ_NUM
                    | tags::SENDER_COMP_ID
                    | tags::TARGET_COMP_ID
                    | tags::SENDING_TIME
                    | tags::POSS_DUP_FLAG
                    | tags::ORIG_SENDING_TIME
                    | tags::CHECK_SUM
            )
        })
        .map(|f| (f.tag, f.value.to_vec()))
        .collect();
    Outgoing::new(msg.msg_type(), fields)
}

impl Application for AtApplication {
    fn on_logout(&mut self, session: &SessionKey) {
        self.seen.retain(|(k, _)| k != session);
    }

    fn on_app_message(
        &mut self,
        session: &SessionKey,
        msg: &Message<'_>,
        reply: &mut Vec<Outgoing>,
    ) -> Result<(), AppReject> {
        match msg.msg_type() {
            b"D" => {
                let cl = msg.get(11).unwrap_or_default().to_vec();
                let key = (session.clone(), cl);
                if msg.flag(tags::POSS_RESEND) && self.seen.contains(&key) {
                    return Ok(());
                }
                self.seen.insert(key);
                reply.push(echo(msg));
                Ok(())
            }
            b"d" | b"C" => {
                reply.push(echo(msg));
                Ok(())
            }
            _ => Err(AppReject::UnsupportedMessageType),
        }
    }
}

/// The acceptance configuration: acceptor ISLD, sessions TW44 (FIX.4.4) and TW50SP2
/// (FIXT.1.1, DefaultApplVerID 9), reset on logon, dictionaries from `dictionaries`.
pub fn config_toml(port: u16, dictionaries: &std::path::Path, data: &std::path::Path) -> String {
    let d = dictionaries.display();
    format!(
        r#"[acceptor]
SocketAcceptPort = {port}
SocketAcceptAddress = "127.0.0.1"
FileStorePath = "{data}"

[[session]]
BeginString = "FIX.4.4"
SenderCompID = "ISLD"
TargetCompID = "TW44"
DataDictionary = "{d}/FIX44.xml"
ResetOnLogon = true

[[session]]
BeginString = "FIXT.1.1"
SenderCompID = "ISLD"
TargetCompID = "TW50SP2"
TransportDataDictionary = "{d}/FIXT11.xml"
AppDataDictionary = "{d}/FIX50SP2.xml"
DefaultApplVerID = "9"
ResetOnLogon = true
"#,
        data = data.display()
    )
}
