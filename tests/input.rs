//! Backtest input that is never silently wrong: each bad input of the table either fails
//! naming the file and what was expected, or replays with every unused line counted by
//! reason and located by file and line (and `summary.json` says so).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use tradeloop::backtest::{with_ma_cross, InputIssues, Skip};
use tradeloop::config::Config;

fn config() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    Config::load(&path, &Default::default()).unwrap()
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tl-input-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `n` Binance USD-M trade frames, one per millisecond.
fn frames(n: u64) -> Vec<String> {
    (0..n)
        .map(|k| {
            let ns = 1_723_075_200_000_000_000 + k * 1_000_000;
            format!(
                "{ns} {{\"stream\":\"btcusdt@trade\",\"data\":{{\"e\":\"trade\",\"E\":{},\"T\":{},\"s\":\"BTCUSDT\",\"t\":{k},\"p\":\"{}.10\",\"q\":\"0.010\",\"X\":\"MARKET\",\"m\":{}}}}}",
                ns / 1_000_000,
                ns / 1_000_000,
                60_000 + k % 50,
                k % 2 == 0
            )
        })
        .collect()
}

fn run(path: &Path, allow_partial: bool) -> anyhow::Result<tradeloop::backtest::Report> {
    with_ma_cross(&config())?
        .data([path])
        .allow_partial(allow_partial)
        .run()
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn inputs_that_yield_nothing_are_errors_naming_the_file_and_what_was_expected() {
    // (label, file name, bytes, fragments the error must hold)
    let cases: Vec<(&str, &str, Vec<u8>, &[&str])> = vec![
        (
            "TC0 empty",
            "empty.txt",
            vec![],
            &["empty.txt", "is empty", "Tardis CSV"],
        ),
        (
            "TC1 a CSV of another kind",
            "abc.csv",
            b"a,b,c\n1,2,3\n".to_vec(),
            &[
                "abc.csv",
                "CSV with an unknown header",
                "\"a,b,c\"",
                "incremental_book_L2",
            ],
        ),
        (
            "TC2 random bytes",
            "random.bin",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
            &["random.bin", "binary data"],
        ),
        (
            "TC3 only garbage lines after a frame-like one",
            "garbage.txt",
            b"123 not json\nmore garbage\n".to_vec(),
            &[
                "garbage.txt",
                "no market events",
                "refused_malformed",
                "no_timestamp",
                "garbage.txt:2",
            ],
        ),
        (
            "TC4 an empty gzip",
            "empty.gz",
            gzip(b""),
            &["empty.gz", "is empty"],
        ),
    ];
    for (label, name, bytes, want) in cases {
        let path = write(name, &bytes);
        let err = run(&path, false).expect_err(label);
        let text = format!("{err:#}");
        for w in want {
            assert!(text.contains(w), "{label}: {w:?} missing in: {text}");
        }
    }
}

#[test]
fn garbage_among_frames_is_counted_by_reason_with_file_and_line() {
    let mut lines = frames(3_000);
    // 30 lines without a receive time, 20 frames that are not JSON, 10 not UTF-8.
    let mut bad = Vec::new();
    for k in 0..60 {
        let at = 50 + k * 45;
        let line = match k % 6 {
            0..=2 => format!("garbage {k}"),
            3 | 4 => format!("1723075200000000000 {{broken {k}"),
            _ => "\u{0}".to_owned(), // replaced below by invalid UTF-8
        };
        lines.insert(at, line);
        bad.push(at + 1);
    }
    let mut bytes = Vec::new();
    for l in &lines {
        if l == "\u{0}" {
            bytes.extend_from_slice(&[0xff, 0xfe, b'x']);
        } else {
            bytes.extend_from_slice(l.as_bytes());
        }
        bytes.push(b'\n');
    }
    for (label, path) in [
        ("plain", write("mixed.txt", &bytes)),
        ("gzip", write("mixed.gz", &gzip(&bytes))),
    ] {
        let report = run(&path, false).unwrap_or_else(|e| panic!("{label}: {e:#}"));
        let issues: &InputIssues = &report.input_issues;
        assert_eq!(issues.count(Skip::NoTimestamp), 30, "TC0 {label}");
        assert_eq!(
            issues.count(Skip::Refused(0)),
            20,
            "TC1 {label} refused as malformed"
        );
        assert_eq!(issues.count(Skip::NotUtf8), 10, "TC2 {label}");
        assert_eq!(issues.total(), 60, "TC3 {label}: none vanish");
        assert!(!issues.partial(), "TC4 {label}");
        for e in issues.examples() {
            assert!(
                bad.contains(&usize::try_from(e.line).unwrap()),
                "TC5 {label}: {e} names a line that was bad"
            );
            assert_eq!(&*e.file, path.as_path(), "TC6 {label}");
        }
        assert_eq!(
            report.events, 3_020,
            "TC7 {label}: frames read, refused ones included"
        );
        let out = dir().join(format!("out-{label}"));
        report.write(&out).unwrap();
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(
            summary["input"]["skipped"]["no_timestamp"], 30,
            "TC8 {label}"
        );
        assert_eq!(summary["input"]["skipped"]["not_utf8"], 10, "TC9 {label}");
        assert_eq!(summary["input"]["partial"], false, "TC10 {label}");
    }
}

#[test]
fn a_truncated_gzip_names_the_file_and_offset_and_replays_its_prefix_only_when_allowed() {
    let text = frames(20_000).join("\n");
    let whole = gzip(text.as_bytes());
    let cut = &whole[..whole.len() / 2];
    let path = write("cut.gz", cut);
    let err = format!(
        "{:#}",
        run(&path, false).expect_err("TC0 refused by default")
    );
    assert!(
        err.contains("cut.gz")
            && err.contains(&format!("of {}", cut.len()))
            && err.contains("--allow-partial"),
        "TC1 {err}"
    );
    let report = run(&path, true).expect("TC2 replayed with --allow-partial");
    assert!(report.input_issues.partial(), "TC3");
    assert_eq!(report.input_issues.count(Skip::Truncated), 1, "TC4");
    assert!(
        report.events > 1_000 && report.events < 20_000,
        "TC5 the prefix only: {} frames",
        report.events
    );
}

#[test]
fn bad_tardis_rows_are_counted_with_their_line() {
    let csv = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n\
               bitmex,XBTUSD,1,1000,a,buy,100.5,1\n\
               bitmex,NOTCONF,2,2000,b,buy,100.5,1\n\
               bitmex,XBTUSD,3,3000,c,sideways,100.5,1\n\
               bitmex,XBTUSD,4,4000,d,sell,100.5\n\
               bitmex,XBTUSD,5,5000,e,sell,100.5,1\n";
    let path = write("trades.csv", csv.as_bytes());
    let mut c = config();
    c.instruments[0].symbol = "XBTUSD".into();
    c.strategy
        .sections
        .get_mut("ma_cross")
        .and_then(toml::Value::as_table_mut)
        .expect("[strategy.ma_cross]")
        .insert("symbol".into(), toml::Value::String("XBTUSD".into()));
    let report = with_ma_cross(&c)
        .unwrap()
        .data([&path])
        .run()
        .expect("two good rows");
    let i = &report.input_issues;
    assert_eq!(i.count(Skip::UnknownSymbolRow), 1, "TC0");
    assert_eq!(i.count(Skip::MalformedRow), 2, "TC1");
    let lines: Vec<u64> = i.examples().iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 4, 5], "TC2 header is line 1");
    assert_eq!(report.refused, 3, "TC3");
}
