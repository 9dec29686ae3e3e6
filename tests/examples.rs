//! The example strategies backtested on the shared Binance USD-M capture through the library
//! API, with their example configs: what each must show, and determinism. Skips with a
//! message when `../shared/data` is absent.

use std::path::{Path, PathBuf};

use tradeloop::backtest::{Backtest, Report};
use tradeloop::config::Config;
use tradeloop::engine::event::Side;
use tradeloop::engine::fixed::Qty;
use tradeloop::examples::imbalance::Imbalance;
use tradeloop::examples::market_maker::MarketMaker;
use tradeloop::strategy::{build, Configurable};

fn capture() -> Option<PathBuf> {
    let dir = std::env::var_os("TRADELOOP_SHARED_DATA").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
        PathBuf::from,
    );
    let p = dir.join("binance_usdm_btcusdt_20240808.gz");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent", p.display());
        None
    }
}

fn config(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/configs")
        .join(format!("{name}.toml"));
    Config::load(&path, &Default::default()).expect("the example config is valid")
}

fn backtest<S: Configurable>(data: &Path) -> (Report, S) {
    let config = config(S::NAME);
    let bt = Backtest::from_config(&config).unwrap();
    let (strategy, label) = build::<S>(&config, bt.instruments()).unwrap();
    bt.strategy(strategy)
        .label(label.name, label.params)
        .data([data])
        .run_into_parts()
        .unwrap()
}

/// The signed position after each fill.
fn path(report: &Report) -> Vec<Qty> {
    let mut q = Qty::ZERO;
    report
        .fills
        .iter()
        .map(|f| {
            q += if f.side == Side::Buy { f.qty } else { -f.qty };
            q
        })
        .collect()
}

#[test]
fn the_market_maker_quotes_both_sides_and_shows_queue_effects() {
    let Some(data) = capture() else { return };
    let (report, mm) = backtest::<MarketMaker>(&data);
    let s = mm.stats;
    // Resting quotes fill, all as maker (post-only; an amend that would cross is refused).
    assert!(s.fills > 50, "TC0 {s:?}");
    assert_eq!(s.maker_fills, s.fills, "TC1 {s:?}");
    assert!(
        report.fills.iter().all(|f| f.maker),
        "TC2 every fill in fills.csv is a maker fill"
    );
    // Queue position: many more quotes are moved unfilled than fill.
    assert!(s.requoted_unfilled > s.fills, "TC3 {s:?}");
    assert_eq!(report.amends, s.amends, "TC4 the engine sent every amend");
    // Both sides trade, and the inventory stays inside max_position.
    let buys = report.fills.iter().filter(|f| f.side == Side::Buy).count();
    assert!(
        buys > 0 && buys < report.fills.len(),
        "TC5 both sides filled"
    );
    let max = Qty::parse("0.01").unwrap();
    assert!(
        path(&report).iter().all(|q| q.abs() <= max),
        "TC6 |position| <= max_position"
    );
    assert!(
        report.timers_fired > 1_000,
        "TC7 the refresh timer ran: {}",
        report.timers_fired
    );
    assert!(report.stats().pnl_check, "TC8");
    // Deterministic: the same fills again.
    let (again, _) = backtest::<MarketMaker>(&data);
    assert_eq!(again.fills, report.fills, "TC9");
}

#[test]
fn the_imbalance_taker_enters_on_a_lopsided_book_and_leaves_after_its_hold() {
    let Some(data) = capture() else { return };
    let (report, strategy) = backtest::<Imbalance>(&data);
    let s = strategy.stats;
    assert!(s.entries > 10, "TC0 {s:?}");
    assert!(
        s.exits >= s.entries - 1,
        "TC1 every entry but the last is closed: {s:?}"
    );
    // Taker fills only, flat between round trips, each held at least hold_ms (3 s).
    assert!(report.fills.iter().all(|f| !f.maker), "TC2");
    let positions = path(&report);
    let qty = Qty::parse("0.002").unwrap();
    assert!(
        positions.iter().all(|q| q.abs() <= qty),
        "TC3 never more than one entry"
    );
    let mut opened = None;
    for (f, q) in report.fills.iter().zip(&positions) {
        match (opened, q.is_zero()) {
            (None, false) => opened = Some(f.ts_ns),
            (Some(t0), true) => {
                assert!(
                    f.ts_ns - t0 >= 3_000_000_000,
                    "TC4 held {} ns",
                    f.ts_ns - t0
                );
                opened = None;
            }
            _ => {}
        }
    }
    assert!(report.stats().pnl_check, "TC5");
}
