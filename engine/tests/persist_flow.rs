//! The engine → writer path: back-pressure when the outbox is full, and a threaded run (engine
//! thread, producer thread, writer thread) in which every fill reaches the store exactly once.
#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "prices are written as units_cents"
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{registry, trade, AllowAll, Answer, LaneGateway, BTC};
use tradeloop_engine::api::{Context, Deny, SubmitError, TradingState};
use tradeloop_engine::clock::LiveClock;
use tradeloop_engine::clock::SimClock;
use tradeloop_engine::event::Side;
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::lane::{LaneConfig, Lanes};
use tradeloop_engine::order::{OrderRequest, OrderStatus};
use tradeloop_engine::persist::{run_writer, Outbox, Record, Store, WriterConfig};
use tradeloop_engine::strategies::{MaCross, MaCrossConfig};

#[derive(Default)]
struct MemStore {
    rows: Vec<Record>,
}

#[derive(Debug, thiserror::Error)]
#[error("never fails")]
struct Never;

impl Store for MemStore {
    type Error = Never;
    fn write_batch(&mut self, records: &[Record]) -> Result<(), Never> {
        self.rows.extend_from_slice(records);
        Ok(())
    }
}

type FillingEngine = Engine<MaCross, AllowAll, LaneGateway, SimClock>;

/// An engine whose venue fills every order at once, recording into `outbox`.
fn filling_engine(outbox: &Arc<Outbox>) -> FillingEngine {
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let gw = LaneGateway::new(Arc::clone(&lanes), Answer::Fill);
    Engine::new(
        LoopConfig::default(),
        lanes,
        registry(),
        MaCross::new(
            &MaCrossConfig::default(),
            BTC,
            Price::parse("0.01").unwrap(),
        ),
        AllowAll,
        gw,
        SimClock::new(1),
    )
    .with_outbox(Arc::clone(outbox))
}

#[test]
fn record_kinds_mask_what_reaches_the_outbox() {
    for (kinds, want) in [
        (
            u8::MAX,
            vec![
                Record::ORDER,
                Record::ORDER,
                Record::ORDER,
                Record::FILL,
                Record::POSITION,
            ],
        ),
        (Record::FILL | Record::BREAKER, vec![Record::FILL]),
    ] {
        let outbox = Arc::new(Outbox::new(64));
        let mut e = filling_engine(&outbox).with_record_kinds(kinds);
        let req = OrderRequest::limit(BTC, Side::Buy, Price::from_units(100), Qty::from_units(1));
        e.core_mut().submit(req).unwrap();
        e.poll();
        let mut got = Vec::new();
        outbox.drain_into(&mut got, usize::MAX);
        let bits: Vec<u8> = got.iter().map(Record::kind_bit).collect();
        assert_eq!(bits, want, "mask {kinds:#x}");
    }
}

#[test]
fn full_outbox_halts_new_orders_until_the_writer_catches_up() {
    let outbox = Arc::new(Outbox::new(4));
    let mut e = filling_engine(&outbox);
    let req = OrderRequest::limit(BTC, Side::Buy, Price::from_units(100), Qty::from_units(1));
    e.core_mut().submit(req).unwrap();
    e.poll(); // ack + fill: order x3, fill, position = 5 essential records into 4 slots
    assert_eq!(outbox.len(), 4);
    assert_eq!(
        e.records_held(),
        1,
        "the fifth essential record is spilled, not dropped"
    );
    assert_eq!(
        e.core_mut().submit(req),
        Err(SubmitError::Denied(Deny::Backpressure))
    );
    assert_eq!(
        outbox.telemetry_dropped(),
        1,
        "the denial record itself is telemetry and was dropped"
    );
    let mut batch = Vec::new();
    outbox.drain_into(&mut batch, 4);
    e.poll();
    assert_eq!(e.records_held(), 0, "spill flushed on the next turn");
    assert!(e.core_mut().submit(req).is_ok(), "orders resume");
    outbox.drain_into(&mut batch, 4);
    let kinds: Vec<&str> = batch
        .iter()
        .map(|r| match r {
            Record::Order { order, .. } => match order.status {
                OrderStatus::PendingNew => "new",
                OrderStatus::Open => "open",
                OrderStatus::Filled => "filled",
                _ => "other",
            },
            Record::Fill { .. } => "fill",
            Record::Position { .. } => "position",
            _ => "telemetry",
        })
        .collect();
    assert_eq!(
        kinds,
        ["new", "open", "filled", "fill", "position", "new"],
        "in order, none lost"
    );
    assert_eq!(e.counters().records_lost, 0);
}

#[test]
fn threaded_run_persists_every_fill_exactly_once() {
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let outbox = Arc::new(Outbox::new(256));
    let clock = LiveClock::new();
    let gw = LaneGateway::new(Arc::clone(&lanes), Answer::Fill);
    let cfg = MaCrossConfig {
        fast: 5,
        slow: 20,
        ..MaCrossConfig::default()
    };
    let strategy = MaCross::new(&cfg, BTC, Price::parse("0.01").unwrap());
    let engine = Engine::new(
        LoopConfig::default(),
        Arc::clone(&lanes),
        registry(),
        strategy,
        AllowAll,
        gw,
        clock.clone(),
    )
    .with_outbox(Arc::clone(&outbox));
    let stop_engine = Arc::new(AtomicBool::new(false));
    let engine_done = Arc::new(AtomicBool::new(false));

    let engine_thread = {
        let (stop, done) = (Arc::clone(&stop_engine), Arc::clone(&engine_done));
        std::thread::spawn(move || {
            let mut engine = engine;
            let report = engine.run(&stop);
            done.store(true, Ordering::Release);
            report
        })
    };
    let writer_thread = {
        let (outbox, done) = (Arc::clone(&outbox), Arc::clone(&engine_done));
        std::thread::spawn(move || {
            let mut store = MemStore::default();
            let cfg = WriterConfig {
                batch_size: 64,
                flush_interval: Duration::from_millis(2),
                retry_base: Duration::from_millis(1),
                retry_max: Duration::from_millis(10),
            };
            let report = run_writer(
                &outbox,
                &mut store,
                cfg,
                || done.load(Ordering::Acquire),
                |_| {},
            );
            (store, report)
        })
    };
    // Producer: a price path with long trends so the EMAs cross repeatedly.
    for i in 0..60_000u64 {
        let leg = (i / 2_000) as i64;
        let within = (i % 2_000) as i64;
        let price = 60_000_00 + if leg % 2 == 0 { within } else { 2_000 - within };
        lanes.push_normal(trade(i, price, i));
        if i % 64 == 0 {
            std::thread::yield_now();
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    stop_engine.store(true, Ordering::Release);
    let report = engine_thread.join().unwrap();
    let (store, writer) = writer_thread.join().unwrap();

    let fills: Vec<&Record> = store
        .rows
        .iter()
        .filter(|r| matches!(r, Record::Fill { .. }))
        .collect();
    assert!(
        report.counters.fills > 5,
        "the strategy traded: {} fills",
        report.counters.fills
    );
    assert_eq!(
        fills.len() as u64,
        report.counters.fills,
        "every fill persisted"
    );
    let mut ids: Vec<u64> = fills
        .iter()
        .map(|r| {
            if let Record::Fill { client_id, .. } = r {
                client_id.0
            } else {
                0
            }
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), fills.len(), "each fill exactly once");
    let signed: i64 = fills
        .iter()
        .map(|r| {
            if let Record::Fill { side, qty, .. } = r {
                qty.raw() * side.sign()
            } else {
                0
            }
        })
        .sum();
    assert_eq!(
        Qty(signed),
        report.positions[0].qty,
        "persisted fills sum to the final position"
    );
    assert_eq!(report.counters.records_lost, 0);
    assert_eq!(writer.written as usize, store.rows.len());
    assert_eq!(
        outbox.pushed() as usize,
        store.rows.len(),
        "everything queued was written"
    );
}

/// The example strategy follows the trading state: it sends nothing while halted, and while
/// reducing a signal on the other side only closes the position.
#[test]
fn ma_cross_follows_the_trading_state() {
    let outbox = Arc::new(Outbox::new(1 << 14));
    let mut e = filling_engine(&outbox);
    let target = MaCrossConfig::default().target_qty;
    let mut ns = 0u64;
    let mut price = 6_000_000i64;
    let mut walk = |e: &mut FillingEngine, steps: u32, step: i64| {
        for _ in 0..steps {
            ns += 1;
            price += step;
            e.handle_market(trade(ns, price, ns));
            e.poll();
        }
    };
    let position = |e: &mut FillingEngine| e.core_mut().position(BTC).qty;
    let denied = |e: &FillingEngine| e.counters().denials.iter().sum::<u64>();
    walk(&mut e, 200, 1);
    assert_eq!(position(&mut e), target, "TC0 a rising leg goes long");
    let sent = e.counters().orders_sent;

    e.set_trading_state(TradingState::Halted);
    walk(&mut e, 300, -2);
    assert_eq!(
        e.counters().orders_sent,
        sent,
        "TC1 nothing sent while halted"
    );
    assert_eq!(denied(&e), 0, "TC1 nothing for risk to deny");
    assert_eq!(position(&mut e), target);

    e.set_trading_state(TradingState::Reducing);
    walk(&mut e, 50, -2);
    assert_eq!(
        position(&mut e),
        Qty::ZERO,
        "TC2 reducing closes, stops at flat"
    );
    assert_eq!(e.counters().orders_sent, sent + 1, "TC2 one closing order");
    assert_eq!(denied(&e), 0);

    e.set_trading_state(TradingState::Active);
    walk(&mut e, 50, -2);
    assert_eq!(position(&mut e), -target, "TC3 active again: short");
}
