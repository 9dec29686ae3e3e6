//! Helpers shared by the store tests.
#![allow(dead_code)]

use std::time::Duration;

use tradeloop_engine::breakers::{BreakerAction, BreakerEvent, BreakerKind, BreakerState};
use tradeloop_engine::event::{ClientOrderId, Side};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{ContractKind, InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::order::{Order, OrderRequest, OrderStatus};
use tradeloop_engine::persist::{Outbox, Record, WriterConfig};
use tradeloop_engine::position::Position;

/// Pushes every record, waiting while the queue is full.
pub fn push_all(outbox: &Outbox, recs: &[Record]) {
    for r in recs {
        let mut r = *r;
        while let Err(back) = outbox.try_push(r) {
            r = back.0;
            std::thread::yield_now();
        }
    }
}

pub fn registry() -> InstrumentRegistry {
    let mut r = InstrumentRegistry::new();
    r.add(
        "sim",
        "BTCUSDT",
        Price::parse("0.01").unwrap(),
        Qty::parse("0.001").unwrap(),
        ContractKind::Spot,
    )
    .unwrap();
    r.add(
        "sim",
        "ETHUSDT",
        Price::parse("0.01").unwrap(),
        Qty::parse("0.001").unwrap(),
        ContractKind::Spot,
    )
    .unwrap();
    r
}

pub fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tradeloop-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("t.db")
}

/// A deterministic stream: orders, fills with their positions, denials and lane metrics.
pub fn records(seq0: u32, n: u32) -> (Vec<Record>, Vec<Position>) {
    let mut positions = vec![
        Position::new(InstrumentIndex(0), ContractKind::Spot),
        Position::new(InstrumentIndex(1), ContractKind::Spot),
    ];
    let mut out = Vec::new();
    for k in 0..n {
        let inst = InstrumentIndex((k % 2) as u16);
        let side = if k % 3 == 0 { Side::Sell } else { Side::Buy };
        let price = Price::from_units(100 + i64::from(k % 7));
        let qty = Qty::parse("0.125").unwrap();
        let id = ClientOrderId::new(seq0 + k, k % 16);
        let mut order = Order::new(
            id,
            OrderRequest::limit(inst, side, price, qty),
            u64::from(k),
        );
        order.status = if k % 5 == 0 {
            OrderStatus::Open
        } else {
            OrderStatus::Filled
        };
        out.push(Record::Order {
            order,
            ts_ns: u64::from(k),
        });
        if order.status == OrderStatus::Filled {
            let fee = Qty(1_000 + i64::from(k));
            let p = &mut positions[inst.get()];
            p.apply_fill(side, price, qty, fee).unwrap();
            out.push(Record::Fill {
                client_id: id,
                instrument: inst,
                side,
                price,
                qty,
                fee,
                maker: k % 2 == 0,
                strategy: tradeloop_engine::event::StrategyId::default(),
                ts_ns: u64::from(k),
            });
            out.push(Record::Position {
                position: *p,
                ts_ns: u64::from(k),
            });
        } else {
            out.push(Record::Denial {
                instrument: inst,
                code: 3,
                ts_ns: u64::from(k),
            });
        }
        if k % 100 == 99 {
            out.push(Record::Breaker {
                event: breaker_event(k),
                ts_ns: u64::from(k),
            });
        }
    }
    (out, positions)
}

/// The breaker transition `records` writes after order `k` (one per 100 orders).
pub fn breaker_event(k: u32) -> BreakerEvent {
    BreakerEvent {
        kind: BreakerKind::ALL[(k / 100) as usize % BreakerKind::COUNT],
        state: BreakerState::Open,
        action: BreakerAction::Flatten,
        value: -5 - i64::from(k),
        limit: 1_000_000_000,
    }
}

pub fn config() -> WriterConfig {
    WriterConfig {
        batch_size: 64,
        flush_interval: Duration::from_millis(5),
        retry_base: Duration::from_millis(5),
        retry_max: Duration::from_millis(50),
    }
}

/// An order record of a one-lot buy of instrument 0 with client sequence `seq`, for
/// `strategy`.
pub fn order_of_strategy(seq: u32, strategy: u8) -> Record {
    use tradeloop_engine::event::{ClientOrderId, StrategyId};
    use tradeloop_engine::order::{Order, OrderRequest};
    let req = OrderRequest {
        strategy: StrategyId(strategy),
        ..OrderRequest::limit(
            InstrumentIndex(0),
            Side::Buy,
            Price::from_units(100),
            Qty::from_units(1),
        )
    };
    Record::Order {
        order: Order::new(ClientOrderId::new(seq, 0), req, 5),
        ts_ns: 5,
    }
}
