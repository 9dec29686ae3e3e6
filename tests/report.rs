//! The backtest report: a backtest of the shared Binance USD-M capture writes `report.html`
//! and its charts; the page is self-contained (no script, nothing fetched), and headless
//! Chromium renders it with its charts and no errors.

use std::path::Path;
use std::process::Command;

use tradeloop::backtest::with_ma_cross;
use tradeloop::config::Config;

fn capture() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/binance_usdm_btcusdt_20240808.gz");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: ../shared/data is absent");
        None
    }
}

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

#[test]
fn the_report_page_is_self_contained_and_renders_its_charts_in_chromium() {
    let Some(data) = capture() else { return };
    let config = Config::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml"),
        &Default::default(),
    )
    .unwrap();
    let report = with_ma_cross(&config).unwrap().data([data]).run().unwrap();
    let dir = std::env::temp_dir().join(format!("tl-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stats = report.write(&dir).unwrap();
    for f in [
        "report.html",
        "equity.svg",
        "position.svg",
        "price-BTCUSDT.svg",
        "summary.json",
        "fills.csv",
    ] {
        assert!(dir.join(f).is_file(), "TC0 {f} written");
    }
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(!page.contains("<script"), "TC1 no script");
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "TC2 nothing fetched"
    );
    for id in ["equity", "position", "price-BTCUSDT"] {
        assert!(
            page.contains(&format!("<figure class=\"chart\" id=\"{id}\"><svg")),
            "TC3 chart {id} inline"
        );
    }
    assert!(
        page.contains("win rate (round trips, after fees)")
            && page.contains(&stats.net_pnl.to_string()),
        "TC4 the summary table"
    );
    let equity = std::fs::read_to_string(dir.join("equity.svg")).unwrap();
    assert!(
        equity.contains("time (UTC, 2024-08-08)") && equity.contains("23:5"),
        "TC5 a UTC time axis with ticks"
    );
    assert!(
        equity.contains("Drawdown") && equity.contains("equity (settlement currency)"),
        "TC6 drawdown panel and units"
    );
    let price = std::fs::read_to_string(dir.join("price-BTCUSDT.svg")).unwrap();
    assert!(
        price.contains("buy fill") && price.contains("sell fill"),
        "TC7 legend"
    );

    let Some(chromium) = chromium() else {
        eprintln!("skipped the browser half: chromium is not installed (.ci/run installs it)");
        return;
    };
    let profile = dir.join("chromium-profile");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("file://{}", dir.join("report.html").display()),
        ])
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "TC8 chromium: {log}");
    assert!(
        dom.matches("<svg").count() >= 3,
        "TC9 the rendered page holds the charts: {} bytes of DOM",
        dom.len()
    );
    assert!(dom.contains("id=\"summary\""), "TC10 the summary table");
    assert!(
        !log.contains("Uncaught") && !log.contains("CONSOLE"),
        "TC11 no script error or console message: {log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
