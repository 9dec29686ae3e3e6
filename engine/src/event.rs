//! Fixed-size `Copy` events that travel through the lanes. Hot path: events are built by parsers
//! and consumed by the loop; they hold no heap pointers and are at most 64 bytes.

use crate::fixed::{Price, Qty};
use crate::instrument::InstrumentIndex;

/// Which side of the book or of a trade.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Side {
    /// Bid / buy.
    Buy = 0,
    /// Ask / sell.
    Sell = 1,
}

impl Side {
    /// The other side.
    #[inline]
    #[must_use]
    pub const fn opposite(self) -> Self {
        match self {
            Self::Buy => Self::Sell,
            Self::Sell => Self::Buy,
        }
    }

    /// `+1` for buy, `-1` for sell.
    #[inline]
    #[must_use]
    pub const fn sign(self) -> i64 {
        match self {
            Self::Buy => 1,
            Self::Sell => -1,
        }
    }
}

/// Which strategy of a [`Portfolio`](crate::portfolio::Portfolio) an order belongs to (its
/// member index; 0 for an engine running a single strategy; [`StrategyId::ENGINE`] for the
/// engine's own closing orders).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[repr(transparent)]
pub struct StrategyId(pub u8);

impl StrategyId {
    /// The engine's own closing orders: a fired stop, the kill switch's flatten.
    pub const ENGINE: Self = Self(u8::MAX);

    /// The member index.
    #[inline]
    #[must_use]
    pub const fn get(self) -> usize {
        self.0 as usize
    }
}

impl core::fmt::Display for StrategyId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Run-unique client order id. The low 32 bits are the order's pool slot, the high 32 bits a
/// per-run sequence, so a venue report maps back to its slot in O(1) and a stale report for a
/// recycled slot is recognised.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[repr(transparent)]
pub struct ClientOrderId(pub u64);

impl ClientOrderId {
    /// Builds an id from a sequence number and a pool slot.
    #[inline]
    #[must_use]
    pub const fn new(sequence: u32, slot: u32) -> Self {
        Self(((sequence as u64) << 32) | slot as u64)
    }

    /// The pool slot encoded in the id.
    #[inline]
    #[must_use]
    pub const fn slot(self) -> u32 {
        self.0 as u32
    }

    /// The run sequence encoded in the id.
    #[inline]
    #[must_use]
    pub const fn sequence(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// A public trade.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Trade {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// Aggressor side (`Buy` = buyer lifted the offer).
    pub aggressor: Side,
    /// Trade price.
    pub price: Price,
    /// Trade quantity.
    pub qty: Qty,
    /// Venue trade id.
    pub trade_id: u64,
}

/// Best bid and offer.
///
/// Packed to 4-byte alignment so that an [`Event`] carrying it stays within 64 bytes (with
/// natural alignment its 42 bytes of fields round up to 48 and the enum tag no longer fits).
/// Read fields by value (`quote.bid_price`); references to them are refused by the compiler.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C, packed(4))]
pub struct Quote {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// Best bid price.
    pub bid_price: Price,
    /// Quantity at the best bid.
    pub bid_qty: Qty,
    /// Best ask price.
    pub ask_price: Price,
    /// Quantity at the best ask.
    pub ask_qty: Qty,
    /// Venue book update id the quote belongs to (0 if the venue sends none).
    pub update_id: u64,
}

/// Flags on a [`BookDelta`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct DeltaFlags(pub u8);

impl DeltaFlags {
    /// Clear the whole book before applying this level: the first level of a snapshot.
    pub const SNAPSHOT_BEGIN: u8 = 1;
    /// The last level of one venue message: the book is consistent after it.
    pub const LAST_IN_MESSAGE: u8 = 2;

    /// `true` if `flag` is set.
    #[inline]
    #[must_use]
    pub const fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }
}

/// One price level set to an absolute quantity (zero removes it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BookDelta {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// Book side.
    pub side: Side,
    /// Flags (snapshot begin, last in message).
    pub flags: DeltaFlags,
    /// Level price.
    pub price: Price,
    /// New absolute quantity at that level; zero deletes the level.
    pub qty: Qty,
    /// Venue update id of the message this level belongs to.
    pub update_id: u64,
}

/// Why a venue or the gateway rejected an order (stable numeric codes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u16)]
pub enum RejectReason {
    /// Venue rejected for a reason it did not classify.
    Venue = 1,
    /// Insufficient balance or margin.
    InsufficientFunds = 2,
    /// Price or quantity broke an exchange filter.
    InvalidOrder = 3,
    /// Venue rate limit.
    RateLimited = 4,
    /// A post-only order would have crossed.
    PostOnlyWouldCross = 5,
    /// The gateway could not send it (disconnected, queue full).
    GatewayUnavailable = 6,
    /// Unknown order on cancel.
    UnknownOrder = 7,
}

/// Report from a gateway about one order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OrderReport {
    /// The venue accepted the order; it is working.
    Accepted {
        /// Order.
        client_id: ClientOrderId,
    },
    /// A (partial) execution.
    Fill {
        /// Order.
        client_id: ClientOrderId,
        /// Execution price.
        price: Price,
        /// Executed quantity (positive).
        qty: Qty,
        /// Fee charged, in the fee currency's fixed-point units (negative = rebate).
        fee: Qty,
        /// `true` if the order provided liquidity.
        maker: bool,
    },
    /// The venue refused the order.
    Rejected {
        /// Order.
        client_id: ClientOrderId,
        /// Why.
        reason: RejectReason,
    },
    /// The order is no longer working (user cancel, IOC remainder, expiry).
    Canceled {
        /// Order.
        client_id: ClientOrderId,
    },
    /// A cancel request was refused (order already gone or unknown).
    CancelRejected {
        /// Order.
        client_id: ClientOrderId,
        /// Why.
        reason: RejectReason,
    },
    /// The order was amended: it works on these terms from now on.
    Amended {
        /// Order.
        client_id: ClientOrderId,
        /// Limit price now.
        price: Price,
        /// Total quantity now (filled part included).
        qty: Qty,
    },
    /// An amend was refused: the order works on its old terms.
    AmendRejected {
        /// Order.
        client_id: ClientOrderId,
        /// Why.
        reason: RejectReason,
    },
}

/// State of one market-data feed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum FeedState {
    /// Connecting or subscribing.
    Connecting = 0,
    /// Streaming normally.
    Live = 1,
    /// Connected but silent past the idle limit, or books not yet in sync.
    Stale = 2,
    /// Connection lost; reconnecting with backoff.
    Reconnecting = 3,
    /// Given up, or down longer than the configured limit.
    Down = 4,
}

impl FeedState {
    /// Every state, in code order.
    pub const ALL: [Self; 5] = [
        Self::Connecting,
        Self::Live,
        Self::Stale,
        Self::Reconnecting,
        Self::Down,
    ];

    /// Stable lower-case name (status lines, metrics labels).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Stale => "stale",
            Self::Reconnecting => "reconnecting",
            Self::Down => "down",
        }
    }
}

/// Operator and system control.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Control {
    /// Kill switch: cancel everything, halt new orders.
    KillSwitch = 0,
    /// Stop taking input, drain the lanes and stop the loop.
    Shutdown = 1,
    /// Lift a halt (operator resume).
    Resume = 2,
}

/// A stop level was crossed (raised by the ingress guard or the engine itself).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StopTrigger {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// The trade or quote price that crossed the stop.
    pub price: Price,
    /// The configured trigger level.
    pub trigger: Price,
    /// Identifier of the stop in the owner's stop book.
    pub stop_id: u32,
}

/// The venue's position in an instrument, from a live gateway's reconciliation: the venue
/// wins, so the engine's position becomes this (HIGH lane).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PositionSync {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// The venue's signed quantity.
    pub qty: Qty,
    /// The venue's average entry price (zero if the venue does not say, as on spot).
    pub entry_price: Price,
    /// The venue's current price (mark or last): a difference is booked at it.
    pub price: Price,
}

/// Mark price, index price and funding of a perpetual (Binance USD-M `markPriceUpdate`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MarkPrice {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// Mark price.
    pub mark_price: Price,
    /// Index price.
    pub index_price: Price,
    /// Funding rate as a fixed-point fraction (0.00038167 is `Price(38_167)`).
    pub funding_rate: Price,
    /// Next funding time, ns since the Unix epoch.
    pub next_funding_ns: u64,
}

/// A forced liquidation order seen on the venue (Binance USD-M `forceOrder`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Liquidation {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// Side of the liquidation order (`Sell` liquidates a long).
    pub side: Side,
    /// Order price.
    pub price: Price,
    /// Average fill price.
    pub avg_price: Price,
    /// Quantity filled so far.
    pub filled_qty: Qty,
}

/// What happened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EventKind {
    /// Public trade (NORMAL lane).
    Trade(Trade),
    /// Best bid/offer (NORMAL lane).
    Quote(Quote),
    /// One book level (NORMAL lane).
    BookDelta(BookDelta),
    /// Mark price and funding (NORMAL lane).
    MarkPrice(MarkPrice),
    /// A venue liquidation (NORMAL lane).
    Liquidation(Liquidation),
    /// A live venue's position after reconciliation (HIGH lane).
    PositionSync(PositionSync),
    /// Order report from a gateway (HIGH lane).
    Order(OrderReport),
    /// Stop triggered (CRITICAL lane).
    StopTriggered(StopTrigger),
    /// Feed state change (CRITICAL when down, otherwise LOW).
    FeedStatus {
        /// Feed number as configured.
        feed: u16,
        /// New state.
        state: FeedState,
    },
    /// The persistence store failed (`healthy: false`, CRITICAL lane) or recovered after
    /// failing (`healthy: true`). Records are kept and retried meanwhile; nothing is lost.
    StoreStatus {
        /// `false` on the first failed write, `true` on the first success after failures.
        healthy: bool,
        /// Failed write attempts so far in this outage.
        failures: u32,
    },
    /// Timer tick for strategies (LOW lane).
    Timer {
        /// Timer id.
        id: u32,
    },
    /// Control (CRITICAL lane).
    Control(Control),
    /// A circuit breaker tripped, went half-open or recovered (CRITICAL lane). The engine has
    /// already imposed the change when this is handled; the event tells the strategy.
    Breaker(crate::types::BreakerEvent),
}

/// An event with its two timestamps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Event {
    /// Local receive time of the frame that produced the event (clock ns).
    pub recv_ns: u64,
    /// Venue time of the event (ns since the Unix epoch; 0 if unknown).
    pub exch_ns: u64,
    /// Payload.
    pub kind: EventKind,
}

const _: () = assert!(
    size_of::<Event>() <= 64,
    "Invariant: events fit one cache line"
);

impl Event {
    /// Builds an event.
    #[inline]
    #[must_use]
    pub const fn new(recv_ns: u64, exch_ns: u64, kind: EventKind) -> Self {
        Self {
            recv_ns,
            exch_ns,
            kind,
        }
    }

    /// The instrument the event concerns, if any.
    #[inline]
    #[must_use]
    pub const fn instrument(&self) -> Option<InstrumentIndex> {
        match &self.kind {
            EventKind::Trade(t) => Some(t.instrument),
            EventKind::Quote(q) => Some(q.instrument),
            EventKind::BookDelta(d) => Some(d.instrument),
            EventKind::MarkPrice(m) => Some(m.instrument),
            EventKind::Liquidation(l) => Some(l.instrument),
            EventKind::StopTriggered(s) => Some(s.instrument),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_order_id_round_trips_slot_and_sequence() {
        let cases = [(0u32, 0u32), (1, 7), (u32::MAX, u32::MAX), (42, 65_535)];
        for (i, (seq, slot)) in cases.into_iter().enumerate() {
            let id = ClientOrderId::new(seq, slot);
            assert_eq!((id.sequence(), id.slot()), (seq, slot), "TC{i}");
        }
    }

    #[test]
    fn event_is_one_cache_line() {
        assert!(size_of::<Event>() <= 64, "size {}", size_of::<Event>());
    }
}
