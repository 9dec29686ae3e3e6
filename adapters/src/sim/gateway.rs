//! The simulated venue as the engine's `Gateway`: orders go to the matching engine, its reports
//! come back on the HIGH lane exactly as a live venue's would. Runs on the engine thread.
//! Hot path: no allocation (the report backlog is preallocated), no lock, no syscall.

use std::collections::VecDeque;
use std::sync::Arc;

use tradeloop_engine::api::{Books, Gateway, GatewayError};
use tradeloop_engine::event::{Event, EventKind, OrderReport};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentRegistry;
use tradeloop_engine::lane::Lanes;
use tradeloop_engine::order::Order;

use super::matching::{ExecConfig, ExecStats, Matching};

/// Paper-trading and backtest execution.
///
/// # Allocation
/// Allocates only in [`SimGateway::new`].
#[derive(Debug)]
pub struct SimGateway {
    matching: Matching,
    lanes: Arc<Lanes>,
    /// Reports the HIGH lane had no room for, delivered first on the next call.
    backlog: VecDeque<(u64, OrderReport)>,
    /// Reports lost because even the backlog was full (never expected; counted).
    pub lost_reports: u64,
}

impl SimGateway {
    /// A simulated venue reporting into `lanes`.
    #[must_use]
    pub fn new(config: ExecConfig, lanes: Arc<Lanes>) -> Self {
        let backlog = VecDeque::with_capacity(config.order_slots.max(1) * 8);
        Self {
            matching: Matching::new(config),
            lanes,
            backlog,
            lost_reports: 0,
        }
    }

    /// Times orders and reports by `model` (default: constant).
    #[must_use]
    pub fn with_latency_model(mut self, model: super::matching::LatencyModel) -> Self {
        self.matching = self.matching.with_latency_model(model);
        self
    }

    /// Moves resting orders' queue places by `model` (default: risk-averse).
    #[must_use]
    pub fn with_queue_model(mut self, model: super::matching::QueueModel) -> Self {
        self.matching = self.matching.with_queue_model(model);
        self
    }

    /// The instruments' lot sizes and contract kinds (see
    /// [`super::matching::Matching::with_instruments`]).
    #[must_use]
    pub fn with_instruments(mut self, registry: &InstrumentRegistry) -> Self {
        self.matching = self.matching.with_instruments(registry);
        self
    }

    /// Charges fees by `fees` beyond the base rates (per-instrument rates, volume tiers).
    #[must_use]
    pub fn with_fees(mut self, fees: super::matching::FeeSchedule) -> Self {
        self.matching = self.matching.with_fees(fees);
        self
    }

    /// The matching engine's counters.
    #[must_use]
    pub fn stats(&self) -> ExecStats {
        self.matching.stats()
    }

    /// The matching engine (positions as the venue sees them).
    #[must_use]
    pub fn matching(&self) -> &Matching {
        &self.matching
    }

    fn flush_backlog(&mut self) {
        while let Some(&(ns, r)) = self.backlog.front() {
            if self
                .lanes
                .try_push_high(Event::new(ns, ns, EventKind::Order(r)))
                .is_err()
            {
                return;
            }
            self.backlog.pop_front();
        }
    }

    /// [`Gateway::on_market`] with the report outlet.
    #[inline(never)]
    fn on_market_out(&mut self, event: &Event, now_ns: u64, books: &Books) {
        self.with_out(now_ns, |m, out| {
            m.on_market(event, now_ns, books, &mut |r| out(r))
        });
    }

    /// Nothing to deliver at `now_ns`: no report backlogged and no venue action due.
    #[inline]
    fn quiet(&self, now_ns: u64) -> bool {
        self.backlog.is_empty() && !self.matching.due(now_ns)
    }

    fn with_out(
        &mut self,
        now_ns: u64,
        f: impl FnOnce(&mut Matching, &mut dyn FnMut(OrderReport)),
    ) {
        self.flush_backlog();
        let Self {
            matching,
            lanes,
            backlog,
            lost_reports,
        } = self;
        let mut deliver = |r: OrderReport| {
            if backlog.is_empty()
                && lanes
                    .try_push_high(Event::new(now_ns, now_ns, EventKind::Order(r)))
                    .is_ok()
            {
                return;
            }
            if backlog.len() < backlog.capacity() {
                backlog.push_back((now_ns, r));
            } else {
                *lost_reports += 1;
            }
        };
        f(matching, &mut deliver);
    }
}

impl Gateway for SimGateway {
    fn submit(&mut self, order: &Order, now_ns: u64, _: &Books) -> Result<(), GatewayError> {
        let mut result = Ok(());
        self.with_out(now_ns, |m, out| {
            result = m
                .submit(order, now_ns, &mut |r| out(r))
                .map_err(|_| GatewayError::Full)
        });
        result
    }

    fn cancel(&mut self, order: &Order, now_ns: u64, _: &Books) -> Result<(), GatewayError> {
        self.with_out(now_ns, |m, out| {
            m.cancel(order.client_id, now_ns, &mut |r| out(r))
        });
        Ok(())
    }

    fn amend(
        &mut self,
        order: &Order,
        price: Price,
        qty: Qty,
        now_ns: u64,
        _: &Books,
    ) -> Result<(), GatewayError> {
        self.with_out(now_ns, |m, out| {
            m.amend(order.client_id, price, qty, now_ns, &mut |r| out(r))
        });
        Ok(())
    }

    #[inline(always)]
    fn on_market(&mut self, event: &Event, now_ns: u64, books: &Books) {
        // A book level reports nothing: with nothing due or backlogged it needs no outlet.
        // Inline in the engine's dispatch (most events are book levels); the rest is not.
        if let EventKind::BookDelta(d) = &event.kind {
            if self.quiet(now_ns) && !self.matching.crosses_working(d) {
                self.matching.observe_feed(event);
                self.matching.on_delta_in(d, books);
                return;
            }
        }
        self.on_market_out(event, now_ns, books);
    }

    #[inline]
    fn poll(&mut self, now_ns: u64, books: &Books) {
        if self.quiet(now_ns) {
            return;
        }
        self.with_out(now_ns, |m, out| m.advance(now_ns, books, &mut |r| out(r)));
    }
}
