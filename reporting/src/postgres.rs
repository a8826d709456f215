//! The PostgreSQL backend, chosen by a `postgres://` URL. Rows go in with COPY, the fastest
//! way in; the applied position is updated in the same transaction.

use std::io::Write;

use postgres::types::ToSql;
use postgres::{Client, NoTls};

use crate::rows::{CancelRejectRow, OrderEvent, Rows, TransferRow};
use crate::schema::{
    CANCEL_REJECT_COLUMNS, MIGRATIONS, MIGRATIONS_TABLE, ORDER_EVENT_COLUMNS, TRANSFER_COLUMNS,
};
use crate::store::{Filter, Get, Row, Store, StoreError, Table, ValueRef, after};

/// A reporting store in a PostgreSQL database.
pub struct PgStore {
    client: Client,
}

impl Get for postgres::Row {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        // INTEGER columns come back as i32, BIGINT as i64.
        match self.try_get::<_, i64>(i) {
            Ok(v) => Ok(v),
            Err(_) => Ok(i64::from(self.try_get::<_, i32>(i)?)),
        }
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.try_get::<_, Option<i64>>(i) {
            Ok(v) => Ok(v),
            Err(_) => Ok(self.try_get::<_, Option<i32>>(i)?.map(i64::from)),
        }
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(i)?)
    }
}

/// A value in COPY's text format.
fn copy_field(out: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Int(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::Null => out.extend_from_slice(b"\\N"),
        ValueRef::Text(t) => {
            for &b in t.as_bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    _ => out.push(b),
                }
            }
        }
    }
}

fn copy_rows<'r, R: Row + 'r>(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    columns: &str,
    rows: impl Iterator<Item = &'r R>,
) -> Result<(), StoreError> {
    let mut buf = Vec::with_capacity(1 << 16);
    for r in rows {
        let mut first = true;
        r.visit(&mut |v| {
            if !first {
                buf.push(b'\t');
            }
            first = false;
            copy_field(&mut buf, v);
        });
        buf.push(b'\n');
    }
    if buf.is_empty() {
        return Ok(());
    }
    let mut w = tx.copy_in(&format!("COPY {table} ({columns}) FROM STDIN"))?;
    w.write_all(&buf)
        .map_err(|e| StoreError::Invalid(format!("COPY {table}: {e}")))?;
    w.finish()?;
    Ok(())
}

/// Creates an empty database `name` on the server `admin_url` connects to (dropping one of
/// that name first) and returns its URL: for tests and first installs. `name` must be a plain
/// identifier.
pub fn create_database(admin_url: &str, name: &str) -> Result<String, StoreError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Invalid(format!(
            "database name {name:?}: letters, digits and _ only"
        )));
    }
    let mut c = Client::connect(admin_url, NoTls)?;
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    c.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .filter(|b| !b.ends_with('/'))
        .ok_or_else(|| StoreError::BadUrl(admin_url.into()))?;
    Ok(format!("{base}/{name}"))
}

impl PgStore {
    /// Connects and brings the schema up to date.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let client = Client::connect(url, NoTls)?;
        let mut s = PgStore { client };
        s.migrate()?;
        Ok(s)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        self.client.batch_execute(MIGRATIONS_TABLE)?;
        let mut tx = self.client.transaction()?;
        // Two exchanges starting on one database must not both migrate it.
        tx.batch_execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")?;
        let have: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )?
            .get(0);
        if have as usize > MIGRATIONS.len() {
            return Err(StoreError::Invalid(format!(
                "database schema version {have} is newer than this exchange's {}",
                MIGRATIONS.len()
            )));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(have as usize) {
            tx.batch_execute(m)?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn query<T>(
        &mut self,
        f: &Filter,
        table: Table,
        read: impl Fn(&postgres::Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let (sql, params) = f.select(table, |i| format!("${i}"))?;
        let owned: Vec<Box<dyn ToSql + Sync + '_>> = params
            .into_iter()
            .map(|v| -> Box<dyn ToSql + Sync + '_> {
                match v {
                    ValueRef::Int(i) => Box::new(i),
                    ValueRef::Text(t) => Box::new(t),
                    ValueRef::Null => Box::new(Option::<i64>::None),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref()).collect();
        self.client.query(&sql, &refs)?.iter().map(read).collect()
    }
}

impl Store for PgStore {
    fn last_seq(&mut self) -> Result<u64, StoreError> {
        let v: i64 = self
            .client
            .query_one("SELECT last_seq FROM reporting_state WHERE id = 1", &[])?
            .get(0);
        Ok(v as u64)
    }

    fn apply(&mut self, rows: &Rows) -> Result<(), StoreError> {
        let mut tx = self.client.transaction()?;
        // The row lock orders concurrent writers; the second sees the first's position.
        let last: i64 = tx
            .query_one(
                "SELECT last_seq FROM reporting_state WHERE id = 1 FOR UPDATE",
                &[],
            )?
            .get(0);
        let last = last as u64;
        if rows.last_seq <= last {
            return Ok(());
        }
        copy_rows(
            &mut tx,
            "order_events",
            ORDER_EVENT_COLUMNS,
            after(&rows.order_events, last, |r| r.seq),
        )?;
        copy_rows(
            &mut tx,
            "transfers",
            TRANSFER_COLUMNS,
            after(&rows.transfers, last, |r| r.seq),
        )?;
        copy_rows(
            &mut tx,
            "cancel_rejects",
            CANCEL_REJECT_COLUMNS,
            after(&rows.cancel_rejects, last, |r| r.seq),
        )?;
        tx.execute(
            "UPDATE reporting_state SET last_seq = $1 WHERE id = 1",
            &[&(rows.last_seq as i64)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn order_events(&mut self, f: &Filter) -> Result<Vec<OrderEvent>, StoreError> {
        self.query(f, Table::OrderEvents, OrderEvent::read)
    }

    fn transfers(&mut self, f: &Filter) -> Result<Vec<TransferRow>, StoreError> {
        self.query(f, Table::Transfers, TransferRow::read)
    }

    fn cancel_rejects(&mut self, f: &Filter) -> Result<Vec<CancelRejectRow>, StoreError> {
        self.query(f, Table::CancelRejects, CancelRejectRow::read)
    }
}
