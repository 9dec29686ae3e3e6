//! The `[breakers]` section of config.toml as the engine reads it: every breaker's limit,
//! action, cool-down and half-open checks, turned into [`BreakerSettings`] and validated
//! with the offending key named.

use serde::{Deserialize, Serialize};

use super::{BreakerAction, BreakerSettings, Trip, MAX_REJECT_WINDOW};
use crate::fixed::{Money, Qty};
use crate::instrument::ContractKind;

fn err(key: impl Into<String>, reason: impl Into<String>) -> (String, String) {
    (key.into(), reason.into())
}

/// `[breakers.drawdown]` and `[breakers.daily_loss]`: a money limit in the settlement currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyBreakerSection {
    /// Loss that trips it (positive, settlement currency, decimal string).
    pub max: Qty,
    /// `reduce`, `halt` or `flatten`.
    pub action: BreakerAction,
    /// Time open before half-open.
    pub cooldown_ms: u64,
    /// Consecutive good checks in half-open before closing.
    pub half_open_checks: u32,
}

/// `[breakers.reject_storm]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RejectBreakerSection {
    /// Rejects within `window_ms` that trip it.
    pub max_rejects: u32,
    /// Sliding window.
    pub window_ms: u64,
    /// `reduce`, `halt` or `flatten`.
    pub action: BreakerAction,
    /// Time open before half-open.
    pub cooldown_ms: u64,
    /// Consecutive good checks in half-open before closing.
    pub half_open_checks: u32,
}

/// `[breakers.feed_down]` and `[breakers.high_backpressure]`: a duration limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DurationBreakerSection {
    /// How long the condition may last.
    pub max_ms: u64,
    /// `reduce`, `halt` or `flatten`.
    pub action: BreakerAction,
    /// Time open before half-open.
    pub cooldown_ms: u64,
    /// Consecutive good checks in half-open before closing.
    pub half_open_checks: u32,
}

/// `[breakers.lane_latency]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyBreakerSection {
    /// CRITICAL and HIGH queue-wait p99 limit per check interval, microseconds.
    pub p99_us: u64,
    /// Intervals with fewer events are not judged.
    pub min_samples: u32,
    /// `reduce`, `halt` or `flatten`.
    pub action: BreakerAction,
    /// Time open before half-open.
    pub cooldown_ms: u64,
    /// Consecutive good checks in half-open before closing.
    pub half_open_checks: u32,
}

/// `[breakers]`: circuit breakers (see `tradeloop_engine::breakers`). A breaker whose table
/// is absent is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BreakersSection {
    /// Periodic check interval (cool-downs, half-open checks, feeds, lanes).
    pub check_interval_ms: u64,
    /// Equity below its peak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown: Option<MoneyBreakerSection>,
    /// Equity below the start of the UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_loss: Option<MoneyBreakerSection>,
    /// Rejects in a sliding window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_storm: Option<RejectBreakerSection>,
    /// A feed out of `live` too long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_down: Option<DurationBreakerSection>,
    /// CRITICAL/HIGH queue-wait p99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane_latency: Option<LatencyBreakerSection>,
    /// HIGH lane back-pressure held too long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_backpressure: Option<DurationBreakerSection>,
}

impl Default for BreakersSection {
    /// Every breaker off.
    fn default() -> Self {
        Self {
            check_interval_ms: 100,
            drawdown: None,
            daily_loss: None,
            reject_storm: None,
            feed_down: None,
            lane_latency: None,
            high_backpressure: None,
        }
    }
}

const NS_PER_MS: u64 = 1_000_000;

fn trip(action: BreakerAction, cooldown_ms: u64, half_open_checks: u32) -> Trip {
    Trip {
        action,
        cooldown_ns: cooldown_ms.saturating_mul(NS_PER_MS),
        half_open_checks,
    }
}

impl BreakersSection {
    /// The limits as the engine takes them.
    #[must_use]
    pub fn settings(&self) -> BreakerSettings {
        let money = |b: &MoneyBreakerSection| {
            (
                Money::from_fixed_raw(b.max.raw()),
                trip(b.action, b.cooldown_ms, b.half_open_checks),
            )
        };
        let duration = |b: &DurationBreakerSection| {
            (
                b.max_ms.saturating_mul(NS_PER_MS),
                trip(b.action, b.cooldown_ms, b.half_open_checks),
            )
        };
        BreakerSettings {
            check_interval_ns: self.check_interval_ms.saturating_mul(NS_PER_MS),
            drawdown: self.drawdown.as_ref().map(money),
            daily_loss: self.daily_loss.as_ref().map(money),
            reject_storm: self.reject_storm.map(|b| {
                (
                    (b.max_rejects, b.window_ms.saturating_mul(NS_PER_MS)),
                    trip(b.action, b.cooldown_ms, b.half_open_checks),
                )
            }),
            feed_down: self.feed_down.as_ref().map(duration),
            lane_latency: self.lane_latency.map(|b| {
                (
                    (b.p99_us.saturating_mul(1_000), b.min_samples),
                    trip(b.action, b.cooldown_ms, b.half_open_checks),
                )
            }),
            high_backpressure: self.high_backpressure.as_ref().map(duration),
        }
    }

    /// Checks the limits; `contracts` are the instruments' contract kinds.
    ///
    /// # Errors
    /// `(key, reason)` naming the offending key below `breakers`.
    pub fn validate(&self, contracts: &[ContractKind]) -> Result<(), (String, String)> {
        if self.check_interval_ms == 0 {
            return Err(err("check_interval_ms", "must be at least 1"));
        }
        let half_open = |name: &str, n: u32| {
            if n == 0 {
                Err(err(
                    format!("{name}.half_open_checks"),
                    "must be at least 1",
                ))
            } else {
                Ok(())
            }
        };
        let inverse = contracts.iter().filter(|c| c.is_inverse()).count();
        let mixed = inverse > 0 && contracts.len() > 1;
        for (name, b) in [("drawdown", self.drawdown), ("daily_loss", self.daily_loss)] {
            let Some(b) = b else { continue };
            if b.max.raw() <= 0 {
                return Err(err(
                    format!("{name}.max"),
                    format!("must be a positive amount, got {}", b.max),
                ));
            }
            if mixed {
                return Err(err(
                    name.to_owned(),
                    "PnL breakers sum every instrument's PnL in its settlement currency; with an \
                     inverse contract among several instruments the currencies differ",
                ));
            }
            half_open(name, b.half_open_checks)?;
        }
        if let Some(b) = self.reject_storm {
            if b.max_rejects == 0 || b.max_rejects > MAX_REJECT_WINDOW {
                return Err(err(
                    "reject_storm.max_rejects",
                    format!(
                        "must be in 1..={}, got {}",
                        MAX_REJECT_WINDOW, b.max_rejects
                    ),
                ));
            }
            if b.window_ms == 0 {
                return Err(err("reject_storm.window_ms", "must be at least 1"));
            }
            half_open("reject_storm", b.half_open_checks)?;
        }
        for (name, b) in [
            ("feed_down", self.feed_down),
            ("high_backpressure", self.high_backpressure),
        ] {
            if let Some(b) = b {
                half_open(name, b.half_open_checks)?;
            }
        }
        if let Some(b) = self.lane_latency {
            if b.p99_us == 0 {
                return Err(err("lane_latency.p99_us", "must be at least 1"));
            }
            if b.min_samples == 0 {
                return Err(err("lane_latency.min_samples", "must be at least 1"));
            }
            half_open("lane_latency", b.half_open_checks)?;
        }
        Ok(())
    }
}
