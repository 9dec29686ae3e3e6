//! The `tradeloop` binary as a user runs it: `config check`, `config print`, and `run` on the
//! shipped config.toml (offline sim venue) ending by itself after `--duration`.

use std::process::Command;

fn tradeloop() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tradeloop"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tradeloop run` on the shipped config with the sim venue on free loopback ports.
fn run_on_free_ports() -> Command {
    let (ws, rest) = (free_port(), free_port());
    let mut c = tradeloop();
    c.arg("run")
        .env(
            "TRADELOOP__VENUES__0__WS_URL",
            format!("\"ws://127.0.0.1:{ws}\""),
        )
        .env(
            "TRADELOOP__VENUES__0__REST_URL",
            format!("\"http://127.0.0.1:{rest}\""),
        );
    c
}

#[test]
fn config_check_accepts_the_shipped_config_and_names_bad_keys() {
    let ok = tradeloop().args(["config", "check"]).output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("config.toml: ok"));
    let bad = tradeloop()
        .args(["config", "check"])
        .env("TRADELOOP__ENGINE__LANES__HIGH_SLOTS", "3")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("engine.lanes.high_slots") && err.contains("power of two"),
        "{err}"
    );
}

#[test]
fn unknown_strategies_and_bad_strategy_params_are_refused_by_name() {
    let check = |env: &[(&str, &str)]| {
        let mut c = tradeloop();
        c.args(["config", "check"]);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(!o.status.success(), "{env:?} was accepted");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 3] = [
        (
            "TC0 unknown name lists the registered ones",
            &[("TRADELOOP__STRATEGY__NAME", "\"nope\"")],
            &[
                "strategy.name",
                "no strategy named \"nope\"",
                "registered: ma_cross",
            ],
        ),
        (
            "TC1 a bad parameter names its key",
            &[("TRADELOOP__STRATEGY__MA_CROSS__SLOW", "5")],
            &["strategy.ma_cross.slow", "greater than fast"],
        ),
        (
            "TC2 a misspelt parameter is named",
            &[("TRADELOOP__STRATEGY__MA_CROSS__SLOWW", "5")],
            &["strategy.ma_cross.sloww", "unknown field"],
        ),
    ];
    for (label, env, want) in cases {
        let err = check(env);
        for w in want {
            assert!(err.contains(w), "{label}: {w:?} not in {err}");
        }
    }
    let dir = std::env::temp_dir().join(format!("tl-unknown-strategy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("empty.jsonl");
    std::fs::write(&data, "").unwrap();
    let o = tradeloop()
        .args(["backtest", "--strategy", "market_wizard", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "TC3 {err}");
    assert!(
        err.contains("--strategy") && err.contains("registered: ma_cross"),
        "TC3 {err}"
    );
    assert!(!dir.join("out").exists(), "TC4 nothing was written");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_print_never_shows_secrets() {
    let out = tradeloop()
        .args(["config", "print"])
        .env(
            "TRADELOOP_PG_URL",
            "postgres://trader:sup3r-secret@127.0.0.1:5432/tl",
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("sup3r-secret"), "{text}");
    assert!(
        text.contains("postgres://trader:***@127.0.0.1:5432/tl"),
        "{text}"
    );
}

#[test]
fn run_streams_from_the_offline_sim_venue_and_stops_cleanly() {
    let metrics = free_port();
    let hlog = std::env::temp_dir().join(format!("tradeloop-cli-{}.hlog", std::process::id()));
    let child = run_on_free_ports()
        .args(["--duration", "4", "--histograms"])
        .arg(&hlog)
        .env(
            "TRADELOOP__METRICS__LISTEN",
            format!("\"127.0.0.1:{metrics}\""),
        )
        .env("TRADELOOP__METRICS__STATUS_INTERVAL_MS", "500")
        .env(
            "TRADELOOP__PERSISTENCE__SQLITE_PATH",
            std::env::temp_dir().join(format!("tradeloop-cli-{}.db", std::process::id())),
        )
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs, Prometheus /metrics shows the feed live and market data flowing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut scraped = String::new();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        scraped = scrape(metrics).unwrap_or_default();
        if scraped.contains("tradeloop_feed_state{feed=\"sim\",state=\"live\"} 1")
            && scraped.contains("tradeloop_book_state{instrument=\"sim:BTCUSDT\",state=\"live\"} 1")
        {
            break;
        }
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        scraped.contains("tradeloop_feed_state{feed=\"sim\",state=\"live\"} 1"),
        "/metrics showed the feed live:\n{scraped}\n{err}"
    );
    let normal_events = scraped
        .lines()
        .find_map(|l| l.strip_prefix("tradeloop_lane_events_total{lane=\"normal\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("NORMAL events in /metrics");
    assert!(normal_events > 0.0, "{scraped}");
    assert!(
        err.contains(&format!("metrics: http://127.0.0.1:{metrics}/metrics")),
        "{err}"
    );
    assert!(err.contains("feed sim: live"), "the feed went live:\n{err}");
    // The saved latency histograms compare with themselves: every ratio is 1.
    let cmp = tradeloop()
        .arg("latency-compare")
        .args([&hlog, &hlog])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&cmp.stdout);
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stderr)
    );
    let normal_wait = table
        .lines()
        .skip_while(|l| !l.starts_with("normal_wait"))
        .nth(1)
        .expect("normal_wait B row");
    assert!(normal_wait.ends_with("1.00    1.00"), "{table}");
    assert!(table.contains("tick_to_trade"), "{table}");
    std::fs::remove_file(&hlog).unwrap();
    assert!(err.contains("sim:BTCUSDT Live"), "the book synced:\n{err}");
    let summary = err
        .lines()
        .find(|l| l.starts_with("feed sim:") && l.contains("frames,"))
        .expect("final feed summary");
    let trades: u64 = summary
        .split(", ")
        .find_map(|p| p.strip_suffix(" trades"))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(trades > 100, "{summary}");
    assert!(summary.contains(" 0 gaps, 0 refused"), "{summary}");
    assert!(err.contains("run ended after"), "{err}");
}

fn shared(file: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(file);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent", p.display());
        None
    }
}

fn backtest(data: &[&std::path::Path], out: &std::path::Path, env: &[(&str, &str)]) -> String {
    let mut c = tradeloop();
    c.arg("backtest")
        .arg("--data")
        .args(data)
        .arg("--out")
        .arg(out);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

#[test]
fn backtest_on_the_real_capture_is_deterministic_and_balanced() {
    let Some(data) = shared("binance_usdm_btcusdt_20240808.gz") else {
        return;
    };
    let base = std::env::temp_dir().join(format!("tradeloop-bt-{}", std::process::id()));
    let (a, b) = (base.join("a"), base.join("b"));
    let err = backtest(&[&data], &a, &[]);
    backtest(&[&data], &b, &[]);
    assert!(err.contains("pnl cross-check ok"), "{err}");
    for f in ["fills.csv", "orders.csv", "equity.csv", "equity.svg"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between runs"
        );
    }
    let summary = |dir: &std::path::Path| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("performance");
        v
    };
    let (sa, sb) = (summary(&a), summary(&b));
    assert_eq!(
        sa, sb,
        "summary.json (performance figures aside) differs between runs"
    );
    assert_eq!(sa["events_processed"], 93_954);
    assert_eq!(sa["events_refused"], 0);
    assert_eq!(sa["stats"]["pnl_check"], true);
    // Position = signed sum of the fills written to fills.csv.
    let csv = std::fs::read_to_string(a.join("fills.csv")).unwrap();
    let mut signed = rust_decimal::Decimal::ZERO;
    let mut rows = 0;
    for line in csv.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let qty: rust_decimal::Decimal = cols[5].parse().unwrap();
        signed += if cols[3] == "buy" { qty } else { -qty };
        rows += 1;
    }
    assert_eq!(rows, sa["fills"].as_u64().unwrap());
    assert!(rows > 10, "the strategy traded");
    let pos: rust_decimal::Decimal = sa["positions"][0]["qty"].as_str().unwrap().parse().unwrap();
    assert_eq!(signed, pos);
    assert!(std::fs::read_to_string(a.join("equity.svg"))
        .unwrap()
        .contains("<polyline"));
    // orders.csv: every order sent, once, in its last state; what filled adds up to fills.csv.
    let orders = std::fs::read_to_string(a.join("orders.csv")).unwrap();
    let mut lines = orders.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("client_order_id,symbol,side,kind,tif,price"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len() as u64, sa["orders"].as_u64().unwrap());
    let ids: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(ids.len(), rows.len(), "one row per order");
    let filled: rust_decimal::Decimal = rows
        .iter()
        .map(|r| r[8].parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    let traded: rust_decimal::Decimal = csv
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(5)
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    assert_eq!(
        filled, traded,
        "orders' filled quantities add up to the fills"
    );
    assert!(
        rows.iter().all(
            |r| ["filled", "canceled", "rejected", "open", "partially_filled"].contains(&r[9])
        ),
        "final states"
    );
    // equity.csv: one row a second plus the settlement; the last row is the net PnL, and every
    // mark is a BTCUSDT price.
    let eq = std::fs::read_to_string(a.join("equity.csv")).unwrap();
    let mut lines = eq.lines();
    assert_eq!(lines.next(), Some("ts_ns,equity,mark_BTCUSDT,mark_ETHUSDT"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let span_s =
        (sa["span_ns"][1].as_u64().unwrap() - sa["span_ns"][0].as_u64().unwrap()) / 1_000_000_000;
    assert!(
        rows.len() as u64 >= span_s,
        "{} rows for {span_s} s",
        rows.len()
    );
    let net: rust_decimal::Decimal = sa["stats"]["net_pnl"].as_str().unwrap().parse().unwrap();
    let last: rust_decimal::Decimal = rows.last().unwrap()[1].parse().unwrap();
    assert_eq!(last.round_dp(6), net.round_dp(6));
    for r in &rows[1..] {
        let mark: rust_decimal::Decimal = r[2].parse().unwrap();
        assert!(
            mark > rust_decimal::Decimal::from(50_000)
                && mark < rust_decimal::Decimal::from(70_000),
            "{r:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn backtest_reads_tardis_csv_and_applies_the_time_window() {
    let Some(data) = shared("tardis_bitmex_trades_XBTUSD.csv") else {
        return;
    };
    let out = std::env::temp_dir().join(format!("tradeloop-bt-tardis-{}", std::process::id()));
    let env = [
        ("TRADELOOP__INSTRUMENTS__0__SYMBOL", "\"XBTUSD\""),
        ("TRADELOOP__INSTRUMENTS__0__TICK_SIZE", "\"0.5\""),
        ("TRADELOOP__INSTRUMENTS__0__LOT_SIZE", "\"1\""),
        ("TRADELOOP__STRATEGY__MA_CROSS__SYMBOL", "\"XBTUSD\""),
        ("TRADELOOP__STRATEGY__MA_CROSS__TARGET_QTY", "\"100\""),
    ];
    backtest(&[&data], &out, &env);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(v["events_processed"], 10);
    assert_eq!(v["events_refused"], 0);
    // Receive times: one row at 00:00:03.307160, nine at 00:00:03.336743 (UTC, 2020-03-01).
    let mut c = tradeloop();
    c.args(["backtest", "--from", "2020-03-01T00:00:03.31Z", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out);
    for (k, v) in env {
        c.env(k, v);
    }
    assert!(c.output().unwrap().status.success());
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let n = v["events_processed"].as_u64().unwrap();
    assert_eq!(n, 9, "the window drops the first row only");
    let _ = std::fs::remove_dir_all(&out);
}

/// One `fills.csv` row: time, side sign, quantity.
fn fill_rows(dir: &std::path::Path) -> Vec<(u64, rust_decimal::Decimal)> {
    let csv = std::fs::read_to_string(dir.join("fills.csv")).unwrap();
    csv.lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            let qty: rust_decimal::Decimal = cols[5].parse().unwrap();
            (
                cols[0].parse().unwrap(),
                if cols[3] == "buy" { qty } else { -qty },
            )
        })
        .collect()
}

#[test]
fn backtest_real_price_path_fires_a_stop_and_trips_the_drawdown_breaker() {
    use rust_decimal::Decimal;
    let Some(data) = shared("binance_usdm_btcusdt_20240808.gz") else {
        return;
    };
    let base = std::env::temp_dir().join(format!("tradeloop-bt-brk-{}", std::process::id()));
    let (with, without) = (base.join("with"), base.join("without"));
    // 1 bp stop-loss; drawdown limit 10 USDT with flatten (the shipped action) vs. one so
    // large it never trips. Everything else is the shipped config.
    let stops = ("TRADELOOP__STOPS__STOP_LOSS_BPS", "1");
    backtest(
        &[&data],
        &with,
        &[stops, ("TRADELOOP__BREAKERS__DRAWDOWN__MAX", "\"10\"")],
    );
    backtest(
        &[&data],
        &without,
        &[stops, ("TRADELOOP__BREAKERS__DRAWDOWN__MAX", "\"1000000\"")],
    );
    let summary = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
    };
    let (s, s0) = (summary(&with), summary(&without));
    assert!(
        s["stops"]["fired"].as_u64().unwrap() >= 1,
        "a stop fired on the real price path: {}",
        s["stops"]
    );
    assert_eq!(s0["breaker_events"].as_array().unwrap().len(), 0);
    let events = s["breaker_events"].as_array().unwrap();
    let trip = &events[0];
    assert_eq!(
        (trip["breaker"].as_str(), trip["state"].as_str()),
        (Some("drawdown"), Some("open")),
        "{events:?}"
    );
    assert_eq!(trip["limit"], 1_000_000_000, "10 USDT in 1e-8 units");
    assert!(trip["value"].as_i64().unwrap() >= 1_000_000_000, "{trip}");
    let t = trip["ts_ns"].as_u64().unwrap();
    // A drawdown does not heal when flat: every later check re-opens it.
    for e in &events[1..] {
        assert_eq!(e["breaker"], "drawdown");
        assert_ne!(e["state"], "closed", "{e}");
    }

    let (fills, fills0) = (fill_rows(&with), fill_rows(&without));
    // Until the trip (it happened while a fill at `t` was applied) both runs are the same.
    let before: Vec<_> = fills.iter().filter(|f| f.0 <= t).collect();
    let before0: Vec<_> = fills0.iter().filter(|f| f.0 <= t).collect();
    assert_eq!(before, before0, "identical up to the trip");
    // From the trip on: nothing but reductions, ending flat (flatten).
    let mut pos: Decimal = before.iter().map(|f| f.1).sum();
    assert!(!pos.is_zero(), "a position was open at the trip");
    for f in fills.iter().filter(|f| f.0 > t) {
        let next = pos + f.1;
        assert!(
            next.abs() < pos.abs(),
            "fill {f:?} at position {pos} is not a reduction"
        );
        pos = next;
    }
    assert!(pos.is_zero(), "flattened, left {pos}");
    // Without the breaker the strategy kept opening positions after that time.
    let mut pos0: Decimal = before0.iter().map(|f| f.1).sum();
    let mut increases = 0;
    for f in fills0.iter().filter(|f| f.0 > t) {
        increases += usize::from((pos0 + f.1).abs() > pos0.abs());
        pos0 += f.1;
    }
    assert!(increases > 0);
    // The loss is real: flat at the end, net PnL (exact, cross-checked) at least the limit
    // below the starting equity of zero, which the peak can only exceed.
    assert_eq!(s["stats"]["pnl_check"], true);
    let net: Decimal = s["stats"]["net_pnl"].as_str().unwrap().parse().unwrap();
    assert!(net <= Decimal::from(-10), "net {net}");
    let _ = std::fs::remove_dir_all(&base);
}

/// `convert` then `backtest` on the `.tle` file gives the raw replay's results: the same fills,
/// equity curve, stops and breaker transitions (summary.json equal but for the input name and
/// the wall-clock figures), with stops and a drawdown breaker on so that every path runs.
#[test]
fn converted_file_backtests_exactly_like_the_raw_capture() {
    let Some(data) = shared("binance_usdm_btcusdt_20240808.gz") else {
        return;
    };
    let base = std::env::temp_dir().join(format!("tradeloop-tle-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let env = [
        ("TRADELOOP__STOPS__STOP_LOSS_BPS", "1"),
        ("TRADELOOP__BREAKERS__DRAWDOWN__MAX", "\"10\""),
    ];
    let summary = |dir: &std::path::Path| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("performance");
        o.remove("inputs");
        v
    };
    let raw = base.join("raw");
    backtest(&[&data], &raw, &env);
    for zstd in [None, Some("3")] {
        let tle = base.join(format!("usdm-{}.tle", zstd.unwrap_or("raw")));
        let mut c = tradeloop();
        c.args(["convert", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&tle);
        if let Some(level) = zstd {
            c.args(["--zstd", level]);
        }
        let o = c.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("93954 steps"), "{err}");
        assert!(!base.join("usdm.tle.partial").exists());
        let out = base.join(format!("out-{}", zstd.unwrap_or("raw")));
        let err = backtest(&[&tle], &out, &env);
        assert!(err.contains("pnl cross-check ok"), "{err}");
        for f in ["fills.csv", "equity.svg"] {
            assert_eq!(
                std::fs::read(raw.join(f)).unwrap(),
                std::fs::read(out.join(f)).unwrap(),
                "{f} differs (zstd {zstd:?})"
            );
        }
        let (a, b) = (summary(&raw), summary(&out));
        assert_eq!(a, b, "summary.json differs (zstd {zstd:?})");
        assert!(a["fills"].as_u64().unwrap() > 10);
        assert!(!a["breaker_events"].as_array().unwrap().is_empty());
        assert!(a["stops"]["fired"].as_u64().unwrap() >= 1);
    }
    // A .tle file is the only input of a backtest, and a damaged one is refused by name.
    let tle = base.join("usdm-raw.tle");
    let o = tradeloop()
        .args(["backtest", "--data"])
        .arg(&tle)
        .arg(&data)
        .arg("--out")
        .arg(base.join("mixed"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("must be the only input"));
    let mut bytes = std::fs::read(&tle).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let bad = base.join("bad.tle");
    std::fs::write(&bad, &bytes).unwrap();
    let o = tradeloop()
        .args(["backtest", "--data"])
        .arg(&bad)
        .arg("--out")
        .arg(base.join("bad"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("checksum mismatch"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// A sweep runs every combination on shared converted data, and each row is exactly what a
/// single backtest with that override reports; rows are sorted by the chosen metric.
#[test]
fn sweep_rows_equal_single_backtests_and_are_sorted() {
    let Some(data) = shared("binance_usdm_btcusdt_20240808.gz") else {
        return;
    };
    let base = std::env::temp_dir().join(format!("tradeloop-sweep-{}", std::process::id()));
    let o = tradeloop()
        .args(["backtest", "--data"])
        .arg(&data)
        .args([
            "--sweep",
            "fast=10,20",
            "--sweep",
            "target_qty=0.01,0.02",
            "--sort-by",
            "max-drawdown",
            "--out",
        ])
        .arg(&base)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("4 runs"), "{err}");
    let csv = std::fs::read_to_string(base.join("sweep.csv")).unwrap();
    let mut lines = csv.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 4);
    let dd = |r: &Vec<String>| {
        r[col("max_drawdown")]
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    assert!(rows.windows(2).all(|w| dd(&w[0]) <= dd(&w[1])), "{csv}");
    let mut seen: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r[col("strategy.ma_cross.fast")].clone(),
                r[col("strategy.ma_cross.target_qty")].clone(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("10", "0.01"),
            ("10", "0.02"),
            ("20", "0.01"),
            ("20", "0.02")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    // Two rows checked against single runs (one per thread at least when run in parallel).
    for r in &rows[..2] {
        let single = base.join(format!("single-{}", r[0]));
        let qty = format!("\"{}\"", r[col("strategy.ma_cross.target_qty")]);
        backtest(
            &[&data],
            &single,
            &[
                (
                    "TRADELOOP__STRATEGY__MA_CROSS__FAST",
                    r[col("strategy.ma_cross.fast")].as_str(),
                ),
                ("TRADELOOP__STRATEGY__MA_CROSS__TARGET_QTY", qty.as_str()),
            ],
        );
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(single.join("summary.json")).unwrap()).unwrap();
        assert_eq!(s["stats"]["net_pnl"].as_str().unwrap(), r[col("net_pnl")]);
        assert_eq!(s["fills"].as_u64().unwrap().to_string(), r[col("fills")]);
    }
    // Sections that decide parsing cannot be swept.
    let o = tradeloop()
        .args(["backtest", "--data"])
        .arg(&data)
        .args(["--sweep", "feed.max_frame_bytes=100,200", "--out"])
        .arg(&base)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("`feed` cannot be swept"));
    let _ = std::fs::remove_dir_all(&base);
}

/// `GET /metrics` from a running `tradeloop run`, or `None` while it is not listening yet.
fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

/// The sim venue speaking `protocol`: `run` streams from it through that venue's feed (books
/// from in-stream snapshots), `record` captures it, and `backtest` replays the recording
/// through the same parser with the book in sync throughout (no gap, no failed checksum).
fn sim_venue_runs_records_and_backtests(protocol: &str, book_frame: &str) {
    let env_protocol = format!("\"{protocol}\"");
    let db = std::env::temp_dir().join(format!(
        "tradeloop-cli-{protocol}-{}.db",
        std::process::id()
    ));
    let out = run_on_free_ports()
        .args(["--duration", "3", "--no-histograms"])
        .env("TRADELOOP__SIM__PROTOCOL", &env_protocol)
        .env("TRADELOOP__METRICS__ENABLED", "false")
        .env("TRADELOOP__PERSISTENCE__SQLITE_PATH", &db)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("feed sim: live"), "the feed went live:\n{err}");
    assert!(err.contains("sim:BTCUSDT Live"), "the book synced:\n{err}");
    let summary = err
        .lines()
        .find(|l| l.starts_with("feed sim:") && l.contains("frames,"))
        .expect("final feed summary");
    assert!(summary.contains(" 0 gaps, 0 refused"), "{summary}");
    let _ = std::fs::remove_file(&db);

    let dir = std::env::temp_dir().join(format!(
        "tradeloop-cli-{protocol}-rec-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let rec = tradeloop()
        .args([
            "record",
            "--venue",
            "sim",
            "--symbols",
            "BTCUSDT",
            "--duration",
            "2",
        ])
        .arg("--out")
        .arg(&dir)
        .env("TRADELOOP__SIM__PROTOCOL", &env_protocol)
        .output()
        .unwrap();
    let rec_err = String::from_utf8_lossy(&rec.stderr);
    assert!(rec.status.success(), "{rec_err}");
    assert!(
        rec_err.contains("and 0 snapshots"),
        "in-stream snapshots: {rec_err}"
    );
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut reader = tradeloop_adapters::recorder::FrameReader::open(&files).unwrap();
    let first = loop {
        let (_, frame) = reader.next_frame().unwrap().expect("a recorded book frame");
        if frame.starts_with(book_frame) {
            break frame.to_owned();
        }
    };
    assert!(
        first.contains(":\"snapshot\""),
        "the first book frame is its snapshot: {first}"
    );
    let bt = dir.join("bt");
    let err = backtest(&[&files[0]], &bt, &[]);
    assert!(err.contains("pnl cross-check ok"), "{err}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bt.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["events_refused"], 0, "{summary}");
    assert!(
        summary["market_events"].as_u64().unwrap() > 1_000,
        "{summary}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bybit_sim_venue_runs_records_and_backtests() {
    sim_venue_runs_records_and_backtests("bybit", "{\"topic\":\"orderbook.50.BTCUSDT\"");
}

#[test]
fn kraken_sim_venue_runs_records_and_backtests() {
    sim_venue_runs_records_and_backtests("kraken", "{\"channel\":\"book\"");
}

#[test]
fn coinbase_sim_venue_runs_records_and_backtests() {
    sim_venue_runs_records_and_backtests("coinbase", "{\"channel\":\"l2_data\"");
}

#[test]
fn okx_sim_venue_runs_records_and_backtests() {
    sim_venue_runs_records_and_backtests("okx", "{\"arg\":{\"channel\":\"books\"");
}

/// `bench --only` runs just the named groups, and refuses a group it does not know by name.
#[test]
fn bench_only_runs_the_named_groups() {
    let out = tradeloop()
        .args(["bench", "--events", "2000", "--json", "--only", "core"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<&str> = report["figures"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["clock_overhead", "dispatch", "lane_hop"]);
    let out = tradeloop()
        .args(["bench", "--only", "core,latency"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--only latency") && err.contains("groups: core, parse"),
        "{err}"
    );
}

/// Every queue model, and the latency model from the feed, replays a converted file exactly
/// like the raw capture (the market maker, which rests quotes, on the shared USD-M capture),
/// each deterministic, and the models give different fills.
#[test]
fn each_queue_model_backtests_the_converted_file_like_the_raw_capture() {
    let Some(data) = shared("binance_usdm_btcusdt_20240808.gz") else {
        return;
    };
    let base = std::env::temp_dir().join(format!("tradeloop-qm-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/configs/market_maker.toml");
    let tle = base.join("usdm.tle");
    let o = tradeloop()
        .arg("-c")
        .arg(&config)
        .args(["convert", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&tle)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = |input: &std::path::Path, model: &str, out: &std::path::Path| {
        let (queue, latency) = model.split_once('|').unwrap_or((model, "\"constant\""));
        let o = tradeloop()
            .arg("-c")
            .arg(&config)
            .args(["backtest", "--strategy", "market_maker", "--data"])
            .arg(input)
            .arg("--out")
            .arg(out)
            .env("TRADELOOP__EXECUTION__QUEUE_MODEL", queue)
            .env("TRADELOOP__EXECUTION__LATENCY_MODEL", latency)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out.join("fills.csv")).unwrap()
    };
    let mut fills = Vec::new();
    // Queue model, then (after `|`) the latency model: the feed's own delay, times 2.
    for (k, model) in [
        "\"risk_averse\"",
        "{ power = 2.0 }",
        "\"log\"",
        "\"risk_averse\"|{ feed = { multiple = 2.0 } }",
    ]
    .into_iter()
    .enumerate()
    {
        let raw = run(&data, model, &base.join(format!("raw-{k}")));
        let converted = run(&tle, model, &base.join(format!("tle-{k}")));
        assert_eq!(raw, converted, "TC0 {model}: raw and .tle replays differ");
        let again = run(&tle, model, &base.join(format!("again-{k}")));
        assert_eq!(converted, again, "TC1 {model}: not deterministic");
        fills.push(raw.iter().filter(|&&b| b == b'\n').count());
    }
    assert!(
        fills[0] != fills[1] || fills[0] != fills[2],
        "TC2 the queue models change the fills: {fills:?}"
    );
    let (constant, feed) = (
        std::fs::read(base.join("raw-0/fills.csv")).unwrap(),
        std::fs::read(base.join("raw-3/fills.csv")).unwrap(),
    );
    assert_ne!(
        constant, feed,
        "TC3 the feed latency model changes the fills"
    );
    let _ = std::fs::remove_dir_all(&base);
}
