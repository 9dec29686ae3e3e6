//! The PostgreSQL store against a real server: `TRADELOOP_TEST_PG_URL` names a database the
//! test may fill (`.ci/pg-up.sh` starts a throwaway one). Unset, the tests skip and say so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tradeloop_engine::persist::{run_writer, Outbox, Record, WriterConfig};
use tradeloop_store::postgres::PgStore;

mod common;
use common::{config, records, registry};

fn url() -> Option<String> {
    let url = std::env::var("TRADELOOP_TEST_PG_URL").ok();
    if url.is_none() {
        eprintln!(
            "skipped: TRADELOOP_TEST_PG_URL is not set (source .ci/pg-up.sh to start a server)"
        );
    }
    url
}

/// A fresh schema per test, so tests and runs do not see each other's rows.
fn fresh(url: &str, schema: &str) -> String {
    tradeloop_store::postgres::reset_schema(url, schema).unwrap()
}

#[test]
fn every_record_is_written_once_and_recovery_rebuilds_positions() {
    let Some(url) = url() else { return };
    let url = fresh(&url, "tl_roundtrip");
    let reg = registry();
    let mut store = PgStore::connect(&url, tradeloop_store::symbols(&reg)).unwrap();
    assert!(
        store.recover().unwrap().fills.is_empty(),
        "TC0 a new schema is empty"
    );
    let run = store.begin_run(1, "paper", "").unwrap();
    let (recs, positions) = records(1, 1000);
    let outbox = Outbox::new(4096);
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
    let dropped = outbox.telemetry_dropped();
    assert_eq!(
        report.written + dropped,
        recs.len() as u64,
        "TC1 every record written"
    );
    let fills = recs
        .iter()
        .filter(|r| matches!(r, Record::Fill { .. }))
        .count() as i64;
    assert_eq!(
        store.query_i64("SELECT COUNT(*) FROM fills").unwrap(),
        fills,
        "TC2 fills once each"
    );
    assert_eq!(
        store.query_i64("SELECT COUNT(*) FROM orders").unwrap(),
        1000,
        "TC3 orders"
    );
    assert_eq!(
        store.query_i64("SELECT COUNT(*) FROM positions").unwrap(),
        2,
        "TC4 positions"
    );
    assert_eq!(
        store
            .query_i64("SELECT COUNT(*) FROM breaker_events")
            .unwrap(),
        10,
        "TC4b breaker transitions"
    );
    let e = common::breaker_event(199);
    assert_eq!(
        store
            .query_text(
                "SELECT breaker || ' ' || state || ' ' || action || ' ' || value || ' ' || \
                 limit_value || ' ' || unit FROM breaker_events WHERE ts_ns = 199"
            )
            .unwrap(),
        format!(
            "{} open flatten {} {} {}",
            e.kind.name(),
            e.value,
            e.limit,
            e.kind.unit()
        ),
        "TC4c a transition row"
    );
    // NUMERIC, exact: the stored realised PnL is the engine's to the last digit.
    assert_eq!(
        store
            .query_text("SELECT realized::text FROM positions WHERE instrument = 'BTCUSDT'")
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap(),
        positions[0].realized.to_decimal(),
        "TC5 NUMERIC realised PnL is exact"
    );
    drop(store);
    let store = PgStore::connect(&url, tradeloop_store::symbols(&reg)).unwrap();
    let rec = store.recover().unwrap();
    assert_eq!(rec.fills.len() as i64, fills, "TC6 every fill recovered");
    assert!(rec.fills.iter().all(|f| f.run_id == run));
    assert_eq!(rec.open_orders.len(), 200, "TC7 orders still open");
    assert_eq!(rec.last_sequence, 1000, "TC8 highest sequence");
    let (rebuilt, unknown) = rec.positions(&reg).unwrap();
    assert_eq!(
        (rebuilt, unknown),
        (positions, 0),
        "TC9 positions rebuilt from fills"
    );
}

/// Records per second with the default batch settings (512 per transaction), printed for the
/// README; asserts only that everything arrived.
#[test]
fn sustained_write_rate() {
    let Some(url) = url() else { return };
    let url = fresh(&url, "tl_rate");
    let reg = registry();
    let mut store = PgStore::connect(&url, tradeloop_store::symbols(&reg)).unwrap();
    store.begin_run(1, "bench", "").unwrap();
    let (recs, _) = records(1, 40_000);
    let outbox = Outbox::new(1 << 17);
    common::push_all(&outbox, &recs);
    let done = AtomicBool::new(true);
    let started = Instant::now();
    let cfg = WriterConfig {
        batch_size: 512,
        flush_interval: Duration::from_millis(50),
        ..config()
    };
    let report = run_writer(
        &outbox,
        &mut store,
        cfg,
        || done.load(Ordering::Acquire),
        |e| panic!("write failed: {e}"),
    );
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(report.written, recs.len() as u64);
    eprintln!(
        "postgres: {} records in {secs:.3} s = {:.0} records/s ({} batches)",
        report.written,
        report.written as f64 / secs,
        report.batches
    );
}

/// Runs one query on its own connection and returns the rows' first two integer columns.
fn pairs(url: &str, sql: &str) -> Vec<(i64, i64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
            .query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, i64>(0), i64::from(r.get::<_, i16>(1))))
            .collect()
    })
}

#[test]
fn a_version_2_schema_gains_orders_strategy_and_orders_keep_their_strategy() {
    use common::order_of_strategy;
    use tradeloop_engine::event::StrategyId;
    use tradeloop_engine::persist::Store;
    let Some(url) = url() else { return };
    let url = fresh(&url, "tl_strategy");
    {
        // A version 2 schema: orders without the column.
        let _ = PgStore::connect(&url, vec![]).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            c.batch_execute("ALTER TABLE orders DROP COLUMN strategy; UPDATE meta SET value = '2' WHERE key = 'schema_version'")
                .await
                .unwrap();
        });
    }
    let mut store = PgStore::connect(&url, vec!["BTCUSDT".into()]).unwrap();
    store.begin_run(1, "paper", "").unwrap();
    store
        .write_batch(&[
            order_of_strategy(1, 0),
            order_of_strategy(2, 3),
            order_of_strategy(3, StrategyId::ENGINE.0),
        ])
        .unwrap();
    let rows = pairs(
        &url,
        "SELECT client_id >> 32, strategy FROM orders ORDER BY client_id",
    );
    assert_eq!(
        rows,
        [(1, 0), (2, 3), (3, 255)],
        "TC0 each order's strategy"
    );
}

/// Runs `sql` (statements without results) on `url`.
fn exec(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c.batch_execute(sql).await.unwrap();
    });
}

/// The rows of `sql`, every column cast to text by the query.
fn texts(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c.query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.get::<_, Option<String>>(i))
                    .collect()
            })
            .collect()
    })
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// As the SQLite test: a run's row from start to end, an unfinished run marked crashed by the
/// next start, and denials stored with their reason by name.
#[test]
fn runs_record_their_end_and_an_unfinished_run_is_marked_crashed() {
    use tradeloop_engine::persist::Store;
    let Some(url) = url() else { return };
    let url = fresh(&url, "tl_runs");
    let denial = |code| Record::Denial {
        instrument: tradeloop_engine::instrument::InstrumentIndex(0),
        code,
        ts_ns: 7,
    };
    {
        let mut store = PgStore::connect(&url, vec!["BTCUSDT".into()]).unwrap();
        store.begin_run(10, "paper", "abc").unwrap();
        store.write_batch(&[denial(8), denial(999)]).unwrap();
        store.end_run(20, "completed").unwrap();
        store.begin_run(30, "paper", "def").unwrap();
        assert_eq!(store.close_unfinished_runs().unwrap(), 0, "TC0");
    }
    let mut store = PgStore::connect(&url, vec!["BTCUSDT".into()]).unwrap();
    store.begin_run(40, "live", "def").unwrap();
    assert_eq!(store.close_unfinished_runs().unwrap(), 1, "TC1 run 2 found");
    store.end_run(50, "failed: x").unwrap();
    assert_eq!(
        texts(
            &url,
            "SELECT ended_unix_ns::text, config_hash, exit_status FROM runs ORDER BY run_id"
        ),
        [
            vec![s("20"), s("abc"), s("completed")],
            vec![None, s("def"), s("crashed")],
            vec![s("50"), s("def"), s("failed: x")],
        ],
        "TC2"
    );
    assert_eq!(
        texts(&url, "SELECT code::text, reason FROM denials ORDER BY code"),
        [
            vec![s("8"), s("position_above_max")],
            vec![s("999"), s("unknown")]
        ],
        "TC3"
    );
}

/// A version 3 schema gains the run's end and the denial reasons (old rows named from their
/// codes, old runs `unknown`).
#[test]
fn a_version_3_schema_gains_denial_reasons_and_run_ends() {
    let Some(url) = url() else { return };
    let url = fresh(&url, "tl_v3");
    drop(PgStore::connect(&url, vec![]).unwrap());
    exec(
        &url,
        "ALTER TABLE denials DROP COLUMN reason; \
         ALTER TABLE runs DROP COLUMN ended_unix_ns, DROP COLUMN config_hash, DROP COLUMN exit_status; \
         INSERT INTO runs (started_unix_ns, mode, version) VALUES (1, 'paper', '0.1.0'); \
         INSERT INTO denials (run_id, instrument, code, ts_ns) VALUES (1, 'BTCUSDT', 9, 5); \
         UPDATE meta SET value = '3' WHERE key = 'schema_version'",
    );
    let mut store = PgStore::connect(&url, vec![]).unwrap();
    assert_eq!(
        texts(&url, "SELECT reason FROM denials"),
        [vec![s("price_band")]],
        "TC0 named from its code"
    );
    assert_eq!(
        texts(&url, "SELECT exit_status FROM runs"),
        [vec![s("unknown")]],
        "TC1"
    );
    store.begin_run(2, "paper", "h").unwrap();
    assert_eq!(store.close_unfinished_runs().unwrap(), 0, "TC2");
    assert_eq!(
        texts(&url, "SELECT value FROM meta WHERE key = 'schema_version'"),
        [vec![s("4")]],
        "TC3"
    );
}
