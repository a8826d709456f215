//! The HTTP API for brokers that do not speak FIX, authenticated by API key.
//!
//! - `POST /v1/order`: a new order, JSON. It goes through the same entitlement, rate-limit and
//!   validation checks as a FIX NewOrderSingle, then the engine's risk and wallet checks; the
//!   answer is the outcome of its command (accepted, filled, cancelled for IOC, rejected).
//! - `GET /v1/execution?symbol=&orderId=&startTime=&endTime=&account=&limit=`: executions of
//!   the key's accounts from the reporting store (times in ms since the epoch, `[start, end)`).
//! - `GET /v1/status`: the journal's and the reporting store's positions.
//!
//! The key goes in `X-API-Key` (or `Authorization: Bearer KEY`); a missing or wrong key is 401.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::types::{ClOrdId, OrdStatus, SessionId};
use engine::{Event, RejectReason};
use reporting::rows::status_name;
use reporting::{Filter, Progress, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::exchange::order_entry::{FieldMap, OrderEntry};
use crate::exchange::{ApiClient, Waiters};
use crate::http::{HttpState, Refusal, error};
use crate::reports::{fmt_price, tag};

/// How long an HTTP order waits for its command's events.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Executions one request returns at most.
pub const MAX_EXECUTIONS: u64 = 10_000;

/// What the broker API needs from the exchange.
pub struct BrokerApi {
    /// Order entry (shared with the FIX sessions).
    pub order_entry: Arc<Mutex<OrderEntry>>,
    /// API keys and their sessions.
    pub clients: Vec<ApiClient>,
    /// Orders waiting for their events.
    pub waiters: Arc<Waiters>,
    /// The reporting flow's position.
    pub reporting: Arc<Progress>,
    /// The reporting database's URL.
    pub database: String,
    /// A reading connection, opened on first use and dropped on error.
    pub reader: Arc<Mutex<Option<Box<dyn Store>>>>,
    /// ClOrdIDs given to orders sent without one.
    pub next_id: AtomicU64,
    /// How the exchange recovered at start-up, and its snapshots since.
    pub recovery: Arc<crate::exchange::RecoveryInfo>,
}

impl BrokerApi {
    fn client(&self, headers: &HeaderMap) -> Result<&ApiClient, Refusal> {
        let key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            })
            .ok_or_else(|| {
                (
                    StatusCode::UNAUTHORIZED,
                    "an API key is required (X-API-Key header)".to_string(),
                )
            })?;
        self.clients
            .iter()
            .find(|c| c.hash.verify(key))
            .ok_or_else(|| (StatusCode::UNAUTHORIZED, "invalid API key".to_string()))
    }
}

/// An order as a broker posts it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OrderRequest {
    symbol: String,
    side: String,
    #[serde(rename = "type", default)]
    order_type: Option<String>,
    #[serde(default)]
    price: Option<Value>,
    quantity: Value,
    #[serde(default)]
    time_in_force: Option<String>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    client_order_id: Option<String>,
}

/// A JSON number or string as the text FIX would carry.
fn number_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn bad(text: impl Into<String>) -> Refusal {
    (StatusCode::BAD_REQUEST, text.into())
}

fn refuse((status, text): Refusal) -> Response {
    error(status, text)
}

/// The request in FIX terms, or why it cannot be one.
fn to_fields(r: &OrderRequest, cl: &str) -> Result<FieldMap, Refusal> {
    let side = match r.side.to_ascii_lowercase().as_str() {
        "buy" => "1",
        "sell" => "2",
        _ => return Err(bad(format!("side must be buy or sell, got {:?}", r.side))),
    };
    let ord_type = match r
        .order_type
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("limit") => "2",
        Some("market") => "1",
        Some(t) => return Err(bad(format!("type must be limit or market, got {t:?}"))),
    };
    let tif = match r
        .time_in_force
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("day") => "0",
        Some("gtc") => "1",
        Some("ioc") => "3",
        Some("fok") => "4",
        Some(t) => {
            return Err(bad(format!(
                "timeInForce must be day, gtc, ioc or fok, got {t:?}"
            )));
        }
    };
    let qty = number_text(&r.quantity).ok_or_else(|| bad("quantity must be a number"))?;
    let mut f = vec![
        (tag::CL_ORD_ID, cl.as_bytes().to_vec()),
        (tag::SYMBOL, r.symbol.as_bytes().to_vec()),
        (tag::SIDE, side.as_bytes().to_vec()),
        (tag::ORD_TYPE, ord_type.as_bytes().to_vec()),
        (tag::TIME_IN_FORCE, tif.as_bytes().to_vec()),
        (tag::ORDER_QTY, qty.into_bytes()),
    ];
    match (&r.price, ord_type) {
        (Some(p), _) => {
            let p = number_text(p).ok_or_else(|| bad("price must be a number"))?;
            f.push((tag::PRICE, p.into_bytes()));
        }
        (None, "2") => return Err(bad("price is required for a limit order")),
        (None, _) => {}
    }
    if let Some(a) = &r.account {
        f.push((tag::ACCOUNT, a.as_bytes().to_vec()));
    }
    Ok(FieldMap(f))
}

/// The HTTP status of an order refused before the engine.
fn refusal_status(reason: RejectReason) -> StatusCode {
    match reason {
        RejectReason::NotEntitled => StatusCode::FORBIDDEN,
        RejectReason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        RejectReason::CapacityExceeded => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The answer to an order from its command's events.
fn outcome(session: SessionId, cl: ClOrdId, events: &[Event]) -> Response {
    let mut body = json!({ "clientOrderId": cl.as_str() });
    let mut fills = Vec::new();
    let mut rejected = false;
    let mine = |s: SessionId, c: ClOrdId| s == session && c == cl;
    for e in events {
        match e {
            Event::Rejected(r) if mine(r.session, r.cl_ord_id) => {
                rejected = true;
                body["status"] = json!("rejected");
                body["reason"] = json!(r.reason.code());
                body["text"] = json!(r.reason.text());
            }
            Event::Accepted(a) if mine(a.order.session, a.order.cl_ord_id) => {
                let o = &a.order;
                body["orderId"] = json!(o.order_id.0.to_string());
                body["status"] = json!(status_name(o.status));
                body["cumQty"] = json!(o.cum_qty);
                body["leavesQty"] = json!(o.leaves_qty);
            }
            Event::Canceled(c) if mine(c.order.session, c.order.cl_ord_id) => {
                body["status"] = json!(status_name(c.order.status));
                body["cumQty"] = json!(c.order.cum_qty);
                body["leavesQty"] = json!(c.order.leaves_qty);
                body["text"] = json!(c.reason.text());
            }
            Event::Trade(t) => {
                for (f, liquidity) in [(&t.maker, "maker"), (&t.taker, "taker")] {
                    if mine(f.session, f.cl_ord_id) {
                        body["status"] =
                            json!(status_name(OrdStatus::working(f.cum_qty, f.leaves_qty)));
                        body["cumQty"] = json!(f.cum_qty);
                        body["leavesQty"] = json!(f.leaves_qty);
                        fills.push(json!({
                            "tradeId": t.trade_id.to_string(),
                            "price": fmt_price(t.price),
                            "quantity": t.qty,
                            "liquidity": liquidity,
                        }));
                    }
                }
            }
            _ => {}
        }
    }
    if rejected {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
    }
    body["fills"] = Value::Array(fills);
    Json(body).into_response()
}

/// `POST /v1/order`.
pub async fn post_order(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api = &s.broker;
    let client = match api.client(&headers) {
        Ok(c) => c,
        Err(r) => return refuse(r),
    };
    let req: OrderRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refuse(bad(format!("the body is not a valid order: {e}"))),
    };
    let cl_text = match &req.client_order_id {
        Some(c) => c.clone(),
        None => format!("H{}", api.next_id.fetch_add(1, Ordering::Relaxed)),
    };
    let Some(cl) = ClOrdId::new(&cl_text).filter(|c| !c.is_empty()) else {
        return refuse(bad("clientOrderId must be 1 to 40 characters"));
    };
    let fields = match to_fields(&req, &cl_text) {
        Ok(f) => f,
        Err(r) => return refuse(r),
    };
    let session = {
        let entry = crate::exchange::lock(&api.order_entry);
        match entry.session_id(&client.key) {
            Some(id) => id,
            None => return error(StatusCode::INTERNAL_SERVER_ERROR, "no session for the key"),
        }
    };
    // Waiting before submitting: the events may come back before this task runs again.
    let rx = api.waiters.wait(session, cl);
    let submitted = crate::exchange::lock(&api.order_entry).submit_new_order(&client.key, &fields);
    if let Err((reason, text)) = submitted {
        api.waiters.cancel(session, cl);
        return (
            refusal_status(reason),
            Json(json!({ "error": text, "reason": reason.code(), "clientOrderId": cl_text })),
        )
            .into_response();
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
        Ok(Ok(events)) => outcome(session, cl, &events),
        _ => {
            api.waiters.cancel(session, cl);
            error(
                StatusCode::GATEWAY_TIMEOUT,
                "the order was submitted but its outcome did not come in time; query /v1/execution",
            )
        }
    }
}

fn ms_param(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, Refusal> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .map(Some)
            .ok_or_else(|| bad(format!("{name} must be ms since the epoch, got {v:?}"))),
    }
}

/// `GET /v1/execution`.
pub async fn get_execution(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let api = &s.broker;
    let client = match api.client(&headers) {
        Ok(c) => c,
        Err(r) => return refuse(r),
    };
    if api.database == "none" {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this exchange keeps no reporting database",
        );
    }
    let (from, to) = match (ms_param(&q, "startTime"), ms_param(&q, "endTime")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return refuse(r),
    };
    if let (Some(a), Some(b)) = (from, to)
        && a > b
    {
        return refuse(bad("startTime is after endTime"));
    }
    let order_id = match q.get("orderId").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return refuse(bad("orderId must be an exchange order id (a number)")),
    };
    let limit = match q.get("limit").map(|v| v.parse::<u64>()) {
        None => 1000,
        Some(Ok(v)) if (1..=MAX_EXECUTIONS).contains(&v) => v,
        _ => {
            return refuse(bad(format!("limit must be between 1 and {MAX_EXECUTIONS}")));
        }
    };
    let accounts: Vec<String> = match q.get("account") {
        Some(a) if client.accounts.contains(a) => vec![a.clone()],
        Some(a) => {
            return error(
                StatusCode::FORBIDDEN,
                format!("this key may not read account {a}"),
            );
        }
        None => client.accounts.clone(),
    };
    let base = Filter {
        symbol: q.get("symbol").filter(|s| !s.is_empty()).cloned(),
        order_id,
        exec_type: Some("trade".into()),
        from_ns: from,
        to_ns: to,
        limit: Some(limit),
        ..Filter::default()
    };
    let (reader, url) = (Arc::clone(&api.reader), api.database.clone());
    let rows = tokio::task::spawn_blocking(move || {
        let mut guard = crate::exchange::lock(&reader);
        if guard.is_none() {
            *guard = Some(reporting::open(&url)?);
        }
        let store = guard.as_mut().expect("opened");
        let mut rows = Vec::new();
        for a in accounts {
            let f = Filter {
                account: Some(a),
                ..base.clone()
            };
            match store.order_events(&f) {
                Ok(r) => rows.extend(r),
                Err(e) => {
                    *guard = None;
                    return Err(e);
                }
            }
        }
        rows.sort_by_key(|r| (r.seq, r.exec_id));
        rows.truncate(limit as usize);
        Ok(rows)
    })
    .await;
    let rows = match rows {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the reporting store is unavailable: {e}"),
            );
        }
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "query failed"),
    };
    let executions: Vec<Value> = rows
        .iter()
        .map(|e| {
            json!({
                "execId": e.exec_id.to_string(),
                "tradeId": e.trade_id.unwrap_or(0).to_string(),
                "orderId": e.order_id.to_string(),
                "clientOrderId": e.cl_ord_id,
                "account": e.account,
                "symbol": e.symbol,
                "side": e.side,
                "price": fmt_price(e.last_px.unwrap_or(0)),
                "quantity": e.last_qty.unwrap_or(0),
                "liquidity": e.liquidity,
                "time": e.time_ns / 1_000_000,
            })
        })
        .collect();
    Json(json!({
        "executions": executions,
        "reportingLag": api.reporting.lag(),
    }))
    .into_response()
}

/// `GET /v1/status`.
pub async fn status(State(s): State<Arc<HttpState>>) -> Response {
    let p = &s.broker.reporting;
    Json(json!({
        "journalSeq": p.committed.load(Ordering::Acquire),
        "reportingSeq": p.applied.load(Ordering::Acquire),
        "reportingLag": p.lag(),
        "reportingFailed": p.failed.load(Ordering::Acquire),
        "reportingEnabled": s.broker.database != "none",
        "restoredFromSnapshot": s.broker.recovery.restored_from,
        "replayedRecords": s.broker.recovery.replayed,
        "lastSnapshotSeq": s.broker.recovery.last_snapshot.load(Ordering::Acquire),
    }))
    .into_response()
}
