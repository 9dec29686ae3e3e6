//! Persistence backends behind the engine's [`Store`](tradeloop_engine::persist::Store) trait:
//! SQLite (embedded, the default) and PostgreSQL. The writer thread owns a store; the engine
//! never touches one. Both keep the same tables:
//!
//! | table | one row per | notes |
//! |---|---|---|
//! | `runs` | process start | run id, start and end time, mode, version, config hash, exit status (`running`, `completed`, `failed: …`, `crashed` when a later run found it unfinished, `unknown` for runs before schema 4) |
//! | `orders` | client order id (latest state, upserted) | indexed by status and update time |
//! | `fills` | execution (append-only) | indexed by instrument and time |
//! | `positions` | instrument (latest snapshot, upserted) | a convenience view; recovery rebuilds positions from `fills` |
//! | `denials` | order denied before the gateway | telemetry; `reason` is the denial's name (`max_position`, …), `code` its number |
//! | `lane_metrics` | lane × publication | telemetry |
//! | `breaker_events` | circuit-breaker transition | trip, half-open, recovery, with the measured value and limit |
//!
//! Prices and quantities are exact: SQLite stores them as integers in units of 10⁻⁸ (the
//! engine's fixed point, `*_e8` columns) and money (`Money`, 10⁻¹⁶) as exact decimal text;
//! PostgreSQL uses `NUMERIC`. Nothing is ever a float.
//!
//! Recovery ([`Recovered`]) reads every fill back in commit order (so positions are rebuilt
//! exactly from what was persisted, and always agree with the fills), the orders that were
//! still working, and the highest client-order sequence used, so a restarted engine never
//! reuses an id.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod postgres;
pub mod sqlite;

use tradeloop_engine::event::{ClientOrderId, Side};
use tradeloop_engine::fixed::{Money, Price, Qty};
use tradeloop_engine::instrument::InstrumentRegistry;
use tradeloop_engine::order::{OrderKind, OrderStatus, TimeInForce};
use tradeloop_engine::position::Position;

/// Schema version written to `meta`; a database from a newer version is refused. Version 2
/// added `breaker_events` (created on open, so a version 1 database migrates by itself);
/// version 3 added `orders.strategy`, the portfolio member an order (and so its fills, joined
/// on `client_id`) belongs to, added to older databases on open with 0 for their orders;
/// version 4 added `denials.reason` (older rows filled in from their code on open) and
/// `runs.ended_unix_ns`, `runs.config_hash` and `runs.exit_status` (`unknown` for older runs).
pub const SCHEMA_VERSION: i64 = 4;

/// The name stored in `denials.reason` for a denial code (`Deny::NAMES`; `unknown` for a code
/// this build does not know).
#[must_use]
pub fn denial_reason(code: u16) -> &'static str {
    tradeloop_engine::api::Deny::NAMES
        .get(usize::from(code))
        .copied()
        .unwrap_or("unknown")
}

/// `UPDATE denials SET reason = …` from `code`, for rows written before `reason` existed.
fn backfill_denial_reasons() -> String {
    use std::fmt::Write as _;
    let mut sql = String::from("UPDATE denials SET reason = CASE code");
    for (code, name) in tradeloop_engine::api::Deny::NAMES.iter().enumerate() {
        let _ = write!(sql, " WHEN {code} THEN '{name}'");
    }
    sql.push_str(" ELSE 'unknown' END WHERE reason = ''");
    sql
}

/// The `runs.exit_status` of a run that has not ended.
pub const RUN_RUNNING: &str = "running";
/// The `runs.exit_status` given, at start, to earlier runs still marked running: the process
/// ended without closing its run (killed, crashed, power lost).
pub const RUN_CRASHED: &str = "crashed";

/// A fill read back from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFill {
    /// Run that recorded it.
    pub run_id: i64,
    /// Order.
    pub client_id: ClientOrderId,
    /// Instrument symbol.
    pub symbol: String,
    /// Side.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Fee.
    pub fee: Qty,
    /// Clock time.
    pub ts_ns: u64,
}

/// An order that was still working when its run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredOrder {
    /// Run that placed it.
    pub run_id: i64,
    /// Order id.
    pub client_id: ClientOrderId,
    /// Instrument symbol.
    pub symbol: String,
    /// Side.
    pub side: Side,
    /// Last recorded state.
    pub status: OrderStatus,
    /// Limit price.
    pub price: Price,
    /// Ordered quantity.
    pub qty: Qty,
    /// Filled so far.
    pub filled: Qty,
}

/// What a store holds from earlier runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Every fill, in commit order.
    pub fills: Vec<StoredFill>,
    /// Orders not in a terminal state.
    pub open_orders: Vec<StoredOrder>,
    /// The highest client-order sequence ever recorded (0 if none).
    pub last_sequence: u32,
}

impl Recovered {
    /// The sequence the next client order id should carry.
    #[must_use]
    pub fn next_sequence(&self) -> u32 {
        self.last_sequence.saturating_add(1).max(1)
    }

    /// Positions rebuilt by applying every recovered fill of a configured instrument, in
    /// order. Fills of instruments no longer configured are counted in the second value.
    ///
    /// # Errors
    /// A fill the position arithmetic refuses (corrupt data), naming it.
    pub fn positions(&self, registry: &InstrumentRegistry) -> Result<(Vec<Position>, u64), String> {
        let mut positions: Vec<Position> = registry
            .iter()
            .map(|i| Position::new(i.index, i.kind))
            .collect();
        let mut unknown = 0;
        for f in &self.fills {
            let Some(i) = registry.iter().find(|i| i.symbol == f.symbol) else {
                unknown += 1;
                continue;
            };
            positions[i.index.get()]
                .apply_fill(f.side, f.price, f.qty, f.fee)
                .map_err(|e| format!("fill of order {} ({}): {e}", f.client_id.0, f.symbol))?;
        }
        Ok((positions, unknown))
    }
}

/// Text of a side, as stored.
#[must_use]
pub const fn side_text(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// A stored side.
#[must_use]
pub fn parse_side(text: &str) -> Option<Side> {
    match text {
        "buy" => Some(Side::Buy),
        "sell" => Some(Side::Sell),
        _ => None,
    }
}

/// Text of an order status, as stored.
#[must_use]
pub const fn status_text(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::PendingNew => "pending_new",
        OrderStatus::Open => "open",
        OrderStatus::PartiallyFilled => "partially_filled",
        OrderStatus::PendingCancel => "pending_cancel",
        OrderStatus::PendingAmend => "pending_amend",
        OrderStatus::Filled => "filled",
        OrderStatus::Canceled => "canceled",
        OrderStatus::Rejected => "rejected",
    }
}

/// A stored order status.
#[must_use]
pub fn parse_status(text: &str) -> Option<OrderStatus> {
    [
        OrderStatus::PendingNew,
        OrderStatus::Open,
        OrderStatus::PartiallyFilled,
        OrderStatus::PendingCancel,
        OrderStatus::PendingAmend,
        OrderStatus::Filled,
        OrderStatus::Canceled,
        OrderStatus::Rejected,
    ]
    .into_iter()
    .find(|s| status_text(*s) == text)
}

/// Statuses an order never leaves, as stored (for SQL `NOT IN`).
pub const TERMINAL_STATUSES: [&str; 3] = ["filled", "canceled", "rejected"];

/// Text of an order kind, as stored.
#[must_use]
pub const fn kind_text(kind: OrderKind) -> &'static str {
    match kind {
        OrderKind::Market => "market",
        OrderKind::Limit => "limit",
        OrderKind::StopMarket => "stop_market",
        OrderKind::StopLimit => "stop_limit",
    }
}

/// Text of a time in force, as stored.
#[must_use]
pub const fn tif_text(tif: TimeInForce) -> &'static str {
    match tif {
        TimeInForce::Gtc => "gtc",
        TimeInForce::Ioc => "ioc",
        TimeInForce::Fok => "fok",
    }
}

/// Exact decimal text of a money amount (what SQLite stores, and PostgreSQL parses as
/// `NUMERIC`).
#[must_use]
pub fn money_text(m: Money) -> String {
    m.to_decimal().normalize().to_string()
}

/// A clock time or counter as a signed 64-bit column value (saturating: times after 2262).
#[must_use]
pub fn i64_col(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Symbols of the registry, by index, for the stores' instrument columns.
#[must_use]
pub fn symbols(registry: &InstrumentRegistry) -> Vec<String> {
    registry.iter().map(|i| i.symbol.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip() {
        for s in [Side::Buy, Side::Sell] {
            assert_eq!(parse_side(side_text(s)), Some(s));
        }
        for st in [
            OrderStatus::PendingNew,
            OrderStatus::Open,
            OrderStatus::PartiallyFilled,
            OrderStatus::PendingCancel,
            OrderStatus::PendingAmend,
            OrderStatus::Filled,
            OrderStatus::Canceled,
            OrderStatus::Rejected,
        ] {
            assert_eq!(parse_status(status_text(st)), Some(st));
            assert_eq!(
                TERMINAL_STATUSES.contains(&status_text(st)),
                st.is_terminal(),
                "{st:?}"
            );
        }
        assert_eq!(parse_status("bogus"), None);
        assert_eq!(money_text(Money(12_345_000_000_000_000)), "1.2345");
        assert_eq!(money_text(Money(-1)), "-0.0000000000000001");
    }
}
