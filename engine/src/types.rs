//! Types shared across the engine's modules — the trading state and the circuit breakers'
//! kinds, states, actions and transition events — so that no module has to import another
//! that imports it back (`event` carries breaker events, `breakers` and `api` use the trading
//! state). Each is re-exported from the module it belongs to by meaning (`api::TradingState`,
//! `breakers::BreakerKind`, …), so either path works.

/// Whether new orders may be sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TradingState {
    /// Normal trading.
    Active = 0,
    /// Only orders that reduce a position are allowed.
    Reducing = 1,
    /// No new orders (kill switch, breaker); cancels still go out.
    Halted = 2,
}

/// Which breaker.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum BreakerKind {
    /// Equity below its peak.
    Drawdown = 0,
    /// Equity below the start of the UTC day.
    DailyLoss = 1,
    /// Too many rejects in a window.
    RejectStorm = 2,
    /// A feed out of `Live` too long.
    FeedDown = 3,
    /// CRITICAL/HIGH queue-wait p99 above the limit.
    LaneLatency = 4,
    /// HIGH lane back-pressure held too long.
    HighBackpressure = 5,
}

impl BreakerKind {
    /// Number of breakers.
    pub const COUNT: usize = 6;
    /// Every breaker, by code.
    pub const ALL: [Self; Self::COUNT] = [
        Self::Drawdown,
        Self::DailyLoss,
        Self::RejectStorm,
        Self::FeedDown,
        Self::LaneLatency,
        Self::HighBackpressure,
    ];

    /// Stable snake-case name (config section, logs, persistence).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Drawdown => "drawdown",
            Self::DailyLoss => "daily_loss",
            Self::RejectStorm => "reject_storm",
            Self::FeedDown => "feed_down",
            Self::LaneLatency => "lane_latency",
            Self::HighBackpressure => "high_backpressure",
        }
    }

    /// Unit of a [`BreakerEvent`]'s `value` and `limit` for this breaker.
    #[must_use]
    pub const fn unit(self) -> &'static str {
        match self {
            // Money in 10⁻⁸ of the settlement currency, like every `*_e8` column.
            Self::Drawdown | Self::DailyLoss => "e8",
            Self::RejectStorm => "rejects",
            Self::FeedDown | Self::HighBackpressure => "ms",
            // Samples of the interval whose wait exceeded the p99 limit, and how many of them
            // a p99 within the limit allows (1 % of the interval's samples).
            Self::LaneLatency => "samples",
        }
    }
}

/// Where a breaker is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
#[repr(u8)]
pub enum BreakerState {
    /// Normal: nothing imposed.
    #[default]
    Closed = 0,
    /// Tripped: its action is imposed until the cool-down is over.
    Open = 1,
    /// Cool-down over: reducing only, until enough good checks in a row.
    HalfOpen = 2,
}

impl BreakerState {
    /// Stable snake-case name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// From [`BreakerState`] as `u8` (telemetry).
    #[must_use]
    pub const fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }
}

/// What a tripped breaker does.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum BreakerAction {
    /// Only orders that reduce a position.
    Reduce = 0,
    /// No new orders (working orders stay; cancels still go out).
    Halt = 1,
    /// Cancel every working order, close every position, and halt.
    Flatten = 2,
}

impl BreakerAction {
    /// Stable snake-case name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Reduce => "reduce",
            Self::Halt => "halt",
            Self::Flatten => "flatten",
        }
    }

    /// The trading state imposed while the breaker is open.
    #[must_use]
    pub const fn imposes(self) -> TradingState {
        match self {
            Self::Reduce => TradingState::Reducing,
            Self::Halt | Self::Flatten => TradingState::Halted,
        }
    }
}

/// A breaker changed state (CRITICAL lane; persisted).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BreakerEvent {
    /// Which breaker.
    pub kind: BreakerKind,
    /// Its new state.
    pub state: BreakerState,
    /// Its configured action.
    pub action: BreakerAction,
    /// What was measured, in [`BreakerKind::unit`].
    pub value: i64,
    /// The limit it was compared with, in the same unit.
    pub limit: i64,
}
