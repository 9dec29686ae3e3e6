//! The `[feed]` section of config.toml: the market-data runner's reconnect and buffer
//! settings for every venue, and the venues' stream choices, validated with the offending key
//! named.

use serde::{Deserialize, Serialize};

/// `[feed]`: the market-data runner, for every venue.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSection {
    /// Depth stream suffix, e.g. `depth@100ms` (spot) or `depth@0ms` (USD-M).
    pub depth_stream: String,
    /// Levels requested in a REST depth snapshot.
    pub snapshot_limit: u32,
    /// No data frame for this long: reconnect.
    pub idle_timeout_ms: u64,
    /// First reconnect delay.
    pub backoff_base_ms: u64,
    /// Longest reconnect delay.
    pub backoff_max_ms: u64,
    /// Give up after this many failed attempts in a row (0 = never).
    pub max_reconnect_attempts: u32,
    /// Down for longer than this: CRITICAL `FeedStatus::Down`.
    pub down_critical_after_ms: u64,
    /// Frames larger than this are refused and counted.
    pub max_frame_bytes: usize,
    /// Depth diffs kept per instrument while a snapshot is awaited.
    pub max_buffered_diffs: usize,
    /// Bybit book topic depth: `orderbook.{bybit_depth}.{symbol}` (50, 200, 500 or 1000).
    #[serde(default = "default_bybit_depth")]
    pub bybit_depth: u16,
    /// Kraken book depth (10, 25, 100, 500 or 1000).
    #[serde(default = "default_kraken_depth")]
    pub kraken_depth: u16,
}

fn default_bybit_depth() -> u16 {
    50
}

fn default_kraken_depth() -> u16 {
    10
}

impl FeedSection {
    /// Checks timeouts, buffers and the venues' stream choices.
    ///
    /// # Errors
    /// `(key, reason)` naming the offending key below `feed`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, v) in [
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("backoff_base_ms", self.backoff_base_ms),
            ("down_critical_after_ms", self.down_critical_after_ms),
            ("snapshot_limit", u64::from(self.snapshot_limit)),
            ("max_frame_bytes", self.max_frame_bytes as u64),
            ("max_buffered_diffs", self.max_buffered_diffs as u64),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1".to_owned()));
            }
        }
        if self.backoff_max_ms < self.backoff_base_ms {
            return Err((
                "backoff_max_ms",
                format!(
                    "must be at least backoff_base_ms ({})",
                    self.backoff_base_ms
                ),
            ));
        }
        if !self.depth_stream.starts_with("depth") {
            return Err((
                "depth_stream",
                format!(
                    "{:?} is not a depth stream (e.g. depth@100ms)",
                    self.depth_stream
                ),
            ));
        }
        if ![50, 200, 500, 1000].contains(&self.bybit_depth) {
            return Err((
                "bybit_depth",
                format!(
                    "{} is not a Bybit order book depth (50, 200, 500 or 1000; level 1 is always subscribed for quotes)",
                    self.bybit_depth
                ),
            ));
        }
        if ![10, 25, 100, 500, 1000].contains(&self.kraken_depth) {
            return Err((
                "kraken_depth",
                format!(
                    "{} is not a Kraken book depth (10, 25, 100, 500 or 1000)",
                    self.kraken_depth
                ),
            ));
        }
        Ok(())
    }
}
