//! The outbound side of persistence: fixed-size records, the bounded queue from the engine to
//! the writer thread with its overflow policy, the `Store` trait backends implement, and the
//! batching writer loop. Hot path: only [`Outbox::try_push`] and the engine's [`Spill`] run on
//! the engine thread (no allocation, no lock); the writer runs on its own thread.
//!
//! | record | when the queue is full |
//! |---|---|
//! | order updates, fills, position snapshots (essential) | kept in the engine's preallocated spill ring and retried every loop turn; while anything is spilled, new orders are denied (`Deny::Backpressure`) |
//! | denials, lane metrics (telemetry) | dropped (newest) and counted |

use core::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::event::{ClientOrderId, Side};
use crate::fixed::{Price, Qty};
use crate::instrument::InstrumentIndex;
use crate::lane::ring::Ring;
use crate::lane::{Full, Lane};
use crate::metrics::Percentiles;
use crate::order::Order;
use crate::position::Position;

/// One row for the store. `Copy`, fixed size, no heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// An order after a state change (essential).
    Order {
        /// The order as it is now.
        order: Order,
        /// Clock time.
        ts_ns: u64,
    },
    /// An execution (essential).
    Fill {
        /// Order.
        client_id: ClientOrderId,
        /// Instrument.
        instrument: InstrumentIndex,
        /// Side of the order.
        side: Side,
        /// Price.
        price: Price,
        /// Quantity.
        qty: Qty,
        /// Fee.
        fee: Qty,
        /// Maker or taker.
        maker: bool,
        /// The strategy whose order filled.
        strategy: crate::event::StrategyId,
        /// Clock time applied.
        ts_ns: u64,
    },
    /// A position after a fill (essential).
    Position {
        /// The position.
        position: Position,
        /// Clock time.
        ts_ns: u64,
    },
    /// An order denied before the gateway (telemetry).
    Denial {
        /// Instrument.
        instrument: InstrumentIndex,
        /// `Deny::code`.
        code: u16,
        /// Clock time.
        ts_ns: u64,
    },
    /// A circuit breaker changed state (essential).
    Breaker {
        /// The transition.
        event: crate::breakers::BreakerEvent,
        /// Clock time.
        ts_ns: u64,
    },
    /// One lane's latency at a publication (telemetry).
    LaneMetrics {
        /// Lane.
        lane: Lane,
        /// Queue wait.
        wait: Percentiles,
        /// Service time.
        service: Percentiles,
        /// Clock time.
        ts_ns: u64,
    },
}

impl Record {
    /// [`Self::kind_bit`] of `Order` records.
    pub const ORDER: u8 = 1;
    /// [`Self::kind_bit`] of `Fill` records.
    pub const FILL: u8 = 2;
    /// [`Self::kind_bit`] of `Position` records.
    pub const POSITION: u8 = 4;
    /// [`Self::kind_bit`] of `Denial` records.
    pub const DENIAL: u8 = 8;
    /// [`Self::kind_bit`] of `Breaker` records.
    pub const BREAKER: u8 = 16;
    /// [`Self::kind_bit`] of `LaneMetrics` records.
    pub const LANE_METRICS: u8 = 32;

    /// One bit per kind of record, for the masks of `Engine::with_record_kinds`.
    #[must_use]
    pub const fn kind_bit(&self) -> u8 {
        match self {
            Self::Order { .. } => Self::ORDER,
            Self::Fill { .. } => Self::FILL,
            Self::Position { .. } => Self::POSITION,
            Self::Denial { .. } => Self::DENIAL,
            Self::Breaker { .. } => Self::BREAKER,
            Self::LaneMetrics { .. } => Self::LANE_METRICS,
        }
    }

    /// `true` for records that must never be lost (orders, fills, positions, breaker
    /// transitions).
    #[must_use]
    pub const fn is_essential(&self) -> bool {
        matches!(
            self,
            Self::Order { .. } | Self::Fill { .. } | Self::Position { .. } | Self::Breaker { .. }
        )
    }
}

/// The bounded queue from the engine thread to the writer thread: the lanes' ring, so the
/// engine's push never waits for a writer thread preempted in the middle of a pop (a slot not
/// yet released reads as full, and the record goes to the spill).
///
/// # Allocation
/// Allocates only in [`Outbox::new`].
#[derive(Debug)]
pub struct Outbox {
    queue: Ring<Record>,
    pushed: AtomicU64,
    telemetry_dropped: AtomicU64,
}

impl Outbox {
    /// An outbox of `slots` records, rounded up to a power of two of at least 2
    /// (`persistence.queue_slots` is validated as one).
    #[must_use]
    pub fn new(slots: usize) -> Self {
        Self {
            queue: Ring::new(slots.max(2).next_power_of_two()),
            pushed: AtomicU64::new(0),
            telemetry_dropped: AtomicU64::new(0),
        }
    }

    /// Queues a record. A telemetry record that does not fit is dropped and counted.
    ///
    /// # Errors
    /// [`Full`] with an essential record that does not fit: the caller must keep it.
    #[inline]
    #[allow(
        clippy::result_large_err,
        reason = "the record comes back by value; boxing it would allocate on the hot path"
    )]
    pub fn try_push(&self, record: Record) -> Result<(), Full<Record>> {
        match self.queue.push(record) {
            Ok(()) => {
                self.pushed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(r) if r.is_essential() => Err(Full(r)),
            Err(_) => {
                self.telemetry_dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Writer side: moves up to `max` queued records into `batch`.
    pub fn drain_into(&self, batch: &mut Vec<Record>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(r) = self.queue.pop() else { break };
            batch.push(r);
            n += 1;
        }
        n
    }

    /// Records accepted so far.
    #[must_use]
    pub fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }

    /// Telemetry records dropped because the queue was full.
    #[must_use]
    pub fn telemetry_dropped(&self) -> u64 {
        self.telemetry_dropped.load(Ordering::Relaxed)
    }

    /// Records queued now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// `true` if nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The engine's preallocated overflow for essential records the outbox could not take. FIFO,
/// so records reach the store in the order they happened.
///
/// # Allocation
/// Allocates only in [`Spill::new`].
#[derive(Debug)]
pub struct Spill {
    ring: Box<[Option<Record>]>,
    head: usize,
    len: usize,
    lost: u64,
}

impl Spill {
    /// A spill ring of `slots` records.
    ///
    /// # Panics
    /// If `slots` is zero.
    #[must_use]
    pub fn new(slots: usize) -> Self {
        assert!(slots > 0, "spill needs at least one slot");
        Self {
            ring: vec![None; slots].into_boxed_slice(),
            head: 0,
            len: 0,
            lost: 0,
        }
    }

    /// Queues `record` to the outbox: an essential record behind anything already spilled;
    /// a telemetry record straight to the outbox, where it is dropped and counted if full
    /// (telemetry never takes spill space from fills).
    #[inline]
    pub fn send(&mut self, outbox: &Outbox, record: Record) {
        if !record.is_essential() {
            let accepted = outbox.try_push(record);
            debug_assert!(
                accepted.is_ok(),
                "Invariant: telemetry is never handed back"
            );
            return;
        }
        if self.len == 0 {
            match outbox.try_push(record) {
                Ok(()) => return,
                Err(Full(r)) => return self.keep(r),
            }
        }
        self.keep(record);
        self.flush(outbox);
    }

    fn keep(&mut self, record: Record) {
        if self.len == self.ring.len() {
            // Only reachable if the writer is stalled for longer than the spill covers while
            // working orders keep filling (new orders are already denied). Counted as an alarm.
            self.lost += 1;
            return;
        }
        let tail = (self.head + self.len) % self.ring.len();
        self.ring[tail] = Some(record);
        self.len += 1;
    }

    /// Moves spilled records to the outbox while it has room. Returns how many are still held.
    #[inline]
    pub fn flush(&mut self, outbox: &Outbox) -> usize {
        while self.len > 0 {
            let Some(r) = self.ring[self.head] else {
                debug_assert!(false, "Invariant: slots within len hold a record");
                break;
            };
            if outbox.try_push(r).is_err() {
                break;
            }
            self.ring[self.head] = None;
            self.head = (self.head + 1) % self.ring.len();
            self.len -= 1;
        }
        self.len
    }

    /// Essential records held back now.
    #[inline]
    #[must_use]
    pub fn held(&self) -> usize {
        self.len
    }

    /// Essential records lost because the spill itself was full.
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

/// A storage backend. The writer thread calls it; the engine never does.
pub trait Store {
    /// Backend error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Writes a batch of records in one transaction: all or nothing.
    ///
    /// # Errors
    /// If the batch could not be committed; the writer keeps it and retries.
    fn write_batch(&mut self, records: &[Record]) -> Result<(), Self::Error>;
}

/// Writer settings (from `[persistence]`).
#[derive(Clone, Copy, Debug)]
pub struct WriterConfig {
    /// Records per transaction at most.
    pub batch_size: usize,
    /// Longest a record waits before its batch is written.
    pub flush_interval: Duration,
    /// First retry delay after a failed write; doubles up to `retry_max`.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

/// What the writer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterReport {
    /// Records committed.
    pub written: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Failed write attempts (each retried with the same batch).
    pub failures: u64,
}

/// Runs the writer until `stop()` returns true and the outbox is empty: batches by size or
/// interval, one transaction per batch; a failed batch is kept and retried with exponential
/// backoff, so nothing is lost while the store is down (the engine's spill and back-pressure
/// cover the queue meanwhile). `on_error` sees every failure (log it, raise an alarm).
pub fn run_writer<S: Store>(
    outbox: &Outbox,
    store: &mut S,
    config: WriterConfig,
    stop: impl Fn() -> bool,
    mut on_error: impl FnMut(&S::Error),
) -> WriterReport {
    let batch_size = config.batch_size.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let mut report = WriterReport::default();
    let mut oldest: Option<Instant> = None;
    let mut retry = config.retry_base;
    loop {
        let stopping = stop();
        let room = batch_size - batch.len();
        outbox.drain_into(&mut batch, room);
        if !batch.is_empty() && oldest.is_none() {
            oldest = Some(Instant::now());
        }
        let due = batch.len() >= batch_size
            || oldest.is_some_and(|t| t.elapsed() >= config.flush_interval)
            || (stopping && !batch.is_empty());
        if due {
            match store.write_batch(&batch) {
                Ok(()) => {
                    report.written += batch.len() as u64;
                    report.batches += 1;
                    batch.clear();
                    oldest = None;
                    retry = config.retry_base;
                }
                Err(e) => {
                    report.failures += 1;
                    on_error(&e);
                    std::thread::sleep(retry);
                    retry = (retry * 2).min(config.retry_max);
                }
            }
            continue;
        }
        if stopping && batch.is_empty() && outbox.is_empty() {
            return report;
        }
        if batch.len() < batch_size {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ClientOrderId;

    fn fill(n: u64) -> Record {
        Record::Fill {
            client_id: ClientOrderId(n),
            instrument: InstrumentIndex(0),
            side: Side::Buy,
            price: Price::from_units(1),
            qty: Qty::from_units(1),
            fee: Qty::ZERO,
            maker: false,
            strategy: crate::event::StrategyId::default(),
            ts_ns: n,
        }
    }

    fn denial(n: u64) -> Record {
        Record::Denial {
            instrument: InstrumentIndex(0),
            code: 1,
            ts_ns: n,
        }
    }

    #[test]
    fn telemetry_drops_newest_essential_comes_back() {
        let out = Outbox::new(2);
        out.try_push(fill(1)).unwrap();
        out.try_push(denial(2)).unwrap();
        assert_eq!(
            out.try_push(denial(3)),
            Ok(()),
            "telemetry never blocks the engine"
        );
        assert_eq!(out.telemetry_dropped(), 1);
        assert_eq!(
            out.try_push(fill(4)),
            Err(Full(fill(4))),
            "essential handed back"
        );
    }

    #[test]
    fn spill_keeps_order_and_loses_nothing() {
        let out = Outbox::new(2);
        let mut spill = Spill::new(8);
        for n in 0..6 {
            spill.send(&out, fill(n));
        }
        assert_eq!((out.len(), spill.held()), (2, 4));
        let mut got = Vec::new();
        while got.len() < 6 {
            out.drain_into(&mut got, 1);
            spill.flush(&out);
        }
        let ids: Vec<u64> = got
            .iter()
            .map(|r| {
                if let Record::Fill { ts_ns, .. } = r {
                    *ts_ns
                } else {
                    99
                }
            })
            .collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4, 5], "FIFO across queue and spill");
        assert_eq!((spill.held(), spill.lost()), (0, 0));
    }

    #[test]
    fn telemetry_bypasses_the_spill() {
        let out = Outbox::new(2);
        let mut spill = Spill::new(4);
        spill.send(&out, fill(0));
        spill.send(&out, fill(1));
        spill.send(&out, fill(2));
        spill.send(&out, denial(3));
        assert_eq!((spill.held(), out.telemetry_dropped()), (1, 1));
    }

    #[test]
    fn spill_counts_loss_only_when_itself_full() {
        let out = Outbox::new(2);
        let mut spill = Spill::new(2);
        for n in 0..6 {
            spill.send(&out, fill(n));
        }
        assert_eq!((out.len(), spill.held(), spill.lost()), (2, 2, 2));
    }

    #[derive(Default)]
    struct FlakyStore {
        rows: Vec<Record>,
        fail_next: u32,
        batches: Vec<usize>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("store unavailable")]
    struct Down;

    impl Store for FlakyStore {
        type Error = Down;
        fn write_batch(&mut self, records: &[Record]) -> Result<(), Down> {
            if self.fail_next > 0 {
                self.fail_next -= 1;
                return Err(Down);
            }
            self.rows.extend_from_slice(records);
            self.batches.push(records.len());
            Ok(())
        }
    }

    #[test]
    fn writer_batches_retries_and_flushes_everything_on_stop() {
        let out = Outbox::new(1024);
        for n in 0..250 {
            out.try_push(fill(n)).unwrap();
        }
        let mut store = FlakyStore {
            fail_next: 2,
            ..FlakyStore::default()
        };
        let mut errors = 0;
        let cfg = WriterConfig {
            batch_size: 100,
            flush_interval: Duration::from_millis(5),
            retry_base: Duration::from_millis(1),
            retry_max: Duration::from_millis(4),
        };
        let report = run_writer(&out, &mut store, cfg, || true, |_| errors += 1);
        assert_eq!(
            report,
            WriterReport {
                written: 250,
                batches: 3,
                failures: 2
            }
        );
        assert_eq!(errors, 2);
        assert_eq!(
            store.batches,
            vec![100, 100, 50],
            "size-bounded batches, remainder on stop"
        );
        assert_eq!(store.rows.len(), 250, "nothing lost across failures");
        assert!(
            store
                .rows
                .iter()
                .enumerate()
                .all(|(i, r)| *r == fill(i as u64)),
            "order kept"
        );
    }
}
