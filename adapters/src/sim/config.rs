//! The `[execution]` and `[sim]` sections of config.toml: simulated execution (paper trading
//! and backtests) and the built-in simulated venue, each turned into the settings its piece
//! takes and validated with the offending key named.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tradeloop_engine::fixed::{Price, Qty};

use super::matching::ExecConfig;

/// `[execution]`: simulated execution for paper trading (and backtests).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionSection {
    /// Fee for resting fills, basis points of notional (negative = rebate).
    pub maker_fee_bps: i64,
    /// Fee for taking fills, basis points of notional.
    pub taker_fee_bps: i64,
    /// Order and cancel travel time to the venue.
    pub entry_latency_us: u64,
    /// Report travel time back from the venue.
    pub response_latency_us: u64,
    /// Uniform extra entry latency, up to this much.
    pub jitter_us: u64,
    /// Venue-to-engine market-data latency of the simulated venue (at most
    /// `response_latency_us`).
    #[serde(default)]
    pub md_latency_us: u64,
    /// Seed of the jitter.
    pub seed: u64,
    /// Volume tiers (`[[execution.fee_tiers]]`), by ascending `min_volume`: from that traded
    /// notional on, their rates replace `maker_fee_bps` / `taker_fee_bps`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fee_tiers: Vec<FeeTierSection>,
    /// How a resting order's queue place moves when its level shrinks by more than the trades
    /// at its price: `"risk_averse"` (default), `{ power = N }` or `"log"` (hftbacktest's
    /// models of the same names).
    #[serde(default)]
    pub queue_model: QueueModelSection,
    /// Order entry and report latency: `"constant"` (default: the two latencies above),
    /// `{ feed = { multiple = M } }` (M × the latest market event's venue → us delay above the
    /// fastest seen, at least the latencies above) or `{ file = "latency.csv" }` (rows of `timestamp_ns,entry_ns,
    /// response_ns`, interpolated).
    #[serde(default)]
    pub latency_model: LatencyModelSection,
}

/// `execution.latency_model` (see [`super::matching::LatencyModel`]).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyModelSection {
    /// The configured entry and response latencies.
    #[default]
    Constant,
    /// A multiple of the feed's own latency.
    Feed {
        /// The multiple (0 < M ≤ 1000).
        multiple: f64,
    },
    /// A user-supplied table of `(timestamp_ns, entry_ns, response_ns)` rows.
    File(PathBuf),
}

impl LatencyModelSection {
    /// The model as the matching engine takes it (reading the file of `file`).
    ///
    /// # Errors
    /// `(key, reason)` below `latency_model`: a bad multiple, or a file that cannot be read
    /// or holds an unsorted, negative or malformed row (its line named).
    pub fn model(&self) -> Result<super::matching::LatencyModel, (String, String)> {
        match self {
            Self::Constant => Ok(super::matching::LatencyModel::Constant),
            Self::Feed { multiple } => {
                if !(multiple.is_finite() && *multiple > 0.0 && *multiple <= 1000.0) {
                    return Err((
                        "latency_model.feed.multiple".into(),
                        format!("must be within (0, 1000], got {multiple}"),
                    ));
                }
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "within (0, 1000] × 1000"
                )]
                let multiple_milli = (multiple * 1000.0).round() as u64;
                Ok(super::matching::LatencyModel::FromFeed { multiple_milli })
            }
            Self::File(path) => read_latency_file(path)
                .map(|rows| super::matching::LatencyModel::Table(rows.into()))
                .map_err(|why| ("latency_model.file".into(), why)),
        }
    }
}

/// Reads a latency table: one `timestamp_ns,entry_ns,response_ns` row per line (a header line,
/// empty lines and `#` comments skipped), timestamps ascending.
///
/// # Errors
/// The file and line of the first row that is malformed, negative or out of order.
pub fn read_latency_file(
    path: &std::path::Path,
) -> Result<Vec<super::matching::LatencyRow>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut rows: Vec<super::matching::LatencyRow> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), n + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if rows.is_empty() && n == 0 && !line.starts_with(|c: char| c.is_ascii_digit() || c == '-')
        {
            continue; // a header
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.len() != 3 {
            return Err(format!(
                "{}: expected timestamp_ns,entry_ns,response_ns, got {} column(s)",
                at(),
                cols.len()
            ));
        }
        let mut v = [0u64; 3];
        for (k, c) in cols.iter().enumerate() {
            v[k] = match c.parse::<i128>() {
                Ok(x) if x < 0 => return Err(format!("{}: {c:?} is negative", at())),
                Ok(x) => u64::try_from(x).map_err(|_| format!("{}: {c:?} is too large", at()))?,
                Err(_) => return Err(format!("{}: {c:?} is not a whole number of ns", at())),
            };
        }
        if let Some(prev) = rows.last() {
            if v[0] < prev.ts_ns {
                return Err(format!(
                    "{}: timestamp {} is before the previous row's {} (rows must be sorted by time)",
                    at(),
                    v[0],
                    prev.ts_ns
                ));
            }
        }
        rows.push(super::matching::LatencyRow {
            ts_ns: v[0],
            entry_ns: v[1],
            response_ns: v[2],
        });
    }
    if rows.is_empty() {
        return Err(format!("{}: no latency rows", path.display()));
    }
    Ok(rows)
}

/// `execution.queue_model` (see [`super::matching::QueueModel`] for the formulas).
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueModelSection {
    /// Unexplained decreases are all behind the order.
    #[default]
    RiskAverse,
    /// A share `f(back) / (f(back) + f(front))` with `f(x) = x^n` is behind it.
    Power(f64),
    /// As `power` with `f(x) = ln(1 + x)`.
    Log,
}

impl QueueModelSection {
    /// The model as the matching engine takes it.
    #[must_use]
    pub const fn model(self) -> super::matching::QueueModel {
        match self {
            Self::RiskAverse => super::matching::QueueModel::RiskAverse,
            Self::Power(n) => super::matching::QueueModel::Power(n),
            Self::Log => super::matching::QueueModel::Log,
        }
    }
}

/// One `[[execution.fee_tiers]]` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeeTierSection {
    /// Traded value of the run (Σ of the fills' values in their contracts' PnL currency:
    /// price × qty × multiplier, quote units, for spot and linear), decimal string, from which
    /// this tier applies.
    pub min_volume: Qty,
    /// Maker rate, basis points (negative = rebate).
    pub maker_fee_bps: i64,
    /// Taker rate, basis points.
    pub taker_fee_bps: i64,
}

/// A fee rate is within −100..=1000 basis points.
fn check_bps(key: String, v: i64) -> Result<(), (String, String)> {
    if (-100..=1000).contains(&v) {
        Ok(())
    } else {
        Err((
            key,
            format!("must be within -100..=1000 basis points, got {v}"),
        ))
    }
}

impl ExecutionSection {
    /// The volume tiers as the matching engine takes them.
    #[must_use]
    pub fn fee_tiers(&self) -> Vec<super::matching::FeeTier> {
        self.fee_tiers
            .iter()
            .map(|t| super::matching::FeeTier {
                min_volume: t.min_volume,
                maker_fee_bps: t.maker_fee_bps,
                taker_fee_bps: t.taker_fee_bps,
            })
            .collect()
    }

    /// The settings of the simulated matching engine for `instruments` instruments, with the
    /// engine's `order_slots` and `book_levels`.
    #[must_use]
    pub const fn exec_config(
        &self,
        order_slots: usize,
        instruments: usize,
        book_levels: usize,
    ) -> ExecConfig {
        ExecConfig {
            maker_fee_bps: self.maker_fee_bps,
            taker_fee_bps: self.taker_fee_bps,
            entry_latency_ns: self.entry_latency_us * 1_000,
            response_latency_ns: self.response_latency_us * 1_000,
            jitter_ns: self.jitter_us * 1_000,
            md_latency_ns: self.md_latency_us * 1_000,
            seed: self.seed,
            order_slots,
            instruments,
            book_levels,
        }
    }

    /// Checks the fees (within −100..=1000 bps) and that market data is not slower than
    /// reports.
    ///
    /// # Errors
    /// `(key, reason)` naming the offending key below `execution`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let QueueModelSection::Power(n) = self.queue_model {
            if !(n.is_finite() && n > 0.0 && n <= 100.0) {
                return Err((
                    "queue_model.power".into(),
                    format!("must be a positive exponent up to 100, got {n}"),
                ));
            }
        }
        self.latency_model.model()?;
        check_bps("maker_fee_bps".into(), self.maker_fee_bps)?;
        check_bps("taker_fee_bps".into(), self.taker_fee_bps)?;
        for (k, t) in self.fee_tiers.iter().enumerate() {
            check_bps(format!("fee_tiers[{k}].maker_fee_bps"), t.maker_fee_bps)?;
            check_bps(format!("fee_tiers[{k}].taker_fee_bps"), t.taker_fee_bps)?;
            if t.min_volume.raw() < 0 {
                return Err((
                    format!("fee_tiers[{k}].min_volume"),
                    format!("must not be negative, got {}", t.min_volume),
                ));
            }
            if k > 0 && t.min_volume <= self.fee_tiers[k - 1].min_volume {
                return Err((
                    format!("fee_tiers[{k}].min_volume"),
                    format!(
                        "tiers go by ascending min_volume: {} is not above the previous tier's {}",
                        t.min_volume,
                        self.fee_tiers[k - 1].min_volume
                    ),
                ));
            }
        }
        if self.md_latency_us > self.response_latency_us {
            return Err((
                "md_latency_us".into(),
                format!(
                    "{} us exceeds response_latency_us ({} us): a report cannot reach the \
                     engine before the replay reaches the market event that caused it",
                    self.md_latency_us, self.response_latency_us
                ),
            ));
        }
        Ok(())
    }
}

/// `[sim]`: the built-in simulated venue.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimSection {
    /// Random seed of the synthetic market.
    pub seed: u64,
    /// Market steps (trades or book changes) per second across all symbols.
    pub steps_per_second: u32,
    /// Depth diff interval.
    pub depth_interval_ms: u64,
    /// Levels per side of the synthetic books.
    pub depth_levels: usize,
    /// Server ping interval.
    pub ping_interval_ms: u64,
    /// Wire format served: Binance spot (default) or Bybit v5.
    #[serde(default)]
    pub protocol: SimProtocol,
    /// Starting price per symbol (symbols not listed start at 100).
    pub prices: BTreeMap<String, Price>,
    /// Recorded files to replay instead of the synthetic market (empty: synthetic).
    #[serde(default)]
    pub replay_files: Vec<PathBuf>,
    /// Replay speed: 1.0 = as recorded, 10.0 = ten times faster, 0 = as fast as possible.
    #[serde(default = "default_replay_speed")]
    pub replay_speed: f64,
}

fn default_replay_speed() -> f64 {
    1.0
}

impl SimSection {
    /// Checks the simulated market's rates and sizes, the replay (its files exist and are
    /// served in Binance's format) and the starting prices.
    ///
    /// # Errors
    /// `(key, reason)` naming the offending key below `sim`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |key: &str, reason: String| Err((key.to_owned(), reason));
        if self.protocol != SimProtocol::Binance && !self.replay_files.is_empty() {
            return err(
                "protocol",
                "replay_files are served in Binance's format; replay needs protocol = \"binance\""
                    .to_owned(),
            );
        }
        for (key, v) in [
            ("steps_per_second", u64::from(self.steps_per_second)),
            ("depth_interval_ms", self.depth_interval_ms),
            ("depth_levels", self.depth_levels as u64),
            ("ping_interval_ms", self.ping_interval_ms),
        ] {
            if v == 0 {
                return err(key, "must be at least 1".to_owned());
            }
        }
        if !(self.replay_speed >= 0.0 && self.replay_speed.is_finite()) {
            return err(
                "replay_speed",
                format!(
                    "must be 0 (as fast as possible) or a positive factor, got {}",
                    self.replay_speed
                ),
            );
        }
        for (i, f) in self.replay_files.iter().enumerate() {
            if !f.is_file() {
                return err(
                    &format!("replay_files[{i}]"),
                    format!("{} is not a readable file", f.display()),
                );
            }
        }
        for (symbol, p) in &self.prices {
            if p.raw() <= 0 {
                return err(
                    &format!("prices.{symbol}"),
                    format!("must be positive, got {p}"),
                );
            }
        }
        Ok(())
    }
}

/// The wire format the built-in simulated venue speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimProtocol {
    /// Binance spot combined streams with REST depth snapshots.
    #[default]
    Binance,
    /// Bybit v5 public topics with in-stream snapshots.
    Bybit,
    /// Kraken spot v2 channels with checksummed, depth-truncated books.
    Kraken,
    /// Coinbase Advanced Trade channels with connection-wide sequence numbers.
    Coinbase,
    /// OKX v5 channels with `seqId`/`prevSeqId` books.
    Okx,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A latency file is read with its header and comments skipped; a bad row is refused with
    /// its line.
    #[test]
    fn latency_files_are_checked_row_by_row() {
        let dir = std::env::temp_dir().join(format!("tl-latency-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: [(&str, &str, Result<usize, &str>); 7] = [
            (
                "TC0 header, comment, two rows",
                "timestamp_ns,entry_ns,response_ns\n# measured\n1000,100,200\n2000,150,250\n",
                Ok(2),
            ),
            (
                "TC1 unsorted",
                "1000,1,1\n2000,1,1\n1500,1,1\n",
                Err(":3: timestamp 1500 is before"),
            ),
            ("TC2 negative", "1000,-5,1\n", Err(":1: \"-5\" is negative")),
            (
                "TC3 malformed",
                "1000,abc,1\n",
                Err(":1: \"abc\" is not a whole number"),
            ),
            (
                "TC4 too few columns",
                "1000,1\n",
                Err(":1: expected timestamp_ns,entry_ns,response_ns"),
            ),
            ("TC5 no rows", "# nothing\n", Err("no latency rows")),
            (
                "TC6 equal timestamps are sorted",
                "1000,1,1\n1000,2,2\n",
                Ok(2),
            ),
        ];
        for (k, (label, text, want)) in cases.into_iter().enumerate() {
            let path = dir.join(format!("l{k}.csv"));
            std::fs::write(&path, text).unwrap();
            match (read_latency_file(&path), want) {
                (Ok(rows), Ok(n)) => assert_eq!(rows.len(), n, "{label}"),
                (Err(e), Err(fragment)) => {
                    assert!(e.contains(fragment), "{label}: {e}");
                    assert!(e.contains(&path.display().to_string()), "{label}: {e}");
                }
                (got, _) => panic!("{label}: {got:?}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
