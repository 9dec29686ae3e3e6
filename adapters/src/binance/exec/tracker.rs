//! The execution gateway's view of its live orders: turns venue reports — from the REST
//! answers, the user data stream and reconciliation, in any order and any number of times —
//! into exactly the engine reports that keep the engine's books true.
//!
//! Every venue report carries the order's cumulative filled quantity and quote, so the tracker
//! never needs the individual executions to arrive once and in order: a report whose
//! cumulative quantity is not above what was already reported is stale (a duplicate or an
//! out-of-order report) and adds no fill; one above it adds exactly the difference, at the
//! average price of the difference. A terminal report ends the order once.
//!
//! **Amends** (USD-M modify): the terms asked for are held as the order's pending amend until a
//! venue report shows the order on exactly those terms — the REST answer, the user stream's
//! `AMENDMENT` event, a query or a reconciliation, whichever comes first — and `Amended` is
//! reported then, once; the later copies find nothing pending and add nothing. A definite
//! refusal reports `AmendRejected`; a terminal report ends the order (and its amend) once.
//!
//! Runs on the execution and user-stream threads (behind a mutex); never on the engine thread.

use std::collections::HashMap;

use tradeloop_engine::event::{ClientOrderId, OrderReport, RejectReason};
use tradeloop_engine::fixed::{Money, Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;

use super::report::{ExecReport, VenueStatus};

/// The client order id sent to Binance for an engine order: `prefix` + decimal id.
#[must_use]
pub fn venue_client_id(prefix: &str, id: ClientOrderId) -> String {
    format!("{prefix}{}", id.0)
}

/// The engine id of a venue client order id, if it carries `prefix`.
#[must_use]
pub fn engine_client_id(prefix: &str, venue_id: &str) -> Option<ClientOrderId> {
    venue_id
        .strip_prefix(prefix)
        .filter(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|rest| rest.parse().ok())
        .map(ClientOrderId)
}

/// One live order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// Engine id.
    pub client_id: ClientOrderId,
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// Ordered quantity.
    pub qty: Qty,
    /// Venue order id (0 until known).
    pub order_id: i64,
    /// `Accepted` was reported to the engine.
    pub accepted: bool,
    /// Filled quantity reported to the engine.
    pub filled: Qty,
    /// Quote value of the reported fills.
    pub quote: Money,
    /// Terms (limit price, total quantity) of an amend sent and not yet answered.
    pub pending_amend: Option<(Price, Qty)>,
}

/// What applying a venue report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// It moved the order on (reports emitted).
    Changed,
    /// Nothing new in it (duplicate or out-of-order report).
    Stale,
    /// Not one of the tracked orders.
    Unknown,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Venue reports that changed an order.
    pub applied: u64,
    /// Duplicate or out-of-order reports ignored.
    pub stale: u64,
    /// Reports about orders not tracked.
    pub unknown: u64,
    /// Fills whose executions arrived merged (a report was missing or late).
    pub merged_fills: u64,
}

/// The live orders.
#[derive(Debug, Default)]
pub struct Tracker {
    orders: HashMap<ClientOrderId, Tracked>,
    stats: TrackerStats,
}

impl Tracker {
    /// An empty tracker.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters.
    #[must_use]
    pub const fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Starts tracking an order about to be sent.
    pub fn insert(&mut self, client_id: ClientOrderId, instrument: InstrumentIndex, qty: Qty) {
        self.orders.insert(
            client_id,
            Tracked {
                client_id,
                instrument,
                qty,
                order_id: 0,
                accepted: false,
                filled: Qty::ZERO,
                quote: Money::ZERO,
                pending_amend: None,
            },
        );
    }

    /// An amend of the order to `price` and total `qty` is about to be sent. `false` if the
    /// order is not tracked (it ended, or was never sent) or an amend is already pending.
    pub fn amend_sent(&mut self, client_id: ClientOrderId, price: Price, qty: Qty) -> bool {
        match self.orders.get_mut(&client_id) {
            Some(t) if t.pending_amend.is_none() => {
                t.pending_amend = Some((price, qty));
                true
            }
            _ => false,
        }
    }

    /// The venue refused the pending amend (or it is known not to have happened): reports
    /// `AmendRejected` if it was still pending. The order works on as before.
    pub fn amend_refused(
        &mut self,
        client_id: ClientOrderId,
        reason: RejectReason,
        out: &mut impl FnMut(OrderReport),
    ) {
        if let Some(t) = self.orders.get_mut(&client_id) {
            if t.pending_amend.take().is_some() {
                out(OrderReport::AmendRejected { client_id, reason });
            }
        }
    }

    /// The tracked order.
    #[must_use]
    pub fn get(&self, client_id: ClientOrderId) -> Option<&Tracked> {
        self.orders.get(&client_id)
    }

    /// Every working order, in no particular order.
    #[must_use]
    pub fn working(&self) -> Vec<Tracked> {
        self.orders.values().copied().collect()
    }

    /// The venue took the order (REST answer); reports `Accepted` once.
    pub fn accepted(
        &mut self,
        client_id: ClientOrderId,
        order_id: i64,
        out: &mut impl FnMut(OrderReport),
    ) {
        if let Some(t) = self.orders.get_mut(&client_id) {
            t.order_id = order_id;
            if !t.accepted {
                t.accepted = true;
                out(OrderReport::Accepted { client_id });
            }
        }
    }

    /// The order ended without reaching the venue, or the venue refused it.
    pub fn rejected(
        &mut self,
        client_id: ClientOrderId,
        reason: RejectReason,
        out: &mut impl FnMut(OrderReport),
    ) {
        if let Some(t) = self.orders.remove(&client_id) {
            if t.accepted || !t.filled.is_zero() {
                out(OrderReport::Canceled { client_id });
            } else {
                out(OrderReport::Rejected { client_id, reason });
            }
        }
    }

    /// Applies a venue report about `client_id`.
    pub fn apply(
        &mut self,
        client_id: ClientOrderId,
        r: &ExecReport,
        out: &mut impl FnMut(OrderReport),
    ) -> Applied {
        let Some(t) = self.orders.get_mut(&client_id) else {
            self.stats.unknown += 1;
            return Applied::Unknown;
        };
        let mut changed = false;
        if t.order_id == 0 {
            t.order_id = r.order_id;
        }
        let venue_knows = r.status != VenueStatus::Rejected;
        if venue_knows && !t.accepted {
            t.accepted = true;
            changed = true;
            out(OrderReport::Accepted { client_id });
        }
        // The venue holds the order on the pending amend's terms: it was amended (reported
        // before any fill at the new terms, so the engine never sees more filled than ordered).
        if let Some((price, qty)) = t.pending_amend {
            if !r.status.is_terminal() && r.price == price && r.orig_qty == qty {
                t.pending_amend = None;
                t.qty = qty;
                changed = true;
                out(OrderReport::Amended {
                    client_id,
                    price,
                    qty,
                });
            }
        }
        if r.cum_qty > t.filled {
            let qty = Qty(r.cum_qty.0 - t.filled.0).min(Qty(t.qty.0 - t.filled.0));
            let quote = Money(r.cum_quote.0 - t.quote.0);
            let whole = r.is_trade && r.last_qty == qty;
            let price = if whole {
                r.last_price
            } else {
                self.stats.merged_fills += 1;
                average(quote, qty)
            };
            if qty.0 > 0 {
                out(OrderReport::Fill {
                    client_id,
                    price,
                    qty,
                    fee: if whole { r.commission } else { Qty::ZERO },
                    maker: r.maker,
                });
                t.filled = Qty(t.filled.0 + qty.0);
                t.quote = if whole {
                    Money(t.quote.0 + Money::notional(price, qty).0)
                } else {
                    r.cum_quote
                };
                changed = true;
            }
        }
        if r.status.is_terminal() && (r.cum_qty >= t.filled) {
            let done = *t;
            self.orders.remove(&client_id);
            match r.status {
                VenueStatus::Filled if done.filled >= done.qty => {}
                VenueStatus::Rejected if !done.accepted => out(OrderReport::Rejected {
                    client_id,
                    reason: reject_reason(&r.reject_reason),
                }),
                _ => out(OrderReport::Canceled { client_id }),
            }
            changed = true;
        }
        if changed {
            self.stats.applied += 1;
            Applied::Changed
        } else {
            self.stats.stale += 1;
            Applied::Stale
        }
    }

    /// The venue no longer knows the order (`-2013 Order does not exist` on query): if it was
    /// never accepted it was never placed; otherwise it is gone.
    pub fn vanished(&mut self, client_id: ClientOrderId, out: &mut impl FnMut(OrderReport)) {
        self.rejected(client_id, RejectReason::Venue, out);
    }
}

/// `quote / qty` as a price, rounded to the nearest raw unit.
fn average(quote: Money, qty: Qty) -> Price {
    if qty.0 <= 0 {
        return Price::ZERO;
    }
    // Money is in 10⁻¹⁶ and Qty in 10⁻⁸, so the quotient is a price in 10⁻⁸.
    let den = i128::from(qty.0);
    let p = (quote.0 + den / 2) / den;
    Price(i64::try_from(p).unwrap_or(i64::MAX))
}

/// The engine reason for a Binance reject reason or error message.
#[must_use]
pub fn reject_reason(text: &str) -> RejectReason {
    let t = text.to_ascii_lowercase();
    if t.contains("insufficient") || t.contains("margin is insufficient") {
        RejectReason::InsufficientFunds
    } else if t.contains("filter")
        || t.contains("precision")
        || t.contains("invalid quantity")
        || t.contains("invalid price")
    {
        RejectReason::InvalidOrder
    } else if t.contains("immediately match") || t.contains("post only") || t.contains("gtx") {
        RejectReason::PostOnlyWouldCross
    } else if t.contains("too many") || t.contains("rate limit") {
        RejectReason::RateLimited
    } else if t.contains("unknown order") || t.contains("does not exist") {
        RejectReason::UnknownOrder
    } else {
        RejectReason::Venue
    }
}

/// The engine reason for a Binance error code (and its message).
#[must_use]
pub fn reason_for_code(code: i64, msg: &str) -> RejectReason {
    match code {
        -1013 | -1111 | -1100 | -1102 | -1106 | -4014 | -4015 | -4003 | -4004 | -4005 | -4164 => {
            RejectReason::InvalidOrder
        }
        -1003 | -1015 => RejectReason::RateLimited,
        -2018 | -2019 => RejectReason::InsufficientFunds,
        -2011 | -2013 => RejectReason::UnknownOrder,
        // USD-M modify: "No need to modify the order" (same terms).
        -5027 => RejectReason::InvalidOrder,
        -5022 => RejectReason::PostOnlyWouldCross,
        _ => reject_reason(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: ClientOrderId = ClientOrderId(7);

    fn q(s: &str) -> Qty {
        s.parse().unwrap()
    }
    fn p(s: &str) -> Price {
        s.parse().unwrap()
    }

    fn report(
        status: VenueStatus,
        trade: Option<(&str, &str)>,
        cum: &str,
        cum_quote: &str,
    ) -> ExecReport {
        ExecReport {
            symbol: "BTCUSDT".into(),
            client_order_id: "tl-7".into(),
            order_id: 99,
            status,
            is_trade: trade.is_some(),
            is_amendment: false,
            price: p("100"),
            orig_qty: q("2"),
            trade_id: 1,
            last_qty: trade.map_or(Qty::ZERO, |t| q(t.0)),
            last_price: trade.map_or(Price::ZERO, |t| p(t.1)),
            cum_qty: q(cum),
            cum_quote: Money::from_fixed_raw(p(cum_quote).raw()),
            commission: q("0.001"),
            maker: true,
            event_ms: 0,
            reject_reason: "NONE".into(),
        }
    }

    fn tracker() -> Tracker {
        let mut t = Tracker::new();
        t.insert(ID, InstrumentIndex(0), q("2"));
        t
    }

    fn run(t: &mut Tracker, reports: &[ExecReport]) -> Vec<OrderReport> {
        let mut out = Vec::new();
        for r in reports {
            t.apply(ID, r, &mut |x| out.push(x));
        }
        out
    }

    fn filled(out: &[OrderReport]) -> (Qty, Money) {
        out.iter()
            .fold((Qty::ZERO, Money::ZERO), |(q, m), r| match *r {
                OrderReport::Fill { price, qty, .. } => {
                    (Qty(q.0 + qty.0), Money(m.0 + Money::notional(price, qty).0))
                }
                _ => (q, m),
            })
    }

    #[test]
    fn ids_round_trip_and_foreign_ids_are_refused() {
        let id = ClientOrderId::new(3, 9);
        assert_eq!(
            engine_client_id("tl-", &venue_client_id("tl-", id)),
            Some(id)
        );
        for foreign in ["web_abc", "tl-", "tl-12x", "tl--1", "xtl-1"] {
            assert_eq!(engine_client_id("tl-", foreign), None, "{foreign}");
        }
    }

    #[test]
    fn in_order_stream() {
        let mut t = tracker();
        let reports = [
            report(VenueStatus::New, None, "0", "0"),
            report(
                VenueStatus::PartiallyFilled,
                Some(("0.5", "100")),
                "0.5",
                "50",
            ),
            report(VenueStatus::Filled, Some(("1.5", "101")), "2", "201.5"),
        ];
        let out = run(&mut t, &reports);
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[0], OrderReport::Accepted { client_id: ID });
        assert_eq!(
            filled(&out),
            (q("2"), Money::from_fixed_raw(p("201.5").raw()))
        );
        assert!(t.get(ID).is_none(), "a filled order is done");
    }

    #[test]
    fn duplicates_and_reordering_never_double_count() {
        let new = report(VenueStatus::New, None, "0", "0");
        let a = report(
            VenueStatus::PartiallyFilled,
            Some(("0.5", "100")),
            "0.5",
            "50",
        );
        let b = report(
            VenueStatus::PartiallyFilled,
            Some(("1", "102")),
            "1.5",
            "152",
        );
        let c = report(VenueStatus::Filled, Some(("0.5", "104")), "2", "204");
        let orders: [&[&ExecReport]; 4] = [
            &[&new, &a, &a, &b, &b, &c, &c],
            &[&b, &a, &new, &c, &a],
            &[&c, &b, &a, &new],
            &[&a, &c, &b, &new, &c],
        ];
        for seq in orders {
            let mut t = tracker();
            let reports: Vec<ExecReport> = seq.iter().map(|r| (*r).clone()).collect();
            let out = run(&mut t, &reports);
            let (qty, quote) = filled(&out);
            assert_eq!(qty, q("2"), "{seq:?}");
            // A merged fill's average price is rounded to 10⁻⁸: at most one price unit per
            // unit of quantity away from the venue's quote.
            let exact = Money::from_fixed_raw(p("204").raw());
            assert!(
                (quote.0 - exact.0).abs() <= Money::notional(Price(1), qty).0,
                "{seq:?}: {quote}"
            );
            let accepted = out
                .iter()
                .filter(|r| matches!(r, OrderReport::Accepted { .. }))
                .count();
            assert_eq!(accepted, 1);
            assert!(!out.iter().any(|r| matches!(
                r,
                OrderReport::Canceled { .. } | OrderReport::Rejected { .. }
            )));
        }
    }

    #[test]
    fn merged_fill_uses_the_average_price_of_the_gap() {
        let mut t = tracker();
        // The 0.5 @ 100 execution is lost; the next report covers both.
        let out = run(
            &mut t,
            &[report(
                VenueStatus::PartiallyFilled,
                Some(("1", "103")),
                "1.5",
                "153",
            )],
        );
        let fill = out.iter().find_map(|r| match *r {
            OrderReport::Fill {
                price, qty, fee, ..
            } => Some((price, qty, fee)),
            _ => None,
        });
        assert_eq!(fill, Some((p("102"), q("1.5"), Qty::ZERO)));
        assert_eq!(t.stats().merged_fills, 1);
    }

    #[test]
    fn cancel_after_partial_and_late_trade() {
        let mut t = tracker();
        let cancel = report(VenueStatus::Canceled, None, "0.5", "50");
        let late = report(
            VenueStatus::PartiallyFilled,
            Some(("0.5", "100")),
            "0.5",
            "50",
        );
        let out = run(&mut t, &[cancel, late]);
        assert_eq!(filled(&out).0, q("0.5"));
        assert_eq!(out.last(), Some(&OrderReport::Canceled { client_id: ID }));
        assert_eq!(t.stats().unknown, 1, "the late trade finds the order gone");
    }

    #[test]
    fn venue_reject_and_vanish() {
        let mut t = tracker();
        let mut r = report(VenueStatus::Rejected, None, "0", "0");
        r.reject_reason = "INSUFFICIENT_BALANCE".into();
        let out = run(&mut t, &[r]);
        assert_eq!(
            out,
            [OrderReport::Rejected {
                client_id: ID,
                reason: RejectReason::InsufficientFunds
            }]
        );
        let mut t = tracker();
        let mut out = Vec::new();
        t.accepted(ID, 5, &mut |x| out.push(x));
        t.vanished(ID, &mut |x| out.push(x));
        assert_eq!(
            out,
            [
                OrderReport::Accepted { client_id: ID },
                OrderReport::Canceled { client_id: ID }
            ]
        );
    }

    fn amended(price: &str, qty: &str) -> OrderReport {
        OrderReport::Amended {
            client_id: ID,
            price: p(price),
            qty: q(qty),
        }
    }

    #[test]
    fn an_amend_is_reported_once_whichever_copy_comes_first() {
        // The stream's AMENDMENT event first, then the REST answer and a query: one Amended.
        let mut t = tracker();
        run(&mut t, &[report(VenueStatus::New, None, "0", "0")]);
        assert!(t.amend_sent(ID, p("101"), q("3")));
        assert!(!t.amend_sent(ID, p("102"), q("3")), "one amend at a time");
        let mut on_new_terms = report(VenueStatus::New, None, "0", "0");
        (on_new_terms.price, on_new_terms.orig_qty) = (p("101"), q("3"));
        let mut event = on_new_terms.clone();
        event.is_amendment = true;
        let out = run(&mut t, &[event, on_new_terms.clone(), on_new_terms]);
        assert_eq!(out, [amended("101", "3")]);
        assert_eq!(
            t.get(ID).map(|o| (o.qty, o.pending_amend)),
            Some((q("3"), None))
        );
        // A refusal arriving after the venue showed the new terms adds nothing.
        let mut none = Vec::new();
        t.amend_refused(ID, RejectReason::Venue, &mut |x| none.push(x));
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn a_report_on_the_old_terms_leaves_the_amend_pending() {
        let mut t = tracker();
        run(&mut t, &[report(VenueStatus::New, None, "0", "0")]);
        assert!(t.amend_sent(ID, p("99"), q("2")));
        // A fill on the old terms (price 100) while the amend is in flight.
        let fill = report(
            VenueStatus::PartiallyFilled,
            Some(("0.5", "100")),
            "0.5",
            "50",
        );
        let out = run(&mut t, &[fill]);
        assert_eq!(filled(&out).0, q("0.5"));
        assert!(!out.iter().any(|r| matches!(r, OrderReport::Amended { .. })));
        assert_eq!(
            t.get(ID).and_then(|o| o.pending_amend),
            Some((p("99"), q("2")))
        );
        let mut out = Vec::new();
        t.amend_refused(ID, RejectReason::InvalidOrder, &mut |x| out.push(x));
        t.amend_refused(ID, RejectReason::InvalidOrder, &mut |x| out.push(x));
        assert_eq!(
            out,
            [OrderReport::AmendRejected {
                client_id: ID,
                reason: RejectReason::InvalidOrder
            }],
            "refused once"
        );
    }

    #[test]
    fn a_larger_amend_is_reported_before_the_fills_it_allows() {
        let mut t = tracker();
        run(&mut t, &[report(VenueStatus::New, None, "0", "0")]);
        assert!(t.amend_sent(ID, p("100"), q("3")));
        // One report carries both the new terms and a fill of all 3 (beyond the old 2).
        let mut r = report(VenueStatus::Filled, Some(("3", "100")), "3", "300");
        r.orig_qty = q("3");
        let out = run(&mut t, &[r]);
        assert!(
            !out.iter().any(|x| matches!(x, OrderReport::Amended { .. })),
            "a terminal report ends the order; its amend is moot: {out:?}"
        );
        assert_eq!(filled(&out).0, q("2"), "clamped to what the engine ordered");
        // Non-terminal: Amended first, then the whole fill fits.
        let mut t = tracker();
        run(&mut t, &[report(VenueStatus::New, None, "0", "0")]);
        assert!(t.amend_sent(ID, p("100"), q("3")));
        let mut r = report(
            VenueStatus::PartiallyFilled,
            Some(("2.5", "100")),
            "2.5",
            "250",
        );
        r.orig_qty = q("3");
        let out = run(&mut t, &[r]);
        assert_eq!(out[0], amended("100", "3"));
        assert_eq!(filled(&out).0, q("2.5"));
    }

    #[test]
    fn a_terminal_report_ends_an_amended_order_once() {
        // USD-M cancels a GTX order whose new price would cross: the answer is CANCELED.
        let mut t = tracker();
        run(&mut t, &[report(VenueStatus::New, None, "0", "0")]);
        assert!(t.amend_sent(ID, p("105"), q("2")));
        let mut r = report(VenueStatus::Canceled, None, "0", "0");
        r.price = p("105");
        let out = run(&mut t, &[r.clone(), r]);
        assert_eq!(out, [OrderReport::Canceled { client_id: ID }]);
        assert!(!t.amend_sent(ID, p("106"), q("2")), "gone");
    }

    #[test]
    fn error_codes_map_to_reasons() {
        assert_eq!(
            reason_for_code(-1013, "Filter failure: LOT_SIZE"),
            RejectReason::InvalidOrder
        );
        assert_eq!(
            reason_for_code(
                -2010,
                "Account has insufficient balance for requested action."
            ),
            RejectReason::InsufficientFunds
        );
        assert_eq!(
            reason_for_code(-2010, "Order would immediately match and take."),
            RejectReason::PostOnlyWouldCross
        );
        assert_eq!(
            reason_for_code(-2011, "Unknown order sent."),
            RejectReason::UnknownOrder
        );
        assert_eq!(
            reason_for_code(-2010, "Something else"),
            RejectReason::Venue
        );
    }
}
