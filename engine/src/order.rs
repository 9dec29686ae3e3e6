//! Orders and their lifecycle as an explicit state machine. Hot path: transitions run per order
//! report on the engine thread; illegal transitions are returned as errors, never ignored.

use crate::event::{ClientOrderId, Side, StrategyId};
use crate::fixed::{Money, Price, Qty};
use crate::instrument::InstrumentIndex;

/// Order type.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum OrderKind {
    /// Executes against the book at any price (bounded by risk's price band).
    Market = 0,
    /// Executes at the limit price or better.
    Limit = 1,
    /// Becomes a market order when the last trade reaches `trigger`.
    StopMarket = 2,
    /// Becomes a limit order at `price` when the last trade reaches `trigger`.
    StopLimit = 3,
}

impl OrderKind {
    /// `true` for stop orders (they wait for their trigger).
    #[must_use]
    pub const fn is_stop(self) -> bool {
        matches!(self, Self::StopMarket | Self::StopLimit)
    }

    /// `true` if the order carries a limit price (limit and stop-limit).
    #[must_use]
    pub const fn has_limit(self) -> bool {
        matches!(self, Self::Limit | Self::StopLimit)
    }
}

/// Time in force.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TimeInForce {
    /// Good till cancelled.
    Gtc = 0,
    /// Immediate or cancel: the unfilled remainder is cancelled.
    Ioc = 1,
    /// Fill or kill: all at once or nothing.
    Fok = 2,
}

/// What a strategy asks for. Copy, no heap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OrderRequest {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// Buy or sell.
    pub side: Side,
    /// Market or limit.
    pub kind: OrderKind,
    /// Time in force.
    pub tif: TimeInForce,
    /// Limit price (for market orders: the reference price used by risk checks).
    pub price: Price,
    /// Trigger price of a stop order (zero otherwise).
    pub trigger: Price,
    /// Quantity (positive).
    pub qty: Qty,
    /// May only reduce the position.
    pub reduce_only: bool,
    /// Must rest as a maker; rejected if it would cross.
    pub post_only: bool,
    /// The strategy it belongs to (set by a [`Portfolio`](crate::portfolio::Portfolio)'s
    /// context; 0 with a single strategy).
    pub strategy: StrategyId,
}

impl OrderRequest {
    /// A GTC limit order.
    #[must_use]
    pub const fn limit(instrument: InstrumentIndex, side: Side, price: Price, qty: Qty) -> Self {
        Self {
            instrument,
            side,
            kind: OrderKind::Limit,
            tif: TimeInForce::Gtc,
            price,
            trigger: Price::ZERO,
            qty,
            reduce_only: false,
            post_only: false,
            strategy: StrategyId(0),
        }
    }

    /// A market order (`reference` is the price risk checks use).
    #[must_use]
    pub const fn market(
        instrument: InstrumentIndex,
        side: Side,
        reference: Price,
        qty: Qty,
    ) -> Self {
        Self {
            kind: OrderKind::Market,
            tif: TimeInForce::Ioc,
            ..Self::limit(instrument, side, reference, qty)
        }
    }

    /// A stop-market order triggering at `trigger`.
    #[must_use]
    pub const fn stop_market(
        instrument: InstrumentIndex,
        side: Side,
        trigger: Price,
        qty: Qty,
    ) -> Self {
        // A stop works (GTC) until it triggers; then it executes as a market order.
        Self {
            kind: OrderKind::StopMarket,
            tif: TimeInForce::Gtc,
            trigger,
            ..Self::market(instrument, side, trigger, qty)
        }
    }

    /// An IOC limit order (a marketable limit when the price crosses the spread).
    #[must_use]
    pub const fn ioc(instrument: InstrumentIndex, side: Side, price: Price, qty: Qty) -> Self {
        Self {
            tif: TimeInForce::Ioc,
            ..Self::limit(instrument, side, price, qty)
        }
    }
}

/// Lifecycle state of an order.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum OrderStatus {
    /// Handed to the gateway, not yet acknowledged.
    PendingNew = 0,
    /// Working at the venue, nothing filled.
    Open = 1,
    /// Working at the venue, partly filled.
    PartiallyFilled = 2,
    /// A cancel was requested and not yet confirmed.
    PendingCancel = 3,
    /// Terminal: completely filled.
    Filled = 4,
    /// Terminal: cancelled or expired (possibly after partial fills).
    Canceled = 5,
    /// Terminal: refused by the venue.
    Rejected = 6,
    /// An amend (new price and/or quantity) was requested and not yet answered; the order
    /// works on its old terms meanwhile.
    PendingAmend = 7,
}

impl OrderStatus {
    /// `true` for states an order never leaves.
    #[inline]
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Filled | Self::Canceled | Self::Rejected)
    }

    /// `true` while the order may still fill.
    #[inline]
    #[must_use]
    pub const fn is_working(self) -> bool {
        !self.is_terminal()
    }
}

/// An input to the order state machine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OrderInput {
    /// The venue accepted the order.
    Ack,
    /// An execution of this quantity.
    Fill(Qty),
    /// The engine asked to cancel.
    CancelRequest,
    /// The venue confirmed the order is gone.
    Canceled,
    /// The venue refused the order.
    Reject,
    /// The venue refused the cancel.
    CancelRejected,
    /// The engine asked to amend the order to this price and total quantity.
    AmendRequest {
        /// New limit price.
        price: Price,
        /// New total quantity (filled part included).
        qty: Qty,
    },
    /// The venue amended the order to these terms.
    Amended {
        /// Limit price now.
        price: Price,
        /// Total quantity now (filled part included).
        qty: Qty,
    },
    /// The venue refused the amend: the order works on its old terms.
    AmendRejected,
}

/// A transition the state machine refuses.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum TransitionError {
    /// The input is not legal in this state.
    #[error("illegal transition: {input:?} in state {from:?}")]
    Illegal {
        /// Current state.
        from: OrderStatus,
        /// Refused input.
        input: OrderInput,
    },
    /// A fill for more than the remaining quantity.
    #[error("overfill: {fill} with only {remaining} remaining")]
    Overfill {
        /// Fill quantity.
        fill: Qty,
        /// What was left.
        remaining: Qty,
    },
    /// A fill of zero or negative quantity.
    #[error("fill quantity must be positive, got {0}")]
    NonPositiveFill(Qty),
    /// An amend to a total quantity at or below what has already filled, or a non-positive
    /// price.
    #[error("amend to {qty} at {price} with {filled} already filled")]
    BadAmend {
        /// Requested or reported total quantity.
        qty: Qty,
        /// Requested or reported price.
        price: Price,
        /// Filled so far.
        filled: Qty,
    },
}

/// One order, stored in a pool slot and mutated in place.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Order {
    /// Run-unique id (encodes the slot).
    pub client_id: ClientOrderId,
    /// What was asked.
    pub request: OrderRequest,
    /// Current state.
    pub status: OrderStatus,
    /// Quantity filled so far.
    pub filled: Qty,
    /// Sum of `price × qty` over fills (average price = this / filled).
    pub filled_notional: Money,
    /// Clock time the order was created.
    pub created_ns: u64,
    /// Clock time of the last transition.
    pub updated_ns: u64,
    /// An amend was asked for and not yet answered (while `PendingAmend`, or `PendingCancel`
    /// when a cancel followed the amend). Its terms travel in the request and in the venue's
    /// `Amended` report; a flag keeps the order as small as before (it is copied per report).
    pub amend_pending: bool,
}

impl Order {
    /// A new order in `PendingNew`.
    #[must_use]
    pub const fn new(client_id: ClientOrderId, request: OrderRequest, now_ns: u64) -> Self {
        Self {
            client_id,
            request,
            status: OrderStatus::PendingNew,
            filled: Qty::ZERO,
            filled_notional: Money::ZERO,
            created_ns: now_ns,
            updated_ns: now_ns,
            amend_pending: false,
        }
    }

    /// Quantity not yet filled.
    #[inline]
    #[must_use]
    pub const fn remaining(&self) -> Qty {
        Qty(self.request.qty.0 - self.filled.0)
    }

    /// Applies one input and returns the new state.
    ///
    /// # Errors
    /// [`TransitionError`] if the input is illegal in the current state or the fill is bad;
    /// the order is then left unchanged.
    pub fn apply(
        &mut self,
        input: OrderInput,
        now_ns: u64,
    ) -> Result<OrderStatus, TransitionError> {
        use OrderInput as I;
        use OrderStatus as S;
        let from = self.status;
        let illegal = Err(TransitionError::Illegal { from, input });
        // Where an answered cancel or amend leaves a working order.
        let working = |filled: Qty| {
            if filled.is_zero() {
                S::Open
            } else {
                S::PartiallyFilled
            }
        };
        let mut amend = self.amend_pending;
        let mut terms = None;
        let next = match (from, input) {
            (S::Filled | S::Canceled | S::Rejected, _) => return illegal,
            (_, I::Fill(q)) => {
                if q.0 <= 0 {
                    return Err(TransitionError::NonPositiveFill(q));
                }
                let remaining = self.remaining();
                if q > remaining {
                    return Err(TransitionError::Overfill { fill: q, remaining });
                }
                if q == remaining {
                    amend = false;
                    S::Filled
                } else if matches!(from, S::PendingCancel | S::PendingAmend) {
                    from
                } else {
                    S::PartiallyFilled
                }
            }
            (S::PendingNew, I::Ack) => S::Open,
            // A late ack after a cancel was requested: the cancel is still pending.
            (S::PendingCancel, I::Ack) => S::PendingCancel,
            (S::PendingNew, I::Reject) => S::Rejected,
            (S::PendingNew | S::Open | S::PartiallyFilled | S::PendingAmend, I::CancelRequest) => {
                S::PendingCancel
            }
            (
                S::PendingNew | S::Open | S::PartiallyFilled | S::PendingCancel | S::PendingAmend,
                I::Canceled,
            ) => {
                amend = false;
                S::Canceled
            }
            (S::PendingCancel, I::CancelRejected) => {
                if amend {
                    S::PendingAmend
                } else {
                    working(self.filled)
                }
            }
            (S::Open | S::PartiallyFilled, I::AmendRequest { price, qty }) => {
                if qty <= self.filled || price.raw() <= 0 {
                    return Err(TransitionError::BadAmend {
                        qty,
                        price,
                        filled: self.filled,
                    });
                }
                amend = true;
                S::PendingAmend
            }
            (S::PendingAmend | S::PendingCancel, I::Amended { price, qty }) if amend => {
                if qty < self.filled || price.raw() <= 0 {
                    return Err(TransitionError::BadAmend {
                        qty,
                        price,
                        filled: self.filled,
                    });
                }
                amend = false;
                terms = Some((price, qty));
                if qty == self.filled {
                    S::Filled
                } else if from == S::PendingCancel {
                    S::PendingCancel
                } else {
                    working(self.filled)
                }
            }
            (S::PendingAmend | S::PendingCancel, I::AmendRejected) if amend => {
                amend = false;
                if from == S::PendingCancel {
                    S::PendingCancel
                } else {
                    working(self.filled)
                }
            }
            _ => return illegal,
        };
        self.status = next;
        self.amend_pending = amend;
        if let Some((price, qty)) = terms {
            self.request.price = price;
            self.request.qty = qty;
        }
        self.updated_ns = now_ns;
        Ok(next)
    }

    /// Records a fill's price and quantity after [`Self::apply`] accepted it.
    #[inline]
    pub fn record_fill(&mut self, price: Price, qty: Qty) {
        self.filled += qty;
        self.filled_notional += Money::notional(price, qty);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderInput as I;
    use OrderStatus as S;

    fn order_in(status: S, filled_units: i64) -> Order {
        let req = OrderRequest::limit(
            InstrumentIndex(0),
            Side::Buy,
            Price::from_units(100),
            Qty::from_units(10),
        );
        let mut o = Order::new(ClientOrderId::new(1, 0), req, 0);
        o.status = status;
        o.filled = Qty::from_units(filled_units);
        o.amend_pending = status == S::PendingAmend;
        o
    }

    /// The terms the table's amends ask for and the venue grants: 6 at 99.
    fn amend_terms() -> (Price, Qty) {
        (Price::from_units(99), Qty::from_units(6))
    }

    /// Every state, plus `PendingCancel` with an amend still pending (`true`).
    const ALL_STATES: [(S, bool); 9] = [
        (S::PendingNew, false),
        (S::Open, false),
        (S::PartiallyFilled, false),
        (S::PendingCancel, false),
        (S::PendingCancel, true),
        (S::PendingAmend, true),
        (S::Filled, false),
        (S::Canceled, false),
        (S::Rejected, false),
    ];

    fn all_inputs() -> [I; 11] {
        let (price, qty) = amend_terms();
        [
            I::Ack,
            I::Fill(Qty::from_units(3)),
            I::Fill(Qty::from_units(10)),
            I::CancelRequest,
            I::Canceled,
            I::Reject,
            I::CancelRejected,
            I::AmendRequest { price, qty },
            I::AmendRequest {
                price,
                qty: Qty::ZERO,
            },
            I::Amended { price, qty },
            I::AmendRejected,
        ]
    }

    /// The complete transition table, from an order with nothing filled yet (10 ordered).
    /// `None` = illegal (`Err(Illegal)`); `Some(Err(()))` = refused as a bad amend.
    fn expected(from: S, amending: bool, input: I) -> Option<Result<S, ()>> {
        let full = matches!(input, I::Fill(q) if q == Qty::from_units(10));
        let ok = |s| Some(Ok(s));
        match (from, input) {
            (S::Filled | S::Canceled | S::Rejected, _) => None,
            (_, I::Fill(_)) if full => ok(S::Filled),
            (S::PendingCancel | S::PendingAmend, I::Fill(_)) => ok(from),
            (_, I::Fill(_)) => ok(S::PartiallyFilled),
            (S::PendingNew, I::Ack) => ok(S::Open),
            (S::PendingCancel, I::Ack) => ok(S::PendingCancel),
            (S::PendingNew, I::Reject) => ok(S::Rejected),
            (S::PendingNew | S::Open | S::PartiallyFilled | S::PendingAmend, I::CancelRequest) => {
                ok(S::PendingCancel)
            }
            (_, I::Canceled) => ok(S::Canceled),
            (S::PendingCancel, I::CancelRejected) if amending => ok(S::PendingAmend),
            (S::PendingCancel, I::CancelRejected) => ok(S::Open),
            (S::Open | S::PartiallyFilled, I::AmendRequest { qty, .. }) if qty.is_zero() => {
                Some(Err(()))
            }
            (S::Open | S::PartiallyFilled, I::AmendRequest { .. }) => ok(S::PendingAmend),
            (S::PendingAmend, I::Amended { .. } | I::AmendRejected) => ok(S::Open),
            (S::PendingCancel, I::Amended { .. } | I::AmendRejected) if amending => {
                ok(S::PendingCancel)
            }
            _ => None,
        }
    }

    #[test]
    fn every_state_and_input_matches_the_table() {
        let mut n = 0;
        for (from, amending) in ALL_STATES {
            for input in all_inputs() {
                let mut o = order_in(from, 0);
                o.amend_pending |= amending;
                let before = o;
                let got = o.apply(input, 7);
                match expected(from, amending, input) {
                    Some(Ok(to)) => {
                        assert_eq!(got, Ok(to), "TC{n}: {from:?}/{amending} + {input:?}");
                        assert_eq!(o.status, to, "TC{n}");
                        assert_eq!(o.updated_ns, 7, "TC{n}");
                        let amend_left = match input {
                            I::AmendRequest { .. } => true,
                            I::Amended { .. } | I::AmendRejected | I::Canceled => false,
                            I::Fill(_) if to == S::Filled => false,
                            _ => before.amend_pending,
                        };
                        assert_eq!(o.amend_pending, amend_left, "TC{n}: amend pending");
                        let terms = (o.request.price, o.request.qty);
                        if matches!(input, I::Amended { .. }) {
                            assert_eq!(terms, amend_terms(), "TC{n}");
                        } else {
                            assert_eq!(terms, (before.request.price, before.request.qty), "TC{n}");
                        }
                    }
                    Some(Err(())) => {
                        assert!(
                            matches!(got, Err(TransitionError::BadAmend { .. })),
                            "TC{n}: {from:?} + {input:?}: {got:?}"
                        );
                        assert_eq!(o, before, "TC{n}: refused input leaves the order unchanged");
                    }
                    None => {
                        assert_eq!(
                            got,
                            Err(TransitionError::Illegal { from, input }),
                            "TC{n}: {from:?}/{amending} + {input:?}"
                        );
                        assert_eq!(o, before, "TC{n}: refused input leaves the order unchanged");
                    }
                }
                n += 1;
            }
        }
        assert_eq!(n, 99);
    }

    #[test]
    fn amends_with_fills_in_between() {
        // TC0: a partial fill while the amend is pending; the amend then lands: terms change,
        // the filled part stays.
        let mut o = order_in(S::Open, 0);
        let up = |qty| I::AmendRequest {
            price: Price::from_units(101),
            qty: Qty::from_units(qty),
        };
        assert_eq!(o.apply(up(12), 1), Ok(S::PendingAmend));
        assert_eq!(o.apply(I::Fill(Qty::from_units(4)), 2), Ok(S::PendingAmend));
        o.record_fill(Price::from_units(100), Qty::from_units(4));
        let done = I::Amended {
            price: Price::from_units(101),
            qty: Qty::from_units(12),
        };
        assert_eq!(o.apply(done, 3), Ok(S::PartiallyFilled), "TC0");
        assert_eq!(
            (o.request.qty, o.remaining()),
            (Qty::from_units(12), Qty::from_units(8))
        );
        // TC1: an amend below what filled is refused.
        assert!(
            matches!(o.apply(up(4), 4), Err(TransitionError::BadAmend { .. })),
            "TC1"
        );
        // TC2: the old terms fill completely while an amend is pending: filled, and the late
        // answer is illegal.
        assert_eq!(o.apply(up(20), 5), Ok(S::PendingAmend));
        assert_eq!(
            o.apply(I::Fill(Qty::from_units(8)), 6),
            Ok(S::Filled),
            "TC2"
        );
        assert!(!o.amend_pending);
        assert!(o.apply(I::AmendRejected, 7).is_err(), "TC2 late answer");
        // TC3: a cancel after an amend, refused: back to the amend.
        let mut o = order_in(S::Open, 0);
        assert_eq!(o.apply(up(6), 1), Ok(S::PendingAmend));
        assert_eq!(o.apply(I::CancelRequest, 2), Ok(S::PendingCancel));
        assert_eq!(o.apply(I::CancelRejected, 3), Ok(S::PendingAmend), "TC3");
        // TC4: a venue amend down to what filled completes the order.
        let mut o = order_in(S::Open, 0);
        assert_eq!(o.apply(up(6), 1), Ok(S::PendingAmend));
        assert_eq!(o.apply(I::Fill(Qty::from_units(5)), 2), Ok(S::PendingAmend));
        o.record_fill(Price::from_units(100), Qty::from_units(5));
        let to_filled = I::Amended {
            price: Price::from_units(101),
            qty: Qty::from_units(5),
        };
        assert_eq!(o.apply(to_filled, 3), Ok(S::Filled), "TC4");
    }

    #[test]
    fn cancel_rejected_returns_to_partially_filled_when_something_filled() {
        let mut o = order_in(S::PendingCancel, 4);
        assert_eq!(o.apply(I::CancelRejected, 1), Ok(S::PartiallyFilled));
    }

    #[test]
    fn fills_are_bounded_by_remaining() {
        let mut o = order_in(S::Open, 0);
        assert_eq!(
            o.apply(I::Fill(Qty::from_units(4)), 1),
            Ok(S::PartiallyFilled)
        );
        o.record_fill(Price::from_units(100), Qty::from_units(4));
        assert_eq!(
            o.apply(I::Fill(Qty::from_units(7)), 2),
            Err(TransitionError::Overfill {
                fill: Qty::from_units(7),
                remaining: Qty::from_units(6)
            })
        );
        assert_eq!(
            o.apply(I::Fill(Qty::ZERO), 2),
            Err(TransitionError::NonPositiveFill(Qty::ZERO))
        );
        assert_eq!(o.apply(I::Fill(Qty::from_units(6)), 3), Ok(S::Filled));
        o.record_fill(Price::from_units(101), Qty::from_units(6));
        assert_eq!(o.filled, Qty::from_units(10));
        assert_eq!(
            o.filled_notional,
            Money::notional(Price::from_units(1006), Qty::from_units(1))
        );
        assert!(o.status.is_terminal());
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    fn input() -> impl Strategy<Value = OrderInput> {
        prop_oneof![
            Just(OrderInput::Ack),
            (-2i64..12).prop_map(|u| OrderInput::Fill(Qty::from_units(u))),
            Just(OrderInput::CancelRequest),
            Just(OrderInput::Canceled),
            Just(OrderInput::Reject),
            Just(OrderInput::CancelRejected),
            (1i64..14).prop_map(|u| OrderInput::AmendRequest {
                price: Price::from_units(6),
                qty: Qty::from_units(u)
            }),
            (1i64..14).prop_map(|u| OrderInput::Amended {
                price: Price::from_units(6),
                qty: Qty::from_units(u)
            }),
            Just(OrderInput::AmendRejected),
        ]
    }

    proptest! {
        #[test]
        fn prop_orders_never_leave_a_terminal_state(inputs in proptest::collection::vec(input(), 0..40)) {
            let req = OrderRequest::limit(InstrumentIndex(0), Side::Sell, Price::from_units(5), Qty::from_units(10));
            let mut o = Order::new(ClientOrderId::new(0, 0), req, 0);
            let mut terminal: Option<OrderStatus> = None;
            for (t, i) in inputs.into_iter().enumerate() {
                let before = o.status;
                if o.apply(i, t as u64).is_ok() {
                    if let OrderInput::Fill(q) = i {
                        o.record_fill(Price::from_units(5), q);
                    }
                }
                if let Some(term) = terminal {
                    prop_assert_eq!(o.status, term, "left terminal state {:?}", before);
                }
                if o.status.is_terminal() {
                    terminal = Some(o.status);
                }
                prop_assert!(o.filled <= o.request.qty && o.filled >= Qty::ZERO);
                prop_assert_eq!(o.status == OrderStatus::Filled, o.filled == o.request.qty);
                // Pending terms exist exactly while an amend is unanswered.
                if o.status == OrderStatus::PendingAmend {
                    prop_assert!(o.amend_pending);
                }
                if !matches!(o.status, OrderStatus::PendingAmend | OrderStatus::PendingCancel) {
                    prop_assert!(!o.amend_pending);
                }
            }
        }
    }
}
