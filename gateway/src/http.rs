//! The HTTP API (axum, JSON): the market-data service for clients that do not speak FIX, and
//! the broker API (orders, executions; see [`crate::broker_api`]).
//!
//! - `GET /v1/marketdata/orderBook/L2?symbol=AAPL&depth=10`: aggregated levels, best first.
//! - `GET /v1/marketdata/candles?symbol=AAPL&resolution=1m&startTime=..&endTime=..`: candles
//!   whose start lies in `[startTime, endTime)` (ms since the Unix epoch), oldest first.
//!
//! Bad parameters are answered 400 and unknown symbols 404, with `{"error": "..."}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use marketdata::{Candle, Resolution};
use serde_json::{Value, json};

use crate::exchange::market_data::{MarketData, lock};
use crate::reports::fmt_price;

/// Most candles one request returns (the latest of the range).
pub const MAX_CANDLES: usize = 5000;

/// What the handlers read.
pub struct HttpState {
    /// Books and candles.
    pub market_data: Arc<Mutex<MarketData>>,
    /// Orders and executions for brokers.
    pub broker: crate::broker_api::BrokerApi,
}

/// The API's routes.
pub fn router(state: Arc<HttpState>) -> axum::Router {
    axum::Router::new()
        .route("/v1/marketdata/orderBook/L2", get(order_book))
        .route("/v1/marketdata/candles", get(candles))
        .route(
            "/v1/order",
            axum::routing::post(crate::broker_api::post_order),
        )
        .route("/v1/execution", get(crate::broker_api::get_execution))
        .route("/v1/status", get(crate::broker_api::status))
        .with_state(state)
}

/// An error answer.
pub fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(json!({ "error": text.into() }))).into_response()
}

type Params = Query<HashMap<String, String>>;

/// A refused request: status and explanation.
pub type Refusal = (StatusCode, String);

fn refuse(r: Refusal) -> Response {
    error(r.0, r.1)
}

fn int_param(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, Refusal> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                format!("{name} must be an integer, got {v:?}"),
            )
        }),
    }
}

fn symbol_param(
    q: &HashMap<String, String>,
    md: &MarketData,
) -> Result<(String, engine::types::SymbolId), Refusal> {
    let name = q
        .get("symbol")
        .filter(|s| !s.is_empty())
        .ok_or((StatusCode::BAD_REQUEST, "symbol is required".to_string()))?;
    let id = md
        .feed
        .symbol(name)
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("unknown symbol {name}")))?;
    Ok((name.clone(), id))
}

async fn order_book(State(s): State<Arc<HttpState>>, Query(q): Params) -> Response {
    let depth = match int_param(&q, "depth") {
        Ok(None) => 10,
        Ok(Some(d)) if (1..=1000).contains(&d) => d as usize,
        Ok(Some(d)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("depth must be between 1 and 1000, got {d}"),
            );
        }
        Err(r) => return refuse(r),
    };
    let md = lock(&s.market_data);
    let (name, id) = match symbol_param(&q, &md) {
        Ok(v) => v,
        Err(r) => return refuse(r),
    };
    let Some(book) = md.feed.book(id) else {
        return error(StatusCode::NOT_FOUND, format!("unknown symbol {name}"));
    };
    let side = |side| -> Vec<Value> {
        book.top(side, depth)
            .iter()
            .map(|l| json!({ "price": fmt_price(l.price), "size": l.qty, "orders": l.orders }))
            .collect()
    };
    Json(json!({
        "symbol": name,
        "bids": side(engine::types::Side::Buy),
        "asks": side(engine::types::Side::Sell),
        "time": md.feed.last_time() / 1_000_000,
    }))
    .into_response()
}

fn candle_json(c: &Candle) -> Value {
    json!({
        "startTime": c.start,
        "open": fmt_price(c.open),
        "high": fmt_price(c.high),
        "low": fmt_price(c.low),
        "close": fmt_price(c.close),
        "volume": c.volume,
        "trades": c.trades,
    })
}

async fn candles(State(s): State<Arc<HttpState>>, Query(q): Params) -> Response {
    let resolution = match q.get("resolution") {
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "resolution is required (1m, 5m, 1h, 1d)",
            );
        }
        Some(r) => match Resolution::parse(r) {
            Some(r) => r,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("resolution must be 1m, 5m, 1h or 1d, got {r:?}"),
                );
            }
        },
    };
    let (from, to) = match (int_param(&q, "startTime"), int_param(&q, "endTime")) {
        (Ok(a), Ok(b)) => (a.unwrap_or(0), b.unwrap_or(i64::MAX)),
        (Err(r), _) | (_, Err(r)) => return refuse(r),
    };
    if from > to {
        return error(StatusCode::BAD_REQUEST, "startTime is after endTime");
    }
    let md = lock(&s.market_data);
    let (_, id) = match symbol_param(&q, &md) {
        Ok(v) => v,
        Err(r) => return refuse(r),
    };
    // Older candles are in the archive, newer ones in memory.
    let oldest = md.feed.oldest_candle(id, resolution).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    if from < oldest {
        if let Some(a) = &md.archive {
            match a.range(md.feed.name(id), resolution, from, to.min(oldest)) {
                Ok(v) => out = v,
                Err(e) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("reading the candle archive: {e}"),
                    );
                }
            }
        }
    }
    out.extend(md.feed.candles(id, resolution, from, to));
    let skip = out.len().saturating_sub(MAX_CANDLES);
    Json(Value::Array(out[skip..].iter().map(candle_json).collect())).into_response()
}
