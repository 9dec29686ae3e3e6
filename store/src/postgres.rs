//! PostgreSQL store (tokio-postgres on a current-thread runtime owned by the writer thread).
//! Each batch is one transaction of multi-row statements: every table's rows go in as arrays
//! through `UNNEST`, so a batch of 512 records is a handful of round trips. Prices, quantities
//! and money are `NUMERIC`: fixed-point values travel as binary `bigint` arrays and are scaled
//! by the exact `0.00000001` on the server; 128-bit money travels as exact decimal text. Orders and positions are upserts of
//! the batch's latest row per key (PostgreSQL refuses to update one row twice in a statement).
//! The connection is plain TCP or a Unix socket (no TLS in this build): point it at a local
//! server or a trusted network.

use std::collections::HashMap;

use tokio_postgres::{Client, NoTls, Statement};
use tradeloop_engine::event::ClientOrderId;
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::persist::{Record, Store};

use crate::{
    i64_col, kind_text, money_text, parse_side, parse_status, side_text, status_text, tif_text,
    Recovered, StoredFill, StoredOrder, RUN_CRASHED, RUN_RUNNING, SCHEMA_VERSION,
    TERMINAL_STATUSES,
};

/// Errors of the PostgreSQL store.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The server refused an operation or the connection failed.
    #[error("postgres: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The runtime for the client could not start.
    #[error("postgres runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The database was written by a newer tradeloop.
    #[error("database schema version {found} is newer than this build's {supported}")]
    SchemaTooNew {
        /// Version in the database.
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
    run_id BIGSERIAL PRIMARY KEY,
    started_unix_ns BIGINT NOT NULL,
    mode TEXT NOT NULL,
    version TEXT NOT NULL
);
-- Version 4: the run's end (older runs: status unknown).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS ended_unix_ns BIGINT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS config_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN IF NOT EXISTS exit_status TEXT NOT NULL DEFAULT 'unknown';
CREATE TABLE IF NOT EXISTS orders (
    client_id BIGINT PRIMARY KEY,
    run_id BIGINT NOT NULL,
    instrument TEXT NOT NULL,
    side TEXT NOT NULL,
    kind TEXT NOT NULL,
    tif TEXT NOT NULL,
    price NUMERIC(38, 8) NOT NULL,
    trigger NUMERIC(38, 8) NOT NULL,
    qty NUMERIC(38, 8) NOT NULL,
    reduce_only BOOLEAN NOT NULL,
    post_only BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    filled NUMERIC(38, 8) NOT NULL,
    filled_notional NUMERIC(60, 16) NOT NULL,
    created_ns BIGINT NOT NULL,
    updated_ns BIGINT NOT NULL,
    strategy SMALLINT NOT NULL DEFAULT 0
);
-- Version 3: a table created before it lacks the column.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS strategy SMALLINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS orders_status_time ON orders (status, updated_ns);
CREATE TABLE IF NOT EXISTS fills (
    fill_id BIGSERIAL PRIMARY KEY,
    run_id BIGINT NOT NULL,
    client_id BIGINT NOT NULL,
    instrument TEXT NOT NULL,
    side TEXT NOT NULL,
    price NUMERIC(38, 8) NOT NULL,
    qty NUMERIC(38, 8) NOT NULL,
    fee NUMERIC(38, 8) NOT NULL,
    maker BOOLEAN NOT NULL,
    ts_ns BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS fills_instrument_time ON fills (instrument, ts_ns);
CREATE TABLE IF NOT EXISTS positions (
    instrument TEXT PRIMARY KEY,
    run_id BIGINT NOT NULL,
    qty NUMERIC(38, 8) NOT NULL,
    basis NUMERIC(60, 16) NOT NULL,
    realized NUMERIC(60, 16) NOT NULL,
    fees NUMERIC(60, 16) NOT NULL,
    turnover NUMERIC(60, 16) NOT NULL,
    fills BIGINT NOT NULL,
    ts_ns BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS denials (
    run_id BIGINT NOT NULL,
    instrument TEXT NOT NULL,
    code INTEGER NOT NULL,
    ts_ns BIGINT NOT NULL
);
-- Version 4: the denial's name (older rows are filled in from their code on connect).
ALTER TABLE denials ADD COLUMN IF NOT EXISTS reason TEXT NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS lane_metrics (
    run_id BIGINT NOT NULL,
    lane TEXT NOT NULL,
    wait_count BIGINT NOT NULL,
    wait_p50_ns BIGINT NOT NULL,
    wait_p99_ns BIGINT NOT NULL,
    wait_max_ns BIGINT NOT NULL,
    service_p50_ns BIGINT NOT NULL,
    service_p99_ns BIGINT NOT NULL,
    service_max_ns BIGINT NOT NULL,
    ts_ns BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS breaker_events (
    run_id BIGINT NOT NULL,
    breaker TEXT NOT NULL,
    state TEXT NOT NULL,
    action TEXT NOT NULL,
    value BIGINT NOT NULL,
    limit_value BIGINT NOT NULL,
    unit TEXT NOT NULL,
    ts_ns BIGINT NOT NULL
);
";

const UPSERT_ORDERS: &str = "INSERT INTO orders (client_id, run_id, instrument, side, kind, tif, \
    price, trigger, qty, reduce_only, post_only, status, filled, filled_notional, created_ns, \
    updated_ns, strategy) SELECT c, r, i, s, k, t, p * 0.00000001, g * 0.00000001, \
    q * 0.00000001, ro, po, st, f * 0.00000001, n, cr, up, sg FROM UNNEST($1::bigint[], \
    $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], \
    $9::bigint[], $10::bool[], $11::bool[], $12::text[], $13::bigint[], $14::text[]::numeric[], \
    $15::bigint[], $16::bigint[], $17::smallint[]) \
    AS u(c, r, i, s, k, t, p, g, q, ro, po, st, f, n, cr, up, sg) \
    ON CONFLICT (client_id) DO UPDATE SET status = excluded.status, price = excluded.price, \
    qty = excluded.qty, filled = excluded.filled, filled_notional = excluded.filled_notional, updated_ns = excluded.updated_ns";
const INSERT_FILLS: &str = "INSERT INTO fills (run_id, client_id, instrument, side, price, qty, \
    fee, maker, ts_ns) SELECT r, c, i, s, p * 0.00000001, q * 0.00000001, f * 0.00000001, m, t \
    FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], \
    $7::bigint[], $8::bool[], $9::bigint[]) AS u(r, c, i, s, p, q, f, m, t)";
const UPSERT_POSITIONS: &str = "INSERT INTO positions (instrument, run_id, qty, basis, realized, \
    fees, turnover, fills, ts_ns) SELECT i, r, q * 0.00000001, b, re, fe, tu, n, t \
    FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[]::numeric[], \
    $5::text[]::numeric[], $6::text[]::numeric[], $7::text[]::numeric[], $8::bigint[], \
    $9::bigint[]) AS u(i, r, q, b, re, fe, tu, n, t) \
    ON CONFLICT (instrument) DO UPDATE SET run_id = excluded.run_id, qty = excluded.qty, \
    basis = excluded.basis, realized = excluded.realized, fees = excluded.fees, \
    turnover = excluded.turnover, fills = excluded.fills, ts_ns = excluded.ts_ns";
const INSERT_DENIALS: &str = "INSERT INTO denials (run_id, instrument, code, ts_ns, reason) \
    SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::int[], $4::bigint[], $5::text[])";
const INSERT_LANES: &str = "INSERT INTO lane_metrics (run_id, lane, wait_count, wait_p50_ns, \
    wait_p99_ns, wait_max_ns, service_p50_ns, service_p99_ns, service_max_ns, ts_ns) \
    SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
    $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])";

const INSERT_BREAKER: &str = "INSERT INTO breaker_events (run_id, breaker, state, action, \
    value, limit_value, unit, ts_ns) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Column arrays of one batch, reused between batches.
#[derive(Default)]
struct Columns {
    orders: HashMap<u64, usize>,
    order_rows: Vec<tradeloop_engine::order::Order>,
    fills: Vec<Record>,
    positions: HashMap<u16, tradeloop_engine::position::Position>,
    position_ts: HashMap<u16, u64>,
    denials: Vec<Record>,
    lanes: Vec<Record>,
    breakers: Vec<Record>,
}

/// Drops and recreates `schema` (tests and tools: an isolated, empty namespace) and returns
/// `url` with `search_path` set to it.
///
/// # Errors
/// If the server cannot be reached or refuses.
pub fn reset_schema(url: &str, schema: &str) -> Result<String, PgError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\";"
            ))
            .await?;
        Ok::<_, PgError>(())
    })?;
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
}

/// The PostgreSQL backend.
pub struct PgStore {
    runtime: tokio::runtime::Runtime,
    client: Client,
    run_id: i64,
    symbols: Vec<String>,
    cols: Columns,
    /// Prepared `UPSERT_ORDERS`, `INSERT_FILLS`, `UPSERT_POSITIONS`, `INSERT_DENIALS`,
    /// `INSERT_LANES`, `INSERT_BREAKER`.
    statements: [Statement; 6],
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`; never logged), creating
    /// or checking the schema. `symbols[i]` names instrument index `i` in the rows.
    ///
    /// # Errors
    /// If the server cannot be reached, refuses the login, or holds a newer schema.
    pub fn connect(url: &str, symbols: Vec<String>) -> Result<Self, PgError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
            // The connection task ends on a connection error; the next statement then fails
            // with it, and the writer retries.
            tokio::spawn(async move {
                let _ = connection.await;
            });
            // Whether `denials` predates its `reason` column (then filled in below).
            let backfill = client
                .query_opt(
                    "SELECT 1 FROM information_schema.tables t WHERE t.table_schema = \
                     current_schema() AND t.table_name = 'denials' AND NOT EXISTS (SELECT 1 \
                     FROM information_schema.columns c WHERE c.table_schema = t.table_schema \
                     AND c.table_name = 'denials' AND c.column_name = 'reason')",
                    &[],
                )
                .await?
                .is_some();
            client.batch_execute(SCHEMA).await?;
            if backfill {
                client
                    .batch_execute(&crate::backfill_denial_reasons())
                    .await?;
            }
            Ok::<_, PgError>(client)
        })?;
        // Prepared once: each batch then costs one round trip per statement, not two.
        let statements = runtime.block_on(async {
            Ok::<_, PgError>([
                client.prepare(UPSERT_ORDERS).await?,
                client.prepare(INSERT_FILLS).await?,
                client.prepare(UPSERT_POSITIONS).await?,
                client.prepare(INSERT_DENIALS).await?,
                client.prepare(INSERT_LANES).await?,
                client.prepare(INSERT_BREAKER).await?,
            ])
        })?;
        let store = Self {
            runtime,
            client,
            run_id: 0,
            symbols,
            cols: Columns::default(),
            statements,
        };
        let found: Option<i64> = store
            .runtime
            .block_on(
                store
                    .client
                    .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[]),
            )?
            .and_then(|r| r.get::<_, String>(0).parse().ok());
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(PgError::SchemaTooNew {
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Some(v) if v == SCHEMA_VERSION => {}
            _ => {
                store.runtime.block_on(store.client.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', $1) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&SCHEMA_VERSION.to_string()],
                ))?;
            }
        }
        Ok(store)
    }

    /// Reads what earlier runs left (see [`Recovered`]). Call before [`Self::begin_run`].
    ///
    /// # Errors
    /// On a query failure or a row that does not decode.
    pub fn recover(&self) -> Result<Recovered, PgError> {
        let corrupt = |table, what: String| PgError::Corrupt { table, what };
        let rows = self.runtime.block_on(self.client.query(
            "SELECT run_id, client_id, instrument, side, (price * 100000000)::bigint, \
             (qty * 100000000)::bigint, (fee * 100000000)::bigint, ts_ns FROM fills \
             ORDER BY fill_id",
            &[],
        ))?;
        let mut fills = Vec::with_capacity(rows.len());
        for r in rows {
            let side: String = r.get(3);
            fills.push(StoredFill {
                run_id: r.get(0),
                client_id: ClientOrderId(r.get::<_, i64>(1) as u64),
                symbol: r.get(2),
                side: parse_side(&side)
                    .ok_or_else(|| corrupt("fills", format!("side {side:?}")))?,
                price: Price(r.get(4)),
                qty: Qty(r.get(5)),
                fee: Qty(r.get(6)),
                ts_ns: r.get::<_, i64>(7).max(0) as u64,
            });
        }
        let rows = self.runtime.block_on(self.client.query(
            "SELECT run_id, client_id, instrument, side, status, (price * 100000000)::bigint, \
             (qty * 100000000)::bigint, (filled * 100000000)::bigint FROM orders \
             WHERE status <> ALL($1) ORDER BY client_id",
            &[&TERMINAL_STATUSES.as_slice()],
        ))?;
        let mut open_orders = Vec::with_capacity(rows.len());
        for r in rows {
            let (side, status): (String, String) = (r.get(3), r.get(4));
            open_orders.push(StoredOrder {
                run_id: r.get(0),
                client_id: ClientOrderId(r.get::<_, i64>(1) as u64),
                symbol: r.get(2),
                side: parse_side(&side)
                    .ok_or_else(|| corrupt("orders", format!("side {side:?}")))?,
                status: parse_status(&status)
                    .ok_or_else(|| corrupt("orders", format!("status {status:?}")))?,
                price: Price(r.get(5)),
                qty: Qty(r.get(6)),
                filled: Qty(r.get(7)),
            });
        }
        let last: Option<i64> = self
            .runtime
            .block_on(
                self.client
                    .query_one("SELECT MAX(client_id) FROM orders", &[]),
            )?
            .get(0);
        Ok(Recovered {
            fills,
            open_orders,
            last_sequence: last.map_or(0, |id| ClientOrderId(id as u64).sequence()),
        })
    }

    /// Records a new run and tags every later row with its id.
    ///
    /// # Errors
    /// If the row cannot be written.
    pub fn begin_run(
        &mut self,
        started_unix_ns: u64,
        mode: &str,
        config_hash: &str,
    ) -> Result<i64, PgError> {
        let row = self.runtime.block_on(self.client.query_one(
            "INSERT INTO runs (started_unix_ns, mode, version, config_hash, exit_status) \
             VALUES ($1, $2, $3, $4, $5) RETURNING run_id",
            &[
                &i64_col(started_unix_ns),
                &mode,
                &env!("CARGO_PKG_VERSION"),
                &config_hash,
                &RUN_RUNNING,
            ],
        ))?;
        self.run_id = row.get(0);
        Ok(self.run_id)
    }

    /// Marks earlier runs still `running` as `crashed` (see the SQLite store).
    ///
    /// # Errors
    /// If the update fails.
    pub fn close_unfinished_runs(&mut self) -> Result<u64, PgError> {
        Ok(self.runtime.block_on(self.client.execute(
            "UPDATE runs SET exit_status = $1 WHERE exit_status = $2 AND run_id <> $3",
            &[&RUN_CRASHED, &RUN_RUNNING, &self.run_id],
        ))?)
    }

    /// Records this run's end time and exit status (see the SQLite store).
    ///
    /// # Errors
    /// If the update fails.
    pub fn end_run(&mut self, ended_unix_ns: u64, status: &str) -> Result<(), PgError> {
        self.runtime.block_on(self.client.execute(
            "UPDATE runs SET ended_unix_ns = $1, exit_status = $2 WHERE run_id = $3",
            &[&i64_col(ended_unix_ns), &status, &self.run_id],
        ))?;
        Ok(())
    }

    /// Marks orders of earlier runs still working as cancelled (see the SQLite store).
    ///
    /// # Errors
    /// If the update fails.
    pub fn close_orphaned_orders(&mut self, now_ns: u64) -> Result<u64, PgError> {
        Ok(self.runtime.block_on(self.client.execute(
            "UPDATE orders SET status = 'canceled', updated_ns = $1 WHERE run_id <> $2 AND \
             status <> ALL($3)",
            &[
                &i64_col(now_ns),
                &self.run_id,
                &TERMINAL_STATUSES.as_slice(),
            ],
        ))?)
    }

    /// The run id rows are tagged with.
    #[must_use]
    pub const fn run_id(&self) -> i64 {
        self.run_id
    }

    /// Runs a query returning one `i64` (tests and tools).
    ///
    /// # Errors
    /// If the query fails.
    pub fn query_i64(&self, sql: &str) -> Result<i64, PgError> {
        Ok(self
            .runtime
            .block_on(self.client.query_one(sql, &[]))?
            .get::<_, i64>(0))
    }

    /// Runs a query returning one text value (tests and tools).
    ///
    /// # Errors
    /// If the query fails.
    pub fn query_text(&self, sql: &str) -> Result<String, PgError> {
        Ok(self
            .runtime
            .block_on(self.client.query_one(sql, &[]))?
            .get::<_, String>(0))
    }
}

impl Store for PgStore {
    type Error = PgError;

    fn write_batch(&mut self, records: &[Record]) -> Result<(), PgError> {
        let c = &mut self.cols;
        c.orders.clear();
        c.order_rows.clear();
        c.fills.clear();
        c.positions.clear();
        c.position_ts.clear();
        c.denials.clear();
        c.lanes.clear();
        c.breakers.clear();
        for r in records {
            match *r {
                Record::Order { order, .. } => match c.orders.get(&order.client_id.0) {
                    Some(&i) => c.order_rows[i] = order,
                    None => {
                        c.orders.insert(order.client_id.0, c.order_rows.len());
                        c.order_rows.push(order);
                    }
                },
                Record::Fill { .. } => c.fills.push(*r),
                Record::Position { position, ts_ns } => {
                    let k = position.instrument.0;
                    c.positions.insert(k, position);
                    c.position_ts.insert(k, ts_ns);
                }
                Record::Denial { .. } => c.denials.push(*r),
                Record::LaneMetrics { .. } => c.lanes.push(*r),
                Record::Breaker { .. } => c.breakers.push(*r),
            }
        }
        let run = self.run_id;
        let symbols = &self.symbols;
        let sym = |i: usize| symbols.get(i).cloned().unwrap_or_else(|| "?".to_owned());
        let client = &mut self.client;
        let c = &self.cols;
        let stmts = &self.statements;
        self.runtime.block_on(async {
            let tx = client.transaction().await?;
            if !c.order_rows.is_empty() {
                let o = &c.order_rows;
                let n = o.len();
                let ids: Vec<i64> = o.iter().map(|x| x.client_id.0 as i64).collect();
                let runs = vec![run; n];
                let inst: Vec<String> = o.iter().map(|x| sym(x.request.instrument.get())).collect();
                let side: Vec<&str> = o.iter().map(|x| side_text(x.request.side)).collect();
                let kind: Vec<&str> = o.iter().map(|x| kind_text(x.request.kind)).collect();
                let tif: Vec<&str> = o.iter().map(|x| tif_text(x.request.tif)).collect();
                let price: Vec<i64> = o.iter().map(|x| x.request.price.raw()).collect();
                let trig: Vec<i64> = o.iter().map(|x| x.request.trigger.raw()).collect();
                let qty: Vec<i64> = o.iter().map(|x| x.request.qty.raw()).collect();
                let ro: Vec<bool> = o.iter().map(|x| x.request.reduce_only).collect();
                let po: Vec<bool> = o.iter().map(|x| x.request.post_only).collect();
                let st: Vec<&str> = o.iter().map(|x| status_text(x.status)).collect();
                let filled: Vec<i64> = o.iter().map(|x| x.filled.raw()).collect();
                let notional: Vec<String> =
                    o.iter().map(|x| money_text(x.filled_notional)).collect();
                let created: Vec<i64> = o.iter().map(|x| i64_col(x.created_ns)).collect();
                let updated: Vec<i64> = o.iter().map(|x| i64_col(x.updated_ns)).collect();
                let strategy: Vec<i16> =
                    o.iter().map(|x| i16::from(x.request.strategy.0)).collect();
                tx.execute(
                    &stmts[0],
                    &[
                        &ids, &runs, &inst, &side, &kind, &tif, &price, &trig, &qty, &ro, &po, &st,
                        &filled, &notional, &created, &updated, &strategy,
                    ],
                )
                .await?;
            }
            if !c.fills.is_empty() {
                let mut cols = (
                    Vec::new(),
                    Vec::new(),
                    Vec::new(),
                    Vec::new(),
                    Vec::new(),
                    Vec::new(),
                    Vec::new(),
                    Vec::new(),
                );
                for r in &c.fills {
                    if let Record::Fill {
                        client_id,
                        instrument,
                        side,
                        price,
                        qty,
                        fee,
                        maker,
                        strategy: _,
                        ts_ns,
                    } = *r
                    {
                        cols.0.push(client_id.0 as i64);
                        cols.1.push(sym(instrument.get()));
                        cols.2.push(side_text(side));
                        cols.3.push(price.raw());
                        cols.4.push(qty.raw());
                        cols.5.push(fee.raw());
                        cols.6.push(maker);
                        cols.7.push(i64_col(ts_ns));
                    }
                }
                let runs = vec![run; cols.0.len()];
                tx.execute(
                    &stmts[1],
                    &[
                        &runs, &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6,
                        &cols.7,
                    ],
                )
                .await?;
            }
            if !c.positions.is_empty() {
                let mut keys: Vec<u16> = c.positions.keys().copied().collect();
                keys.sort_unstable();
                let p: Vec<_> = keys.iter().map(|k| c.positions[k]).collect();
                let inst: Vec<String> = p.iter().map(|x| sym(x.instrument.get())).collect();
                let runs = vec![run; p.len()];
                let qty: Vec<i64> = p.iter().map(|x| x.qty.raw()).collect();
                let basis: Vec<String> = p.iter().map(|x| money_text(x.basis)).collect();
                let realized: Vec<String> = p.iter().map(|x| money_text(x.realized)).collect();
                let fees: Vec<String> = p.iter().map(|x| money_text(x.fees)).collect();
                let turnover: Vec<String> = p.iter().map(|x| money_text(x.turnover)).collect();
                let fills: Vec<i64> = p.iter().map(|x| i64_col(x.fills)).collect();
                let ts: Vec<i64> = keys.iter().map(|k| i64_col(c.position_ts[k])).collect();
                tx.execute(
                    &stmts[2],
                    &[
                        &inst, &runs, &qty, &basis, &realized, &fees, &turnover, &fills, &ts,
                    ],
                )
                .await?;
            }
            if !c.denials.is_empty() {
                let (mut inst, mut code, mut ts, mut reason) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for r in &c.denials {
                    if let Record::Denial {
                        instrument,
                        code: k,
                        ts_ns,
                    } = *r
                    {
                        inst.push(sym(instrument.get()));
                        code.push(i32::from(k));
                        ts.push(i64_col(ts_ns));
                        reason.push(crate::denial_reason(k));
                    }
                }
                let runs = vec![run; inst.len()];
                tx.execute(&stmts[3], &[&runs, &inst, &code, &ts, &reason])
                    .await?;
            }
            if !c.lanes.is_empty() {
                let mut cols: [Vec<i64>; 8] = Default::default();
                let mut names = Vec::new();
                for r in &c.lanes {
                    if let Record::LaneMetrics {
                        lane,
                        wait,
                        service,
                        ts_ns,
                    } = *r
                    {
                        names.push(lane.name());
                        for (col, v) in cols.iter_mut().zip([
                            wait.count,
                            wait.p50,
                            wait.p99,
                            wait.max,
                            service.p50,
                            service.p99,
                            service.max,
                            ts_ns,
                        ]) {
                            col.push(i64_col(v));
                        }
                    }
                }
                let runs = vec![run; names.len()];
                tx.execute(
                    &stmts[4],
                    &[
                        &runs, &names, &cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5],
                        &cols[6], &cols[7],
                    ],
                )
                .await?;
            }
            // Transitions are rare: one prepared insert each.
            for r in &c.breakers {
                if let Record::Breaker { event: e, ts_ns } = *r {
                    tx.execute(
                        &stmts[5],
                        &[
                            &run,
                            &e.kind.name(),
                            &e.state.name(),
                            &e.action.name(),
                            &e.value,
                            &e.limit,
                            &e.kind.unit(),
                            &i64_col(ts_ns),
                        ],
                    )
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
