//! [`FakeGateway`]: a venue stand-in for benchmarks and load tests. Hot path like a real
//! gateway: `submit` and `cancel` never allocate or block (a full HIGH lane or hand-off queue
//! is a [`GatewayError::Full`]).
//!
//! ```
//! use std::sync::Arc;
//! use tradeloop_engine::api::Gateway;
//! use tradeloop_engine::clock::SimClock;
//! use tradeloop_engine::event::{ClientOrderId, EventKind, OrderReport, Side};
//! use tradeloop_engine::fixed::{Price, Qty};
//! use tradeloop_engine::instrument::InstrumentIndex;
//! use tradeloop_engine::lane::{Lane, LaneConfig, Lanes};
//! use tradeloop_engine::order::{Order, OrderRequest};
//! use tradeloop_testkit::gateway::FakeGateway;
//!
//! let lanes = Arc::new(Lanes::new(LaneConfig::default()));
//! let mut venue = FakeGateway::instant_fill(Arc::clone(&lanes), SimClock::new(5));
//! let (price, qty) = (Price::from_units(100), Qty::from_units(1));
//! let request = OrderRequest::limit(InstrumentIndex(0), Side::Buy, price, qty);
//! let order = Order::new(ClientOrderId::new(1, 0), request, 0);
//! venue.submit(&order, 5, &[]).unwrap();
//! let reports: Vec<_> = std::iter::from_fn(|| lanes.pop(Lane::High))
//!     .filter_map(|e| match e.kind {
//!         EventKind::Order(r) => Some(r),
//!         _ => None,
//!     })
//!     .collect();
//! assert!(matches!(reports[0], OrderReport::Accepted { .. }));
//! assert!(matches!(reports[1], OrderReport::Fill { price: p, qty: q, .. } if p == price && q == qty));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use tradeloop_engine::api::{Books, Gateway, GatewayError};
use tradeloop_engine::clock::{Clock, SimClock};
use tradeloop_engine::event::{Event, EventKind, OrderReport};
use tradeloop_engine::fixed::Qty;
use tradeloop_engine::lane::Lanes;
use tradeloop_engine::order::Order;

/// What the fake venue does with an order.
enum Answer {
    /// Takes it and says nothing.
    Nothing,
    /// Acknowledges and fills it at once at its limit price (taker, no fee) on HIGH, and
    /// confirms cancels there.
    FillAtLimit(Arc<Lanes>),
    /// Hands it to another thread through the queue (cancels are refused as
    /// [`GatewayError::NoExecutionVenue`]).
    Forward(Arc<ArrayQueue<Order>>),
}

/// One configurable fake venue (see the module docs).
///
/// # Allocation
/// None after construction.
pub struct FakeGateway<C = SimClock> {
    answer: Answer,
    clock: C,
    reduce_only_at: Option<Arc<AtomicU64>>,
}

impl FakeGateway<SimClock> {
    /// Accepts every order and cancel and reports nothing.
    #[must_use]
    pub fn null() -> Self {
        Self {
            answer: Answer::Nothing,
            clock: SimClock::new(0),
            reduce_only_at: None,
        }
    }

    /// Hands every order to `queue` (a full queue refuses it); cancels are refused.
    #[must_use]
    pub fn forward(queue: Arc<ArrayQueue<Order>>) -> Self {
        Self {
            answer: Answer::Forward(queue),
            clock: SimClock::new(0),
            reduce_only_at: None,
        }
    }
}

impl<C: Clock> FakeGateway<C> {
    /// Acknowledges and fills every order at its limit price through `lanes`' HIGH lane, as a
    /// venue's report would arrive, stamped by `clock`; cancels are confirmed the same way.
    #[must_use]
    pub fn instant_fill(lanes: Arc<Lanes>, clock: C) -> Self {
        Self {
            answer: Answer::FillAtLimit(lanes),
            clock,
            reduce_only_at: None,
        }
    }

    /// Also stores the clock's time into `at` whenever a reduce-only order (a fired stop's
    /// close) is submitted.
    #[must_use]
    pub fn stamp_reduce_only(mut self, at: Arc<AtomicU64>) -> Self {
        self.reduce_only_at = Some(at);
        self
    }
}

impl<C: Clock> Gateway for FakeGateway<C> {
    fn submit(&mut self, order: &Order, now_ns: u64, _: &Books) -> Result<(), GatewayError> {
        if order.request.reduce_only {
            if let Some(at) = &self.reduce_only_at {
                at.store(self.clock.now_ns(), Ordering::Release);
            }
        }
        match &self.answer {
            Answer::Nothing => Ok(()),
            Answer::Forward(queue) => queue.push(*order).map_err(|_| GatewayError::Full),
            Answer::FillAtLimit(lanes) => {
                let id = order.client_id;
                let fill = OrderReport::Fill {
                    client_id: id,
                    price: order.request.price,
                    qty: order.request.qty,
                    fee: Qty::ZERO,
                    maker: false,
                };
                for report in [OrderReport::Accepted { client_id: id }, fill] {
                    lanes
                        .push_high(Event::new(
                            self.clock.now_ns(),
                            now_ns,
                            EventKind::Order(report),
                        ))
                        .map_err(|_| GatewayError::Full)?;
                }
                Ok(())
            }
        }
    }

    fn cancel(&mut self, order: &Order, now_ns: u64, _: &Books) -> Result<(), GatewayError> {
        match &self.answer {
            Answer::Nothing => Ok(()),
            Answer::Forward(_) => Err(GatewayError::NoExecutionVenue),
            Answer::FillAtLimit(lanes) => lanes
                .push_high(Event::new(
                    self.clock.now_ns(),
                    now_ns,
                    EventKind::Order(OrderReport::Canceled {
                        client_id: order.client_id,
                    }),
                ))
                .map_err(|_| GatewayError::Full),
        }
    }
}
