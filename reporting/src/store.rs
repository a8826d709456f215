//! The store: one interface over SQLite and PostgreSQL.

use crate::rows::{CancelRejectRow, OrderEvent, Rows, TransferRow};

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[cfg(feature = "sqlite")]
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or is unreachable.
    #[cfg(feature = "postgres")]
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::Error),
    /// The database URL names nothing this store speaks.
    #[error("database {0:?}: expected sqlite:PATH or postgres://...")]
    BadUrl(String),
    /// The database holds something this version cannot use.
    #[error("{0}")]
    Invalid(String),
}

/// A column value or query parameter, borrowed from a row or filter (written without copying).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueRef<'a> {
    /// An integer.
    Int(i64),
    /// Text.
    Text(&'a str),
    /// NULL.
    Null,
}

impl<'a> From<&'a str> for ValueRef<'a> {
    fn from(v: &'a str) -> Self {
        ValueRef::Text(v)
    }
}
impl<'a> From<&'a String> for ValueRef<'a> {
    fn from(v: &'a String) -> Self {
        ValueRef::Text(v)
    }
}
impl From<i64> for ValueRef<'_> {
    fn from(v: i64) -> Self {
        ValueRef::Int(v)
    }
}
impl From<u64> for ValueRef<'_> {
    fn from(v: u64) -> Self {
        ValueRef::Int(v as i64)
    }
}
impl From<i32> for ValueRef<'_> {
    fn from(v: i32) -> Self {
        ValueRef::Int(i64::from(v))
    }
}
impl From<bool> for ValueRef<'_> {
    fn from(v: bool) -> Self {
        ValueRef::Int(i64::from(v))
    }
}
impl<'a> From<&'a Option<String>> for ValueRef<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().map_or(ValueRef::Null, ValueRef::Text)
    }
}
impl<T: Copy + Into<ValueRef<'static>>> From<&Option<T>> for ValueRef<'_> {
    fn from(v: &Option<T>) -> Self {
        v.map_or(ValueRef::Null, Into::into)
    }
}

/// A row that can be written column by column in its table's insert order.
pub trait Row {
    /// Calls `f` with each column's value, in insert order.
    fn visit<'a>(&'a self, f: &mut dyn FnMut(ValueRef<'a>));
}

/// Reads a column of a result row, whatever the database.
pub trait Get {
    /// An integer column.
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    /// A text column.
    fn text(&self, i: usize) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
}

impl Row for OrderEvent {
    /// Columns in [`crate::schema::ORDER_EVENT_COLUMNS`] order.
    fn visit<'a>(&'a self, f: &mut dyn FnMut(ValueRef<'a>)) {
        f(self.exec_id.into());
        f(self.seq.into());
        f(self.time_ns.into());
        f(self.order_id.into());
        f((&self.cl_ord_id).into());
        f((&self.orig_cl_ord_id).into());
        f((&self.account).into());
        f((&self.symbol).into());
        f((&self.side).into());
        f((&self.ord_type).into());
        f((&self.tif).into());
        f((&self.exec_type).into());
        f((&self.status).into());
        f(self.price.into());
        f(self.qty.into());
        f(self.cum_qty.into());
        f(self.leaves_qty.into());
        f(self.cum_cost.into());
        f((&self.last_px).into());
        f((&self.last_qty).into());
        f((&self.trade_id).into());
        f((&self.liquidity).into());
        f((&self.reason_code).into());
        f((&self.text).into());
    }
}

impl OrderEvent {
    /// A row read back, columns in [`crate::schema::ORDER_EVENT_COLUMNS`] order.
    pub fn read(r: &impl Get) -> Result<OrderEvent, StoreError> {
        Ok(OrderEvent {
            exec_id: r.int(0)? as u64,
            seq: r.int(1)? as u64,
            time_ns: r.int(2)?,
            order_id: r.int(3)? as u64,
            cl_ord_id: r.text(4)?,
            orig_cl_ord_id: r.text(5)?,
            account: r.text(6)?,
            symbol: r.text(7)?,
            side: r.text(8)?,
            ord_type: r.text(9)?,
            tif: r.text(10)?,
            exec_type: r.text(11)?,
            status: r.text(12)?,
            price: r.int(13)?,
            qty: r.int(14)?,
            cum_qty: r.int(15)?,
            leaves_qty: r.int(16)?,
            cum_cost: r.int(17)?,
            last_px: r.opt_int(18)?,
            last_qty: r.opt_int(19)?,
            trade_id: r.opt_int(20)?.map(|v| v as u64),
            liquidity: r.opt_text(21)?,
            reason_code: r.opt_int(22)?.map(|v| v as i32),
            text: r.opt_text(23)?,
        })
    }
}

impl Row for TransferRow {
    /// Columns in [`crate::schema::TRANSFER_COLUMNS`] order.
    fn visit<'a>(&'a self, f: &mut dyn FnMut(ValueRef<'a>)) {
        f(self.seq.into());
        f(self.time_ns.into());
        f((&self.account).into());
        f((&self.asset).into());
        f(self.amount.into());
        f(self.balance.into());
        f((&self.reject_code).into());
    }
}

impl TransferRow {
    /// A row read back.
    pub fn read(r: &impl Get) -> Result<TransferRow, StoreError> {
        Ok(TransferRow {
            seq: r.int(0)? as u64,
            time_ns: r.int(1)?,
            account: r.text(2)?,
            asset: r.text(3)?,
            amount: r.int(4)?,
            balance: r.int(5)?,
            reject_code: r.opt_int(6)?.map(|v| v as i32),
        })
    }
}

impl Row for CancelRejectRow {
    /// Columns in [`crate::schema::CANCEL_REJECT_COLUMNS`] order.
    fn visit<'a>(&'a self, f: &mut dyn FnMut(ValueRef<'a>)) {
        f(self.seq.into());
        f(self.time_ns.into());
        f((&self.account).into());
        f((&self.symbol).into());
        f(self.order_id.into());
        f((&self.cl_ord_id).into());
        f((&self.orig_cl_ord_id).into());
        f(self.is_replace.into());
        f(self.reason_code.into());
        f((&self.text).into());
    }
}

impl CancelRejectRow {
    /// A row read back.
    pub fn read(r: &impl Get) -> Result<CancelRejectRow, StoreError> {
        Ok(CancelRejectRow {
            seq: r.int(0)? as u64,
            time_ns: r.int(1)?,
            account: r.text(2)?,
            symbol: r.text(3)?,
            order_id: r.int(4)? as u64,
            cl_ord_id: r.text(5)?,
            orig_cl_ord_id: r.text(6)?,
            is_replace: r.int(7)? != 0,
            reason_code: r.int(8)? as i32,
            text: r.text(9)?,
        })
    }
}

/// Which rows a query wants; every condition given must hold. Times are ns, `[from, to)`.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Account name.
    pub account: Option<String>,
    /// Symbol.
    pub symbol: Option<String>,
    /// Exchange order id.
    pub order_id: Option<u64>,
    /// `exec_type` of order events (`trade` for executions).
    pub exec_type: Option<String>,
    /// From this time on.
    pub from_ns: Option<i64>,
    /// Before this time.
    pub to_ns: Option<i64>,
    /// At most this many rows (the first ones in sequence order).
    pub limit: Option<u64>,
}

/// The tables a filter can query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `order_events`.
    OrderEvents,
    /// `transfers`.
    Transfers,
    /// `cancel_rejects`.
    CancelRejects,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::OrderEvents => "order_events",
            Table::Transfers => "transfers",
            Table::CancelRejects => "cancel_rejects",
        }
    }

    fn columns(self) -> &'static str {
        match self {
            Table::OrderEvents => crate::schema::ORDER_EVENT_COLUMNS,
            Table::Transfers => crate::schema::TRANSFER_COLUMNS,
            Table::CancelRejects => crate::schema::CANCEL_REJECT_COLUMNS,
        }
    }
}

impl Filter {
    /// The SELECT for this filter on a table, with placeholders written by `ph` (1-based), and
    /// its parameters. Conditions a table has no column for are an error.
    pub fn select<'a>(
        &'a self,
        table: Table,
        ph: impl Fn(usize) -> String,
    ) -> Result<(String, Vec<ValueRef<'a>>), StoreError> {
        let mut conds = Vec::new();
        let mut params: Vec<ValueRef<'_>> = Vec::new();
        let mut add = |col: &str, op: &str, v: ValueRef<'a>| {
            params.push(v);
            conds.push(format!("{col} {op} {}", ph(params.len())));
        };
        let unsupported = |what: &str| {
            StoreError::Invalid(format!("{} cannot be filtered by {what}", table.name()))
        };
        if let Some(a) = &self.account {
            add("account", "=", a.into());
        }
        if let Some(s) = &self.symbol {
            let col = if table == Table::Transfers {
                "asset"
            } else {
                "symbol"
            };
            add(col, "=", s.into());
        }
        if let Some(o) = self.order_id {
            if table == Table::Transfers {
                return Err(unsupported("order id"));
            }
            add("order_id", "=", o.into());
        }
        if let Some(t) = &self.exec_type {
            if table != Table::OrderEvents {
                return Err(unsupported("exec type"));
            }
            add("exec_type", "=", t.into());
        }
        if let Some(f) = self.from_ns {
            add("time_ns", ">=", f.into());
        }
        if let Some(t) = self.to_ns {
            add("time_ns", "<", t.into());
        }
        let mut sql = format!("SELECT {} FROM {}", table.columns(), table.name());
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        let order = if table == Table::OrderEvents {
            "seq, exec_id"
        } else {
            "seq"
        };
        sql.push_str(&format!(" ORDER BY {order}"));
        if let Some(l) = self.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        Ok((sql, params))
    }
}

/// A reporting database.
pub trait Store: Send {
    /// The last sequence id whose rows are stored (0 for an empty database).
    fn last_seq(&mut self) -> Result<u64, StoreError>;

    /// Stores the rows and their last sequence id in one transaction. Rows at or below the
    /// stored sequence id are skipped, so applying the same rows twice stores them once.
    fn apply(&mut self, rows: &Rows) -> Result<(), StoreError>;

    /// Execution reports matching a filter, in sequence order.
    fn order_events(&mut self, f: &Filter) -> Result<Vec<OrderEvent>, StoreError>;

    /// Account movements matching a filter (account, symbol as asset, time), in order.
    fn transfers(&mut self, f: &Filter) -> Result<Vec<TransferRow>, StoreError>;

    /// Refused cancels and replaces matching a filter, in order.
    fn cancel_rejects(&mut self, f: &Filter) -> Result<Vec<CancelRejectRow>, StoreError>;
}

/// Opens (creating and migrating if needed) the database a URL names: `sqlite:PATH` (or a
/// plain path) or `postgres://user:password@host:port/db`.
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    if url == "none" {
        return Err(StoreError::Invalid(
            "no reporting database is configured (database = \"none\")".into(),
        ));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(Box::new(crate::postgres::PgStore::connect(url)?));
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::Invalid(format!(
            "database {url:?}: this build has no PostgreSQL support"
        )));
    }
    let path = url.strip_prefix("sqlite:").unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::BadUrl(url.into()));
    }
    #[cfg(feature = "sqlite")]
    return Ok(Box::new(crate::sqlite::SqliteStore::open(
        std::path::Path::new(path),
    )?));
    #[cfg(not(feature = "sqlite"))]
    Err(StoreError::Invalid(format!(
        "database {url:?}: this build has no SQLite support"
    )))
}

/// Rows above `last` (the ones a store has not applied yet).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn after<'a, T>(
    rows: &'a [T],
    last: u64,
    seq: impl Fn(&T) -> u64 + 'a,
) -> impl Iterator<Item = &'a T> + 'a {
    rows.iter().filter(move |r| seq(r) > last)
}
