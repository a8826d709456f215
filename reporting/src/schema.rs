//! The schema, as migrations that both SQLite and PostgreSQL run unchanged.
//!
//! Append-only tables: each row is one report of the event stream, keyed by what makes it
//! unique, so a row applied twice is an error rather than a silent duplicate. Prices are
//! integers in price units (1/10,000), as in the engine: no rounding anywhere.

/// Migrations in order; the index + 1 is the schema version.
pub const MIGRATIONS: &[&str] = &[
    // 1: the event tables and the applied position.
    "CREATE TABLE reporting_state (
        id INTEGER PRIMARY KEY,
        last_seq BIGINT NOT NULL
    );
    INSERT INTO reporting_state (id, last_seq) VALUES (1, 0);
    CREATE TABLE order_events (
        exec_id BIGINT PRIMARY KEY,
        seq BIGINT NOT NULL,
        time_ns BIGINT NOT NULL,
        order_id BIGINT NOT NULL,
        cl_ord_id TEXT NOT NULL,
        orig_cl_ord_id TEXT NOT NULL,
        account TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        ord_type TEXT NOT NULL,
        tif TEXT NOT NULL,
        exec_type TEXT NOT NULL,
        status TEXT NOT NULL,
        price BIGINT NOT NULL,
        qty BIGINT NOT NULL,
        cum_qty BIGINT NOT NULL,
        leaves_qty BIGINT NOT NULL,
        cum_cost BIGINT NOT NULL,
        last_px BIGINT,
        last_qty BIGINT,
        trade_id BIGINT,
        liquidity TEXT,
        reason_code INTEGER,
        text TEXT
    );
    CREATE INDEX order_events_account_time ON order_events (account, time_ns);
    CREATE INDEX order_events_symbol_time ON order_events (symbol, time_ns);
    CREATE INDEX order_events_order ON order_events (order_id);
    CREATE TABLE transfers (
        seq BIGINT PRIMARY KEY,
        time_ns BIGINT NOT NULL,
        account TEXT NOT NULL,
        asset TEXT NOT NULL,
        amount BIGINT NOT NULL,
        balance BIGINT NOT NULL,
        reject_code INTEGER
    );
    CREATE TABLE cancel_rejects (
        seq BIGINT PRIMARY KEY,
        time_ns BIGINT NOT NULL,
        account TEXT NOT NULL,
        symbol TEXT NOT NULL,
        order_id BIGINT NOT NULL,
        cl_ord_id TEXT NOT NULL,
        orig_cl_ord_id TEXT NOT NULL,
        is_replace INTEGER NOT NULL,
        reason_code INTEGER NOT NULL,
        text TEXT NOT NULL
    );
    CREATE VIEW executions AS SELECT * FROM order_events WHERE exec_type = 'trade';",
];

/// Creates the table of applied migrations (the same statement for both databases).
pub const MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)";

/// The columns of `order_events`, in insert order.
pub const ORDER_EVENT_COLUMNS: &str = "exec_id, seq, time_ns, order_id, cl_ord_id, \
    orig_cl_ord_id, account, symbol, side, ord_type, tif, exec_type, status, price, qty, \
    cum_qty, leaves_qty, cum_cost, last_px, last_qty, trade_id, liquidity, reason_code, text";

/// The columns of `transfers`, in insert order.
pub const TRANSFER_COLUMNS: &str = "seq, time_ns, account, asset, amount, balance, reject_code";

/// The columns of `cancel_rejects`, in insert order.
pub const CANCEL_REJECT_COLUMNS: &str = "seq, time_ns, account, symbol, order_id, cl_ord_id, \
    orig_cl_ord_id, is_replace, reason_code, text";
