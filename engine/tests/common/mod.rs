//! Test doubles for the engine's ports: a gateway that answers through the real HIGH lane, an
//! allow-all risk gate, and event builders.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::sync::Arc;

use tradeloop_engine::api::{Deny, Gateway, GatewayError, RiskContext, RiskGate};
use tradeloop_engine::event::{BookDelta, DeltaFlags, Event, EventKind, OrderReport, Side, Trade};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{ContractKind, InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::lane::Lanes;
use tradeloop_engine::order::{Order, OrderRequest};

/// How the test venue answers a new order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Answer {
    /// Accept, then fill completely at the order price.
    Fill,
    /// Accept only (the order rests).
    AckOnly,
    /// Refuse to take it.
    Refuse,
}

/// A venue stand-in that reports back through the HIGH lane, as a real gateway thread would.
pub struct LaneGateway {
    pub lanes: Arc<Lanes>,
    pub answer: Answer,
    pub submitted: u64,
    pub cancels: u64,
    pub fee: Qty,
}

impl LaneGateway {
    pub fn new(lanes: Arc<Lanes>, answer: Answer) -> Self {
        Self {
            lanes,
            answer,
            submitted: 0,
            cancels: 0,
            fee: Qty::ZERO,
        }
    }
}

impl Gateway for LaneGateway {
    fn submit(
        &mut self,
        order: &Order,
        now_ns: u64,
        _: &tradeloop_engine::api::Books,
    ) -> Result<(), GatewayError> {
        if self.answer == Answer::Refuse {
            return Err(GatewayError::Disconnected);
        }
        self.submitted += 1;
        let id = order.client_id;
        let report = |r| Event::new(now_ns, now_ns, EventKind::Order(r));
        self.lanes
            .push_high(report(OrderReport::Accepted { client_id: id }))
            .expect("HIGH has room");
        if self.answer == Answer::Fill {
            let fill = OrderReport::Fill {
                client_id: id,
                price: order.request.price,
                qty: order.request.qty,
                fee: self.fee,
                maker: false,
            };
            self.lanes.push_high(report(fill)).expect("HIGH has room");
        }
        Ok(())
    }

    fn cancel(
        &mut self,
        order: &Order,
        now_ns: u64,
        _: &tradeloop_engine::api::Books,
    ) -> Result<(), GatewayError> {
        self.cancels += 1;
        let ev = Event::new(
            now_ns,
            now_ns,
            EventKind::Order(OrderReport::Canceled {
                client_id: order.client_id,
            }),
        );
        self.lanes.push_high(ev).expect("HIGH has room");
        Ok(())
    }
}

/// Allows every order.
pub struct AllowAll;

impl RiskGate for AllowAll {
    fn check(&mut self, _: &OrderRequest, _: &RiskContext) -> Result<(), Deny> {
        Ok(())
    }
}

pub fn registry() -> InstrumentRegistry {
    let mut r = InstrumentRegistry::new();
    r.add(
        "sim",
        "BTCUSDT",
        Price::parse("0.01").unwrap(),
        Qty::parse("0.00001").unwrap(),
        ContractKind::Spot,
    )
    .unwrap();
    r
}

pub const BTC: InstrumentIndex = InstrumentIndex(0);

pub fn trade(recv_ns: u64, price_cents: i64, trade_id: u64) -> Event {
    Event::new(
        recv_ns,
        recv_ns,
        EventKind::Trade(Trade {
            instrument: BTC,
            aggressor: Side::Buy,
            price: Price(price_cents * 1_000_000),
            qty: Qty::parse("0.001").unwrap(),
            trade_id,
        }),
    )
}

pub fn delta(
    recv_ns: u64,
    side: Side,
    price_cents: i64,
    qty_units: i64,
    flags: u8,
    update_id: u64,
) -> Event {
    Event::new(
        recv_ns,
        recv_ns,
        EventKind::BookDelta(BookDelta {
            instrument: BTC,
            side,
            flags: DeltaFlags(flags),
            price: Price(price_cents * 1_000_000),
            qty: Qty::from_units(qty_units),
            update_id,
        }),
    )
}
