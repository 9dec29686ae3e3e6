//! Simulated execution: a matching engine that fills the engine's orders against the market
//! data it is shown, with order-entry and response latency, a risk-averse queue-position model,
//! and maker/taker fees. It runs on the engine thread (as a `Gateway` in paper trading and in
//! backtests), so everything is preallocated at start-up: no allocation, lock or syscall per
//! event.
//!
//! Supported: market, limit, stop-market, stop-limit; GTC, IOC, FOK; post-only (limit GTC only);
//! reduce-only; cancel; amend of a resting limit (price and/or total quantity). Refused with a
//! reason: post-only on anything but a GTC limit, FOK or
//! IOC on a stop, a reduce-only order that would not reduce the simulated position.
//!
//! Fill model:
//! - An order *arrives* `entry_latency (+ jitter)` after it was sent; its reports are delivered
//!   `response_latency` after they happen.
//! - Market data is timed by when the engine received it, `md_latency` after the venue
//!   produced it. So in that clock an order sent at `t` meets the venue state of events
//!   received up to `t + entry + md`, and a report caused by an event received at `r` arrives
//!   at `r + response - md`: the round trip is unchanged, the venue is simply ahead of what the
//!   engine has seen. `md_latency <= response_latency` (checked by the config).
//! - The venue's book is the engine's own (`Gateway` methods receive it): a backtest keeps one
//!   copy of each book, not two. Taking liquidity walks it from the best level (slippage); what
//!   our fills took is kept in a small overlay until the next venue update of that level
//!   rewrites it. With no
//!   book on that side, the best quote is used. Data with neither (trades only) is a venue
//!   known only from its prints: a taking order fills at the last trade's price, up to that
//!   trade's size, as a level-1 venue built from trades would (each print is taken once).
//!   Once a book or quote has been seen for the instrument, trades are never used this way.
//! - A resting limit order joins the back of its price level: `queue_ahead` starts at the
//!   level's size. Trades at its price reduce `queue_ahead` first (risk-averse: we fill only
//!   after the volume ahead has traded); trades through its price fill it up to the traded
//!   size. A level shrinking below `queue_ahead` shrinks it (cancels ahead of us are assumed
//!   to come from behind first — the conservative reading; see [`QueueModel`] for the
//!   others). When the other side of the book comes to its price — an ask level at or below
//!   a resting bid, a bid at or above a resting ask — the whole remainder fills at its own
//!   price as a maker: the recorded book does not contain our order, so the order that made
//!   that level would have traded with ours first (hftbacktest's rule too).
//! - Stops trigger on trades: a buy stop when a trade prints at or above its trigger, a sell
//!   stop at or below.
//! - An amend arrives like a cancel (after the entry latency) and applies to a resting limit
//!   order only. A lower quantity at the same price keeps the order's place (`queue_ahead`
//!   unchanged); a higher quantity puts it at the back of its level (`queue_ahead` = the
//!   level's size); a new price takes it off its level and treats it as arriving at the new
//!   price: it takes what it crosses, then rests at the back of the new level. A post-only
//!   order whose new price would cross, or a total quantity not above what has filled, is
//!   refused (`AmendRejected`) and the order works on as it was. These are the common venue
//!   rules (Bybit, OKX, Kraken keep priority on a decrease). Binance USD-M's `PUT
//!   /fapi/v1/order` differs: every modified order is re-queued, and a post-only order whose
//!   new price would cross, or a partly filled one amended to at most its filled quantity, is
//!   cancelled rather than refused.

use core::cmp::Reverse;
use std::collections::BinaryHeap;

use tradeloop_engine::api::Books;
use tradeloop_engine::event::{
    BookDelta, ClientOrderId, DeltaFlags, Event, EventKind, OrderReport, RejectReason, Side,
};
use tradeloop_engine::fixed::{Price, Qty, FIXED_SCALE};
use tradeloop_engine::instrument::{ContractKind, InstrumentRegistry};
use tradeloop_engine::order::{Order, OrderKind, TimeInForce};

use super::market::Rng;

/// Where the liquidity an order takes comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Source {
    Book,
    Quote,
    Trade,
}

/// Most levels the taking overlay remembers at once.
const TAKEN_CAPACITY: usize = 64;

/// How a resting order's place in its level (the quantity ahead of it) moves when the level
/// shrinks by more than the trades at its price explain — cancels we cannot see in L2 data.
/// Trades at its price always consume the quantity ahead first.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum QueueModel {
    /// Every unexplained decrease is behind us; the quantity ahead only shrinks to the new
    /// level size (hftbacktest's `RiskAdverseQueueModel`).
    #[default]
    RiskAverse,
    /// Part of the decrease is ahead of us: with `front` ahead, `back` behind (the level
    /// before the change minus `front`) and `f(x) = x^n`, the share behind is
    /// `p = f(back) / (f(back) + f(front))`, and the quantity ahead becomes
    /// `front − (1 − p)·Δ + min(back − p·Δ, 0)`, at most the new level size (hftbacktest's
    /// `ProbQueueModel` with `PowerProbQueueFunc(n)`).
    Power(f64),
    /// As `Power` with `f(x) = ln(1 + x)` (hftbacktest's `LogProbQueueFunc`).
    Log,
}

impl QueueModel {
    /// The share of an unexplained decrease that is behind the order.
    fn behind(self, front: f64, back: f64) -> f64 {
        let f = |x: f64| match self {
            Self::Power(n) => x.max(0.0).powf(n),
            Self::Log => x.max(0.0).ln_1p(),
            Self::RiskAverse => 1.0,
        };
        let p = f(back) / (f(back) + f(front));
        if p.is_finite() {
            p
        } else {
            1.0
        }
    }

    /// The quantity ahead after the level went from `prev` to `new` with `traded` at its price
    /// since the level's last change (fixed-point raw units; the probability alone is a float,
    /// and the result is rounded to the nearest unit, deterministically).
    #[must_use]
    pub fn ahead_after(self, front: i64, prev: i64, new: i64, traded: i64) -> i64 {
        let change = prev - new - traded;
        if matches!(self, Self::RiskAverse) || change <= 0 {
            return front.min(new);
        }
        let (front_f, back_f, change_f) = (front as f64, (prev - front) as f64, change as f64);
        let p = self.behind(front_f, back_f);
        let est = front_f - (1.0 - p) * change_f + (back_f - p * change_f).min(0.0);
        #[allow(
            clippy::cast_possible_truncation,
            reason = "between 0 and the previous level size, an i64"
        )]
        let est = est.round().max(0.0) as i64;
        est.min(new)
    }
}

/// One row of a latency table: at `ts_ns` (receive-clock time), orders take `entry_ns` to
/// reach the venue and reports `response_ns` to come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyRow {
    /// Time of the measurement.
    pub ts_ns: u64,
    /// Order entry latency then.
    pub entry_ns: u64,
    /// Report latency then.
    pub response_ns: u64,
}

/// Order entry and report latency of the simulated venue. Entry jitter
/// ([`ExecConfig::jitter_ns`], seeded) is added on top in every model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LatencyModel {
    /// [`ExecConfig::entry_latency_ns`] and [`ExecConfig::response_latency_ns`], always.
    #[default]
    Constant,
    /// From the data: the venue → us delay of the latest market event times
    /// `multiple_milli / 1000`, at least the constant latencies. The delay is the event's
    /// receive time minus its venue time, above the smallest such difference seen so far: the
    /// recorder's clock and the venue's are rarely in step (the shared USD-M capture's runs
    /// 1.27 s behind), and the offset between them cancels out, leaving the queueing delay on
    /// top of the fastest path, which the constant latencies stand for.
    FromFeed {
        /// The multiple of the feed latency, in thousandths.
        multiple_milli: u64,
    },
    /// Interpolated linearly in time between the rows of a table (sorted by time; before the
    /// first row the first applies, after the last the last).
    Table(std::sync::Arc<[LatencyRow]>),
}

/// A volume tier: from `min_volume` of traded notional on, these rates replace the base ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeTier {
    /// Traded notional (Σ price × qty of this run's fills, quote units) at which it applies.
    pub min_volume: Qty,
    /// Maker rate, basis points (negative = rebate).
    pub maker_fee_bps: i64,
    /// Taker rate, basis points.
    pub taker_fee_bps: i64,
}

/// Fees beyond [`ExecConfig`]'s two rates: an instrument's own maker/taker rates, and volume
/// tiers. The rate of a fill is its instrument's own when it has one; otherwise the highest
/// tier the run's traded notional has reached (before this fill); otherwise the base rate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeeSchedule {
    /// Per instrument index: its own (maker, taker) rates, if any.
    pub per_instrument: Vec<Option<(i64, i64)>>,
    /// Tiers by ascending `min_volume`.
    pub tiers: Vec<FeeTier>,
}

/// Execution settings (from `[execution]` in config.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecConfig {
    /// Fee for resting (maker) fills, basis points of notional (negative = rebate).
    pub maker_fee_bps: i64,
    /// Fee for taking (taker) fills, basis points of notional.
    pub taker_fee_bps: i64,
    /// Time from sending an order or cancel to its arrival at the venue.
    pub entry_latency_ns: u64,
    /// Time from an event at the venue to its report reaching the engine.
    pub response_latency_ns: u64,
    /// Uniform extra entry latency in `0..=jitter_ns`.
    pub jitter_ns: u64,
    /// Time from an event at the venue to its market data reaching the engine (at most
    /// `response_latency_ns`).
    pub md_latency_ns: u64,
    /// Seed of the jitter.
    pub seed: u64,
    /// Order slots (the engine's `order_slots`): client ids map to slots.
    pub order_slots: usize,
    /// Instruments.
    pub instruments: usize,
    /// Price levels per side of the simulated book view.
    pub book_levels: usize,
}

#[derive(Clone, Copy, Debug)]
struct SimOrder {
    id: ClientOrderId,
    instrument: usize,
    side: Side,
    kind: OrderKind,
    tif: TimeInForce,
    price: Price,
    trigger: Price,
    remaining: Qty,
    post_only: bool,
    reduce_only: bool,
    /// Arrived and working (resting limit or untriggered stop).
    working: bool,
    queue_ahead: i64,
    /// Traded at its price since its level last changed (the probabilistic queue models
    /// subtract it from the level's decrease).
    traded_at_level: i64,
    /// Filled so far (an amend names the new total quantity).
    filled: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Arrive(u32),
    Cancel(ClientOrderId),
    Amend(ClientOrderId, Price, Qty),
    Report(ReportKey),
}

/// An `OrderReport` made orderable for the heap (ties broken by sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ReportKey(OrderReport);

impl PartialOrd for ReportKey {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ReportKey {
    fn cmp(&self, _: &Self) -> core::cmp::Ordering {
        core::cmp::Ordering::Equal
    }
}

/// Counters of the simulated venue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Orders that arrived.
    pub arrived: u64,
    /// Fills reported.
    pub fills: u64,
    /// Orders refused.
    pub rejected: u64,
    /// Orders cancelled or expired.
    pub canceled: u64,
    /// Amends applied.
    pub amended: u64,
    /// Amends refused.
    pub amends_rejected: u64,
    /// Actions that found the schedule full and were applied without latency.
    pub schedule_full: u64,
}

/// The simulated venue's matching engine.
///
/// # Allocation
/// Allocates only in [`Matching::new`].
#[derive(Debug)]
pub struct Matching {
    cfg: ExecConfig,
    rng: Rng,
    /// Levels our taking consumed, until the venue next updates them: (instrument, side,
    /// price, quantity left). Bounded: the oldest entry goes when it is full.
    taken: Vec<(usize, Side, Price, i64)>,
    last_trade: Box<[Price]>,
    /// What our taking left of the last trade's size (trades-only data, see the fill model).
    trade_left: Box<[i64]>,
    /// A book or quote has been seen: trades are then never taken from.
    quoted: Box<[bool]>,
    quote: Box<[(Price, Qty, Price, Qty)]>,
    position: Box<[i64]>,
    orders: Box<[Option<SimOrder>]>,
    /// Slots of working orders (resting limits, untriggered stops).
    working: Vec<u32>,
    schedule: BinaryHeap<Reverse<(u64, u64, Action)>>,
    schedule_capacity: usize,
    seq: u64,
    stats: ExecStats,
    fees: FeeSchedule,
    /// Σ price × qty of fills so far (fixed-point raw): the volume fee tiers look at.
    traded: i128,
    queue_model: QueueModel,
    latency: LatencyModel,
    /// The latest market event's receive time minus its venue time, above the smallest such
    /// difference seen (`LatencyModel::FromFeed`).
    feed_latency_ns: u64,
    /// The smallest receive time minus venue time seen (clock offset plus fastest delay).
    feed_offset_min: i64,
    /// Lot size per instrument, raw (0: unknown).
    lots: Box<[i64]>,
    /// Contract kind per instrument (spot where unknown).
    kinds: Box<[ContractKind]>,
}

impl Matching {
    /// A venue for `cfg.instruments` instruments and `cfg.order_slots` order slots.
    #[must_use]
    pub fn new(cfg: ExecConfig) -> Self {
        let capacity = cfg.order_slots.max(1) * 8;
        Self {
            rng: Rng::new(cfg.seed),
            taken: Vec::with_capacity(TAKEN_CAPACITY),
            last_trade: vec![Price::ZERO; cfg.instruments].into_boxed_slice(),
            trade_left: vec![0; cfg.instruments].into_boxed_slice(),
            quoted: vec![false; cfg.instruments].into_boxed_slice(),
            quote: vec![(Price::ZERO, Qty::ZERO, Price::ZERO, Qty::ZERO); cfg.instruments]
                .into_boxed_slice(),
            position: vec![0; cfg.instruments].into_boxed_slice(),
            orders: vec![None; cfg.order_slots.max(1)].into_boxed_slice(),
            working: Vec::with_capacity(cfg.order_slots.max(1)),
            schedule: BinaryHeap::with_capacity(capacity),
            schedule_capacity: capacity,
            seq: 0,
            stats: ExecStats::default(),
            fees: FeeSchedule::default(),
            traded: 0,
            queue_model: QueueModel::RiskAverse,
            latency: LatencyModel::Constant,
            feed_latency_ns: 0,
            feed_offset_min: i64::MAX,
            lots: Box::new([]),
            kinds: Box::new([]),
            cfg,
        }
    }

    /// Uses `fees` beyond the base rates (per-instrument rates, volume tiers).
    #[must_use]
    pub fn with_fees(mut self, fees: FeeSchedule) -> Self {
        self.fees = fees;
        self
    }

    /// Moves resting orders' queue places by `model` (default: risk-averse).
    #[must_use]
    pub const fn with_queue_model(mut self, model: QueueModel) -> Self {
        self.queue_model = model;
        self
    }

    /// Times orders and reports by `model` (default: constant).
    #[must_use]
    pub fn with_latency_model(mut self, model: LatencyModel) -> Self {
        self.latency = model;
        self
    }

    /// The instruments' lot sizes and contract kinds, from the registry the engine trades
    /// (see [`Self::with_lot_sizes`] and [`Self::with_contracts`]).
    #[must_use]
    pub fn with_instruments(self, registry: &InstrumentRegistry) -> Self {
        let lots: Vec<Qty> = registry.iter().map(|i| i.lot_size).collect();
        let kinds: Vec<ContractKind> = registry.iter().map(|i| i.kind).collect();
        self.with_lot_sizes(&lots).with_contracts(&kinds)
    }

    /// The instruments' contract kinds, by index: a fill's fee (and the volume fee tiers
    /// count) is its value in the contract's PnL currency — `price × qty × multiplier` for a
    /// linear contract, `qty × multiplier / price` (base currency) for an inverse one. Without
    /// them every instrument is valued as spot, `price × qty`.
    #[must_use]
    pub fn with_contracts(mut self, kinds: &[ContractKind]) -> Self {
        self.kinds = kinds.into();
        self
    }

    /// The instruments' lot sizes, by index: a probabilistic queue model's estimate of the
    /// quantity ahead is rounded to the nearest lot (as hftbacktest rounds it), so that every
    /// fill is a whole number of lots. Without them (or for a zero lot) it is rounded to the
    /// nearest raw unit.
    #[must_use]
    pub fn with_lot_sizes(mut self, lots: &[Qty]) -> Self {
        self.lots = lots.iter().map(|l| l.raw().max(0)).collect();
        self
    }

    /// (entry, response) latency of an order sent, or a report sent, at `now_ns`.
    #[must_use]
    pub fn latencies_at(&self, now_ns: u64) -> (u64, u64) {
        let (entry, response) = (self.cfg.entry_latency_ns, self.cfg.response_latency_ns);
        match &self.latency {
            LatencyModel::Constant => (entry, response),
            LatencyModel::FromFeed { multiple_milli } => {
                let scaled = u64::try_from(
                    u128::from(self.feed_latency_ns) * u128::from(*multiple_milli) / 1000,
                )
                .unwrap_or(u64::MAX);
                (entry.max(scaled), response.max(scaled))
            }
            LatencyModel::Table(rows) => {
                let after = rows.partition_point(|r| r.ts_ns <= now_ns);
                match (after.checked_sub(1).map(|k| rows[k]), rows.get(after)) {
                    (Some(a), Some(b)) if b.ts_ns > a.ts_ns => {
                        let lerp = |x: u64, y: u64| {
                            let t = i128::from(now_ns - a.ts_ns);
                            let span = i128::from(b.ts_ns - a.ts_ns);
                            let v = i128::from(x) + (i128::from(y) - i128::from(x)) * t / span;
                            u64::try_from(v).unwrap_or(0)
                        };
                        (
                            lerp(a.entry_ns, b.entry_ns),
                            lerp(a.response_ns, b.response_ns),
                        )
                    }
                    (Some(a), _) => (a.entry_ns, a.response_ns),
                    (None, Some(b)) => (b.entry_ns, b.response_ns),
                    (None, None) => (entry, response),
                }
            }
        }
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> ExecStats {
        self.stats
    }

    /// The venue's view of a position (signed raw quantity), from its own fills.
    #[must_use]
    pub fn position(&self, instrument: usize) -> Qty {
        Qty(self.position.get(instrument).copied().unwrap_or(0))
    }

    fn schedule(&mut self, due_ns: u64, action: Action, out: &mut impl FnMut(OrderReport)) {
        if self.schedule.len() >= self.schedule_capacity {
            // Never grow on the engine thread: apply at once instead (counted).
            self.stats.schedule_full += 1;
            match action {
                Action::Report(ReportKey(r)) => out(r),
                // `submit` checks for room first, so an arrival never lands here.
                Action::Arrive(slot) => self.expire(slot, due_ns, out),
                Action::Cancel(id) => self.cancel_now(id, due_ns, out),
                // Without the books at hand it cannot be applied: refused, counted.
                Action::Amend(id, ..) => {
                    self.refuse_amend(id, RejectReason::GatewayUnavailable, due_ns, out)
                }
            }
            return;
        }
        self.seq += 1;
        self.schedule.push(Reverse((due_ns, self.seq, action)));
    }

    fn report(&mut self, now_ns: u64, report: OrderReport, out: &mut impl FnMut(OrderReport)) {
        let due = now_ns
            + self
                .latencies_at(now_ns)
                .1
                .saturating_sub(self.cfg.md_latency_ns);
        self.schedule(due, Action::Report(ReportKey(report)), out);
    }

    /// An order was sent at `now_ns`: it arrives after the entry latency.
    ///
    /// # Errors
    /// A reject reason if its slot is out of range (a wiring bug) or already used.
    pub fn submit(
        &mut self,
        order: &Order,
        now_ns: u64,
        out: &mut impl FnMut(OrderReport),
    ) -> Result<(), RejectReason> {
        let slot = order.client_id.slot();
        let r = order.request;
        let Some(cell) = self.orders.get_mut(slot as usize) else {
            return Err(RejectReason::InvalidOrder);
        };
        if cell.is_some() || r.instrument.get() >= self.cfg.instruments {
            return Err(RejectReason::InvalidOrder);
        }
        if self.schedule.len() >= self.schedule_capacity {
            self.stats.schedule_full += 1;
            return Err(RejectReason::GatewayUnavailable);
        }
        *cell = Some(SimOrder {
            id: order.client_id,
            instrument: r.instrument.get(),
            side: r.side,
            kind: r.kind,
            tif: r.tif,
            price: r.price,
            trigger: r.trigger,
            remaining: r.qty,
            post_only: r.post_only,
            reduce_only: r.reduce_only,
            working: false,
            queue_ahead: 0,
            traded_at_level: 0,
            filled: 0,
        });
        let jitter = if self.cfg.jitter_ns > 0 {
            self.rng.below(self.cfg.jitter_ns + 1)
        } else {
            0
        };
        self.schedule(
            now_ns + self.latencies_at(now_ns).0 + self.cfg.md_latency_ns + jitter,
            Action::Arrive(slot),
            out,
        );
        Ok(())
    }

    /// A cancel was sent at `now_ns`.
    pub fn cancel(&mut self, id: ClientOrderId, now_ns: u64, out: &mut impl FnMut(OrderReport)) {
        self.schedule(
            now_ns + self.latencies_at(now_ns).0 + self.cfg.md_latency_ns,
            Action::Cancel(id),
            out,
        );
    }

    /// An amend of `id` to `price` and the total quantity `qty` was sent at `now_ns`.
    pub fn amend(
        &mut self,
        id: ClientOrderId,
        price: Price,
        qty: Qty,
        now_ns: u64,
        out: &mut impl FnMut(OrderReport),
    ) {
        self.schedule(
            now_ns + self.latencies_at(now_ns).0 + self.cfg.md_latency_ns,
            Action::Amend(id, price, qty),
            out,
        );
    }

    /// `true` if an action is due at `now_ns` ([`Self::advance`] would do something).
    #[inline]
    #[must_use]
    pub fn due(&self, now_ns: u64) -> bool {
        self.schedule
            .peek()
            .is_some_and(|Reverse((due, _, _))| *due <= now_ns)
    }

    /// Applies everything due at or before `now_ns`; reports go to `out` in time order.
    pub fn advance(&mut self, now_ns: u64, books: &Books, out: &mut impl FnMut(OrderReport)) {
        while let Some(Reverse((due, _, _))) = self.schedule.peek() {
            if *due > now_ns {
                break;
            }
            let Some(Reverse((due, _, action))) = self.schedule.pop() else {
                break;
            };
            match action {
                Action::Report(ReportKey(r)) => out(r),
                Action::Arrive(slot) => self.arrive(slot, due, books, out),
                Action::Cancel(id) => self.cancel_now(id, due, out),
                Action::Amend(id, price, qty) => self.amend_now(id, price, qty, due, books, out),
            }
        }
    }

    /// Shows the venue one market event (at `now_ns`): pending actions up to then are applied
    /// first, then the book view, stops and resting orders are updated.
    pub fn on_market(
        &mut self,
        event: &Event,
        now_ns: u64,
        books: &Books,
        out: &mut impl FnMut(OrderReport),
    ) {
        self.advance(now_ns, books, out);
        self.observe_feed(event);
        match event.kind {
            EventKind::BookDelta(d) => {
                self.on_delta_in(&d, books);
                if self.crosses_working(&d) {
                    self.fill_crossed(&d, now_ns, out);
                }
            }
            EventKind::Quote(q) => {
                if let Some(slot) = self.quote.get_mut(q.instrument.get()) {
                    *slot = (q.bid_price, q.bid_qty, q.ask_price, q.ask_qty);
                    self.quoted[q.instrument.get()] = true;
                }
            }
            EventKind::Trade(t) => {
                let i = t.instrument.get();
                if i < self.last_trade.len() {
                    self.last_trade[i] = t.price;
                    self.trade_left[i] = t.qty.raw();
                    self.on_trade(i, t.price, t.qty, now_ns, books, out);
                }
            }
            _ => {}
        }
    }

    /// Keeps the venue → us delay of `event` for [`LatencyModel::FromFeed`] (nothing in the
    /// other models).
    #[inline(always)]
    pub fn observe_feed(&mut self, event: &Event) {
        if matches!(self.latency, LatencyModel::FromFeed { .. }) && event.exch_ns > 0 {
            let (recv, exch) = (
                i64::try_from(event.recv_ns).unwrap_or(i64::MAX),
                i64::try_from(event.exch_ns).unwrap_or(i64::MAX),
            );
            let diff = recv.saturating_sub(exch);
            self.feed_offset_min = self.feed_offset_min.min(diff);
            self.feed_latency_ns = u64::try_from(diff - self.feed_offset_min).unwrap_or(0);
        }
    }

    /// [`Self::on_delta`] with the level's size before the change read from `books` (the
    /// engine applies a delta after the venue has seen it) when the queue model needs it.
    #[inline(always)]
    pub fn on_delta_in(&mut self, d: &BookDelta, books: &Books) {
        // A snapshot starts the book over: no previous size to compare with.
        let prev = (!matches!(self.queue_model, QueueModel::RiskAverse)
            && !self.working.is_empty()
            && d.flags.0 & DeltaFlags::SNAPSHOT_BEGIN == 0)
            .then(|| books.get(d.instrument.get()))
            .flatten()
            .map(|b| b.qty_at(d.side, d.price));
        self.on_delta(d, prev);
    }

    /// The venue saw a book level change (nothing is reported for it). Inline: with no
    /// taken liquidity and no working order (most book levels) it is one store.
    #[inline(always)]
    ///
    /// `prev` is the level's size before the change, when the queue model uses it.
    pub fn on_delta(&mut self, d: &BookDelta, prev: Option<Qty>) {
        let i = d.instrument.get();
        if let Some(q) = self.quoted.get_mut(i) {
            *q = true;
        }
        if !self.taken.is_empty() || !self.working.is_empty() {
            self.on_delta_touching(d, prev);
        }
    }

    /// `true` if the level `d` puts on the book crosses one of our resting limit orders on
    /// the other side (an ask at or below our bid, a bid at or above our ask): the venue's
    /// data does not know our order, so whoever placed that level traded with us first. One
    /// load when nothing is working.
    #[inline(always)]
    #[must_use]
    pub fn crosses_working(&self, d: &BookDelta) -> bool {
        !self.working.is_empty() && d.qty.raw() > 0 && self.crossed_by(d).next().is_some()
    }

    /// Slots of the resting limit orders the level of `d` crosses.
    fn crossed_by<'a>(&'a self, d: &'a BookDelta) -> impl Iterator<Item = u32> + 'a {
        let i = d.instrument.get();
        self.working.iter().copied().filter(move |&slot| {
            self.orders[slot as usize].is_some_and(|o| {
                o.instrument == i
                    && !o.kind.is_stop()
                    && o.side != d.side
                    && if o.side == Side::Buy {
                        d.price <= o.price
                    } else {
                        d.price >= o.price
                    }
            })
        })
    }

    /// Fills, at their own prices and as makers, the resting orders the level of `d` crosses
    /// (see [`Self::crosses_working`]).
    #[inline(never)]
    fn fill_crossed(&mut self, d: &BookDelta, now_ns: u64, out: &mut impl FnMut(OrderReport)) {
        loop {
            let next = self.crossed_by(d).next();
            let Some(slot) = next else { break };
            let Some(o) = self.orders[slot as usize] else {
                break;
            };
            self.fill(slot, o.price, o.remaining, true, now_ns, out);
            self.finish(slot);
        }
    }

    /// [`Self::on_delta`] when liquidity was taken or orders are working.
    #[inline(never)]
    fn on_delta_touching(&mut self, d: &BookDelta, prev: Option<Qty>) {
        let i = d.instrument.get();
        // The venue rewrote the level (or, with a snapshot, the whole book): what we took
        // from it is in the update.
        if !self.taken.is_empty() {
            if d.flags.0 & DeltaFlags::SNAPSHOT_BEGIN != 0 {
                self.taken.retain(|t| t.0 != i);
            } else {
                self.taken
                    .retain(|t| !(t.0 == i && t.1 == d.side && t.2 == d.price));
            }
        }
        // The level changed: the queue model moves our place (risk-averse: a level shrinking
        // below our queue position shrinks it).
        let model = self.queue_model;
        for &slot in &self.working {
            if let Some(o) = self.orders[slot as usize].as_mut() {
                if o.instrument == i && o.side == d.side && o.price == d.price && !o.kind.is_stop()
                {
                    o.queue_ahead = match prev {
                        Some(prev) => {
                            let ahead = model.ahead_after(
                                o.queue_ahead,
                                prev.raw(),
                                d.qty.raw(),
                                o.traded_at_level,
                            );
                            match self.lots.get(i).copied() {
                                // The nearest whole lot, never above the new level size.
                                Some(lot) if lot > 0 => {
                                    ((ahead + lot / 2) / lot * lot).min(d.qty.raw())
                                }
                                _ => ahead,
                            }
                        }
                        None => o.queue_ahead.min(d.qty.raw()),
                    };
                    o.traded_at_level = 0;
                }
            }
        }
    }

    /// The fee of a fill of `qty` at `price` on instrument `i` (see [`FeeSchedule`]); counts
    /// the fill's notional into the traded volume after choosing the rate.
    fn fee(&mut self, i: usize, price: Price, qty: Qty, maker: bool) -> Qty {
        let kind = self.kinds.get(i).copied().unwrap_or(ContractKind::Spot);
        let notional = kind.value(qty, price).raw() / i128::from(FIXED_SCALE);
        let (maker_bps, taker_bps) = match self.fees.per_instrument.get(i).copied().flatten() {
            Some(own) => own,
            None => self
                .fees
                .tiers
                .iter()
                .rev()
                .find(|t| self.traded >= i128::from(t.min_volume.raw()))
                .map_or((self.cfg.maker_fee_bps, self.cfg.taker_fee_bps), |t| {
                    (t.maker_fee_bps, t.taker_fee_bps)
                }),
        };
        self.traded += notional;
        let bps = if maker { maker_bps } else { taker_bps };
        Qty(i64::try_from(notional * i128::from(bps) / 10_000).unwrap_or(i64::MAX))
    }

    fn fill(
        &mut self,
        slot: u32,
        price: Price,
        qty: Qty,
        maker: bool,
        now_ns: u64,
        out: &mut impl FnMut(OrderReport),
    ) {
        let Some(o) = self.orders[slot as usize].as_mut() else {
            return;
        };
        o.remaining -= qty;
        o.filled += qty.raw();
        let (id, side, i) = (o.id, o.side, o.instrument);
        self.position[i] += qty.raw() * side.sign();
        self.stats.fills += 1;
        let fee = self.fee(i, price, qty, maker);
        self.report(
            now_ns,
            OrderReport::Fill {
                client_id: id,
                price,
                qty,
                fee,
                maker,
            },
            out,
        );
    }

    fn finish(&mut self, slot: u32) {
        self.orders[slot as usize] = None;
        if let Some(pos) = self.working.iter().position(|&s| s == slot) {
            self.working.swap_remove(pos);
        }
    }

    fn reject(
        &mut self,
        slot: u32,
        reason: RejectReason,
        now_ns: u64,
        out: &mut impl FnMut(OrderReport),
    ) {
        if let Some(o) = self.orders[slot as usize] {
            self.stats.rejected += 1;
            self.report(
                now_ns,
                OrderReport::Rejected {
                    client_id: o.id,
                    reason,
                },
                out,
            );
        }
        self.finish(slot);
    }

    fn expire(&mut self, slot: u32, now_ns: u64, out: &mut impl FnMut(OrderReport)) {
        if let Some(o) = self.orders[slot as usize] {
            self.stats.canceled += 1;
            self.report(now_ns, OrderReport::Canceled { client_id: o.id }, out);
        }
        self.finish(slot);
    }

    fn arrive(&mut self, slot: u32, now_ns: u64, books: &Books, out: &mut impl FnMut(OrderReport)) {
        let Some(o) = self.orders[slot as usize] else {
            return;
        };
        self.stats.arrived += 1;
        // Unsupported combinations.
        let bad = (o.post_only && !(o.kind == OrderKind::Limit && o.tif == TimeInForce::Gtc))
            || (o.kind.is_stop() && o.tif != TimeInForce::Gtc)
            || o.remaining.raw() <= 0;
        if bad {
            return self.reject(slot, RejectReason::InvalidOrder, now_ns, out);
        }
        if o.reduce_only {
            let pos = self.position[o.instrument];
            let reduces = (o.side == Side::Buy && pos < 0 || o.side == Side::Sell && pos > 0)
                && o.remaining.raw() <= pos.abs();
            if !reduces {
                return self.reject(slot, RejectReason::InvalidOrder, now_ns, out);
            }
        }
        if o.post_only && self.would_cross(&o, books) {
            return self.reject(slot, RejectReason::PostOnlyWouldCross, now_ns, out);
        }
        self.report(now_ns, OrderReport::Accepted { client_id: o.id }, out);
        if o.kind.is_stop() {
            let last = self.last_trade[o.instrument];
            if last.raw() > 0 && triggered(&o, last) {
                return self.trigger(slot, now_ns, books, out);
            }
            self.orders[slot as usize]
                .as_mut()
                .expect("checked above")
                .working = true;
            self.working.push(slot);
            return;
        }
        self.execute(slot, now_ns, books, out);
    }

    /// Takes liquidity as far as the order allows, then rests, expires or is done.
    fn execute(
        &mut self,
        slot: u32,
        now_ns: u64,
        books: &Books,
        out: &mut impl FnMut(OrderReport),
    ) {
        let Some(o) = self.orders[slot as usize] else {
            return;
        };
        let limit = if o.kind == OrderKind::Market || o.kind == OrderKind::StopMarket {
            None
        } else {
            Some(o.price)
        };
        if o.tif == TimeInForce::Fok && self.available(&o, limit, books) < o.remaining.raw() {
            return self.expire(slot, now_ns, out);
        }
        self.take(slot, limit, now_ns, books, out);
        let Some(o) = self.orders[slot as usize] else {
            return;
        };
        if o.remaining.raw() == 0 {
            return self.finish(slot);
        }
        match (limit, o.tif) {
            (Some(price), TimeInForce::Gtc) => {
                let level = self.level(books, o.instrument, o.side, price);
                let rest = self.orders[slot as usize].as_mut().expect("live");
                rest.working = true;
                rest.queue_ahead = level;
                self.working.push(slot);
            }
            _ => self.expire(slot, now_ns, out),
        }
    }

    fn would_cross(&self, o: &SimOrder, books: &Books) -> bool {
        let (best, _) = self.best_opposite(o.instrument, o.side, books);
        best.is_some_and(|b| {
            if o.side == Side::Buy {
                o.price >= b
            } else {
                o.price <= b
            }
        })
    }

    /// Quantity at a level: what our taking left of it, else the book's.
    fn level(&self, books: &Books, i: usize, side: Side, price: Price) -> i64 {
        self.taken
            .iter()
            .find(|t| t.0 == i && t.1 == side && t.2 == price)
            .map_or_else(
                || books.get(i).map_or(0, |b| b.qty_at(side, price).raw()),
                |t| t.3,
            )
    }

    /// A side's levels best first as the venue sees them (the book less what we took).
    fn levels<'a>(
        &'a self,
        books: &'a Books,
        i: usize,
        side: Side,
    ) -> impl Iterator<Item = (Price, i64)> + 'a {
        books.get(i).into_iter().flat_map(move |b| {
            b.depth(side).filter_map(move |l| {
                let left = self
                    .taken
                    .iter()
                    .find(|t| t.0 == i && t.1 == side && t.2 == l.price)
                    .map_or(l.qty.raw(), |t| t.3);
                (left > 0).then_some((l.price, left))
            })
        })
    }

    /// Best opposite price and its size: from the book, else the quote.
    fn best_opposite(&self, i: usize, side: Side, books: &Books) -> (Option<Price>, i64) {
        self.best_with_source(i, side, books).0
    }

    /// [`Self::best_opposite`] and where it came from: the book, the quote, or (trades-only
    /// data) the last print.
    fn best_with_source(
        &self,
        i: usize,
        side: Side,
        books: &Books,
    ) -> ((Option<Price>, i64), Source) {
        if let Some((price, qty)) = self.levels(books, i, side.opposite()).next() {
            return ((Some(price), qty), Source::Book);
        }
        let (bp, bq, ap, aq) = self.quote[i];
        match side {
            Side::Buy if ap.raw() > 0 => ((Some(ap), aq.raw()), Source::Quote),
            Side::Sell if bp.raw() > 0 => ((Some(bp), bq.raw()), Source::Quote),
            _ if !self.quoted[i] && self.last_trade[i].raw() > 0 && self.trade_left[i] > 0 => (
                (Some(self.last_trade[i]), self.trade_left[i]),
                Source::Trade,
            ),
            _ => ((None, 0), Source::Quote),
        }
    }

    /// Quantity available to take at or better than `limit`.
    fn available(&self, o: &SimOrder, limit: Option<Price>, books: &Books) -> i64 {
        let opposite = o.side.opposite();
        let ok = |p: Price| limit.is_none_or(|l| if o.side == Side::Buy { p <= l } else { p >= l });
        if self.levels(books, o.instrument, opposite).next().is_none() {
            let (best, size) = self.best_opposite(o.instrument, o.side, books);
            return if best.is_some_and(ok) { size } else { 0 };
        }
        let mut total = 0i64;
        for (price, qty) in self.levels(books, o.instrument, opposite) {
            if !ok(price) || total >= o.remaining.raw() {
                break;
            }
            total = total.saturating_add(qty);
        }
        total
    }

    fn take(
        &mut self,
        slot: u32,
        limit: Option<Price>,
        now_ns: u64,
        books: &Books,
        out: &mut impl FnMut(OrderReport),
    ) {
        loop {
            let Some(o) = self.orders[slot as usize] else {
                return;
            };
            if o.remaining.raw() == 0 {
                return;
            }
            let ((best, size), source) = self.best_with_source(o.instrument, o.side, books);
            let Some(price) = best else { return };
            let acceptable = limit.is_none_or(|l| {
                if o.side == Side::Buy {
                    price <= l
                } else {
                    price >= l
                }
            });
            if !acceptable || size <= 0 {
                return;
            }
            let qty = Qty(size.min(o.remaining.raw()));
            self.fill(slot, price, qty, false, now_ns, out);
            self.consume(
                o.instrument,
                o.side.opposite(),
                price,
                size - qty.raw(),
                source,
            );
        }
    }

    /// Reduces a level we took from (the overlay on the book, or the quote when there is no
    /// book).
    fn consume(&mut self, i: usize, side: Side, price: Price, left: i64, source: Source) {
        if source == Source::Trade {
            self.trade_left[i] = left.max(0);
        } else if source == Source::Book {
            let left = left.max(0);
            if let Some(t) = self
                .taken
                .iter_mut()
                .find(|t| t.0 == i && t.1 == side && t.2 == price)
            {
                t.3 = left;
            } else {
                if self.taken.len() == TAKEN_CAPACITY {
                    // Bounded: forget the oldest (its level has most likely been updated since).
                    self.taken.remove(0);
                }
                self.taken.push((i, side, price, left));
            }
        } else {
            let q = &mut self.quote[i];
            match side {
                Side::Sell => q.3 = Qty(left.max(0)),
                Side::Buy => q.1 = Qty(left.max(0)),
            }
            if left <= 0 {
                // The quote is exhausted until the next one arrives.
                match side {
                    Side::Sell => q.2 = Price::ZERO,
                    Side::Buy => q.0 = Price::ZERO,
                }
            }
        }
    }

    fn trigger(
        &mut self,
        slot: u32,
        now_ns: u64,
        books: &Books,
        out: &mut impl FnMut(OrderReport),
    ) {
        if let Some(o) = self.orders[slot as usize].as_mut() {
            o.kind = if o.kind == OrderKind::StopMarket {
                OrderKind::Market
            } else {
                OrderKind::Limit
            };
            o.tif = if o.kind == OrderKind::Market {
                TimeInForce::Ioc
            } else {
                o.tif
            };
            o.working = false;
        }
        if let Some(pos) = self.working.iter().position(|&s| s == slot) {
            self.working.swap_remove(pos);
        }
        self.execute(slot, now_ns, books, out);
    }

    fn on_trade(
        &mut self,
        i: usize,
        price: Price,
        qty: Qty,
        now_ns: u64,
        books: &Books,
        out: &mut impl FnMut(OrderReport),
    ) {
        let mut volume = qty.raw();
        let mut n = 0;
        while n < self.working.len() {
            let slot = self.working[n];
            let Some(o) = self.orders[slot as usize] else {
                n += 1;
                continue;
            };
            if o.instrument != i {
                n += 1;
                continue;
            }
            if o.kind.is_stop() {
                if triggered(&o, price) {
                    self.trigger(slot, now_ns, books, out);
                    // `working` changed under us: rescan from the start of this position.
                    continue;
                }
                n += 1;
                continue;
            }
            let through = if o.side == Side::Buy {
                price < o.price
            } else {
                price > o.price
            };
            let at = price == o.price;
            let mut fill = 0i64;
            if through {
                fill = o.remaining.raw().min(volume);
            } else if at {
                let ahead = o.queue_ahead - volume;
                let o_mut = self.orders[slot as usize].as_mut().expect("live");
                o_mut.traded_at_level += volume;
                if ahead >= 0 {
                    o_mut.queue_ahead = ahead;
                } else {
                    o_mut.queue_ahead = 0;
                    fill = o.remaining.raw().min(-ahead);
                }
            }
            if fill > 0 {
                volume -= fill;
                self.fill(slot, o.price, Qty(fill), true, now_ns, out);
                if self.orders[slot as usize].is_some_and(|o| o.remaining.raw() == 0) {
                    self.finish(slot);
                    continue;
                }
            }
            n += 1;
        }
    }

    fn refuse_amend(
        &mut self,
        id: ClientOrderId,
        reason: RejectReason,
        now_ns: u64,
        out: &mut impl FnMut(OrderReport),
    ) {
        self.stats.amends_rejected += 1;
        self.report(
            now_ns,
            OrderReport::AmendRejected {
                client_id: id,
                reason,
            },
            out,
        );
    }

    /// An amend arrives (see the fill model in the module docs).
    fn amend_now(
        &mut self,
        id: ClientOrderId,
        price: Price,
        qty: Qty,
        now_ns: u64,
        books: &Books,
        out: &mut impl FnMut(OrderReport),
    ) {
        let slot = id.slot();
        let resting = self
            .orders
            .get(slot as usize)
            .copied()
            .flatten()
            .filter(|o| o.id == id && o.working && o.kind == OrderKind::Limit);
        let Some(o) = resting else {
            return self.refuse_amend(id, RejectReason::UnknownOrder, now_ns, out);
        };
        let remaining = qty.raw() - o.filled;
        if remaining <= 0 || price.raw() <= 0 {
            return self.refuse_amend(id, RejectReason::InvalidOrder, now_ns, out);
        }
        let moved = price != o.price;
        let amended = SimOrder {
            price,
            remaining: Qty(remaining),
            ..o
        };
        if moved && o.post_only && self.would_cross(&amended, books) {
            return self.refuse_amend(id, RejectReason::PostOnlyWouldCross, now_ns, out);
        }
        self.stats.amended += 1;
        self.orders[slot as usize] = Some(amended);
        self.report(
            now_ns,
            OrderReport::Amended {
                client_id: id,
                price,
                qty,
            },
            out,
        );
        if moved {
            // Off its level: it arrives anew at the new price (taking what it crosses) and
            // rests at the back of that level.
            if let Some(pos) = self.working.iter().position(|&s| s == slot) {
                self.working.swap_remove(pos);
            }
            self.orders[slot as usize]
                .as_mut()
                .expect("just stored")
                .working = false;
            self.execute(slot, now_ns, books, out);
        } else if remaining > o.remaining.raw() {
            let level = self.level(books, o.instrument, o.side, price);
            self.orders[slot as usize]
                .as_mut()
                .expect("just stored")
                .queue_ahead = level;
        }
    }

    fn cancel_now(&mut self, id: ClientOrderId, now_ns: u64, out: &mut impl FnMut(OrderReport)) {
        let slot = id.slot();
        match self.orders.get(slot as usize).copied().flatten() {
            Some(o) if o.id == id && o.working => self.expire(slot, now_ns, out),
            _ => self.report(
                now_ns,
                OrderReport::CancelRejected {
                    client_id: id,
                    reason: RejectReason::UnknownOrder,
                },
                out,
            ),
        }
    }
}

fn triggered(o: &SimOrder, last: Price) -> bool {
    if o.side == Side::Buy {
        last >= o.trigger
    } else {
        last <= o.trigger
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeloop_engine::book::OrderBook;
    use tradeloop_engine::event::Trade;
    use tradeloop_engine::instrument::InstrumentIndex;
    use tradeloop_engine::order::OrderRequest;

    const I: InstrumentIndex = InstrumentIndex(0);
    const ENTRY: u64 = 10;
    const RESPONSE: u64 = 5;

    fn p(units: i64) -> Price {
        Price::from_units(units)
    }
    fn q(units: i64) -> Qty {
        Qty::from_units(units)
    }

    /// A venue with bids 99×5, 98×5 and asks 101×2, 102×3, 103×10; maker −1 bp, taker 5 bp.
    /// The matching engine with its books applied as the engine applies them: after the
    /// venue has seen each delta.
    struct Venue {
        m: Matching,
        books: Box<[OrderBook]>,
    }

    impl Venue {
        fn on_market(&mut self, e: &Event, now: u64, out: &mut impl FnMut(OrderReport)) {
            self.m.on_market(e, now, &self.books, out);
            if let EventKind::BookDelta(d) = e.kind {
                self.books[d.instrument.get()].apply(&d);
            }
        }
        fn advance(&mut self, now: u64, out: &mut impl FnMut(OrderReport)) {
            self.m.advance(now, &self.books, out);
        }
        fn submit(
            &mut self,
            o: &Order,
            now: u64,
            out: &mut impl FnMut(OrderReport),
        ) -> Result<(), RejectReason> {
            self.m.submit(o, now, out)
        }
        fn cancel(&mut self, id: ClientOrderId, now: u64, out: &mut impl FnMut(OrderReport)) {
            self.m.cancel(id, now, out);
        }
        fn position(&self, i: usize) -> Qty {
            self.m.position(i)
        }
    }

    /// A venue with an empty book; maker −1 bp, taker 5 bp.
    fn bare() -> Venue {
        Venue {
            books: vec![OrderBook::new(64)].into_boxed_slice(),
            m: Matching::new(ExecConfig {
                maker_fee_bps: -1,
                taker_fee_bps: 5,
                entry_latency_ns: ENTRY,
                response_latency_ns: RESPONSE,
                jitter_ns: 0,
                md_latency_ns: 0,
                seed: 1,
                order_slots: 16,
                instruments: 1,
                book_levels: 64,
            }),
        }
    }

    fn venue() -> Venue {
        let mut m = bare();
        let levels = [
            (Side::Buy, 99, 5),
            (Side::Buy, 98, 5),
            (Side::Sell, 101, 2),
            (Side::Sell, 102, 3),
            (Side::Sell, 103, 10),
        ];
        for (n, (side, price, qty)) in levels.into_iter().enumerate() {
            let mut flags = if n == 0 {
                DeltaFlags::SNAPSHOT_BEGIN
            } else {
                0
            };
            if n == levels.len() - 1 {
                flags |= DeltaFlags::LAST_IN_MESSAGE;
            }
            let d = BookDelta {
                instrument: I,
                side,
                flags: DeltaFlags(flags),
                price: p(price),
                qty: q(qty),
                update_id: 1,
            };
            m.on_market(&Event::new(0, 0, EventKind::BookDelta(d)), 0, &mut |_| {
                panic!("no reports yet")
            });
        }
        m
    }

    fn order(slot: u32, req: OrderRequest) -> Order {
        Order::new(ClientOrderId::new(1, slot), req, 0)
    }

    fn trade(m: &mut Venue, now: u64, price: i64, qty: i64, out: &mut Vec<OrderReport>) {
        let t = Trade {
            instrument: I,
            aggressor: Side::Sell,
            price: p(price),
            qty: q(qty),
            trade_id: 1,
        };
        m.on_market(&Event::new(now, now, EventKind::Trade(t)), now, &mut |r| {
            out.push(r)
        });
    }

    /// Sends at t=0 and collects every report up to `until`.
    fn run(m: &mut Venue, o: &Order, until: u64) -> Vec<OrderReport> {
        let mut out = Vec::new();
        m.submit(o, 0, &mut |r| out.push(r)).unwrap();
        m.advance(until, &mut |r| out.push(r));
        out
    }

    fn fills(reports: &[OrderReport]) -> Vec<(i64, i64, bool)> {
        reports
            .iter()
            .filter_map(|r| match r {
                OrderReport::Fill {
                    price, qty, maker, ..
                } => Some((price.raw() / FIXED_SCALE, qty.raw() / FIXED_SCALE, *maker)),
                _ => None,
            })
            .collect()
    }

    fn last(reports: &[OrderReport]) -> &'static str {
        match reports.last() {
            Some(OrderReport::Accepted { .. }) => "accepted",
            Some(OrderReport::Fill { .. }) => "fill",
            Some(OrderReport::Canceled { .. }) => "canceled",
            Some(OrderReport::Rejected { .. }) => "rejected",
            Some(OrderReport::CancelRejected { .. }) => "cancel_rejected",
            Some(OrderReport::Amended { .. }) => "amended",
            Some(OrderReport::AmendRejected { .. }) => "amend_rejected",
            None => "none",
        }
    }

    #[test]
    fn order_types_and_time_in_force_table() {
        type Case = (
            &'static str,
            OrderRequest,
            Vec<(i64, i64, bool)>,
            &'static str,
        );
        let limit = |side, price, qty| OrderRequest::limit(I, side, p(price), q(qty));
        let cases: Vec<Case> = vec![
            (
                "TC0 market walks the book",
                OrderRequest::market(I, Side::Buy, p(101), q(4)),
                vec![(101, 2, false), (102, 2, false)],
                "fill",
            ),
            (
                "TC1 market beyond the book expires the rest",
                OrderRequest::market(I, Side::Sell, p(99), q(12)),
                vec![(99, 5, false), (98, 5, false)],
                "canceled",
            ),
            (
                "TC2 IOC takes what crosses",
                OrderRequest::ioc(I, Side::Buy, p(101), q(3)),
                vec![(101, 2, false)],
                "canceled",
            ),
            (
                "TC3 FOK that cannot fill does nothing",
                OrderRequest {
                    tif: TimeInForce::Fok,
                    ..limit(Side::Buy, 102, 6)
                },
                vec![],
                "canceled",
            ),
            (
                "TC4 FOK that can fill fills",
                OrderRequest {
                    tif: TimeInForce::Fok,
                    ..limit(Side::Buy, 102, 5)
                },
                vec![(101, 2, false), (102, 3, false)],
                "fill",
            ),
            (
                "TC5 GTC crossing takes then rests",
                limit(Side::Buy, 101, 3),
                vec![(101, 2, false)],
                "fill",
            ),
            (
                "TC6 GTC passive rests",
                limit(Side::Buy, 100, 1),
                vec![],
                "accepted",
            ),
            (
                "TC7 post-only crossing is refused",
                OrderRequest {
                    post_only: true,
                    ..limit(Side::Buy, 101, 1)
                },
                vec![],
                "rejected",
            ),
            (
                "TC8 post-only passive rests",
                OrderRequest {
                    post_only: true,
                    ..limit(Side::Buy, 100, 1)
                },
                vec![],
                "accepted",
            ),
            (
                "TC9 post-only IOC is unsupported",
                OrderRequest {
                    post_only: true,
                    ..OrderRequest::ioc(I, Side::Buy, p(100), q(1))
                },
                vec![],
                "rejected",
            ),
            (
                "TC10 stop with IOC is unsupported",
                OrderRequest {
                    tif: TimeInForce::Ioc,
                    ..OrderRequest::stop_market(I, Side::Sell, p(98), q(1))
                },
                vec![],
                "rejected",
            ),
            (
                "TC11 reduce-only without a position is refused",
                OrderRequest {
                    reduce_only: true,
                    ..limit(Side::Sell, 99, 1)
                },
                vec![],
                "rejected",
            ),
            (
                "TC12 stop waits for its trigger",
                OrderRequest::stop_market(I, Side::Sell, p(98), q(1)),
                vec![],
                "accepted",
            ),
        ];
        for (label, req, want_fills, want_last) in cases {
            let mut m = venue();
            let reports = run(&mut m, &order(0, req), 1_000);
            assert_eq!(fills(&reports), want_fills, "{label}: {reports:?}");
            assert_eq!(last(&reports), want_last, "{label}: {reports:?}");
        }
    }

    #[test]
    fn fees_are_taker_on_take_and_maker_rebate_on_rest() {
        let mut m = venue();
        let r = run(
            &mut m,
            &order(0, OrderRequest::market(I, Side::Buy, p(101), q(2))),
            100,
        );
        // 101 × 2 × 5 bp = 0.101
        assert!(
            matches!(r[1], OrderReport::Fill { fee, maker: false, .. } if fee == Qty::parse("0.101").unwrap()),
            "{r:?}"
        );
        let mut out = run(
            &mut m,
            &order(1, OrderRequest::limit(I, Side::Sell, p(105), q(1))),
            100,
        );
        trade(&mut m, 200, 106, 1, &mut out);
        m.advance(300, &mut |r| out.push(r));
        // through-trade fills the resting sell at its price: 105 × 1 × −1 bp = −0.0105
        assert!(
            matches!(out.last(), Some(OrderReport::Fill { fee, maker: true, .. }) if *fee == Qty::parse("-0.0105").unwrap()),
            "{out:?}"
        );
        assert_eq!(m.position(0), q(1));
    }

    /// Entry and report latency in each model: constant, from the feed's own delay (at least
    /// the constants), and interpolated from a table (clamped at its ends).
    #[test]
    fn latency_models_table() {
        let mut m = venue();
        assert_eq!(m.m.latencies_at(0), (ENTRY, RESPONSE), "TC0 constant");
        m.m = m.m.with_latency_model(LatencyModel::FromFeed {
            multiple_milli: 1500,
        });
        assert_eq!(
            m.m.latencies_at(0),
            (ENTRY, RESPONSE),
            "TC1 no feed delay seen yet: the floors"
        );
        let t = Trade {
            instrument: I,
            aggressor: Side::Sell,
            price: p(99),
            qty: q(1),
            trade_id: 9,
        };
        // The recorder's clock runs 1,000 ns behind the venue's: the fastest event seen
        // (−1,000 + 100 ns) sets the offset; later delays count above it.
        m.on_market(
            &Event::new(10_000, 10_900, EventKind::Trade(t)),
            10_000,
            &mut |_| {},
        );
        assert_eq!(
            m.m.latencies_at(0),
            (ENTRY, RESPONSE),
            "TC2 the fastest seen: the floors"
        );
        m.on_market(
            &Event::new(26_000, 20_900, EventKind::Trade(t)),
            26_000,
            &mut |_| {},
        );
        assert_eq!(
            m.m.latencies_at(0),
            (9_000, 9_000),
            "TC3 6 µs above the fastest, × 1.5"
        );
        m.on_market(
            &Event::new(30_000, 30_897, EventKind::Trade(t)),
            30_000,
            &mut |_| {},
        );
        assert_eq!(
            m.m.latencies_at(0),
            (ENTRY, RESPONSE),
            "TC4 3 ns above: the floors"
        );
        m.on_market(
            &Event::new(40_000, 0, EventKind::Trade(t)),
            40_000,
            &mut |_| {},
        );
        assert_eq!(
            m.m.latencies_at(0),
            (ENTRY, RESPONSE),
            "TC5 an event without venue time changes nothing"
        );
        let rows = [
            LatencyRow {
                ts_ns: 1_000,
                entry_ns: 100,
                response_ns: 200,
            },
            LatencyRow {
                ts_ns: 3_000,
                entry_ns: 300,
                response_ns: 600,
            },
        ];
        m.m = m.m.with_latency_model(LatencyModel::Table(rows.into()));
        for (label, now, want) in [
            ("TC6 before the first row", 0, (100, 200)),
            ("TC7 at a row", 1_000, (100, 200)),
            ("TC8 between rows", 2_000, (200, 400)),
            ("TC9 a quarter in", 1_500, (150, 300)),
            ("TC10 after the last row", 9_000, (300, 600)),
        ] {
            assert_eq!(m.m.latencies_at(now), want, "{label}");
        }
        // A market order sent at 2,000 arrives after the interpolated 200 ns.
        let mut out = Vec::new();
        m.submit(
            &order(0, OrderRequest::market(I, Side::Buy, p(101), q(1))),
            2_000,
            &mut |r| out.push(r),
        )
        .unwrap();
        m.advance(2_199, &mut |r| out.push(r));
        assert!(out.is_empty(), "TC11 not arrived at 2,199: {out:?}");
        m.advance(2_200, &mut |r| out.push(r));
        m.advance(10_000, &mut |r| out.push(r));
        assert!(
            !fills(&out).is_empty(),
            "TC12 arrived at 2,200 and filled: {out:?}"
        );
    }

    /// The queue models' formulas, as hftbacktest defines them, on raw units: front 400 of a
    /// 1000 level (600 behind).
    #[test]
    fn queue_models_table() {
        use QueueModel::{Log, Power, RiskAverse};
        // (label, model, front, prev, new, traded, ahead after)
        let cases = [
            (
                "TC0 risk-averse: capped by the new size only",
                RiskAverse,
                400,
                1000,
                800,
                0,
                400,
            ),
            (
                "TC1 risk-averse: a level below us",
                RiskAverse,
                400,
                1000,
                300,
                0,
                300,
            ),
            (
                "TC2 power 1: p = 0.6 behind, 0.4·200 ahead",
                Power(1.0),
                400,
                1000,
                800,
                0,
                320,
            ),
            (
                "TC3 power 2: p = 0.6923",
                Power(2.0),
                400,
                1000,
                800,
                0,
                338,
            ),
            ("TC4 log: p = 0.5163", Log, 400, 1000, 800, 0, 303),
            (
                "TC5 a decrease the trades explain moves nothing",
                Power(1.0),
                400,
                1000,
                800,
                200,
                400,
            ),
            (
                "TC6 half explained by trades",
                Power(1.0),
                400,
                1000,
                800,
                100,
                360,
            ),
            (
                "TC7 an increase moves nothing",
                Power(1.0),
                400,
                1000,
                1200,
                0,
                400,
            ),
            (
                "TC8 more than the back: the rest is ahead",
                Power(1.0),
                400,
                1000,
                100,
                0,
                40,
            ),
            ("TC9 the level gone", Power(1.0), 400, 1000, 0, 0, 0),
            (
                "TC10 at the back: all of it is ahead",
                Power(2.0),
                1000,
                1000,
                600,
                0,
                600,
            ),
            ("TC11 at the front", Power(2.0), 0, 1000, 600, 0, 0),
        ];
        for (label, model, front, prev, new, traded, want) in cases {
            assert_eq!(model.ahead_after(front, prev, new, traded), want, "{label}");
        }
    }

    /// A level that others joined behind us and that then shrinks without a trade: the
    /// risk-averse model keeps us where we were, the power model moves us up, so the next
    /// trade at our price fills us only under the power model.
    #[test]
    fn a_probabilistic_queue_fills_sooner_than_the_risk_averse_one() {
        let level = |m: &mut Venue, now: u64, qty: i64, out: &mut Vec<OrderReport>| {
            let d = BookDelta {
                instrument: I,
                side: Side::Buy,
                flags: DeltaFlags(DeltaFlags::LAST_IN_MESSAGE),
                price: p(99),
                qty: q(qty),
                update_id: now,
            };
            m.on_market(
                &Event::new(now, now, EventKind::BookDelta(d)),
                now,
                &mut |r| out.push(r),
            );
        };
        let mut got = Vec::new();
        for model in [QueueModel::RiskAverse, QueueModel::Power(1.0)] {
            let mut m = venue();
            m.m = m.m.with_queue_model(model);
            // Rests behind the 5 at 99; 5 more join behind it; 4 leave without a trade.
            let mut out = run(
                &mut m,
                &order(0, OrderRequest::limit(I, Side::Buy, p(99), q(1))),
                100,
            );
            level(&mut m, 200, 10, &mut out);
            level(&mut m, 300, 6, &mut out);
            trade(&mut m, 400, 99, 4, &mut out);
            m.advance(500, &mut |r| out.push(r));
            got.push(fills(&out));
        }
        assert_eq!(got[0], vec![], "TC0 risk-averse: 5 ahead, 4 traded");
        assert_eq!(
            got[1],
            vec![(99, 1, true)],
            "TC1 power 1: half the 4 that left were ahead (3 ahead), 4 traded"
        );
    }

    /// A fill's fee is a share of its value in the contract's PnL currency: price × qty for
    /// spot, × the multiplier for a linear contract, qty × multiplier / price for an inverse
    /// one (base currency).
    #[test]
    fn fees_are_on_the_contracts_value_table() {
        // (label, contract, taker fee of a market buy of 2 at 101 (5 bp))
        let cases = [
            ("TC0 spot: 101 × 2", ContractKind::Spot, "0.101"),
            (
                "TC1 linear ×10: 101 × 2 × 10",
                ContractKind::Linear { multiplier: q(10) },
                "1.01",
            ),
            (
                "TC2 inverse 100 per contract: 2 × 100 / 101 in base",
                ContractKind::Inverse { multiplier: q(100) },
                "0.00099009",
            ),
        ];
        for (label, kind, want) in cases {
            let mut m = venue();
            m.m = m.m.with_contracts(&[kind]);
            let r = run(
                &mut m,
                &order(0, OrderRequest::market(I, Side::Buy, p(101), q(2))),
                100,
            );
            let fee = r.iter().find_map(|x| match x {
                OrderReport::Fill { fee, .. } => Some(*fee),
                _ => None,
            });
            assert_eq!(fee, Some(Qty::parse(want).unwrap()), "{label}: {r:?}");
        }
    }

    /// A probabilistic estimate of the volume ahead is rounded to whole lots when the lot
    /// sizes are known, so fills are whole lots; without them it can leave half a lot ahead.
    #[test]
    fn a_probabilistic_queue_fills_whole_lots() {
        let fill_qtys = |lots: Option<&[Qty]>| {
            let mut m = venue();
            m.m = m.m.with_queue_model(QueueModel::Power(1.0));
            if let Some(lots) = lots {
                m.m = m.m.with_lot_sizes(lots);
            }
            // Rests 2 behind the 5 at 99; 5 join behind; 3 leave without a trade: power 1
            // puts half of them ahead, 3.5 ahead.
            let mut out = run(
                &mut m,
                &order(0, OrderRequest::limit(I, Side::Buy, p(99), q(2))),
                100,
            );
            for (now, qty) in [(200, 10), (300, 7)] {
                let d = BookDelta {
                    instrument: I,
                    side: Side::Buy,
                    flags: DeltaFlags(DeltaFlags::LAST_IN_MESSAGE),
                    price: p(99),
                    qty: q(qty),
                    update_id: now,
                };
                m.on_market(
                    &Event::new(now, now, EventKind::BookDelta(d)),
                    now,
                    &mut |r| out.push(r),
                );
            }
            trade(&mut m, 400, 99, 4, &mut out);
            trade(&mut m, 500, 99, 4, &mut out);
            m.advance(600, &mut |r| out.push(r));
            out.iter()
                .filter_map(|r| match r {
                    OrderReport::Fill { qty, .. } => Some(qty.raw()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let unit = q(1).raw();
        assert_eq!(
            fill_qtys(None),
            vec![unit / 2, unit + unit / 2],
            "TC0 no lot sizes: 3.5 ahead, half a unit fills from the first trade"
        );
        assert_eq!(
            fill_qtys(Some(&[q(1)])),
            vec![2 * unit],
            "TC1 lot 1: 4 ahead, the first trade clears it, the second fills both lots"
        );
    }

    /// Volume tiers take over once the run's traded notional reaches them; an instrument's
    /// own rates override both the base rates and the tiers.
    #[test]
    fn fee_tiers_by_traded_volume_and_per_instrument_rates() {
        use rust_decimal::Decimal;
        // Every fill of `r`: (notional, rate in bp) as decimals.
        let rates = |r: &[OrderReport]| -> Vec<(Decimal, Decimal)> {
            r.iter()
                .filter_map(|r| match r {
                    OrderReport::Fill {
                        price, qty, fee, ..
                    } => {
                        let notional = price.to_decimal() * qty.to_decimal();
                        Some((
                            notional,
                            fee.to_decimal() * Decimal::from(10_000) / notional,
                        ))
                    }
                    _ => None,
                })
                .collect()
        };
        let tiers = vec![
            FeeTier {
                min_volume: Qty::from_units(300),
                maker_fee_bps: -2,
                taker_fee_bps: 3,
            },
            FeeTier {
                min_volume: Qty::from_units(500),
                maker_fee_bps: -3,
                taker_fee_bps: 1,
            },
        ];
        let mut m = venue();
        m.m = m.m.with_fees(FeeSchedule {
            per_instrument: vec![],
            tiers: tiers.clone(),
        });
        let buy = |k: u32| order(k, OrderRequest::market(I, Side::Buy, p(103), q(1)));
        let mut traded = Decimal::ZERO;
        let mut seen = Vec::new();
        for k in 0..6u32 {
            let r = run(&mut m, &buy(k), 100 + u64::from(k) * 100);
            for (notional, bps) in rates(&r) {
                let want = if traded >= Decimal::from(500) {
                    1
                } else if traded >= Decimal::from(300) {
                    3
                } else {
                    5
                };
                assert_eq!(bps, Decimal::from(want), "TC0 fill at {traded} traded");
                seen.push(want);
                traded += notional;
            }
        }
        assert_eq!(seen.first(), Some(&5), "TC1 the base rate first");
        assert!(
            seen.contains(&3) && seen.last() == Some(&1),
            "TC2 both tiers: {seen:?}"
        );
        // The instrument's own rate wins over the tiers.
        let mut own = venue();
        own.m = own.m.with_fees(FeeSchedule {
            per_instrument: vec![Some((0, 7))],
            tiers,
        });
        for k in 0..6u32 {
            let r = run(&mut own, &buy(k), 100 + u64::from(k) * 100);
            for (_, bps) in rates(&r) {
                assert_eq!(bps, Decimal::from(7), "TC3 fill {k}");
            }
        }
    }

    #[test]
    fn resting_order_waits_for_the_queue_ahead() {
        let mut m = venue();
        let mut out = run(
            &mut m,
            &order(0, OrderRequest::limit(I, Side::Buy, p(99), q(3))),
            100,
        );
        assert_eq!(last(&out), "accepted");
        trade(&mut m, 200, 99, 3, &mut out);
        assert!(fills(&out).is_empty(), "5 ahead, 3 traded: still 2 ahead");
        trade(&mut m, 300, 99, 4, &mut out);
        m.advance(400, &mut |r| out.push(r));
        assert_eq!(
            fills(&out),
            vec![(99, 2, true)],
            "2 ahead traded, then 2 of ours"
        );
        // A level shrinking below the queue: cancels ahead of us.
        let mut m = venue();
        let mut out = run(
            &mut m,
            &order(0, OrderRequest::limit(I, Side::Buy, p(99), q(3))),
            100,
        );
        let shrink = BookDelta {
            instrument: I,
            side: Side::Buy,
            flags: DeltaFlags(DeltaFlags::LAST_IN_MESSAGE),
            price: p(99),
            qty: q(1),
            update_id: 2,
        };
        m.on_market(
            &Event::new(150, 150, EventKind::BookDelta(shrink)),
            150,
            &mut |r| out.push(r),
        );
        trade(&mut m, 200, 99, 2, &mut out);
        m.advance(300, &mut |r| out.push(r));
        assert_eq!(fills(&out), vec![(99, 1, true)], "1 ahead, then 1 of ours");
        // A trade through the price fills up to the traded size.
        trade(&mut m, 400, 98, 5, &mut out);
        m.advance(500, &mut |r| out.push(r));
        assert_eq!(fills(&out), vec![(99, 1, true), (99, 2, true)]);
    }

    /// A resting order fills whole, as a maker at its own price, once a level of the other
    /// side reaches it; a level short of it, a level of its own side, or a removal does not.
    /// Resting: buy 3 at 100 and sell 2 at 100.5 are impossible together, so each case rests
    /// one order in the venue (bids 99×5, 98×5; asks 101×2, 102×3, 103×10).
    #[test]
    fn the_other_side_reaching_a_resting_order_fills_it_table() {
        // (label, order side, order price, delta side, delta price, delta qty, fills)
        type Case = (
            &'static str,
            Side,
            i64,
            Side,
            i64,
            i64,
            Vec<(i64, i64, bool)>,
        );
        let cases: [Case; 7] = [
            (
                "TC0 ask at the bid fills it",
                Side::Buy,
                100,
                Side::Sell,
                100,
                4,
                vec![(100, 3, true)],
            ),
            (
                "TC1 ask below the bid fills it at the bid",
                Side::Buy,
                100,
                Side::Sell,
                99,
                1,
                vec![(100, 3, true)],
            ),
            (
                "TC2 ask above the bid does not",
                Side::Buy,
                99,
                Side::Sell,
                100,
                4,
                vec![],
            ),
            (
                "TC3 removing an ask level does not",
                Side::Buy,
                100,
                Side::Sell,
                100,
                0,
                vec![],
            ),
            (
                "TC4 a bid level on our own side does not",
                Side::Buy,
                100,
                Side::Buy,
                100,
                9,
                vec![],
            ),
            (
                "TC5 bid at the ask fills it",
                Side::Sell,
                100,
                Side::Buy,
                100,
                1,
                vec![(100, 3, true)],
            ),
            (
                "TC6 bid above the ask fills it at the ask",
                Side::Sell,
                100,
                Side::Buy,
                101,
                7,
                vec![(100, 3, true)],
            ),
        ];
        for (label, side, price, dside, dprice, dqty, want) in cases {
            let mut m = venue();
            if side == Side::Sell {
                // Clear the bids so that a sell at 100 rests rather than taking.
                for (level, n) in [(99, 2), (98, 3)] {
                    let d = BookDelta {
                        instrument: I,
                        side: Side::Buy,
                        flags: DeltaFlags(DeltaFlags::LAST_IN_MESSAGE),
                        price: p(level),
                        qty: Qty::ZERO,
                        update_id: n,
                    };
                    m.on_market(&Event::new(1, 1, EventKind::BookDelta(d)), 1, &mut |_| {});
                }
            }
            let o = order(0, OrderRequest::limit(I, side, p(price), q(3)));
            let mut out = run(&mut m, &o, 100);
            assert_eq!(last(&out), "accepted", "{label}: rests");
            let d = BookDelta {
                instrument: I,
                side: dside,
                flags: DeltaFlags(DeltaFlags::LAST_IN_MESSAGE),
                price: p(dprice),
                qty: q(dqty),
                update_id: 9,
            };
            m.on_market(
                &Event::new(200, 200, EventKind::BookDelta(d)),
                200,
                &mut |r| out.push(r),
            );
            m.advance(300, &mut |r| out.push(r));
            assert_eq!(fills(&out), want, "{label}");
            let filled = want.iter().map(|f| f.1).sum::<i64>();
            assert_eq!(
                m.position(0),
                q(filled * side.sign()),
                "{label}: the venue's position"
            );
            // Filled orders are gone: a second crossing level fills nothing more.
            m.on_market(
                &Event::new(400, 400, EventKind::BookDelta(d)),
                400,
                &mut |r| out.push(r),
            );
            m.advance(500, &mut |r| out.push(r));
            assert_eq!(fills(&out).len(), want.len(), "{label}: once");
        }
    }

    /// Amends of a resting buy of 3 at 99 that joined behind 5 (bids 99×5, 98×5; asks from
    /// 101) and moved up to 2 ahead when 3 traded at 99. Each case amends at t=100, then 6
    /// trade at 99 at t=200 and 10 at 98 at t=300, and the fills show where the queue put it.
    #[test]
    fn amend_keeps_or_loses_queue_priority_table() {
        // (label, new price, new total qty, answer, fills (price, qty, maker))
        type Case = (&'static str, i64, i64, &'static str, Vec<(i64, i64, bool)>);
        let cases: [Case; 6] = [
            // Same price, smaller: keeps its place (2 ahead): both of ours fill from the 6.
            (
                "TC0 decrease keeps priority",
                99,
                2,
                "amended",
                vec![(99, 2, true)],
            ),
            // Same price, larger: back of the level (5 ahead): 1 fills from the 6, the other 3
            // from the trade through at 98. Kept priority would have filled 4 at once.
            (
                "TC1 increase loses priority",
                99,
                4,
                "amended",
                vec![(99, 1, true), (99, 3, true)],
            ),
            // New price 98: back of 98 (5 ahead); the trades at 99 do not reach it; 10 at 98
            // fill the 5 ahead, then all 3 of ours.
            (
                "TC2 new price loses priority",
                98,
                3,
                "amended",
                vec![(98, 3, true)],
            ),
            // New price 101 crosses the ask 101×2: takes 2, rests 1 at 101; the trade at 99 is
            // through its price and fills the rest.
            (
                "TC3 crossing price takes liquidity",
                101,
                3,
                "amended",
                vec![(101, 1, true), (101, 2, false)],
            ),
            // A zero total is refused; the order keeps its place (2 ahead): 3 fill from the 6.
            (
                "TC4 zero total refused",
                99,
                0,
                "amend_rejected",
                vec![(99, 3, true)],
            ),
            // An order the venue does not have.
            ("TC5 not working", 99, 2, "amend_rejected", vec![]),
        ];
        for (label, price, qty, answer, want) in cases {
            let mut m = venue();
            let req = OrderRequest::limit(I, Side::Buy, p(99), q(3));
            let mut out = run(&mut m, &order(0, req), 40);
            assert_eq!(last(&out), "accepted", "{label}");
            trade(&mut m, 60, 99, 3, &mut out);
            assert!(fills(&out).is_empty(), "{label}: 5 ahead, 3 traded");
            let id = if label.starts_with("TC5") {
                ClientOrderId::new(9, 5)
            } else {
                ClientOrderId::new(1, 0)
            };
            m.m.amend(id, p(price), q(qty), 100, &mut |r| out.push(r));
            m.advance(100 + ENTRY + RESPONSE, &mut |r| out.push(r));
            let answered = out
                .iter()
                .rev()
                .find(|r| {
                    matches!(
                        r,
                        OrderReport::Amended { .. } | OrderReport::AmendRejected { .. }
                    )
                })
                .copied();
            let got = match answered {
                Some(OrderReport::Amended { .. }) => "amended",
                Some(OrderReport::AmendRejected { .. }) => "amend_rejected",
                _ => "none",
            };
            assert_eq!(got, answer, "{label}: {out:?}");
            if label.starts_with("TC5") {
                continue;
            }
            trade(&mut m, 200, 99, 6, &mut out);
            trade(&mut m, 300, 98, 10, &mut out);
            m.advance(1_000, &mut |r| out.push(r));
            let mut got = fills(&out);
            got.sort_unstable();
            let mut want = want;
            want.sort_unstable();
            assert_eq!(got, want, "{label}: {out:?}");
        }
    }

    #[test]
    fn a_post_only_amend_that_would_cross_is_refused_and_the_order_stays() {
        let mut m = venue();
        let req = OrderRequest {
            post_only: true,
            ..OrderRequest::limit(I, Side::Buy, p(99), q(3))
        };
        let mut out = run(&mut m, &order(0, req), 50);
        let id = ClientOrderId::new(1, 0);
        m.m.amend(id, p(101), q(3), 100, &mut |r| out.push(r));
        m.advance(200, &mut |r| out.push(r));
        assert!(
            matches!(
                out.last(),
                Some(OrderReport::AmendRejected {
                    reason: RejectReason::PostOnlyWouldCross,
                    ..
                })
            ),
            "TC0 {out:?}"
        );
        // Still resting at 99 with its place: 5 ahead, 6 trade, 1 of ours fills.
        trade(&mut m, 300, 99, 6, &mut out);
        m.advance(400, &mut |r| out.push(r));
        assert_eq!(fills(&out), vec![(99, 1, true)], "TC1");
        assert_eq!(m.m.stats().amends_rejected, 1, "TC2");
    }

    #[test]
    fn stops_trigger_on_trades_and_take_liquidity() {
        let mut m = venue();
        let mut out = run(
            &mut m,
            &order(0, OrderRequest::stop_market(I, Side::Sell, p(98), q(6))),
            100,
        );
        trade(&mut m, 200, 99, 1, &mut out);
        assert!(fills(&out).is_empty(), "not triggered at 99");
        trade(&mut m, 300, 98, 1, &mut out);
        m.advance(400, &mut |r| out.push(r));
        assert_eq!(
            fills(&out),
            vec![(99, 5, false), (98, 1, false)],
            "triggered: a market sell walks the bids"
        );
        let mut m = venue();
        let stop_limit = OrderRequest {
            kind: OrderKind::StopLimit,
            trigger: p(102),
            ..OrderRequest::limit(I, Side::Buy, p(102), q(4))
        };
        let mut out = run(&mut m, &order(0, stop_limit), 100);
        trade(&mut m, 200, 102, 1, &mut out);
        m.advance(300, &mut |r| out.push(r));
        assert_eq!(
            fills(&out),
            vec![(101, 2, false), (102, 2, false)],
            "stop-limit takes up to its limit"
        );
    }

    /// With market-data latency the venue is ahead of the engine's view: a market buy sent at
    /// 0 meets a book change the engine only sees at `ENTRY + md`, and its reports still take
    /// the round trip `ENTRY + RESPONSE`, measured from the send in the receive-time clock.
    #[test]
    fn market_data_latency_puts_the_venue_ahead() {
        let md = RESPONSE - 1;
        let mut m = venue();
        m.m.cfg.md_latency_ns = md;
        let mut out = Vec::new();
        m.submit(
            &order(0, OrderRequest::market(I, Side::Buy, p(105), q(1))),
            0,
            &mut |r| out.push(r),
        )
        .unwrap();
        // The best ask 101 is taken away at receive time ENTRY + md - 1: still before the
        // order reaches the venue in this clock.
        let gone = BookDelta {
            instrument: I,
            side: Side::Sell,
            flags: DeltaFlags(DeltaFlags::LAST_IN_MESSAGE),
            price: p(101),
            qty: q(0),
            update_id: 2,
        };
        m.on_market(
            &Event::new(ENTRY + md - 1, ENTRY + md - 1, EventKind::BookDelta(gone)),
            ENTRY + md - 1,
            &mut |r| out.push(r),
        );
        m.advance(ENTRY + RESPONSE - 1, &mut |r| out.push(r));
        assert!(out.is_empty(), "TC1 nothing before the round trip: {out:?}");
        m.advance(ENTRY + md + RESPONSE - md, &mut |r| out.push(r));
        let fill_price = out.iter().find_map(|r| match r {
            OrderReport::Fill { price, .. } => Some(price.raw() / FIXED_SCALE),
            _ => None,
        });
        assert_eq!(
            fill_price,
            Some(102),
            "TC2 filled at the venue's later book: {out:?}"
        );
        // Without market-data latency the same order fills at 101.
        let mut m = venue();
        let mut out = Vec::new();
        m.submit(
            &order(0, OrderRequest::market(I, Side::Buy, p(105), q(1))),
            0,
            &mut |r| out.push(r),
        )
        .unwrap();
        m.advance(ENTRY + RESPONSE, &mut |r| out.push(r));
        let fill_price = out.iter().find_map(|r| match r {
            OrderReport::Fill { price, .. } => Some(price.raw() / FIXED_SCALE),
            _ => None,
        });
        assert_eq!(fill_price, Some(101), "TC3 without md latency");
    }

    #[test]
    fn latency_orders_arrivals_and_reports() {
        let mut m = venue();
        let mut out = Vec::new();
        m.submit(
            &order(0, OrderRequest::market(I, Side::Buy, p(101), q(1))),
            0,
            &mut |r| out.push(r),
        )
        .unwrap();
        m.advance(ENTRY + RESPONSE - 1, &mut |r| out.push(r));
        assert!(out.is_empty(), "nothing before entry + response latency");
        m.advance(ENTRY + RESPONSE, &mut |r| out.push(r));
        assert_eq!(
            out.len(),
            2,
            "ack and fill exactly at entry + response: {out:?}"
        );
        // Two orders sent 1 ns apart arrive in that order: the first takes the best ask.
        let mut m = venue();
        let mut out = Vec::new();
        m.submit(
            &order(0, OrderRequest::market(I, Side::Buy, p(101), q(2))),
            0,
            &mut |r| out.push(r),
        )
        .unwrap();
        m.submit(
            &order(1, OrderRequest::market(I, Side::Buy, p(101), q(2))),
            1,
            &mut |r| out.push(r),
        )
        .unwrap();
        m.advance(100, &mut |r| out.push(r));
        let by_order: Vec<(u32, i64)> = out
            .iter()
            .filter_map(|r| match r {
                OrderReport::Fill {
                    client_id, price, ..
                } => Some((client_id.slot(), price.raw() / FIXED_SCALE)),
                _ => None,
            })
            .collect();
        assert_eq!(by_order, vec![(0, 101), (1, 102)]);
    }

    #[test]
    fn cancels_and_reduce_only() {
        let mut m = venue();
        let mut out = run(
            &mut m,
            &order(0, OrderRequest::limit(I, Side::Buy, p(100), q(1))),
            100,
        );
        m.cancel(ClientOrderId::new(1, 0), 200, &mut |r| out.push(r));
        m.cancel(ClientOrderId::new(9, 3), 200, &mut |r| out.push(r));
        m.advance(300, &mut |r| out.push(r));
        assert!(
            matches!(out[out.len() - 2], OrderReport::Canceled { .. }),
            "{out:?}"
        );
        assert!(matches!(
            out[out.len() - 1],
            OrderReport::CancelRejected {
                reason: RejectReason::UnknownOrder,
                ..
            }
        ));
        run(
            &mut m,
            &order(1, OrderRequest::market(I, Side::Buy, p(101), q(2))),
            400,
        );
        assert_eq!(m.position(0), q(2));
        let reduce = run(
            &mut m,
            &order(
                2,
                OrderRequest {
                    reduce_only: true,
                    ..OrderRequest::ioc(I, Side::Sell, p(99), q(2))
                },
            ),
            600,
        );
        assert_eq!(fills(&reduce), vec![(99, 2, false)]);
        assert_eq!(m.position(0), Qty::ZERO);
    }

    #[test]
    fn trades_only_data_fills_against_the_last_print_once() {
        // No book, no quote: a venue known only from its prints.
        let mut m = bare();
        let mut out = Vec::new();
        let before = run(
            &mut m,
            &order(1, OrderRequest::market(I, Side::Buy, p(100), q(1))),
            100,
        );
        assert_eq!(
            last(&before),
            "canceled",
            "nothing printed yet: no liquidity"
        );
        trade(&mut m, 1, 100, 3, &mut out);
        let o = order(2, OrderRequest::ioc(I, Side::Buy, p(101), q(2)));
        let got = run(&mut m, &o, 100);
        assert_eq!(fills(&got), [(100, 2, false)]);
        // The print's remaining 1 is all a second order can take from it.
        let got = run(
            &mut m,
            &order(3, OrderRequest::ioc(I, Side::Buy, p(101), q(5))),
            100,
        );
        assert_eq!(fills(&got), [(100, 1, false)]);
        assert_eq!(last(&got), "canceled");
        // Once a quote has been seen, prints are never taken from.
        let quote = tradeloop_engine::event::Quote {
            instrument: I,
            bid_price: p(99),
            bid_qty: q(1),
            ask_price: p(101),
            ask_qty: q(1),
            update_id: 1,
        };
        m.on_market(&Event::new(2, 2, EventKind::Quote(quote)), 2, &mut |r| {
            out.push(r)
        });
        let got = run(
            &mut m,
            &order(4, OrderRequest::ioc(I, Side::Buy, p(102), q(3))),
            100,
        );
        assert_eq!(fills(&got), [(101, 1, false)], "the quote's size only");
        trade(&mut m, 3, 100, 5, &mut out);
        let got = run(
            &mut m,
            &order(5, OrderRequest::ioc(I, Side::Buy, p(102), q(3))),
            100,
        );
        assert!(
            fills(&got).is_empty(),
            "quote exhausted; the print is not liquidity: {got:?}"
        );
    }
}
