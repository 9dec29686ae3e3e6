//! `tradeloop convert`: recordings and Tardis CSV → one `.tle` file of normalized events,
//! written through the same step source (venue parser, book sync, CSV reader) as a raw
//! backtest, so a replay of the file hands the engine the very same calls.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tradeloop_adapters::tle::{TleInstrument, TleMeta, TleTotals, TleWriter};
use tradeloop_engine::fixed::FIXED_DECIMALS;

use crate::backtest::{InputIssues, RawSteps, Steps};
use crate::config::Config;

/// What to convert.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Recordings and/or Tardis CSV.
    pub data: Vec<PathBuf>,
    /// Output file.
    pub out: PathBuf,
    /// Only steps received at or after this time (ns since the epoch).
    pub from_ns: Option<u64>,
    /// Only steps received before this time.
    pub to_ns: Option<u64>,
    /// zstd level for the chunks (`None`: stored raw, the fastest to replay).
    pub zstd_level: Option<i32>,
    /// Convert the decodable part of a truncated or damaged recording instead of failing.
    pub allow_partial: bool,
}

/// What a conversion wrote.
#[derive(Clone, Debug)]
pub struct Converted {
    /// Steps, records and refused input.
    pub totals: TleTotals,
    /// Refused frames (inside steps).
    pub refused_frames: u64,
    /// Input not used, by reason, with the first few of each (file and line).
    pub issues: InputIssues,
    /// Bytes written.
    pub bytes: u64,
    /// Wall time.
    pub wall: Duration,
}

fn describe(arg: &Path) -> String {
    let (venue, path) = crate::backtest::venue_binding(arg);
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    match venue {
        Some(v) => format!("{v}={name} ({size} bytes)"),
        None => format!("{name} ({size} bytes)"),
    }
}

/// Converts `data` into a `.tle` stream on `out` (see [`convert`]); returns the totals, the
/// refused frames and the output.
///
/// # Errors
/// Unreadable inputs or a failed write.
pub fn write_tle<W: std::io::Write>(
    config: &Config,
    data: &[PathBuf],
    window: (Option<u64>, Option<u64>),
    zstd_level: Option<i32>,
    out: W,
) -> anyhow::Result<(TleTotals, u64, W)> {
    write_tle_with(config, data, window, zstd_level, false, out)
        .map(|(totals, refused, _, out)| (totals, refused, out))
}

/// [`write_tle`], also returning what input was not used; with `allow_partial` a recording
/// that cannot be decoded to its end is converted up to where it breaks.
///
/// # Errors
/// As [`write_tle`].
pub fn write_tle_with<W: std::io::Write>(
    config: &Config,
    data: &[PathBuf],
    window: (Option<u64>, Option<u64>),
    zstd_level: Option<i32>,
    allow_partial: bool,
    out: W,
) -> anyhow::Result<(TleTotals, u64, InputIssues, W)> {
    let registry = config.registry()?;
    let mut steps = RawSteps::open_with(config, &registry, data, allow_partial)?;
    let meta = TleMeta {
        fixed_decimals: FIXED_DECIMALS,
        instruments: registry
            .iter()
            .map(|i| TleInstrument {
                venue: i.venue.clone(),
                symbol: i.symbol.clone(),
            })
            .collect(),
        sources: data.iter().map(|p| describe(p)).collect(),
        conversion: format!(
            "recorded {:?}, max_buffered_diffs {}, max_frame_bytes {}, window {:?}..{:?}",
            steps.recorded(),
            config.feed.max_buffered_diffs,
            config.feed.max_frame_bytes,
            window.0,
            window.1
        ),
        writer: format!("tradeloop {}", env!("CARGO_PKG_VERSION")),
    };
    let mut w = TleWriter::new(out, &meta, zstd_level)?;
    let mut refused = 0u64;
    while let Some(ns) = steps.next_in(window.0, window.1)? {
        w.begin_step(ns);
        let r = steps.feed(&mut w)?;
        refused += u64::from(r);
        w.end_step(ns, r)?;
    }
    let (totals, out) = w.finish(steps.extra_refused())?;
    let issues = steps.issues();
    if totals.records == 0 {
        return Err(crate::backtest::no_events(
            data,
            window,
            totals.steps,
            &issues,
        ));
    }
    Ok((totals, refused, issues, out))
}

/// Converts the inputs into `options.out` (written to a temporary name beside it, then
/// renamed, so a failed conversion never leaves a partial file under the final name).
///
/// # Errors
/// Unreadable inputs, an unwritable output, or inputs that are already `.tle` files.
pub fn convert(config: &Config, options: &ConvertOptions) -> anyhow::Result<Converted> {
    for arg in &options.data {
        let (_, p) = crate::backtest::venue_binding(arg);
        anyhow::ensure!(p.is_file(), "--data {}: not a readable file", arg.display());
        anyhow::ensure!(
            !tradeloop_adapters::tle::TleReader::is_tle(p),
            "--data {}: already a .tle file",
            p.display()
        );
    }
    if let Some(level) = options.zstd_level {
        anyhow::ensure!(
            (1..=19).contains(&level),
            "--zstd {level}: the level must be 1..=19"
        );
    }
    let tmp = options.out.with_extension("tle.partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let started = Instant::now();
    let result = write_tle_with(
        config,
        &options.data,
        (options.from_ns, options.to_ns),
        options.zstd_level,
        options.allow_partial,
        std::io::BufWriter::with_capacity(1 << 20, file),
    )
    .and_then(|(totals, refused, issues, mut out)| {
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok((totals, refused, issues))
    });
    let (totals, refused_frames, issues) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.context(format!("converting into {}", options.out.display())));
        }
    };
    std::fs::rename(&tmp, &options.out).with_context(|| {
        format!(
            "cannot rename {} to {}",
            tmp.display(),
            options.out.display()
        )
    })?;
    Ok(Converted {
        totals,
        refused_frames,
        issues,
        bytes: std::fs::metadata(&options.out).map_or(0, |m| m.len()),
        wall: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use tradeloop_adapters::feed::MarketSink;
    use tradeloop_adapters::tle::TleReader;
    use tradeloop_engine::event::{Event, EventKind};
    use tradeloop_engine::instrument::InstrumentIndex;

    use super::*;
    use crate::backtest::TleSteps;

    const SHIPPED: &str = include_str!("../config.toml");

    #[derive(Debug, PartialEq, Eq)]
    enum Call {
        Push(Event),
        Lost(InstrumentIndex),
    }

    /// Every call a replay makes into its sink, step by step.
    #[derive(Default)]
    struct Calls(Vec<Call>);

    impl MarketSink for Calls {
        fn push(&mut self, e: Event) {
            self.0.push(Call::Push(e));
        }
        fn book_lost(&mut self, i: InstrumentIndex) {
            self.0.push(Call::Lost(i));
        }
    }

    type Trace = Vec<(u64, bool, Vec<Call>)>;

    fn trace(steps: &mut impl Steps) -> Trace {
        trace_window(steps, None, None)
    }

    fn trace_window(steps: &mut impl Steps, from: Option<u64>, to: Option<u64>) -> Trace {
        let mut out = Vec::new();
        while let Some(ns) = steps.next_in(from, to).unwrap() {
            let mut calls = Calls::default();
            let refused = steps.feed(&mut calls).unwrap();
            out.push((ns, refused, calls.0));
        }
        out
    }

    /// The USD-M capture, or `None` (with a note) when `../shared/data` is absent.
    fn usdm_capture() -> Option<std::path::PathBuf> {
        let path = tradeloop_adapters::shared_data_dir().join("binance_usdm_btcusdt_20240808.gz");
        if path.exists() {
            Some(path)
        } else {
            eprintln!("skipped: {} is absent", path.display());
            None
        }
    }

    fn config(env: &[(&str, &str)]) -> Config {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_toml(SHIPPED, &env).unwrap()
    }

    /// Raw replay and converted replay hand the engine the same calls, step for step, on every
    /// real recording in `../shared/data` (both raw and zstd chunks).
    #[test]
    fn converted_replay_is_event_for_event_the_raw_replay() {
        let dir = tradeloop_adapters::shared_data_dir();
        let xbt: &[(&str, &str)] = &[
            ("TRADELOOP__INSTRUMENTS__0__SYMBOL", "\"XBTUSD\""),
            ("TRADELOOP__INSTRUMENTS__0__TICK_SIZE", "\"0.5\""),
            ("TRADELOOP__INSTRUMENTS__0__LOT_SIZE", "\"1\""),
            ("TRADELOOP__STRATEGY__MA_CROSS__SYMBOL", "\"XBTUSD\""),
        ];
        let deribit: &[(&str, &str)] = &[
            ("TRADELOOP__INSTRUMENTS__0__SYMBOL", "\"BTC-PERPETUAL\""),
            ("TRADELOOP__INSTRUMENTS__0__TICK_SIZE", "\"0.5\""),
            ("TRADELOOP__INSTRUMENTS__0__LOT_SIZE", "\"10\""),
            ("TRADELOOP__STRATEGY__MA_CROSS__SYMBOL", "\"BTC-PERPETUAL\""),
        ];
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u64);
        let cases: [Case; 4] = [
            ("binance_usdm_btcusdt_20240808.gz", &[], 93_954),
            ("binance_spot_btcusdt_20240808.gz", &[], 0),
            ("tardis_bitmex_trades_XBTUSD.csv", xbt, 10),
            (
                "tardis_deribit_incremental_book_L2_BTC-PERPETUAL.csv",
                deribit,
                0,
            ),
        ];
        let mut checked = 0;
        for (file, env, want_steps) in cases {
            let path = dir.join(file);
            if !path.exists() {
                eprintln!("skipped: {} is absent", path.display());
                continue;
            }
            let config = config(env);
            let registry = config.registry().unwrap();
            let raw = trace(
                &mut RawSteps::open(&config, &registry, std::slice::from_ref(&path)).unwrap(),
            );
            assert!(!raw.is_empty(), "{file}: no steps");
            if want_steps > 0 {
                assert_eq!(raw.len() as u64, want_steps, "{file}");
            }
            let pushes = raw
                .iter()
                .flat_map(|s| &s.2)
                .filter(|c| matches!(c, Call::Push(_)))
                .count();
            assert!(pushes > 0, "{file}: no events");
            for zstd in [None, Some(3)] {
                let (totals, _, bytes) = write_tle(
                    &config,
                    std::slice::from_ref(&path),
                    (None, None),
                    zstd,
                    Vec::new(),
                )
                .unwrap();
                assert_eq!(totals.steps, raw.len() as u64, "{file}");
                let reader = TleReader::from_memory(Arc::from(bytes)).unwrap();
                let mut steps = TleSteps::new(reader, &registry);
                let converted = trace(&mut steps);
                assert_eq!(converted.len(), raw.len(), "{file} zstd {zstd:?}");
                for (k, (a, b)) in raw.iter().zip(&converted).enumerate() {
                    assert_eq!(a, b, "{file} zstd {zstd:?}: step {k} differs");
                }
                assert_eq!(
                    steps.extra_refused(),
                    RawSteps::open(&config, &registry, std::slice::from_ref(&path))
                        .map(|mut s| {
                            trace(&mut s);
                            s.extra_refused()
                        })
                        .unwrap()
                );
            }
            checked += 1;
        }
        eprintln!("{checked} recordings checked");
    }

    /// Skipping steps of a converted file (what `backtest --from` does) lands on exactly the
    /// raw replay's later steps.
    #[test]
    fn skipping_converted_steps_keeps_step_boundaries() {
        let Some(path) = usdm_capture() else { return };
        let config = config(&[]);
        let registry = config.registry().unwrap();
        let all =
            trace(&mut RawSteps::open(&config, &registry, std::slice::from_ref(&path)).unwrap());
        let (_, _, bytes) = write_tle(
            &config,
            std::slice::from_ref(&path),
            (None, None),
            None,
            Vec::new(),
        )
        .unwrap();
        let mut steps = TleSteps::new(TleReader::from_memory(Arc::from(bytes)).unwrap(), &registry);
        let k = all.len() / 2;
        for _ in 0..k {
            steps.skip().unwrap();
        }
        let rest = trace(&mut steps);
        assert_eq!(rest.len(), all.len() - k);
        assert!(rest.iter().zip(&all[k..]).all(|(a, b)| a == b));
    }

    /// A window given to `convert` keeps exactly the steps a windowed raw replay keeps.
    #[test]
    fn converted_window_matches_the_raw_window() {
        let Some(path) = usdm_capture() else { return };
        let config = config(&[]);
        let registry = config.registry().unwrap();
        let all =
            trace(&mut RawSteps::open(&config, &registry, std::slice::from_ref(&path)).unwrap());
        let (from, to) = (all[all.len() / 3].0, all[all.len() / 2].0);
        // What `backtest --from --to` does on the raw file: skip before, stop at the end.
        let mut raw = RawSteps::open(&config, &registry, std::slice::from_ref(&path)).unwrap();
        let want = trace_window(&mut raw, Some(from), Some(to));
        assert!(want.len() > 1000);
        assert_ne!(
            want.iter().map(|s| s.2.len()).sum::<usize>(),
            all.iter()
                .filter(|s| s.0 >= from && s.0 < to)
                .map(|s| s.2.len())
                .sum::<usize>(),
            "a window starts the book sync afresh, so it differs from a slice of the whole run"
        );
        let (_, _, bytes) =
            write_tle(&config, &[path], (Some(from), Some(to)), None, Vec::new()).unwrap();
        let mut steps = TleSteps::new(TleReader::from_memory(Arc::from(bytes)).unwrap(), &registry);
        let got = trace(&mut steps);
        assert_eq!(got.len(), want.len());
        assert!(got.iter().zip(&want).all(|(a, b)| a == b));
        // Mid-file there is no snapshot to sync the book from, so the window carries trades
        // and quotes only, in both replays.
        assert!(got.iter().flat_map(|s| &s.2).any(|c| matches!(
            c,
            Call::Push(Event {
                kind: EventKind::Trade(_),
                ..
            })
        )));
    }
}
