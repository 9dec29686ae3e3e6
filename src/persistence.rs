//! `[persistence]` for `tradeloop run`: opens the configured store, recovers what earlier runs
//! left (positions rebuilt from the fills, the next client-order sequence, orders still
//! working), records the run, and runs the batching writer on its own thread. The engine only
//! pushes fixed-size records to the outbox; it never waits on storage.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use tradeloop_engine::clock::{Clock, LiveClock};
use tradeloop_engine::event::{Event, EventKind};
use tradeloop_engine::instrument::InstrumentRegistry;
use tradeloop_engine::lane::Lanes;
use tradeloop_engine::persist::{run_writer, Outbox, Record, Store, WriterConfig, WriterReport};
use tradeloop_engine::position::Position;
use tradeloop_store::postgres::PgStore;
use tradeloop_store::sqlite::SqliteStore;
use tradeloop_store::Recovered;

use crate::config::{Backend, Config};

/// The backends behind one type for the writer thread.
enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(Box<PgStore>),
}

/// An error of whichever backend is configured.
#[derive(Debug)]
struct AnyStoreError(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for AnyStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for AnyStoreError {}

impl AnyStore {
    /// Closes the run: its end time and exit status.
    fn end_run(&mut self, ended_unix_ns: u64, status: &str) -> Result<(), AnyStoreError> {
        match self {
            Self::Sqlite(s) => s
                .end_run(ended_unix_ns, status)
                .map_err(|e| AnyStoreError(e.into())),
            Self::Postgres(s) => s
                .end_run(ended_unix_ns, status)
                .map_err(|e| AnyStoreError(e.into())),
        }
    }
}

/// Now as Unix nanoseconds.
fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// SHA-256 (hex) of the configuration as TOML: which configuration a stored run ran with.
/// The configuration holds no secret (only the names of the variables that do).
#[must_use]
pub fn config_hash(config: &Config) -> String {
    use std::fmt::Write as _;
    let text = toml::to_string(config).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl Store for AnyStore {
    type Error = AnyStoreError;

    fn write_batch(&mut self, records: &[Record]) -> Result<(), Self::Error> {
        match self {
            Self::Sqlite(s) => s.write_batch(records).map_err(|e| AnyStoreError(e.into())),
            Self::Postgres(s) => s.write_batch(records).map_err(|e| AnyStoreError(e.into())),
        }
    }
}

/// A store that tells the engine when it fails and when it recovers: the first failed write
/// of an outage raises `StoreStatus { healthy: false }` on the CRITICAL lane, the first
/// success after it `StoreStatus { healthy: true }`.
struct Monitored<S> {
    store: S,
    lanes: Arc<Lanes>,
    clock: LiveClock,
    failures: u32,
}

impl<S: Store> Monitored<S> {
    fn alarm(&self, healthy: bool) {
        let now = self.clock.now_ns();
        let event = Event::new(
            now,
            0,
            EventKind::StoreStatus {
                healthy,
                failures: self.failures,
            },
        );
        if self.lanes.push_critical(event).is_err() {
            tracing::error!(healthy, "store status could not be queued (lanes closed)");
        }
    }
}

impl<S: Store> Store for Monitored<S> {
    type Error = S::Error;

    fn write_batch(&mut self, records: &[Record]) -> Result<(), Self::Error> {
        match self.store.write_batch(records) {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::warn!(
                        failures = self.failures,
                        "persistence recovered; held records written"
                    );
                    self.alarm(true);
                    self.failures = 0;
                }
                Ok(())
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                if self.failures == 1 {
                    self.alarm(false);
                }
                Err(e)
            }
        }
    }
}

/// What the store gave back at start.
#[derive(Debug)]
pub struct Restored {
    /// Positions rebuilt from every stored fill, one per configured instrument.
    pub positions: Vec<Position>,
    /// The sequence the next client order id carries.
    pub next_sequence: u32,
    /// Fills read back.
    pub fills: usize,
    /// Fills of instruments no longer configured (not applied).
    pub unknown_fills: u64,
    /// Orders of earlier runs that were still working (closed as cancelled: the simulated
    /// venue that held them is gone).
    pub orphaned_orders: usize,
    /// Earlier runs found unfinished (their process died) and marked `crashed`.
    pub crashed_runs: usize,
    /// This run's id in the store.
    pub run_id: i64,
}

/// The running writer.
pub struct Persistence {
    outbox: Arc<Outbox>,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
    thread: JoinHandle<(WriterReport, bool)>,
    /// The run's exit status, recorded when the writer stops.
    exit_status: Arc<std::sync::OnceLock<String>>,
    /// Where the records go (for messages).
    pub target: String,
}

/// Opens the store, recovers, records the run and starts the writer.
///
/// # Errors
/// If the store cannot be opened, recovery fails, or the thread cannot start.
pub fn start(
    config: &Config,
    registry: &InstrumentRegistry,
    started_unix_ns: u64,
    lanes: &Arc<Lanes>,
    clock: &LiveClock,
) -> anyhow::Result<(Persistence, Restored)> {
    let p = &config.persistence;
    let symbols = tradeloop_store::symbols(registry);
    let hash = config_hash(config);
    let (store, recovered, restored_run, target) = match p.backend {
        Backend::Sqlite => {
            let mut s = SqliteStore::open(&p.sqlite_path, symbols).with_context(|| {
                format!(
                    "persistence.sqlite_path: cannot open {}",
                    p.sqlite_path.display()
                )
            })?;
            let recovered = s.recover().context("recovering from the SQLite store")?;
            let run_id = s
                .begin_run(started_unix_ns, mode_text(config), &hash)
                .context("recording the run")?;
            let orphaned = s
                .close_orphaned_orders(started_unix_ns)
                .context("closing orders of earlier runs")?;
            let crashed = s
                .close_unfinished_runs()
                .context("closing runs that never ended")?;
            (
                AnyStore::Sqlite(s),
                recovered,
                (run_id, orphaned, crashed),
                format!("sqlite {}", p.sqlite_path.display()),
            )
        }
        Backend::Postgres => {
            let var = &p.postgres_url_env;
            let url = std::env::var(var).map_err(|_| {
                anyhow::anyhow!(
                    "persistence.postgres_url_env: environment variable ${var} is not set (it must hold postgres://user:password@host:port/db)"
                )
            })?;
            let shown = crate::config::redact_url(&url);
            let mut s = PgStore::connect(&url, symbols)
                .with_context(|| format!("persistence: cannot use PostgreSQL at {shown}"))?;
            let recovered = s.recover().context("recovering from PostgreSQL")?;
            let run_id = s
                .begin_run(started_unix_ns, mode_text(config), &hash)
                .context("recording the run")?;
            let orphaned = s
                .close_orphaned_orders(started_unix_ns)
                .context("closing orders of earlier runs")?;
            let crashed = s
                .close_unfinished_runs()
                .context("closing runs that never ended")?;
            (
                AnyStore::Postgres(Box::new(s)),
                recovered,
                (
                    run_id,
                    usize::try_from(orphaned).unwrap_or(usize::MAX),
                    usize::try_from(crashed).unwrap_or(usize::MAX),
                ),
                format!("postgres {shown}"),
            )
        }
    };
    let restored = restore(&recovered, registry, restored_run)?;
    let mut store = Monitored {
        store,
        lanes: Arc::clone(lanes),
        clock: clock.clone(),
        failures: 0,
    };
    let outbox = Arc::new(Outbox::new(p.queue_slots));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let writer_config = WriterConfig {
        batch_size: p.batch_size as usize,
        flush_interval: Duration::from_millis(p.flush_interval_ms),
        retry_base: Duration::from_millis(10),
        retry_max: Duration::from_secs(2),
    };
    let exit_status = Arc::new(std::sync::OnceLock::new());
    let thread = {
        let (outbox, stop, failures, target, exit_status) = (
            Arc::clone(&outbox),
            Arc::clone(&stop),
            Arc::clone(&failures),
            target.clone(),
            Arc::clone(&exit_status),
        );
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                let report = run_writer(
                    &outbox,
                    &mut store,
                    writer_config,
                    || stop.load(Ordering::Acquire),
                    |e| {
                        let n = failures.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::error!(store = %target, failures = n, error = %e,
                            "CRITICAL: persistence write failed; batch kept, retrying with backoff");
                    },
                );
                let status: &String = exit_status.get_or_init(|| "completed".to_owned());
                let closed = match store.store.end_run(unix_now_ns(), status) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(store = %target, error = %e,
                            "the run's end could not be recorded; the next start marks it crashed");
                        false
                    }
                };
                (report, closed)
            })
            .context("cannot start the writer thread")?
    };
    Ok((
        Persistence {
            outbox,
            stop,
            failures,
            thread,
            exit_status,
            target,
        },
        restored,
    ))
}

fn mode_text(config: &Config) -> &'static str {
    match config.mode {
        crate::config::Mode::Paper => "paper",
        crate::config::Mode::Live => "live",
    }
}

fn restore(
    recovered: &Recovered,
    registry: &InstrumentRegistry,
    (run_id, orphaned_orders, crashed_runs): (i64, usize, usize),
) -> anyhow::Result<Restored> {
    let (positions, unknown_fills) = recovered
        .positions(registry)
        .map_err(|e| anyhow::anyhow!("recovering positions: {e}"))?;
    Ok(Restored {
        positions,
        next_sequence: recovered.next_sequence(),
        fills: recovered.fills.len(),
        unknown_fills,
        orphaned_orders,
        crashed_runs,
        run_id,
    })
}

/// What the writer did by the end of the run.
#[derive(Clone, Copy, Debug)]
pub struct Flushed {
    /// Records the engine queued.
    pub queued: u64,
    /// Telemetry records dropped because the queue was full (by design).
    pub telemetry_dropped: u64,
    /// The writer's counters.
    pub report: WriterReport,
    /// Whether the run's end (time and exit status) was recorded in the store.
    pub run_closed: bool,
}

impl Persistence {
    /// The engine's end of the queue.
    #[must_use]
    pub fn outbox(&self) -> Arc<Outbox> {
        Arc::clone(&self.outbox)
    }

    /// Records waiting to be written.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// Failed write attempts so far.
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Stops the writer after it has written everything queued (call after the engine has
    /// shut down, so nothing more arrives), then records the run's end with `exit_status`
    /// (`completed`, or `failed: …`).
    ///
    /// # Errors
    /// If the writer thread panicked.
    pub fn finish(self, exit_status: &str) -> anyhow::Result<Flushed> {
        let _ = self.exit_status.set(exit_status.to_owned());
        self.stop.store(true, Ordering::Release);
        let (report, run_closed) = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
        Ok(Flushed {
            queued: self.outbox.pushed(),
            telemetry_dropped: self.outbox.telemetry_dropped(),
            report,
            run_closed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeloop_engine::event::ClientOrderId;
    use tradeloop_engine::fixed::{Price, Qty};
    use tradeloop_engine::instrument::InstrumentIndex;
    use tradeloop_engine::lane::{Lane, LaneConfig};

    /// A locked database raises `StoreStatus { healthy: false }` once on the CRITICAL lane,
    /// and the first successful write after it `healthy: true`.
    #[test]
    fn an_outage_and_its_recovery_reach_the_critical_lane_once_each() {
        let dir = std::env::temp_dir().join(format!("tradeloop-monitor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.db");
        let mut inner = SqliteStore::open(&path, vec!["BTCUSDT".into()]).unwrap();
        inner.begin_run(0, "test", "").unwrap();
        inner
            .connection()
            .busy_timeout(Duration::from_millis(1))
            .unwrap();
        let lanes = Arc::new(Lanes::new(LaneConfig::default()));
        let mut store = Monitored {
            store: AnyStore::Sqlite(inner),
            lanes: Arc::clone(&lanes),
            clock: LiveClock::new(),
            failures: 0,
        };
        let fill = Record::Fill {
            client_id: ClientOrderId::new(1, 0),
            instrument: InstrumentIndex(0),
            side: tradeloop_engine::event::Side::Buy,
            price: Price::from_units(100),
            qty: Qty::from_units(1),
            fee: Qty::ZERO,
            maker: false,
            strategy: tradeloop_engine::event::StrategyId::default(),
            ts_ns: 1,
        };
        let blocker = SqliteStore::open(&path, vec![]).unwrap();
        blocker
            .connection()
            .execute_batch("BEGIN IMMEDIATE")
            .unwrap();
        assert!(store.write_batch(&[fill]).is_err(), "TC1 locked");
        assert!(store.write_batch(&[fill]).is_err(), "TC2 still locked");
        let status = |e: Option<Event>| match e.map(|e| e.kind) {
            Some(EventKind::StoreStatus { healthy, failures }) => Some((healthy, failures)),
            _ => None,
        };
        assert_eq!(
            status(lanes.pop(Lane::Critical)),
            Some((false, 1)),
            "TC3 one alarm"
        );
        assert_eq!(
            status(lanes.pop(Lane::Critical)),
            None,
            "TC4 not one per failure"
        );
        blocker.connection().execute_batch("COMMIT").unwrap();
        store.write_batch(&[fill]).unwrap();
        assert_eq!(
            status(lanes.pop(Lane::Critical)),
            Some((true, 2)),
            "TC5 recovery after two failures"
        );
        store.write_batch(&[fill]).unwrap();
        assert!(
            lanes.pop(Lane::Critical).is_none(),
            "TC6 healthy writes are quiet"
        );
    }
}
