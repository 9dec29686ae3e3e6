//! The SQLite store on a real file: every record written once, recovery rebuilds positions
//! from the fills, and a locked database makes the writer retry without losing anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tradeloop_engine::persist::{run_writer, Outbox, Record};
use tradeloop_store::sqlite::SqliteStore;

mod common;
use common::{config, records, registry, temp_db};

fn count(store: &SqliteStore, table: &str) -> i64 {
    store
        .connection()
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn every_record_is_written_once_and_recovery_rebuilds_positions() {
    let path = temp_db("roundtrip");
    let reg = registry();
    let mut store = SqliteStore::open(&path, tradeloop_store::symbols(&reg)).unwrap();
    assert_eq!(
        store.recover().unwrap().fills.len(),
        0,
        "TC0 a new file is empty"
    );
    let run = store.begin_run(1, "paper", "").unwrap();
    let (recs, positions) = records(1, 1000);
    let outbox = Outbox::new(256);
    let done = AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            run_writer(
                &outbox,
                &mut store,
                config(),
                || done.load(Ordering::Acquire),
                |e| panic!("write failed: {e}"),
            )
        });
        common::push_all(&outbox, &recs);
        done.store(true, Ordering::Release);
        writer.join().unwrap()
    });
    // Telemetry (denials) may be dropped by design when the queue is full; counted.
    let dropped = outbox.telemetry_dropped();
    assert_eq!(
        report.written + dropped,
        recs.len() as u64,
        "TC1 writer wrote every record not dropped as telemetry"
    );
    let fills = recs
        .iter()
        .filter(|r| matches!(r, Record::Fill { .. }))
        .count();
    assert_eq!(
        count(&store, "fills") as usize,
        fills,
        "TC2 fills appended once each"
    );
    assert_eq!(count(&store, "orders"), 1000, "TC3 one row per order");
    assert_eq!(count(&store, "positions"), 2, "TC4 one row per instrument");
    assert_eq!(
        count(&store, "denials") as u64,
        200 - dropped,
        "TC5 denials"
    );
    assert_eq!(
        count(&store, "breaker_events"),
        10,
        "TC5b breaker transitions"
    );
    let row: (String, String, String, i64, i64, String, i64) = store
        .connection()
        .query_row(
            "SELECT breaker, state, action, value, limit_value, unit, ts_ns FROM breaker_events \
             WHERE ts_ns = 199",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .unwrap();
    let e = common::breaker_event(199);
    assert_eq!(
        row,
        (
            e.kind.name().to_owned(),
            "open".to_owned(),
            "flatten".to_owned(),
            e.value,
            e.limit,
            e.kind.unit().to_owned(),
            199
        ),
        "TC5c a transition row"
    );
    drop(store);

    // A new process: reopen, recover.
    let store = SqliteStore::open(&path, tradeloop_store::symbols(&reg)).unwrap();
    let rec = store.recover().unwrap();
    assert_eq!(rec.fills.len(), fills, "TC6 every fill recovered");
    assert!(rec.fills.iter().all(|f| f.run_id == run));
    assert_eq!(rec.open_orders.len(), 200, "TC7 orders still open");
    assert_eq!(rec.last_sequence, 1000, "TC8 highest sequence");
    assert_eq!(rec.next_sequence(), 1001);
    let (rebuilt, unknown) = rec.positions(&reg).unwrap();
    assert_eq!(unknown, 0);
    assert_eq!(
        rebuilt, positions,
        "TC9 positions rebuilt exactly from fills"
    );
    // The stored snapshot agrees with the rebuilt position, exactly (decimal text).
    let (qty, realized): (i64, String) = store
        .connection()
        .query_row(
            "SELECT qty_e8, realized FROM positions WHERE instrument = 'BTCUSDT'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(qty, positions[0].qty.raw(), "TC10 snapshot qty");
    assert_eq!(
        realized,
        tradeloop_store::money_text(positions[0].realized),
        "TC11 snapshot realised PnL is exact text"
    );
}

#[test]
fn a_locked_database_is_retried_and_nothing_is_lost() {
    let path = temp_db("locked");
    let reg = registry();
    let mut store = SqliteStore::open(&path, tradeloop_store::symbols(&reg)).unwrap();
    store.begin_run(1, "paper", "").unwrap();
    store
        .connection()
        .busy_timeout(Duration::from_millis(1))
        .unwrap();
    // Another connection holds the write lock: every commit fails with SQLITE_BUSY.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (recs, _) = records(1, 300);
    let outbox = Outbox::new(1024);
    for r in &recs {
        outbox.try_push(*r).unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let errors = std::sync::Mutex::new(0u64);
    let report = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            run_writer(
                &outbox,
                &mut store,
                config(),
                || done.load(Ordering::Acquire),
                |_| {
                    *errors.lock().unwrap() += 1;
                },
            )
        });
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            *errors.lock().unwrap() > 0,
            "TC1 the writer saw the failure"
        );
        blocker.execute_batch("COMMIT").unwrap();
        done.store(true, Ordering::Release);
        writer.join().unwrap()
    });
    assert!(report.failures > 0, "TC2 failures counted");
    assert_eq!(
        report.written,
        recs.len() as u64,
        "TC3 everything written after recovery"
    );
    let fills = recs
        .iter()
        .filter(|r| matches!(r, Record::Fill { .. }))
        .count();
    assert_eq!(
        count(&store, "fills") as usize,
        fills,
        "TC4 no fill lost or doubled"
    );
}

#[test]
fn a_version_1_database_migrates_to_the_current_schema() {
    let path = temp_db("migrate");
    {
        let store = SqliteStore::open(&path, vec![]).unwrap();
        store
            .connection()
            .execute_batch(
                "DROP TABLE breaker_events; UPDATE meta SET value = '1' WHERE key = 'schema_version'",
            )
            .unwrap();
    }
    let store = SqliteStore::open(&path, vec![]).unwrap();
    let version: String = store
        .connection()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, tradeloop_store::SCHEMA_VERSION.to_string());
    assert_eq!(count(&store, "breaker_events"), 0, "the new table exists");
}

#[test]
fn a_newer_schema_is_refused() {
    let path = temp_db("schema");
    {
        let store = SqliteStore::open(&path, vec![]).unwrap();
        store
            .connection()
            .execute(
                "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
                [],
            )
            .unwrap();
    }
    let err = SqliteStore::open(&path, vec![]).unwrap_err();
    assert!(err.to_string().contains("99"), "{err}");
}

#[test]
fn a_version_2_database_gains_orders_strategy_and_orders_keep_their_strategy() {
    use common::order_of_strategy;
    use tradeloop_engine::event::StrategyId;
    use tradeloop_engine::persist::Store;
    let path = temp_db("strategy");
    {
        // A version 2 file: orders without the column.
        let store = SqliteStore::open(&path, vec![]).unwrap();
        store
            .connection()
            .execute_batch(
                "ALTER TABLE orders DROP COLUMN strategy; UPDATE meta SET value = '2' WHERE key = 'schema_version'",
            )
            .unwrap();
    }
    let mut store = SqliteStore::open(&path, vec!["BTCUSDT".into()]).unwrap();
    store.begin_run(1, "paper", "").unwrap();
    store
        .write_batch(&[
            order_of_strategy(1, 0),
            order_of_strategy(2, 3),
            order_of_strategy(3, StrategyId::ENGINE.0),
        ])
        .unwrap();
    let rows: Vec<(i64, i64)> = store
        .connection()
        .prepare("SELECT client_id >> 32, strategy FROM orders ORDER BY client_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        [(1, 0), (2, 3), (3, 255)],
        "TC0 each order's strategy"
    );
    let version: String = store
        .connection()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, tradeloop_store::SCHEMA_VERSION.to_string(), "TC1");
}

fn denial(code: u16) -> Record {
    Record::Denial {
        instrument: tradeloop_engine::instrument::InstrumentIndex(0),
        code,
        ts_ns: 7,
    }
}

/// A run's row from start to end, and an unfinished run found by the next start.
#[test]
fn runs_record_their_end_and_an_unfinished_run_is_marked_crashed() {
    use tradeloop_engine::persist::Store;
    let path = temp_db("runs");
    let runs = |store: &SqliteStore| -> Vec<(i64, Option<i64>, String, String)> {
        store
            .connection()
            .prepare(
                "SELECT run_id, ended_unix_ns, config_hash, exit_status FROM runs ORDER BY run_id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    {
        // Run 1 ends cleanly; run 2 never ends (its process dies).
        let mut store = SqliteStore::open(&path, vec!["BTCUSDT".into()]).unwrap();
        store.begin_run(10, "paper", "abc").unwrap();
        assert_eq!(
            runs(&store),
            [(1, None, "abc".to_owned(), "running".to_owned())],
            "TC0 a started run is running"
        );
        store
            .write_batch(&[denial(8), denial(0), denial(999)])
            .unwrap();
        store.end_run(20, "completed").unwrap();
        store.begin_run(30, "paper", "def").unwrap();
        assert_eq!(store.close_unfinished_runs().unwrap(), 0, "TC1 run 1 ended");
    }
    let mut store = SqliteStore::open(&path, vec!["BTCUSDT".into()]).unwrap();
    store.begin_run(40, "live", "def").unwrap();
    assert_eq!(store.close_unfinished_runs().unwrap(), 1, "TC2 run 2 found");
    store
        .end_run(50, "failed: the engine thread panicked")
        .unwrap();
    assert_eq!(
        runs(&store),
        [
            (1, Some(20), "abc".to_owned(), "completed".to_owned()),
            (2, None, "def".to_owned(), "crashed".to_owned()),
            (
                3,
                Some(50),
                "def".to_owned(),
                "failed: the engine thread panicked".to_owned()
            ),
        ],
        "TC3"
    );
    let reasons: Vec<(i64, String)> = store
        .connection()
        .prepare("SELECT code, reason FROM denials ORDER BY rowid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        reasons,
        [
            (8, "position_above_max".to_owned()),
            (0, "halted".to_owned()),
            (999, "unknown".to_owned())
        ],
        "TC4 denials carry their reason by name"
    );
}

/// A version 3 file: runs without their end, denials without their reason. Opening it adds
/// the columns, names the old denials from their codes, and leaves old runs `unknown`.
#[test]
fn a_version_3_database_gains_denial_reasons_and_run_ends() {
    let path = temp_db("v3");
    {
        let store = SqliteStore::open(&path, vec![]).unwrap();
        store
            .connection()
            .execute_batch(
                "ALTER TABLE denials DROP COLUMN reason; \
                 ALTER TABLE runs DROP COLUMN ended_unix_ns; \
                 ALTER TABLE runs DROP COLUMN config_hash; \
                 ALTER TABLE runs DROP COLUMN exit_status; \
                 INSERT INTO runs (started_unix_ns, mode, version) VALUES (1, 'paper', '0.1.0'); \
                 INSERT INTO denials (run_id, instrument, code, ts_ns) VALUES (1, 'BTCUSDT', 9, 5); \
                 UPDATE meta SET value = '3' WHERE key = 'schema_version'",
            )
            .unwrap();
    }
    let mut store = SqliteStore::open(&path, vec![]).unwrap();
    let c = store.connection();
    let reason: String = c
        .query_row("SELECT reason FROM denials", [], |r| r.get(0))
        .unwrap();
    assert_eq!(reason, "price_band", "TC0 named from its code");
    let status: String = c
        .query_row("SELECT exit_status FROM runs WHERE run_id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "unknown", "TC1 an old run's status is not guessed");
    store.begin_run(2, "paper", "h").unwrap();
    assert_eq!(
        store.close_unfinished_runs().unwrap(),
        0,
        "TC2 an unknown run is not called crashed"
    );
    let version: String = store
        .connection()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, "4", "TC3");
}
