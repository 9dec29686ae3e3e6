//! Orders and their lifecycle as an explicit state machine. Hot path: transitions run per order
//! report on the engine thread; illegal transitions are returned as errors, never ignored.

use crate::event::{ClientOrderId, Side};
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
                    S::Filled
                } else if from == S::PendingCancel {
                    S::PendingCancel
                } else {
                    S::PartiallyFilled
                }
            }
            (S::PendingNew, I::Ack) => S::Open,
            // A late ack after a cancel was requested: the cancel is still pending.
            (S::PendingCancel, I::Ack) => S::PendingCancel,
            (S::PendingNew, I::Reject) => S::Rejected,
            (S::PendingNew | S::Open | S::PartiallyFilled, I::CancelRequest) => S::PendingCancel,
            (S::PendingNew | S::Open | S::PartiallyFilled | S::PendingCancel, I::Canceled) => {
                S::Canceled
            }
            (S::PendingCancel, I::CancelRejected) => {
                if self.filled.is_zero() {
                    S::Open
                } else {
                    S::PartiallyFilled
                }
            }
            _ => return illegal,
        };
        self.status = next;
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
        o
    }

    const ALL_STATES: [S; 7] = [
        S::PendingNew,
        S::Open,
        S::PartiallyFilled,
        S::PendingCancel,
        S::Filled,
        S::Canceled,
        S::Rejected,
    ];

    fn all_inputs() -> [I; 7] {
        [
            I::Ack,
            I::Fill(Qty::from_units(3)),
            I::Fill(Qty::from_units(10)),
            I::CancelRequest,
            I::Canceled,
            I::Reject,
            I::CancelRejected,
        ]
    }

    /// The complete transition table, from an order with nothing filled yet (10 ordered).
    /// `None` = illegal.
    fn expected(from: S, input: I) -> Option<S> {
        let full = matches!(input, I::Fill(q) if q == Qty::from_units(10));
        match (from, input) {
            (S::Filled | S::Canceled | S::Rejected, _) => None,
            (_, I::Fill(_)) if full => Some(S::Filled),
            (S::PendingCancel, I::Fill(_)) => Some(S::PendingCancel),
            (_, I::Fill(_)) => Some(S::PartiallyFilled),
            (S::PendingNew, I::Ack) => Some(S::Open),
            (S::PendingCancel, I::Ack) => Some(S::PendingCancel),
            (S::PendingNew, I::Reject) => Some(S::Rejected),
            (S::PendingNew | S::Open | S::PartiallyFilled, I::CancelRequest) => {
                Some(S::PendingCancel)
            }
            (_, I::Canceled) => Some(S::Canceled),
            (S::PendingCancel, I::CancelRejected) => Some(S::Open),
            _ => None,
        }
    }

    #[test]
    fn every_state_and_input_matches_the_table() {
        let mut n = 0;
        for from in ALL_STATES {
            for input in all_inputs() {
                let mut o = order_in(from, 0);
                let before = o;
                let got = o.apply(input, 7);
                match expected(from, input) {
                    Some(to) => {
                        assert_eq!(got, Ok(to), "TC{n}: {from:?} + {input:?}");
                        assert_eq!(o.status, to, "TC{n}");
                        assert_eq!(o.updated_ns, 7, "TC{n}");
                    }
                    None => {
                        assert_eq!(
                            got,
                            Err(TransitionError::Illegal { from, input }),
                            "TC{n}: {from:?} + {input:?}"
                        );
                        assert_eq!(o, before, "TC{n}: refused input leaves the order unchanged");
                    }
                }
                n += 1;
            }
        }
        assert_eq!(n, 49);
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
            }
        }
    }
}
