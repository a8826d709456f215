//! The SQLite backend (embedded, the default).

use std::path::Path;

use rusqlite::types::{ToSqlOutput, Value as SqlValue};
use rusqlite::{Connection, ToSql, params_from_iter};

use crate::rows::{CancelRejectRow, OrderEvent, Rows, TransferRow};
use crate::schema::{
    CANCEL_REJECT_COLUMNS, MIGRATIONS, MIGRATIONS_TABLE, ORDER_EVENT_COLUMNS, TRANSFER_COLUMNS,
};
use crate::store::{Filter, Get, Row, Store, StoreError, Table, ValueRef, after};

/// A reporting store in one SQLite file.
pub struct SqliteStore {
    conn: Connection,
}

impl ToSql for ValueRef<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            ValueRef::Int(i) => ToSqlOutput::Owned(SqlValue::Integer(*i)),
            ValueRef::Text(t) => ToSqlOutput::Borrowed((*t).into()),
            ValueRef::Null => ToSqlOutput::Owned(SqlValue::Null),
        })
    }
}

/// Inserts rows with a prepared statement, binding borrowed values (no copies).
fn insert<'r, R: Row + 'r>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    rows: impl Iterator<Item = &'r R>,
) -> Result<(), StoreError> {
    for r in rows {
        let mut i = 0;
        let mut bound = Ok(());
        r.visit(&mut |v| {
            i += 1;
            if bound.is_ok() {
                bound = stmt.raw_bind_parameter(i, v);
            }
        });
        bound?;
        stmt.raw_execute()?;
    }
    Ok(())
}

impl Get for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }
}

fn insert_sql(table: &str, columns: &str) -> String {
    let n = columns.split(',').count();
    let ph: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    format!("INSERT INTO {table} ({columns}) VALUES ({})", ph.join(", "))
}

impl SqliteStore {
    /// Opens or creates the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Invalid(format!("{}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)?;
        // WAL lets readers (reports, the HTTP API) run beside the writer. No fsync: this is
        // derived data, and SQLite's syncs would queue behind and ahead of the journal's on
        // the same disk (order->ack p50 doubled at 20,000 orders/s when they were on). A
        // process crash loses nothing committed; an OS crash or power loss may lose the last
        // transactions (the journal has them again) or, rarely, damage the file, which is then
        // deleted and rebuilt from the journal.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        // A 64 MiB page cache keeps the indexes' hot pages in memory while rows stream in.
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut s = SqliteStore { conn };
        s.migrate()?;
        Ok(s)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        self.conn.execute(MIGRATIONS_TABLE, [])?;
        let tx = self.conn.transaction()?;
        let have: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        if have as usize > MIGRATIONS.len() {
            return Err(StoreError::Invalid(format!(
                "database schema version {have} is newer than this exchange's {}",
                MIGRATIONS.len()
            )));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(have as usize) {
            // In SQLite only INTEGER PRIMARY KEY is the table's own key (the rowid, 64-bit);
            // BIGINT PRIMARY KEY would build a second index beside the table.
            tx.execute_batch(&m.replace("BIGINT PRIMARY KEY", "INTEGER PRIMARY KEY"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES (?1)",
                [i as i64 + 1],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn query<T>(
        &mut self,
        f: &Filter,
        table: Table,
        read: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let (sql, params) = f.select(table, |i| format!("?{i}"))?;
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(read(r)?);
        }
        Ok(out)
    }
}

impl Store for SqliteStore {
    fn last_seq(&mut self) -> Result<u64, StoreError> {
        let v: i64 = self.conn.query_row(
            "SELECT last_seq FROM reporting_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        Ok(v as u64)
    }

    fn apply(&mut self, rows: &Rows) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let last: i64 = tx.query_row(
            "SELECT last_seq FROM reporting_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        let last = last as u64;
        if rows.last_seq <= last {
            return Ok(());
        }
        {
            let mut stmt = tx.prepare_cached(&insert_sql("order_events", ORDER_EVENT_COLUMNS))?;
            insert(&mut stmt, after(&rows.order_events, last, |r| r.seq))?;
            let mut stmt = tx.prepare_cached(&insert_sql("transfers", TRANSFER_COLUMNS))?;
            insert(&mut stmt, after(&rows.transfers, last, |r| r.seq))?;
            let mut stmt =
                tx.prepare_cached(&insert_sql("cancel_rejects", CANCEL_REJECT_COLUMNS))?;
            insert(&mut stmt, after(&rows.cancel_rejects, last, |r| r.seq))?;
        }
        tx.execute(
            "UPDATE reporting_state SET last_seq = ?1 WHERE id = 1",
            [rows.last_seq as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn order_events(&mut self, f: &Filter) -> Result<Vec<OrderEvent>, StoreError> {
        self.query(f, Table::OrderEvents, |r| OrderEvent::read(r))
    }

    fn transfers(&mut self, f: &Filter) -> Result<Vec<TransferRow>, StoreError> {
        self.query(f, Table::Transfers, |r| TransferRow::read(r))
    }

    fn cancel_rejects(&mut self, f: &Filter) -> Result<Vec<CancelRejectRow>, StoreError> {
        self.query(f, Table::CancelRejects, |r| CancelRejectRow::read(r))
    }
}
