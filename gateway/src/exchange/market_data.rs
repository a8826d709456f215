//! The market-data thread: the sequenced events into [`marketdata::Feed`], MarketDataRequests
//! from market-data sessions, and the feed's output rendered as FIX W, X, Y and h messages.
//!
//! The thread takes everything waiting in its queue in one round and publishes once per
//! round: when it falls behind, updates merge instead of queueing. A subscriber whose session
//! has more than [`CONFLATE_AT`] bytes waiting is skipped and receives fresh snapshots once
//! it has drained, so one slow reader costs neither memory nor time of the others.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use marketdata::archive::Archive;
use marketdata::feed::{Entry, Out, SubscriberId, Update};
use marketdata::{Feed, Request, RequestKind};
use rustc_hash::FxHashMap;

use super::Stamped;
use super::order_entry::OrderEntry;
use crate::acceptor::Acceptor;
use crate::codec::{Message, SOH, Tag, write_tag, write_uint};
use crate::reports::write_price;
use crate::session::{Outgoing, SessionKey};
use crate::time::format_utc_millis;

/// Bytes waiting in a subscriber's session beyond which its updates are conflated: bytes, not
/// messages, because a publisher that falls behind sends fewer, larger messages.
pub const CONFLATE_AT: usize = 64 * 1024;

/// FIX tags of market data.
#[allow(missing_docs)]
pub mod tag {
    use crate::codec::Tag;
    pub use crate::reports::tag::{SYMBOL, TEXT};
    pub const RPT_SEQ: Tag = 83;
    pub const NO_RELATED_SYM: Tag = 146;
    pub const MD_REQ_ID: Tag = 262;
    pub const SUBSCRIPTION_REQUEST_TYPE: Tag = 263;
    pub const MARKET_DEPTH: Tag = 264;
    pub const MD_UPDATE_TYPE: Tag = 265;
    pub const AGGREGATED_BOOK: Tag = 266;
    pub const NO_MD_ENTRY_TYPES: Tag = 267;
    pub const NO_MD_ENTRIES: Tag = 268;
    pub const MD_ENTRY_TYPE: Tag = 269;
    pub const MD_ENTRY_PX: Tag = 270;
    pub const MD_ENTRY_SIZE: Tag = 271;
    pub const MD_ENTRY_DATE: Tag = 272;
    pub const MD_ENTRY_TIME: Tag = 273;
    pub const MD_ENTRY_ID: Tag = 278;
    pub const MD_UPDATE_ACTION: Tag = 279;
    pub const MD_REQ_REJ_REASON: Tag = 281;
    pub const UNSOLICITED_INDICATOR: Tag = 325;
    pub const TRADING_SESSION_ID: Tag = 336;
    pub const TRAD_SES_STATUS: Tag = 340;
    pub const NUMBER_OF_ORDERS: Tag = 346;
}

/// What the market-data thread is fed.
#[derive(Debug)]
pub enum MdInput {
    /// A group commit's events, in sequence.
    Events(Vec<Stamped>),
    /// A MarketDataRequest from a subscriber.
    Request(SubscriberId, Request),
    /// A market-data session logged on.
    Connect(SubscriberId),
    /// A market-data session logged out.
    Disconnect(SubscriberId),
}

/// The feed and its candle archive, shared with the HTTP data service.
pub struct MarketData {
    /// Books, trades, statistics, candles and subscriptions.
    pub feed: Feed,
    /// Candles evicted from the rings.
    pub archive: Option<Archive>,
}

impl MarketData {
    /// Applies a batch of events and archives the candles they push out of the rings.
    pub fn apply(&mut self, events: &[Stamped]) {
        for s in events {
            self.feed.apply(s.seq, s.timestamp, &s.event);
        }
        self.archive_evicted();
    }

    /// Archives the candles the events applied so far pushed out of the rings.
    pub fn archive_evicted(&mut self) {
        let evicted = self.feed.take_evicted();
        if let Some(a) = &self.archive {
            for (sym, r, c) in evicted {
                if let Err(e) = a.append(self.feed.name(sym), r, &c) {
                    tracing::warn!(error = %e, "cannot archive a candle");
                }
            }
        }
    }
}

/// Locks the shared market data (a panic elsewhere leaves it usable).
pub fn lock(md: &Mutex<MarketData>) -> MutexGuard<'_, MarketData> {
    md.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads a validated MarketDataRequest.
pub fn parse_request(msg: &Message<'_>) -> Request {
    let kind = match msg.get(tag::SUBSCRIPTION_REQUEST_TYPE) {
        Some(b"1") => RequestKind::Subscribe,
        Some(b"2") => RequestKind::Unsubscribe,
        _ => RequestKind::Snapshot,
    };
    let mut entry_types = Vec::new();
    let mut symbols = Vec::new();
    for f in &msg.fields {
        match f.tag {
            tag::MD_ENTRY_TYPE => entry_types.extend_from_slice(f.value),
            tag::SYMBOL => symbols.push(String::from_utf8_lossy(f.value).into_owned()),
            _ => {}
        }
    }
    Request {
        req_id: msg.get_str(tag::MD_REQ_ID).unwrap_or_default().to_string(),
        kind,
        depth: msg
            .get_u64(tag::MARKET_DEPTH)
            .map_or(0, |d| d.min(u64::from(u32::MAX)) as u32),
        aggregated: msg.get(tag::AGGREGATED_BOOK) != Some(b"N"),
        incremental: msg.get(tag::MD_UPDATE_TYPE).map(|v| v == b"1"),
        entry_types,
        symbols,
    }
}

/// A MarketDataRequestReject.
pub fn reject(req_id: &str, reason: Option<u8>, text: &str) -> Outgoing {
    let mut fields = vec![(tag::MD_REQ_ID, req_id.as_bytes().to_vec())];
    if let Some(r) = reason {
        fields.push((tag::MD_REQ_REJ_REASON, vec![r]));
    }
    fields.push((tag::TEXT, text.as_bytes().to_vec()));
    Outgoing::new(b"Y", fields)
}

fn put(b: &mut Vec<u8>, tag: Tag, value: &[u8]) {
    write_tag(b, tag);
    b.extend_from_slice(value);
    b.push(SOH);
}

fn put_price(b: &mut Vec<u8>, tag: Tag, units: i64) {
    write_tag(b, tag);
    write_price(b, units);
    b.push(SOH);
}

fn put_uint(b: &mut Vec<u8>, tag: Tag, value: u64) {
    write_tag(b, tag);
    write_uint(b, value);
    b.push(SOH);
}

/// Encodes entries as members of the NoMDEntries group; incremental entries name their
/// instrument and RptSeq.
pub fn encode_entries(entries: &[Entry], incremental: bool, feed: &Feed, b: &mut Vec<u8>) {
    for e in entries {
        if incremental {
            put(b, tag::MD_UPDATE_ACTION, &[e.action.fix()]);
        }
        put(b, tag::MD_ENTRY_TYPE, &[e.kind.fix()]);
        if let Some(id) = e.order_id {
            put_uint(b, tag::MD_ENTRY_ID, id.0);
        }
        if incremental {
            put(b, tag::SYMBOL, feed.name(e.symbol).as_bytes());
            put_uint(b, tag::RPT_SEQ, e.rpt_seq);
        }
        if let Some(p) = e.price {
            put_price(b, tag::MD_ENTRY_PX, p);
        }
        if let Some(q) = e.size {
            put_uint(b, tag::MD_ENTRY_SIZE, q);
        }
        if e.time > 0 {
            let ts = format_utc_millis(e.time / 1_000_000);
            put(b, tag::MD_ENTRY_DATE, &ts[..8]);
            put(b, tag::MD_ENTRY_TIME, &ts[9..]);
        }
        if let Some(n) = e.orders {
            put_uint(b, tag::NUMBER_OF_ORDERS, n.into());
        }
    }
}

/// Renders the feed's output as FIX. An update shared by many subscriptions is encoded once
/// and its bytes shared by their messages, until [`Renderer::clear`].
#[derive(Default)]
pub struct Renderer {
    // Keyed by the update's address; holding the update keeps the address from being reused.
    encoded: FxHashMap<usize, (Update, Arc<[u8]>)>,
}

impl Renderer {
    /// The recipient and the message.
    pub fn render(&mut self, out: &Out, feed: &Feed) -> (SubscriberId, Outgoing) {
        match out {
            Out::Snapshot {
                subscriber,
                req_id,
                symbol,
                rpt_seq,
                entries,
            } => {
                let mut b = Vec::new();
                encode_entries(entries, false, feed, &mut b);
                let mut msg = Outgoing::new(
                    b"W",
                    vec![
                        (tag::MD_REQ_ID, req_id.as_bytes().to_vec()),
                        (tag::SYMBOL, feed.name(*symbol).as_bytes().to_vec()),
                        (tag::RPT_SEQ, rpt_seq.to_string().into_bytes()),
                        (tag::NO_MD_ENTRIES, entries.len().to_string().into_bytes()),
                    ],
                );
                msg.encoded.push(b.into());
                (*subscriber, msg)
            }
            Out::Incremental {
                subscriber,
                req_id,
                updates,
            } => {
                let n: usize = updates.iter().map(|u| u.len()).sum();
                let mut msg = Outgoing::new(
                    b"X",
                    vec![
                        (tag::MD_REQ_ID, req_id.as_bytes().to_vec()),
                        (tag::NO_MD_ENTRIES, n.to_string().into_bytes()),
                    ],
                );
                for u in updates {
                    let (_, bytes) = self.encoded.entry(u.as_ptr() as usize).or_insert_with(|| {
                        let mut b = Vec::new();
                        encode_entries(u, true, feed, &mut b);
                        (Arc::clone(u), b.into())
                    });
                    msg.encoded.push(Arc::clone(bytes));
                }
                (*subscriber, msg)
            }
            Out::Reject {
                subscriber,
                req_id,
                reason,
                text,
            } => (*subscriber, reject(req_id, reason.map(|r| r.fix()), text)),
            Out::Status {
                subscriber, open, ..
            } => (
                *subscriber,
                Outgoing::new(
                    b"h",
                    vec![
                        (tag::TRADING_SESSION_ID, b"1".to_vec()),
                        (tag::UNSOLICITED_INDICATOR, b"Y".to_vec()),
                        (
                            tag::TRAD_SES_STATUS,
                            if *open { b"2" } else { b"3" }.to_vec(),
                        ),
                    ],
                ),
            ),
        }
    }

    /// Forgets the encoded updates (at the end of a round: none of them is sent again).
    pub fn clear(&mut self) {
        self.encoded.clear();
    }
}

/// The thread's loop: until every sender is gone.
pub fn run(
    rx: Receiver<MdInput>,
    md: Arc<Mutex<MarketData>>,
    acceptor: Arc<Acceptor<OrderEntry>>,
    keys: Vec<SessionKey>,
    stop: &AtomicBool,
) {
    engine::priority::lower_priority("market-data");
    let mut inputs = Vec::new();
    let mut out = Vec::new();
    let mut renderer = Renderer::default();
    let mut ready = |s: SubscriberId| {
        keys.get(s as usize)
            .and_then(|k| acceptor.backlog(k))
            .is_some_and(|n| n < CONFLATE_AT)
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(i) => inputs.push(i),
            Err(RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                // Conflated subscribers that drained get their snapshots even when quiet.
                lock(&md).feed.refresh_stale(&mut ready, &mut out);
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while inputs.len() < 4096 {
            match rx.try_recv() {
                Ok(i) => inputs.push(i),
                Err(_) => break,
            }
        }
        let mut g = lock(&md);
        for input in inputs.drain(..) {
            match input {
                MdInput::Events(events) => g.apply(&events),
                MdInput::Request(sub, r) => {
                    g.feed.flush(&mut ready, &mut out);
                    g.feed.request(sub, r, &mut out);
                }
                MdInput::Connect(sub) => {
                    g.feed.flush(&mut ready, &mut out);
                    g.feed.connect(sub, &mut out);
                }
                MdInput::Disconnect(sub) => g.feed.disconnect(sub),
            }
        }
        g.feed.flush(&mut ready, &mut out);
        let rendered: Vec<_> = out
            .drain(..)
            .map(|o| renderer.render(&o, &g.feed))
            .collect();
        renderer.clear();
        drop(g);
        for (sub, msg) in rendered {
            if let Some(k) = keys.get(sub as usize) {
                acceptor.send(k, &msg);
            }
        }
    }
}
