//! `Context::amend` through the real loop: what it refuses and why, what the risk gate sees
//! (the order as it becomes, without counting its old terms twice), the venue's answers
//! changing the order and the working totals, and a gateway without amend.

mod common;

use std::sync::Arc;

use common::{registry, AllowAll, Answer, LaneGateway, BTC};
use tradeloop_engine::api::{
    AmendRefusal, Books, Context, Deny, Gateway, GatewayError, OrderUpdate, RiskContext, RiskGate,
    Strategy, SubmitError,
};
use tradeloop_engine::clock::SimClock;
use tradeloop_engine::event::{ClientOrderId, Event, EventKind, OrderReport, RejectReason, Side};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::lane::{LaneConfig, Lanes};
use tradeloop_engine::order::{Order, OrderRequest, OrderStatus};

/// Answers acks at once and amends as told, through HIGH.
struct AmendGateway {
    lanes: Arc<Lanes>,
    /// Answer amends with `Amended` (else `AmendRejected`).
    accept: bool,
    amends: Vec<(ClientOrderId, Price, Qty)>,
}

impl Gateway for AmendGateway {
    fn submit(&mut self, order: &Order, now_ns: u64, _: &Books) -> Result<(), GatewayError> {
        let ack = OrderReport::Accepted {
            client_id: order.client_id,
        };
        self.lanes
            .push_high(Event::new(now_ns, now_ns, EventKind::Order(ack)))
            .expect("room");
        Ok(())
    }
    fn cancel(&mut self, order: &Order, now_ns: u64, _: &Books) -> Result<(), GatewayError> {
        let r = OrderReport::Canceled {
            client_id: order.client_id,
        };
        self.lanes
            .push_high(Event::new(now_ns, now_ns, EventKind::Order(r)))
            .expect("room");
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
        self.amends.push((order.client_id, price, qty));
        let client_id = order.client_id;
        let r = if self.accept {
            OrderReport::Amended {
                client_id,
                price,
                qty,
            }
        } else {
            OrderReport::AmendRejected {
                client_id,
                reason: RejectReason::Venue,
            }
        };
        self.lanes
            .push_high(Event::new(now_ns, now_ns, EventKind::Order(r)))
            .expect("room");
        Ok(())
    }
}

/// Records what the risk gate was asked, and denies orders above `max_working_buy` of
/// working buys plus the order.
#[derive(Default)]
struct Watch {
    seen: Arc<std::sync::Mutex<Vec<(OrderRequest, RiskContext)>>>,
    max_working_buy: Option<Qty>,
}

impl RiskGate for Watch {
    fn check(&mut self, req: &OrderRequest, ctx: &RiskContext) -> Result<(), Deny> {
        self.seen.lock().unwrap().push((*req, *ctx));
        if let Some(max) = self.max_working_buy {
            let projected = ctx.working_buy + req.qty;
            if projected > max {
                return Err(Deny::PositionAboveMax { projected, max });
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Updates(Vec<OrderUpdate>);

impl Strategy for Updates {
    fn on_order<C: Context>(&mut self, _: &mut C, u: &OrderUpdate) {
        self.0.push(*u);
    }
}

fn units(u: i64) -> Qty {
    Qty::from_units(u)
}

fn px(u: i64) -> Price {
    Price::from_units(u)
}

type E = Engine<Updates, Watch, AmendGateway, SimClock>;

fn engine(accept: bool, risk: Watch) -> (E, Arc<Lanes>) {
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let gw = AmendGateway {
        lanes: Arc::clone(&lanes),
        accept,
        amends: Vec::new(),
    };
    let e = Engine::new(
        LoopConfig::default(),
        Arc::clone(&lanes),
        registry(),
        Updates::default(),
        risk,
        gw,
        SimClock::new(1),
    );
    (e, lanes)
}

fn drain(e: &mut E) {
    while e.poll() > 0 {}
}

/// A resting buy of 5 at 100, acknowledged.
fn resting(e: &mut E) -> ClientOrderId {
    let id = e
        .core_mut()
        .submit(OrderRequest::limit(BTC, Side::Buy, px(100), units(5)))
        .expect("allowed");
    drain(e);
    assert_eq!(
        e.core().order(id).map(|o| o.status),
        Some(OrderStatus::Open)
    );
    id
}

#[test]
fn refusals_name_the_reason_and_send_nothing() {
    let (mut e, _lanes) = engine(true, Watch::default());
    // TC0: not acknowledged yet.
    let id = e
        .core_mut()
        .submit(OrderRequest::limit(BTC, Side::Buy, px(100), units(5)))
        .unwrap();
    let refused = |reason| Err(SubmitError::AmendRefused { id, reason });
    assert_eq!(
        e.core_mut().amend(id, px(101), units(5)),
        refused(AmendRefusal::NotAcknowledged),
        "TC0"
    );
    drain(&mut e);
    // TC1 no change, TC2 total not above filled, TC3 non-positive price.
    assert_eq!(
        e.core_mut().amend(id, px(100), units(5)),
        refused(AmendRefusal::NoChange),
        "TC1"
    );
    assert!(
        matches!(
            e.core_mut().amend(id, px(100), Qty::ZERO),
            Err(SubmitError::AmendRefused {
                reason: AmendRefusal::BadTerms { .. },
                ..
            })
        ),
        "TC2"
    );
    assert!(
        matches!(
            e.core_mut().amend(id, Price::ZERO, units(5)),
            Err(SubmitError::AmendRefused {
                reason: AmendRefusal::BadTerms { .. },
                ..
            })
        ),
        "TC3"
    );
    // TC4: a cancel is pending.
    e.core_mut().cancel(id).unwrap();
    assert_eq!(
        e.core_mut().amend(id, px(101), units(5)),
        refused(AmendRefusal::Pending),
        "TC4"
    );
    // TC5: cancelled: gone from the pool, refused as not working (never a panic).
    drain(&mut e);
    assert_eq!(
        e.core_mut().amend(id, px(101), units(5)),
        Err(SubmitError::UnknownOrder(id)),
        "TC5"
    );
    // TC6: an IOC is not a resting limit.
    let ioc = e
        .core_mut()
        .submit(OrderRequest::ioc(BTC, Side::Buy, px(100), units(1)))
        .unwrap();
    drain(&mut e);
    let o = e
        .core()
        .order(ioc)
        .copied()
        .expect("acked, not filled by this venue");
    assert_eq!(o.status, OrderStatus::Open);
    assert_eq!(
        e.core_mut().amend(ioc, px(99), units(1)),
        Err(SubmitError::AmendRefused {
            id: ioc,
            reason: AmendRefusal::NotALimit
        }),
        "TC6"
    );
    // TC7: a second amend while one is pending.
    let id = resting(&mut e);
    e.core_mut().amend(id, px(99), units(5)).unwrap();
    assert_eq!(
        e.core_mut().amend(id, px(98), units(5)),
        Err(SubmitError::AmendRefused {
            id,
            reason: AmendRefusal::Pending
        }),
        "TC7"
    );
    assert_eq!(
        e.gateway().amends.len(),
        1,
        "TC8 only the valid amend reached the gateway"
    );
    assert_eq!(e.counters().amends_sent, 1, "TC9");
}

#[test]
fn risk_sees_the_order_as_it_becomes_and_working_totals_follow_the_venue() {
    let risk = Watch {
        max_working_buy: Some(units(8)),
        ..Watch::default()
    };
    let seen = Arc::clone(&risk.seen);
    let (mut e, _lanes) = engine(true, risk);
    let id = resting(&mut e);
    // Growing 5 → 8 is within 8 working: the old 5 is not counted twice.
    e.core_mut().amend(id, px(100), units(8)).unwrap();
    let (req, ctx) = *seen.lock().unwrap().last().unwrap();
    assert_eq!(
        (req.qty, req.price, ctx.working_buy),
        (units(8), px(100), Qty::ZERO),
        "TC0"
    );
    assert_eq!(
        (ctx.open_orders_instrument, ctx.open_orders_total),
        (0, 0),
        "TC1 itself not counted"
    );
    drain(&mut e);
    let o = e.core().order(id).copied().unwrap();
    assert_eq!(
        (o.status, o.request.qty, o.amend_pending),
        (OrderStatus::Open, units(8), false),
        "TC2"
    );
    assert!(
        matches!(
            e.strategy().0.last().map(|u| u.report),
            Some(OrderReport::Amended { .. })
        ),
        "TC3 the strategy is told"
    );
    // A second order now sees 8 working.
    let denied = e
        .core_mut()
        .submit(OrderRequest::limit(BTC, Side::Buy, px(99), units(1)));
    assert!(
        matches!(
            denied,
            Err(SubmitError::Denied(Deny::PositionAboveMax { .. }))
        ),
        "TC4 {denied:?}"
    );
    // Growing past the limit is denied, and counted as a denial.
    let denials = e.counters().denials.iter().sum::<u64>();
    let r = e.core_mut().amend(id, px(100), units(9));
    assert!(
        matches!(r, Err(SubmitError::Denied(Deny::PositionAboveMax { .. }))),
        "TC5 {r:?}"
    );
    assert_eq!(e.counters().denials.iter().sum::<u64>(), denials + 1, "TC6");
    // Shrinking 8 → 2 frees room: now 1 more fits ... and 7 more would not.
    e.core_mut().amend(id, px(100), units(2)).unwrap();
    drain(&mut e);
    e.core_mut()
        .submit(OrderRequest::limit(BTC, Side::Buy, px(99), units(6)))
        .expect("TC7 2 + 6 = 8 working");
    let r = e
        .core_mut()
        .submit(OrderRequest::limit(BTC, Side::Buy, px(99), units(1)));
    assert!(r.is_err(), "TC8 9 > 8");
}

#[test]
fn a_rejected_amend_leaves_the_old_terms_and_an_unsupported_gateway_says_so() {
    let (mut e, _lanes) = engine(false, Watch::default());
    let id = resting(&mut e);
    e.core_mut().amend(id, px(101), units(7)).unwrap();
    assert_eq!(
        e.core().order(id).unwrap().status,
        OrderStatus::PendingAmend,
        "TC0"
    );
    drain(&mut e);
    let o = e.core().order(id).copied().unwrap();
    assert_eq!(
        (o.status, o.request.price, o.request.qty),
        (OrderStatus::Open, px(100), units(5)),
        "TC1"
    );
    assert!(matches!(
        e.strategy().0.last().map(|u| u.report),
        Some(OrderReport::AmendRejected {
            reason: RejectReason::Venue,
            ..
        })
    ));
    // The kill switch's cancel-all reaches an order with an amend pending.
    e.core_mut().amend(id, px(101), units(7)).unwrap();
    e.core_mut().cancel(id).unwrap();
    drain(&mut e);
    assert!(
        e.core().order(id).is_none(),
        "TC2 cancelled while the amend was pending"
    );

    // A gateway without amend.
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let mut e = Engine::new(
        LoopConfig::default(),
        Arc::clone(&lanes),
        registry(),
        Updates::default(),
        AllowAll,
        LaneGateway::new(Arc::clone(&lanes), Answer::AckOnly),
        SimClock::new(1),
    );
    let id = e
        .core_mut()
        .submit(OrderRequest::limit(BTC, Side::Buy, px(100), units(5)))
        .unwrap();
    while e.poll() > 0 {}
    assert_eq!(
        e.core_mut().amend(id, px(99), units(5)),
        Err(SubmitError::Gateway(GatewayError::AmendUnsupported)),
        "TC3"
    );
    assert_eq!(
        e.core().order(id).unwrap().status,
        OrderStatus::Open,
        "TC4 unchanged"
    );
}
