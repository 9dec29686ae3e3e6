//! SQLite store (rusqlite with the bundled library): WAL journal, `synchronous = NORMAL`
//! (a committed batch survives a process crash; a power cut may lose the last transactions),
//! prepared statements cached per connection, one transaction per batch.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use tradeloop_engine::event::ClientOrderId;
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::persist::{Record, Store};

use crate::{
    i64_col, kind_text, money_text, parse_side, parse_status, side_text, status_text, tif_text,
    Recovered, StoredFill, StoredOrder, RUN_CRASHED, RUN_RUNNING, SCHEMA_VERSION,
    TERMINAL_STATUSES,
};

/// Errors of the SQLite store.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// SQLite refused an operation.
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The database was written by a newer tradeloop.
    #[error("database schema version {found} is newer than this build's {supported}")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Version this build writes.
        supported: i64,
    },
    /// A stored row does not decode.
    #[error("corrupt row in {table}: {what}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// What is wrong.
        what: String,
    },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    started_unix_ns INTEGER NOT NULL,
    mode TEXT NOT NULL,
    version TEXT NOT NULL,
    ended_unix_ns INTEGER,
    config_hash TEXT NOT NULL DEFAULT '',
    exit_status TEXT NOT NULL DEFAULT 'unknown'
);
CREATE TABLE IF NOT EXISTS orders (
    client_id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    instrument TEXT NOT NULL,
    side TEXT NOT NULL,
    kind TEXT NOT NULL,
    tif TEXT NOT NULL,
    price_e8 INTEGER NOT NULL,
    trigger_e8 INTEGER NOT NULL,
    qty_e8 INTEGER NOT NULL,
    reduce_only INTEGER NOT NULL,
    post_only INTEGER NOT NULL,
    status TEXT NOT NULL,
    filled_e8 INTEGER NOT NULL,
    filled_notional TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    strategy INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS orders_status_time ON orders (status, updated_ns);
CREATE TABLE IF NOT EXISTS fills (
    fill_id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    client_id INTEGER NOT NULL,
    instrument TEXT NOT NULL,
    side TEXT NOT NULL,
    price_e8 INTEGER NOT NULL,
    qty_e8 INTEGER NOT NULL,
    fee_e8 INTEGER NOT NULL,
    maker INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fills_instrument_time ON fills (instrument, ts_ns);
CREATE TABLE IF NOT EXISTS positions (
    instrument TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL,
    qty_e8 INTEGER NOT NULL,
    basis TEXT NOT NULL,
    realized TEXT NOT NULL,
    fees TEXT NOT NULL,
    turnover TEXT NOT NULL,
    fills INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS denials (
    run_id INTEGER NOT NULL,
    instrument TEXT NOT NULL,
    code INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS lane_metrics (
    run_id INTEGER NOT NULL,
    lane TEXT NOT NULL,
    wait_count INTEGER NOT NULL,
    wait_p50_ns INTEGER NOT NULL,
    wait_p99_ns INTEGER NOT NULL,
    wait_max_ns INTEGER NOT NULL,
    service_p50_ns INTEGER NOT NULL,
    service_p99_ns INTEGER NOT NULL,
    service_max_ns INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS breaker_events (
    run_id INTEGER NOT NULL,
    breaker TEXT NOT NULL,
    state TEXT NOT NULL,
    action TEXT NOT NULL,
    value INTEGER NOT NULL,
    limit_value INTEGER NOT NULL,
    unit TEXT NOT NULL,
    ts_ns INTEGER NOT NULL
);
";

const UPSERT_ORDER: &str = "INSERT INTO orders (client_id, run_id, instrument, side, kind, tif, \
    price_e8, trigger_e8, qty_e8, reduce_only, post_only, status, filled_e8, filled_notional, \
    created_ns, updated_ns, strategy) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
    ?13, ?14, ?15, ?16, ?17) ON CONFLICT (client_id) DO UPDATE SET status = excluded.status, \
    price_e8 = excluded.price_e8, qty_e8 = excluded.qty_e8, filled_e8 = excluded.filled_e8, filled_notional = excluded.filled_notional, \
    updated_ns = excluded.updated_ns";
const INSERT_FILL: &str = "INSERT INTO fills (run_id, client_id, instrument, side, price_e8, \
    qty_e8, fee_e8, maker, ts_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const UPSERT_POSITION: &str = "INSERT INTO positions (instrument, run_id, qty_e8, basis, \
    realized, fees, turnover, fills, ts_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
    ON CONFLICT (instrument) DO UPDATE SET run_id = excluded.run_id, qty_e8 = excluded.qty_e8, \
    basis = excluded.basis, realized = excluded.realized, fees = excluded.fees, \
    turnover = excluded.turnover, fills = excluded.fills, ts_ns = excluded.ts_ns";
const INSERT_DENIAL: &str =
    "INSERT INTO denials (run_id, instrument, code, ts_ns, reason) VALUES (?1, ?2, ?3, ?4, ?5)";
const INSERT_LANE: &str = "INSERT INTO lane_metrics (run_id, lane, wait_count, wait_p50_ns, \
    wait_p99_ns, wait_max_ns, service_p50_ns, service_p99_ns, service_max_ns, ts_ns) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

const INSERT_BREAKER: &str = "INSERT INTO breaker_events (run_id, breaker, state, action, \
    value, limit_value, unit, ts_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// The SQLite backend.
pub struct SqliteStore {
    conn: Connection,
    run_id: i64,
    symbols: Vec<String>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating or migrating) the database at `path`. `symbols[i]` names instrument
    /// index `i` in the rows.
    ///
    /// # Errors
    /// If the file cannot be opened or created, or holds a newer schema.
    pub fn open(path: &Path, symbols: Vec<String>) -> Result<Self, SqliteError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        let has = |table: &str, column: &str| -> Result<bool, rusqlite::Error> {
            conn.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
                .exists(params![table, column])
        };
        // Version 3: `orders.strategy` (a table created before it lacks the column).
        if !has("orders", "strategy")? {
            conn.execute_batch(
                "ALTER TABLE orders ADD COLUMN strategy INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        // Version 4: `denials.reason` (filled in for older rows) and the run's end.
        if !has("denials", "reason")? {
            conn.execute_batch(&format!(
                "ALTER TABLE denials ADD COLUMN reason TEXT NOT NULL DEFAULT ''; {};",
                crate::backfill_denial_reasons()
            ))?;
        }
        if !has("runs", "exit_status")? {
            conn.execute_batch(
                "ALTER TABLE runs ADD COLUMN ended_unix_ns INTEGER; \
                 ALTER TABLE runs ADD COLUMN config_hash TEXT NOT NULL DEFAULT ''; \
                 ALTER TABLE runs ADD COLUMN exit_status TEXT NOT NULL DEFAULT 'unknown';",
            )?;
        }
        let found: Option<i64> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|v| v.parse().ok());
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(SqliteError::SchemaTooNew {
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Some(v) if v == SCHEMA_VERSION => {}
            _ => {
                // Version 1 lacked `breaker_events`, which SCHEMA has just created.
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                    params![SCHEMA_VERSION.to_string()],
                )?;
            }
        }
        Ok(Self {
            conn,
            run_id: 0,
            symbols,
        })
    }

    /// Reads what earlier runs left: every fill in commit order, the orders still working,
    /// and the highest client-order sequence used. Call before [`Self::begin_run`].
    ///
    /// # Errors
    /// On a query failure or a row that does not decode.
    pub fn recover(&self) -> Result<Recovered, SqliteError> {
        let corrupt = |table, what: String| SqliteError::Corrupt { table, what };
        let mut fills = Vec::new();
        let mut stmt = self.conn.prepare(
            "SELECT run_id, client_id, instrument, side, price_e8, qty_e8, fee_e8, ts_ns \
             FROM fills ORDER BY fill_id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let side: String = r.get(3)?;
            fills.push(StoredFill {
                run_id: r.get(0)?,
                client_id: ClientOrderId(r.get::<_, i64>(1)? as u64),
                symbol: r.get(2)?,
                side: parse_side(&side)
                    .ok_or_else(|| corrupt("fills", format!("side {side:?}")))?,
                price: Price(r.get(4)?),
                qty: Qty(r.get(5)?),
                fee: Qty(r.get(6)?),
                ts_ns: r.get::<_, i64>(7)?.max(0) as u64,
            });
        }
        let mut open_orders = Vec::new();
        let sql = format!(
            "SELECT run_id, client_id, instrument, side, status, price_e8, qty_e8, filled_e8 \
             FROM orders WHERE status NOT IN ('{}', '{}', '{}') ORDER BY client_id",
            TERMINAL_STATUSES[0], TERMINAL_STATUSES[1], TERMINAL_STATUSES[2]
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (side, status): (String, String) = (r.get(3)?, r.get(4)?);
            open_orders.push(StoredOrder {
                run_id: r.get(0)?,
                client_id: ClientOrderId(r.get::<_, i64>(1)? as u64),
                symbol: r.get(2)?,
                side: parse_side(&side)
                    .ok_or_else(|| corrupt("orders", format!("side {side:?}")))?,
                status: parse_status(&status)
                    .ok_or_else(|| corrupt("orders", format!("status {status:?}")))?,
                price: Price(r.get(5)?),
                qty: Qty(r.get(6)?),
                filled: Qty(r.get(7)?),
            });
        }
        let last: Option<i64> =
            self.conn
                .query_row("SELECT MAX(client_id) FROM orders", [], |r| r.get(0))?;
        let last_sequence = last.map_or(0, |id| ClientOrderId(id as u64).sequence());
        Ok(Recovered {
            fills,
            open_orders,
            last_sequence,
        })
    }

    /// Records a new run (status `running`) and tags every later row with its id.
    /// `config_hash` identifies the configuration it ran with.
    ///
    /// # Errors
    /// If the row cannot be written.
    pub fn begin_run(
        &mut self,
        started_unix_ns: u64,
        mode: &str,
        config_hash: &str,
    ) -> Result<i64, SqliteError> {
        self.conn.execute(
            "INSERT INTO runs (started_unix_ns, mode, version, config_hash, exit_status) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                i64_col(started_unix_ns),
                mode,
                env!("CARGO_PKG_VERSION"),
                config_hash,
                RUN_RUNNING
            ],
        )?;
        self.run_id = self.conn.last_insert_rowid();
        Ok(self.run_id)
    }

    /// Marks earlier runs still `running` as `crashed` (their process never closed them).
    /// Returns how many.
    ///
    /// # Errors
    /// If the update fails.
    pub fn close_unfinished_runs(&mut self) -> Result<usize, SqliteError> {
        Ok(self.conn.execute(
            "UPDATE runs SET exit_status = ?1 WHERE exit_status = ?2 AND run_id <> ?3",
            params![RUN_CRASHED, RUN_RUNNING, self.run_id],
        )?)
    }

    /// Records this run's end time and exit status (`completed`, or `failed: …`).
    ///
    /// # Errors
    /// If the update fails.
    pub fn end_run(&mut self, ended_unix_ns: u64, status: &str) -> Result<(), SqliteError> {
        self.conn.execute(
            "UPDATE runs SET ended_unix_ns = ?1, exit_status = ?2 WHERE run_id = ?3",
            params![i64_col(ended_unix_ns), status, self.run_id],
        )?;
        Ok(())
    }

    /// Marks orders of earlier runs that are still working as cancelled: the venue they were
    /// sent to no longer knows them (paper trading's simulated venue restarted). Returns how
    /// many were closed.
    ///
    /// # Errors
    /// If the update fails.
    pub fn close_orphaned_orders(&mut self, now_ns: u64) -> Result<usize, SqliteError> {
        let sql = format!(
            "UPDATE orders SET status = 'canceled', updated_ns = ?1 WHERE run_id <> ?2 AND \
             status NOT IN ('{}', '{}', '{}')",
            TERMINAL_STATUSES[0], TERMINAL_STATUSES[1], TERMINAL_STATUSES[2]
        );
        Ok(self
            .conn
            .execute(&sql, params![i64_col(now_ns), self.run_id])?)
    }

    /// The run id rows are tagged with.
    #[must_use]
    pub const fn run_id(&self) -> i64 {
        self.run_id
    }

    /// The underlying connection (tests and tools).
    #[must_use]
    pub const fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl Store for SqliteStore {
    type Error = SqliteError;

    fn write_batch(&mut self, records: &[Record]) -> Result<(), SqliteError> {
        let tx = self.conn.transaction()?;
        {
            let run = self.run_id;
            let sym = |i: usize| self.symbols.get(i).map_or("?", String::as_str);
            let mut order = tx.prepare_cached(UPSERT_ORDER)?;
            let mut fill = tx.prepare_cached(INSERT_FILL)?;
            let mut position = tx.prepare_cached(UPSERT_POSITION)?;
            let mut denial = tx.prepare_cached(INSERT_DENIAL)?;
            let mut lane = tx.prepare_cached(INSERT_LANE)?;
            let mut breaker = tx.prepare_cached(INSERT_BREAKER)?;
            for r in records {
                match *r {
                    Record::Order { order: o, ts_ns: _ } => {
                        let q = o.request;
                        order.execute(params![
                            o.client_id.0 as i64,
                            run,
                            sym(q.instrument.get()),
                            side_text(q.side),
                            kind_text(q.kind),
                            tif_text(q.tif),
                            q.price.raw(),
                            q.trigger.raw(),
                            q.qty.raw(),
                            q.reduce_only,
                            q.post_only,
                            status_text(o.status),
                            o.filled.raw(),
                            money_text(o.filled_notional),
                            i64_col(o.created_ns),
                            i64_col(o.updated_ns),
                            i64::from(q.strategy.0),
                        ])?;
                    }
                    Record::Fill {
                        client_id,
                        instrument,
                        side,
                        price,
                        qty,
                        fee,
                        maker,
                        strategy: _,
                        ts_ns,
                    } => {
                        fill.execute(params![
                            run,
                            client_id.0 as i64,
                            sym(instrument.get()),
                            side_text(side),
                            price.raw(),
                            qty.raw(),
                            fee.raw(),
                            maker,
                            i64_col(ts_ns),
                        ])?;
                    }
                    Record::Position { position: p, ts_ns } => {
                        position.execute(params![
                            sym(p.instrument.get()),
                            run,
                            p.qty.raw(),
                            money_text(p.basis),
                            money_text(p.realized),
                            money_text(p.fees),
                            money_text(p.turnover),
                            i64_col(p.fills),
                            i64_col(ts_ns),
                        ])?;
                    }
                    Record::Denial {
                        instrument,
                        code,
                        ts_ns,
                    } => {
                        denial.execute(params![
                            run,
                            sym(instrument.get()),
                            code,
                            i64_col(ts_ns),
                            crate::denial_reason(code),
                        ])?;
                    }
                    Record::Breaker { event: e, ts_ns } => {
                        breaker.execute(params![
                            run,
                            e.kind.name(),
                            e.state.name(),
                            e.action.name(),
                            e.value,
                            e.limit,
                            e.kind.unit(),
                            i64_col(ts_ns),
                        ])?;
                    }
                    Record::LaneMetrics {
                        lane: l,
                        wait,
                        service,
                        ts_ns,
                    } => {
                        lane.execute(params![
                            run,
                            l.name(),
                            i64_col(wait.count),
                            i64_col(wait.p50),
                            i64_col(wait.p99),
                            i64_col(wait.max),
                            i64_col(service.p50),
                            i64_col(service.p99),
                            i64_col(service.max),
                            i64_col(ts_ns),
                        ])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
