//! `soak`: the real `tradeloop run` (sim venue over loopback WebSocket, paper trading, SQLite
//! persistence) for a fixed time at a steady rate, watched from outside: resident memory from
//! `/proc/<pid>/status` and the run's Prometheus `/metrics` every second. It passes when memory
//! is flat after the warm-up (max − min within `--max-growth-mb`), no lane dropped an event,
//! and the run's own end-of-run summary says every queued record was written.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

/// `tradeloop-load soak` arguments.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// The `tradeloop` binary (default: beside this one).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Configuration file for the run.
    #[arg(long, default_value = "config.toml")]
    pub config: PathBuf,
    /// Length of the run, seconds (at most 3600).
    #[arg(long, default_value_t = 600)]
    pub seconds: u64,
    /// Samples before this many seconds are warm-up, not judged.
    #[arg(long, default_value_t = 60)]
    pub warmup: u64,
    /// Sim venue steps per second (the market's pace).
    #[arg(long, default_value_t = 20_000)]
    pub steps_per_second: u32,
    /// Largest resident-memory range allowed after warm-up, MiB.
    #[arg(long, default_value_t = 8.0)]
    pub max_growth_mb: f64,
    /// Write the JSON report here.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

/// One sample.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Sample {
    pub t_s: f64,
    pub rss_kib: u64,
    /// Sum of `tradeloop_lane_dropped_total` over lanes (None: not scraped).
    pub lane_dropped: Option<f64>,
    pub normal_events: Option<f64>,
    pub persistence_pending: Option<f64>,
    pub fills: Option<f64>,
}

/// The verdict and its numbers.
#[derive(Serialize, Debug)]
pub struct SoakReport {
    pub seconds: u64,
    pub steps_per_second: u32,
    pub samples: usize,
    pub rss_after_warmup_min_kib: u64,
    pub rss_after_warmup_max_kib: u64,
    /// Least-squares slope of RSS after warm-up, KiB per minute.
    pub rss_slope_kib_per_min: f64,
    pub lane_dropped: f64,
    pub normal_events: f64,
    pub fills: f64,
    pub records_queued: u64,
    pub records_written: u64,
    pub memory_flat: bool,
    pub no_drops: bool,
    pub all_persisted: bool,
    pub exit_ok: bool,
    pub series: Vec<Sample>,
}

impl SoakReport {
    /// Every check passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.memory_flat && self.no_drops && self.all_persisted && self.exit_ok
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

/// Sum of every series of the family `name` (any labels) in a scrape.
fn family_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let v: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        found = Some(found.unwrap_or(0.0) + v);
    }
    found
}

/// `queued N records, wrote M` from the run's end-of-run persistence line.
fn persisted(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr.lines().find(|l| l.starts_with("persistence ("))?;
    let num = |after: &str| -> Option<u64> {
        let i = line.find(after)? + after.len();
        line[i..].split(' ').next()?.parse().ok()
    };
    Some((num("queued ")?, num("wrote ")?))
}

#[allow(clippy::cast_precision_loss, reason = "sample statistics")]
fn slope_per_min(points: &[(f64, u64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 as f64 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx * 60.0
    }
}

fn default_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("own path")?;
    let dir = me.parent().context("own directory")?;
    // A test binary lives in target/<profile>/deps; the CLI in target/<profile>.
    for d in [dir, dir.parent().unwrap_or(dir)] {
        let candidate = d.join("tradeloop");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "no tradeloop binary beside {}: build it (cargo build --release) or pass --binary",
        me.display()
    )
}

/// Runs the soak and judges it.
///
/// # Errors
/// On bad arguments, or when the run cannot be started.
pub fn soak(args: &SoakArgs) -> anyhow::Result<SoakReport> {
    anyhow::ensure!(
        (1..=3600).contains(&args.seconds),
        "--seconds must be in 1..=3600"
    );
    anyhow::ensure!(
        args.warmup < args.seconds,
        "--warmup must be below --seconds"
    );
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => default_binary()?,
    };
    let dir = std::env::temp_dir().join(format!("tradeloop-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (ws, rest, metrics) = (free_port()?, free_port()?, free_port()?);
    let stderr_path = dir.join("run.stderr");
    let stderr = std::fs::File::create(&stderr_path)?;
    let mut child = Command::new(&binary)
        .arg("-c")
        .arg(&args.config)
        .args(["run", "--no-histograms", "--duration"])
        .arg(args.seconds.to_string())
        .env(
            "TRADELOOP__VENUES__0__WS_URL",
            format!("\"ws://127.0.0.1:{ws}\""),
        )
        .env(
            "TRADELOOP__VENUES__0__REST_URL",
            format!("\"http://127.0.0.1:{rest}\""),
        )
        .env(
            "TRADELOOP__METRICS__LISTEN",
            format!("\"127.0.0.1:{metrics}\""),
        )
        .env(
            "TRADELOOP__SIM__STEPS_PER_SECOND",
            args.steps_per_second.to_string(),
        )
        .env(
            "TRADELOOP__PERSISTENCE__SQLITE_PATH",
            format!("\"{}\"", dir.join("soak.db").display()),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id();
    let started = Instant::now();
    let mut series = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let text = scrape(metrics);
        let text = text.as_deref().unwrap_or("");
        if let Some(rss) = rss_kib(pid) {
            series.push(Sample {
                t_s: started.elapsed().as_secs_f64(),
                rss_kib: rss,
                lane_dropped: family_sum(text, "tradeloop_lane_dropped_total"),
                normal_events: text
                    .lines()
                    .find_map(|l| l.strip_prefix("tradeloop_lane_events_total{lane=\"normal\"} "))
                    .and_then(|v| v.parse().ok()),
                persistence_pending: family_sum(text, "tradeloop_persistence_pending_records"),
                fills: family_sum(text, "tradeloop_fills_total"),
            });
        }
        // Bounded: the run stops itself at --seconds; this is the backstop.
        if started.elapsed() > Duration::from_secs(args.seconds + 60) {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let report = judge(args, &series, &log, status.success());
    if report.passed() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!(
            "soak failed; the run's stderr and database are in {}",
            dir.display()
        );
    }
    Ok(report)
}

fn judge(args: &SoakArgs, series: &[Sample], log: &str, exit_ok: bool) -> SoakReport {
    #[allow(clippy::cast_precision_loss, reason = "seconds")]
    let judged: Vec<(f64, u64)> = series
        .iter()
        .filter(|s| s.t_s >= args.warmup as f64)
        .map(|s| (s.t_s, s.rss_kib))
        .collect();
    let min = judged.iter().map(|p| p.1).min().unwrap_or(0);
    let max = judged.iter().map(|p| p.1).max().unwrap_or(0);
    let last = |f: fn(&Sample) -> Option<f64>| series.iter().rev().find_map(f).unwrap_or(0.0);
    let (queued, written) = persisted(log).unwrap_or((0, u64::MAX));
    let lane_dropped = last(|s| s.lane_dropped);
    #[allow(clippy::cast_precision_loss, reason = "KiB to MiB")]
    let memory_flat = !judged.is_empty() && ((max - min) as f64) / 1024.0 <= args.max_growth_mb;
    SoakReport {
        seconds: args.seconds,
        steps_per_second: args.steps_per_second,
        samples: series.len(),
        rss_after_warmup_min_kib: min,
        rss_after_warmup_max_kib: max,
        rss_slope_kib_per_min: slope_per_min(&judged),
        lane_dropped,
        normal_events: last(|s| s.normal_events),
        fills: last(|s| s.fills),
        records_queued: queued,
        records_written: written,
        memory_flat,
        no_drops: series.iter().any(|s| s.lane_dropped.is_some())
            && lane_dropped == 0.0
            && !log
                .lines()
                .any(|l| l.starts_with("lane ") && l.contains(" dropped")),
        all_persisted: queued > 0 && queued == written,
        exit_ok,
        series: series.to_vec(),
    }
}

/// Runs the soak, prints the summary table, writes the JSON; fails when a check fails.
///
/// # Errors
/// When the soak cannot run or a check fails.
pub fn run(args: &SoakArgs) -> anyhow::Result<()> {
    let r = soak(args)?;
    let yes = |b: bool| if b { "pass" } else { "FAIL" };
    println!("| check | result | figures |");
    println!("|---|---|---|");
    println!(
        "| memory flat after {} s warm-up | {} | RSS {:.1}–{:.1} MiB, range {:.1} MiB (limit {}), slope {:+.0} KiB/min over {} samples |",
        args.warmup,
        yes(r.memory_flat),
        r.rss_after_warmup_min_kib as f64 / 1024.0,
        r.rss_after_warmup_max_kib as f64 / 1024.0,
        (r.rss_after_warmup_max_kib - r.rss_after_warmup_min_kib) as f64 / 1024.0,
        args.max_growth_mb,
        r.rss_slope_kib_per_min,
        r.samples
    );
    println!(
        "| no lane drops | {} | {} dropped; {} NORMAL events, {} fills in {} s at {} steps/s |",
        yes(r.no_drops),
        r.lane_dropped,
        r.normal_events,
        r.fills,
        r.seconds,
        r.steps_per_second
    );
    println!(
        "| every record persisted | {} | queued {}, written {} |",
        yes(r.all_persisted),
        r.records_queued,
        r.records_written
    );
    println!("| clean exit | {} | |", yes(r.exit_ok));
    super::write_json(args.json_out.as_deref(), &r)?;
    anyhow::ensure!(r.passed(), "the soak failed a check");
    Ok(())
}

/// The workspace's `config.toml`, for the test.
#[cfg(test)]
fn shipped_config() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_parsing_sums_families_and_reads_the_summary() {
        let text = "# HELP x\ntradeloop_lane_dropped_total{lane=\"normal\"} 3\ntradeloop_lane_dropped_total{lane=\"low\"} 2\ntradeloop_lane_dropped_totalx 9\n";
        assert_eq!(family_sum(text, "tradeloop_lane_dropped_total"), Some(5.0));
        assert_eq!(family_sum(text, "tradeloop_fills_total"), None);
        let log =
            "persistence (sqlite /tmp/x.db, run 1): queued 2380 records, wrote 2379 in 89 batches";
        assert_eq!(persisted(log), Some((2380, 2379)));
        let flat = [(0.0, 100), (60.0, 100), (120.0, 100)];
        assert!(slope_per_min(&flat).abs() < 1e-9);
        let growing = [(0.0, 100), (60.0, 160), (120.0, 220)];
        assert!((slope_per_min(&growing) - 60.0).abs() < 1e-9);
    }

    #[test]
    fn judging_fails_growth_drops_and_unwritten_records() {
        let args = SoakArgs {
            binary: None,
            config: shipped_config(),
            seconds: 10,
            warmup: 2,
            steps_per_second: 1000,
            max_growth_mb: 1.0,
            json_out: None,
        };
        let sample = |t: f64, rss: u64, dropped: f64| Sample {
            t_s: t,
            rss_kib: rss,
            lane_dropped: Some(dropped),
            normal_events: Some(1.0),
            persistence_pending: Some(0.0),
            fills: Some(1.0),
        };
        let ok_log = "persistence (sqlite x, run 1): queued 10 records, wrote 10 in 1 batches";
        let good = [
            sample(1.0, 50_000, 0.0),
            sample(3.0, 60_000, 0.0),
            sample(9.0, 60_500, 0.0),
        ];
        assert!(judge(&args, &good, ok_log, true).passed());
        let growing = [sample(3.0, 60_000, 0.0), sample(9.0, 62_000, 0.0)];
        assert!(!judge(&args, &growing, ok_log, true).memory_flat);
        let dropping = [sample(3.0, 60_000, 0.0), sample(9.0, 60_000, 4.0)];
        assert!(!judge(&args, &dropping, ok_log, true).no_drops);
        let lost = "persistence (sqlite x, run 1): queued 10 records, wrote 9 in 1 batches";
        assert!(!judge(&args, &good, lost, true).all_persisted);
        assert!(!judge(&args, &good, "", true).all_persisted);
        assert!(!judge(&args, &good, ok_log, false).passed());
    }

    /// A short soak of the real binary: it trades, persists everything, drops nothing.
    /// (Memory is judged by the real 10-minute soak; a few seconds say nothing about it.)
    #[test]
    fn a_short_soak_of_the_real_run_persists_everything() {
        let Ok(binary) = default_binary() else {
            eprintln!(
                "skipped: the tradeloop binary is not built (cargo test --workspace builds it)"
            );
            return;
        };
        let r = soak(&SoakArgs {
            binary: Some(binary),
            config: shipped_config(),
            seconds: 4,
            warmup: 1,
            steps_per_second: 5_000,
            max_growth_mb: 1024.0,
            json_out: None,
        })
        .unwrap();
        assert!(r.exit_ok, "{r:?}");
        assert!(r.samples >= 2, "{r:?}");
        assert!(r.normal_events > 0.0, "{r:?}");
        assert!(r.no_drops, "{r:?}");
        assert!(r.all_persisted, "{r:?}");
    }
}
