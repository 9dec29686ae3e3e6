//! A run's latency histograms saved as an HdrHistogram interval log (`.hlog`: the V2
//! compressed encoding, one tagged line per histogram, values in nanoseconds), readable by
//! HdrHistogram's own tools (HistogramLogAnalyzer, `HistogramLogProcessor`), and
//! `tradeloop latency-compare A.hlog B.hlog` to put two runs side by side.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// Writes `histograms` (tag, histogram) to `path` as one interval covering the run, through a
/// `.partial` file renamed at the end. Empty histograms are written too (count 0), so two logs
/// of the same command have the same tags.
///
/// # Errors
/// If a tag is not a valid log tag (no spaces, commas or colons), or the file cannot be written.
pub fn write(
    path: &Path,
    histograms: &[(&str, &Histogram<u64>)],
    started: SystemTime,
    duration: Duration,
    comment: &str,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let partial = path.with_extension("hlog.partial");
    let mut buf = Vec::new();
    {
        let mut serializer = V2DeflateSerializer::new();
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment(comment)
            .add_comment("values in nanoseconds")
            .with_start_time(started)
            .with_base_time(started);
        let mut log = builder
            .begin_log_with(&mut buf, &mut serializer)
            .context("cannot start the histogram log")?;
        for (tag, h) in histograms {
            let tag = Tag::new(tag).with_context(|| format!("{tag:?} is not a log tag"))?;
            log.write_histogram(h, Duration::ZERO, duration, Some(tag))
                .map_err(|e| anyhow::anyhow!("cannot encode histogram {}: {e:?}", tag.as_str()))?;
        }
    }
    let mut f = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    f.write_all(&buf)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), path.display()))?;
    Ok(())
}

/// Reads a log: every tagged histogram, those with the same tag added together (a log with
/// several intervals gives the whole run). Untagged histograms are under `""`.
///
/// # Errors
/// If the file cannot be read or a histogram line does not decode.
pub fn read(path: &Path) -> anyhow::Result<BTreeMap<String, Histogram<u64>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry = entry.map_err(|e| {
            anyhow::anyhow!(
                "{}: not an HdrHistogram interval log: {e:?}",
                path.display()
            )
        })?;
        let LogEntry::Interval(h) = entry else {
            continue;
        };
        let tag = h.tag().map(|t| t.as_str().to_owned()).unwrap_or_default();
        let encoded = base64::engine::general_purpose::STANDARD
            .decode(h.encoded_histogram().trim())
            .with_context(|| format!("{}: histogram {tag:?} is not base64", path.display()))?;
        let decoded: Histogram<u64> = deserializer
            .deserialize(&mut encoded.as_slice())
            .map_err(|e| anyhow::anyhow!("{}: histogram {tag:?}: {e:?}", path.display()))?;
        match out.get_mut(&tag) {
            Some(acc) => acc
                .add(&decoded)
                .map_err(|e| anyhow::anyhow!("{}: histogram {tag:?}: {e:?}", path.display()))?,
            None => {
                out.insert(tag, decoded);
            }
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "{}: no histograms in the log",
        path.display()
    );
    Ok(out)
}

/// A table of two logs side by side: per tag, count and p50/p90/p99/p99.9/max of each (µs),
/// and B/A for p50 and p99. Tags in only one log are listed with `-` for the other.
pub fn compare(
    a_name: &str,
    a: &BTreeMap<String, Histogram<u64>>,
    b_name: &str,
    b: &BTreeMap<String, Histogram<u64>>,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "A = {a_name}\nB = {b_name}\nvalues in µs");
    let _ = writeln!(
        s,
        "{:<24} {:>3} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7} {:>7}",
        "histogram", "", "count", "p50", "p90", "p99", "p99.9", "max", "p50 B/A", "p99 B/A"
    );
    let tags: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for tag in tags {
        let (ha, hb) = (a.get(tag), b.get(tag));
        for (side, h) in [("A", ha), ("B", hb)] {
            let _ = write!(
                s,
                "{:<24} {side:>3} ",
                if side == "A" { tag.as_str() } else { "" }
            );
            match h {
                Some(h) => {
                    let _ = write!(s, "{:>10}", h.len());
                    for q in [0.5, 0.9, 0.99, 0.999] {
                        let _ = write!(s, " {:>9}", micros(h.value_at_quantile(q)));
                    }
                    let _ = write!(s, " {:>10}", micros(h.max()));
                }
                None => {
                    let _ = write!(s, "{:>10}", "-");
                }
            }
            if side == "B" {
                if let (Some(ha), Some(hb)) = (ha, hb) {
                    for q in [0.5, 0.99] {
                        let _ = write!(
                            s,
                            " {:>7}",
                            ratio(ha.value_at_quantile(q), hb.value_at_quantile(q))
                        );
                    }
                }
            }
            s.push('\n');
        }
    }
    s
}

#[allow(clippy::cast_precision_loss, reason = "display only")]
fn micros(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1000.0)
}

#[allow(clippy::cast_precision_loss, reason = "display only")]
fn ratio(a: u64, b: u64) -> String {
    if a == 0 {
        "-".to_owned()
    } else {
        format!("{:.2}", b as f64 / a as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeloop_engine::metrics::latency_histogram;

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = latency_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn a_written_log_reads_back_the_same_histograms() {
        let dir = std::env::temp_dir().join(format!("tl-hlog-{}", std::process::id()));
        let path = dir.join("run.hlog");
        let wait = hist(&(1..=10_000).collect::<Vec<_>>());
        let tick = hist(&[3_000, 4_000, 250_000]);
        let empty = latency_histogram();
        write(
            &path,
            &[
                ("normal_wait", &wait),
                ("tick_to_trade", &tick),
                ("low_wait", &empty),
            ],
            SystemTime::now(),
            Duration::from_secs(3),
            "tradeloop run test",
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("#tradeloop run test"), "{text}");
        assert!(text.contains("Tag=tick_to_trade,"), "{text}");
        assert!(!dir.join("run.hlog.partial").exists());
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back["normal_wait"], wait);
        assert_eq!(back["tick_to_trade"], tick);
        assert_eq!(back["low_wait"].len(), 0);
        let table = compare("a", &back, "b", &back);
        let line = table
            .lines()
            .skip_while(|l| !l.starts_with("tick_to_trade"))
            .nth(1)
            .unwrap();
        assert!(line.ends_with("1.00    1.00"), "{table}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_same_tag_in_several_intervals_adds_up() {
        let dir = std::env::temp_dir().join(format!("tl-hlog2-{}", std::process::id()));
        let (p1, p2) = (dir.join("a.hlog"), dir.join("b.hlog"));
        let t0 = SystemTime::now();
        write(
            &p1,
            &[("x", &hist(&[10, 20]))],
            t0,
            Duration::from_secs(1),
            "a",
        )
        .unwrap();
        write(&p2, &[("x", &hist(&[30]))], t0, Duration::from_secs(1), "b").unwrap();
        // Two logs' interval lines in one file: one interval log with two intervals of "x".
        let mut both = std::fs::read_to_string(&p1).unwrap();
        both.extend(
            std::fs::read_to_string(&p2)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("Tag="))
                .map(|l| format!("{l}\n")),
        );
        std::fs::write(&p1, both).unwrap();
        let merged = read(&p1).unwrap();
        assert_eq!(merged["x"].len(), 3);
        assert_eq!(merged["x"].max(), 30);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_log_is_refused() {
        let path = std::env::temp_dir().join(format!("tl-hlog3-{}.hlog", std::process::id()));
        std::fs::write(&path, "Tag=x,0.0,1.0,1.0,!!notbase64!!\n").unwrap();
        assert!(read(&path).is_err());
        std::fs::write(&path, "#only a comment\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("no histograms"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
