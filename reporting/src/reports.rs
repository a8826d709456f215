//! Reports built from the store: trade history, end-of-day summary per symbol, account
//! statements, compliance and settlement. Each is a list of flat records, written as CSV or
//! JSON. Prices and amounts print as decimals; all arithmetic stays in integer price units.

use std::collections::BTreeMap;
use std::io::Write;

use engine::config::units_to_decimal;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::rows::OrderEvent;
use crate::store::{Filter, Store, StoreError};

/// A time range, ns since the Unix epoch, `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// Start (inclusive).
    pub from_ns: i64,
    /// End (exclusive).
    pub to_ns: i64,
}

impl Range {
    /// The UTC day `date` (YYYY-MM-DD).
    pub fn day(date: &str) -> Result<Range, String> {
        let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|e| format!("day {date:?}: {e} (expected YYYY-MM-DD)"))?;
        let start = d
            .and_hms_opt(0, 0, 0)
            .ok_or_else(|| format!("day {date:?}"))?
            .and_utc()
            .timestamp_nanos_opt()
            .ok_or_else(|| format!("day {date:?} out of range"))?;
        Ok(Range {
            from_ns: start,
            to_ns: start + 86_400 * 1_000_000_000,
        })
    }

    fn filter(&self) -> Filter {
        Filter {
            from_ns: Some(self.from_ns),
            to_ns: Some(self.to_ns),
            ..Filter::default()
        }
    }
}

/// A price or cash amount in price units as a decimal string.
pub fn decimal(units: i64) -> String {
    units_to_decimal(units).to_string()
}

/// ns since the epoch as an ISO-8601 UTC timestamp with microseconds.
pub fn utc(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// One side of one trade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TradeLine {
    /// When (UTC).
    pub time: String,
    /// Trade id (the same on both sides).
    pub trade_id: u64,
    /// ExecID of this side's report.
    pub exec_id: u64,
    /// Exchange order id.
    pub order_id: u64,
    /// The order's ClOrdID.
    pub cl_ord_id: String,
    /// Account.
    pub account: String,
    /// Symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Quantity.
    pub qty: i64,
    /// Price.
    pub price: String,
    /// Price x quantity.
    pub notional: String,
    /// `maker` or `taker`.
    pub liquidity: String,
}

impl TradeLine {
    /// The line of a fill row.
    pub fn of(e: &OrderEvent) -> TradeLine {
        let (px, qty) = (e.last_px.unwrap_or(0), e.last_qty.unwrap_or(0));
        TradeLine {
            time: utc(e.time_ns),
            trade_id: e.trade_id.unwrap_or(0),
            exec_id: e.exec_id,
            order_id: e.order_id,
            cl_ord_id: e.cl_ord_id.clone(),
            account: e.account.clone(),
            symbol: e.symbol.clone(),
            side: e.side.clone(),
            qty,
            price: decimal(px),
            notional: decimal_wide(i128::from(px) * i128::from(qty)),
            liquidity: e.liquidity.clone().unwrap_or_default(),
        }
    }
}

fn decimal_wide(units: i128) -> String {
    Decimal::from_i128_with_scale(units, 4)
        .normalize()
        .to_string()
}

fn fills(store: &mut dyn Store, mut f: Filter) -> Result<Vec<OrderEvent>, StoreError> {
    f.exec_type = Some("trade".into());
    store.order_events(&f)
}

/// Trades of an account and/or symbol in a time range, in order.
pub fn trade_history(
    store: &mut dyn Store,
    account: Option<&str>,
    symbol: Option<&str>,
    range: Range,
) -> Result<Vec<TradeLine>, StoreError> {
    let f = Filter {
        account: account.map(Into::into),
        symbol: symbol.map(Into::into),
        ..range.filter()
    };
    Ok(fills(store, f)?.iter().map(TradeLine::of).collect())
}

/// One symbol's day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SymbolDay {
    /// Symbol.
    pub symbol: String,
    /// First trade price.
    pub open: String,
    /// Highest trade price.
    pub high: String,
    /// Lowest trade price.
    pub low: String,
    /// Last trade price.
    pub close: String,
    /// Shares traded.
    pub volume: i64,
    /// Volume-weighted average price (4 decimal places).
    pub vwap: String,
    /// Number of trades.
    pub trades: u64,
}

/// Open, high, low, close, volume, VWAP and trade count per traded symbol.
pub fn end_of_day(store: &mut dyn Store, range: Range) -> Result<Vec<SymbolDay>, StoreError> {
    struct Acc {
        open: i64,
        high: i64,
        low: i64,
        close: i64,
        volume: i64,
        notional: i128,
        trades: u64,
    }
    let mut by: BTreeMap<String, Acc> = BTreeMap::new();
    // One row per trade: the taker's side.
    for e in fills(store, range.filter())?
        .iter()
        .filter(|e| e.liquidity.as_deref() == Some("taker"))
    {
        let (px, qty) = (e.last_px.unwrap_or(0), e.last_qty.unwrap_or(0));
        let a = by.entry(e.symbol.clone()).or_insert(Acc {
            open: px,
            high: px,
            low: px,
            close: px,
            volume: 0,
            notional: 0,
            trades: 0,
        });
        a.high = a.high.max(px);
        a.low = a.low.min(px);
        a.close = px;
        a.volume += qty;
        a.notional += i128::from(px) * i128::from(qty);
        a.trades += 1;
    }
    Ok(by
        .into_iter()
        .map(|(symbol, a)| {
            let vwap =
                Decimal::from_i128_with_scale(a.notional, 4) / Decimal::from(a.volume.max(1));
            SymbolDay {
                symbol,
                open: decimal(a.open),
                high: decimal(a.high),
                low: decimal(a.low),
                close: decimal(a.close),
                volume: a.volume,
                vwap: vwap.round_dp(4).normalize().to_string(),
                trades: a.trades,
            }
        })
        .collect())
}

/// A line of an account statement: a fill, a deposit or withdrawal, a closing position or the
/// closing cash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatementLine {
    /// `fill`, `transfer`, `position` or `cash`.
    pub kind: String,
    /// When (UTC; empty for closing lines).
    pub time: String,
    /// Symbol (`cash` for cash transfers; empty for the cash line).
    pub symbol: String,
    /// `buy` or `sell` for fills.
    pub side: String,
    /// Shares (fills, share transfers, positions).
    pub qty: i64,
    /// Trade price of a fill.
    pub price: String,
    /// Cash effect: minus for buys and withdrawals, plus for sells and deposits; the closing
    /// cash balance on the cash line.
    pub amount: String,
}

/// An account's fills and transfers in the range, then its positions and cash at the range's
/// end (everything before the range counts towards those).
pub fn statement(
    store: &mut dyn Store,
    account: &str,
    range: Range,
) -> Result<Vec<StatementLine>, StoreError> {
    let upto = Filter {
        account: Some(account.into()),
        to_ns: Some(range.to_ns),
        ..Filter::default()
    };
    let mut cash: i128 = 0;
    let mut shares: BTreeMap<String, i64> = BTreeMap::new();
    let mut lines = Vec::new();
    let mut dated: Vec<(u64, StatementLine)> = Vec::new();
    for t in store.transfers(&upto)? {
        if t.reject_code.is_some() {
            continue;
        }
        if t.asset == "cash" {
            cash += i128::from(t.amount);
        } else {
            *shares.entry(t.asset.clone()).or_default() += t.amount;
        }
        if t.time_ns >= range.from_ns {
            let is_cash = t.asset == "cash";
            dated.push((
                t.seq,
                StatementLine {
                    kind: "transfer".into(),
                    time: utc(t.time_ns),
                    symbol: t.asset,
                    side: String::new(),
                    qty: if is_cash { 0 } else { t.amount },
                    price: String::new(),
                    amount: if is_cash {
                        decimal(t.amount)
                    } else {
                        "0".into()
                    },
                },
            ));
        }
    }
    for e in fills(store, upto)? {
        let (px, qty) = (e.last_px.unwrap_or(0), e.last_qty.unwrap_or(0));
        let notional = i128::from(px) * i128::from(qty);
        let (dq, dc) = if e.side == "buy" {
            (qty, -notional)
        } else {
            (-qty, notional)
        };
        *shares.entry(e.symbol.clone()).or_default() += dq;
        cash += dc;
        if e.time_ns >= range.from_ns {
            dated.push((
                e.seq,
                StatementLine {
                    kind: "fill".into(),
                    time: utc(e.time_ns),
                    symbol: e.symbol,
                    side: e.side,
                    qty,
                    price: decimal(px),
                    amount: decimal_wide(dc),
                },
            ));
        }
    }
    dated.sort_by_key(|(seq, _)| *seq);
    lines.extend(dated.into_iter().map(|(_, l)| l));
    for (symbol, qty) in shares {
        lines.push(StatementLine {
            kind: "position".into(),
            time: String::new(),
            symbol,
            side: String::new(),
            qty,
            price: String::new(),
            amount: String::new(),
        });
    }
    lines.push(StatementLine {
        kind: "cash".into(),
        time: String::new(),
        symbol: String::new(),
        side: String::new(),
        qty: 0,
        price: String::new(),
        amount: decimal_wide(cash),
    });
    Ok(lines)
}

/// A refused order that a compliance officer reviews.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ComplianceLine {
    /// When (UTC).
    pub time: String,
    /// Account.
    pub account: String,
    /// Symbol.
    pub symbol: String,
    /// The order's ClOrdID.
    pub cl_ord_id: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Quantity asked.
    pub qty: i64,
    /// Limit price asked (0 for market orders).
    pub price: String,
    /// Reject reason code.
    pub reason_code: i32,
    /// Reason.
    pub reason: String,
    /// Whether the order would have breached a limit (daily quantity, order size, notional,
    /// price band, open orders), as opposed to lacking funds or shares.
    pub limit_breach: bool,
}

/// Reject reason codes of the risk checks that are limits.
const LIMIT_CODES: &[i32] = &[7, 8, 9, 10, 13];
/// Reject reason codes of the wallet checks, and of the gateway's entitlement and rate-limit
/// checks (an attempt to trade for an account the session may not, or a flood).
const WALLET_CODES: &[i32] = &[11, 12, 19, 20];

/// Orders refused by the risk, wallet, entitlement and rate-limit checks in the range.
pub fn compliance(store: &mut dyn Store, range: Range) -> Result<Vec<ComplianceLine>, StoreError> {
    let f = Filter {
        exec_type: Some("rejected".into()),
        ..range.filter()
    };
    Ok(store
        .order_events(&f)?
        .into_iter()
        .filter_map(|e| {
            let code = e.reason_code?;
            let breach = LIMIT_CODES.contains(&code);
            (breach || WALLET_CODES.contains(&code)).then(|| ComplianceLine {
                time: utc(e.time_ns),
                account: e.account,
                symbol: e.symbol,
                cl_ord_id: e.cl_ord_id,
                side: e.side,
                qty: e.qty,
                price: decimal(e.price),
                reason_code: code,
                reason: e.text.unwrap_or_default(),
                limit_breach: breach,
            })
        })
        .collect())
}

/// What one account settles in one symbol for the range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SettlementLine {
    /// Account.
    pub account: String,
    /// Symbol.
    pub symbol: String,
    /// Shares bought.
    pub bought: i64,
    /// Shares sold.
    pub sold: i64,
    /// Shares to receive (negative: to deliver).
    pub net_shares: i64,
    /// Cash to receive (negative: to pay).
    pub net_cash: String,
}

/// Net shares and cash per account and symbol over the range's fills.
pub fn settlement(store: &mut dyn Store, range: Range) -> Result<Vec<SettlementLine>, StoreError> {
    let mut by: BTreeMap<(String, String), (i64, i64, i128)> = BTreeMap::new();
    for e in fills(store, range.filter())? {
        let (px, qty) = (e.last_px.unwrap_or(0), e.last_qty.unwrap_or(0));
        let n = i128::from(px) * i128::from(qty);
        let a = by.entry((e.account, e.symbol)).or_default();
        if e.side == "buy" {
            a.0 += qty;
            a.2 -= n;
        } else {
            a.1 += qty;
            a.2 += n;
        }
    }
    Ok(by
        .into_iter()
        .map(|((account, symbol), (bought, sold, cash))| SettlementLine {
            account,
            symbol,
            bought,
            sold,
            net_shares: bought - sold,
            net_cash: decimal_wide(cash),
        })
        .collect())
}

/// How a report is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header line.
    Csv,
    /// A JSON array.
    Json,
}

/// Writes report lines.
pub fn write<T: Serialize>(lines: &[T], format: Format, out: impl Write) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let mut out = out;
            serde_json::to_writer_pretty(&mut out, lines)?;
            writeln!(out)
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for l in lines {
                w.serialize(l).map_err(std::io::Error::other)?;
            }
            w.flush()
        }
    }
}
