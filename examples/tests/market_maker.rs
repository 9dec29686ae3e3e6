//! The market maker through the real engine, pre-trade risk and simulated venue on a simulated
//! clock: where it quotes, how it skews after a fill, that it amends rather than cancels, and
//! that the position limit and a halt take its quotes away.

use std::sync::Arc;

use tradeloop_adapters::sim::gateway::SimGateway;
use tradeloop_adapters::sim::matching::ExecConfig;
use tradeloop_engine::api::{Context, TradingState};
use tradeloop_engine::clock::{Clock, SimClock};
use tradeloop_engine::event::{BookDelta, DeltaFlags, Event, EventKind, Side, Trade};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{ContractKind, InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::lane::{LaneConfig, Lanes};
use tradeloop_engine::order::{Order, OrderStatus};
use tradeloop_examples::market_maker::{MarketMaker, MarketMakerParams};
use tradeloop_risk::{PreTradeRisk, RiskLimits};

const BTC: InstrumentIndex = InstrumentIndex(0);
const LATENCY_NS: u64 = 1_000;

type E = Engine<MarketMaker, PreTradeRisk, SimGateway, SimClock>;

fn px(s: &str) -> Price {
    Price::parse(s).unwrap()
}

fn qty(s: &str) -> Qty {
    Qty::parse(s).unwrap()
}

struct Rig {
    e: E,
    clock: SimClock,
    update_id: u64,
}

impl Rig {
    fn new(params: &MarketMakerParams) -> Self {
        let mut registry = InstrumentRegistry::new();
        registry
            .add(
                "sim",
                "BTCUSDT",
                px("0.1"),
                qty("0.001"),
                ContractKind::Spot,
            )
            .unwrap();
        let lanes = Arc::new(Lanes::new(LaneConfig::default()));
        let clock = SimClock::new(1_000_000_000);
        let cfg = LoopConfig::default();
        let gateway = SimGateway::new(
            ExecConfig {
                maker_fee_bps: 0,
                taker_fee_bps: 0,
                entry_latency_ns: LATENCY_NS,
                response_latency_ns: LATENCY_NS,
                jitter_ns: 0,
                md_latency_ns: 0,
                seed: 1,
                order_slots: cfg.order_slots,
                instruments: 1,
                book_levels: cfg.book_levels,
            },
            Arc::clone(&lanes),
        );
        let mm = MarketMaker::new(params, BTC, px("0.1"));
        let risk = PreTradeRisk::new(RiskLimits {
            max_position: qty("1"),
            orders_per_second: 10_000,
            orders_per_second_per_instrument: 10_000,
            ..RiskLimits::default()
        });
        let mut e = Engine::new(
            cfg,
            Arc::clone(&lanes),
            registry,
            mm,
            risk,
            gateway,
            clock.clone(),
        );
        e.start();
        let mut rig = Self {
            e,
            clock,
            update_id: 0,
        };
        // A print first: risk's price band needs a reference price (book levels set none).
        rig.trade("100.1", "0.001", Side::Buy);
        rig
    }

    /// Advances the clock by `ns` and lets the engine and venue catch up.
    fn wait(&mut self, ns: u64) {
        self.clock.advance(ns);
        let now = self.clock.now_ns();
        self.e.poll_gateway(now);
        while self.e.poll() > 0 {}
    }

    /// A book message: a snapshot of one bid and one ask level.
    fn book(&mut self, bid: (&str, &str), ask: (&str, &str)) {
        self.update_id += 1;
        let now = self.clock.now_ns();
        let level = |side, (p, q): (&str, &str), flags| {
            Event::new(
                now,
                now,
                EventKind::BookDelta(BookDelta {
                    instrument: BTC,
                    side,
                    flags: DeltaFlags(flags),
                    price: px(p),
                    qty: qty(q),
                    update_id: self.update_id,
                }),
            )
        };
        self.e
            .handle_market(level(Side::Buy, bid, DeltaFlags::SNAPSHOT_BEGIN));
        self.e
            .handle_market(level(Side::Sell, ask, DeltaFlags::LAST_IN_MESSAGE));
        self.wait(0);
    }

    fn trade(&mut self, price: &str, size: &str, aggressor: Side) {
        let now = self.clock.now_ns();
        self.e.handle_market(Event::new(
            now,
            now,
            EventKind::Trade(Trade {
                instrument: BTC,
                aggressor,
                price: px(price),
                qty: qty(size),
                trade_id: now,
            }),
        ));
        self.wait(0);
    }

    /// The working quotes `(bid, ask)`.
    fn quotes(&self) -> (Option<Order>, Option<Order>) {
        let (bid, ask) = self.e.strategy().quotes();
        let core = self.e.core();
        (
            bid.and_then(|id| core.order(id).copied()),
            ask.and_then(|id| core.order(id).copied()),
        )
    }

    fn prices(&self) -> (Option<Price>, Option<Price>) {
        let (b, a) = self.quotes();
        (b.map(|o| o.request.price), a.map(|o| o.request.price))
    }
}

fn params() -> MarketMakerParams {
    MarketMakerParams {
        symbol: "BTCUSDT".into(),
        qty: qty("0.01"),
        half_spread_ticks: 1,
        skew_ticks: 1,
        max_position: qty("0.02"),
        requote_ticks: 2,
        refresh_ms: 1_000,
    }
}

#[test]
fn quotes_both_sides_around_the_mid_and_amends_as_the_market_moves() {
    let mut r = Rig::new(&params());
    // A two-tick market: mid 100.1 on a tick, quotes one tick either side.
    r.book(("100.0", "5"), ("100.2", "5"));
    r.wait(3 * LATENCY_NS);
    assert_eq!(r.prices(), (Some(px("100.0")), Some(px("100.2"))), "TC0");
    let (b, a) = r.quotes();
    assert!(
        b.unwrap().request.post_only && a.unwrap().request.post_only,
        "TC1 post-only"
    );
    assert_eq!(b.unwrap().status, OrderStatus::Open, "TC2 acknowledged");
    // A one-tick move is inside the requote band: nothing sent.
    r.book(("100.1", "5"), ("100.3", "5"));
    r.wait(3 * LATENCY_NS);
    assert_eq!(r.e.strategy().stats.amends, 0, "TC3 within requote_ticks");
    // The mid two ticks up with the offer lifting (no bid reaches our ask, which would fill
    // it): both quotes are amended, not cancelled and re-sent.
    r.book(("100.1", "5"), ("100.5", "5"));
    r.wait(3 * LATENCY_NS);
    assert_eq!(r.prices(), (Some(px("100.2")), Some(px("100.4"))), "TC4");
    let s = r.e.strategy().stats;
    assert_eq!((s.quotes_sent, s.amends, s.cancels), (2, 2, 0), "TC5 {s:?}");
    assert_eq!(s.requoted_unfilled, 2, "TC6 neither had filled");
    assert_eq!(r.e.counters().amends_sent, 2, "TC7");
}

#[test]
fn a_fill_skews_both_quotes_and_the_limit_withdraws_a_side() {
    // Requote at every tick, so that the one-tick skew shows on both sides.
    let mut r = Rig::new(&MarketMakerParams {
        requote_ticks: 1,
        ..params()
    });
    r.book(("100.0", "1"), ("100.2", "1"));
    r.wait(3 * LATENCY_NS);
    // Sellers trade through our bid: we buy 0.01.
    r.trade("99.9", "0.05", Side::Sell);
    r.wait(3 * LATENCY_NS);
    assert_eq!(
        r.e.core().position(BTC).qty,
        qty("0.01"),
        "TC0 long one quote"
    );
    // Long one qty: both quotes one tick lower (skew 1 tick per qty) around the mid 100.1:
    // the filled bid is re-sent at 99.9, the ask amended to 100.1.
    r.wait(3 * LATENCY_NS);
    assert_eq!(
        r.prices(),
        (Some(px("99.9")), Some(px("100.1"))),
        "TC1 skewed towards selling"
    );
    let s = r.e.strategy().stats;
    assert_eq!((s.fills, s.maker_fills), (1, 1), "TC2 a resting fill");
    // Another fill at the bid reaches the limit (0.02): the bid is withdrawn.
    r.trade("99.8", "0.05", Side::Sell);
    r.wait(6 * LATENCY_NS);
    assert_eq!(r.e.core().position(BTC).qty, qty("0.02"), "TC3");
    let (bid, ask) = r.prices();
    assert_eq!(bid, None, "TC4 no bid at the position limit");
    assert!(ask.is_some(), "TC5 the ask keeps working");
    assert_eq!(
        r.e.strategy().stats.quotes_sent,
        3,
        "TC6 two quotes, one bid re-sent after the first fill, none after the second"
    );
}

#[test]
fn a_halt_takes_every_quote_away_and_a_resume_brings_them_back() {
    let mut r = Rig::new(&params());
    r.book(("100.0", "5"), ("100.2", "5"));
    r.wait(3 * LATENCY_NS);
    assert_eq!(r.prices(), (Some(px("100.0")), Some(px("100.2"))));
    r.e.set_trading_state(TradingState::Halted);
    r.book(("100.0", "5"), ("100.2", "6"));
    r.wait(3 * LATENCY_NS);
    assert_eq!(r.prices(), (None, None), "TC0 halted: both cancelled");
    assert_eq!(r.e.strategy().stats.cancelled_unfilled, 2, "TC1");
    r.e.set_trading_state(TradingState::Active);
    // The refresh timer requotes without waiting for a book change.
    r.wait(1_000_000_000);
    r.wait(3 * LATENCY_NS);
    assert_eq!(r.prices(), (Some(px("100.0")), Some(px("100.2"))), "TC2");
    assert!(r.e.strategy().stats.timers >= 1, "TC3");
}
