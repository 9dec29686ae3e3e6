//! The same strategy through the library API: `Backtest::from_config(..).data(..).strategy(..)`,
//! checking what the report says against what the strategy saw. Usage: lib_api CONFIG DATA OUT

use tl_user::{Mine, TimedTaker};
use tradeloop::backtest::Backtest;
use tradeloop::config::Config;
use tradeloop::engine::event::Side;
use tradeloop::engine::fixed::Qty;
use tradeloop::strategy::{build, Registry};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 4, "usage: lib_api CONFIG DATA OUT");
    let config = Config::load(args[1].as_ref(), &Default::default())?;
    assert_eq!(Mine::names(), ["ma_cross", "timed_taker"]);
    let bt = Backtest::from_config(&config)?;
    let (strategy, label) = build::<TimedTaker>(&config, bt.instruments())?;
    let (report, strategy) = bt
        .strategy(strategy)
        .label(label.name, label.params)
        .data([&args[2]])
        .run_into_parts()?;
    report.write(args[3].as_ref())?;
    let from_fills = report.fills.iter().fold(Qty::ZERO, |q, f| match f.side {
        Side::Buy => q + f.qty,
        Side::Sell => q - f.qty,
    });
    let position: Qty = report
        .positions
        .iter()
        .map(|p| p.qty)
        .fold(Qty::ZERO, |a, b| a + b);
    let checks = [
        (
            "timers fired",
            strategy.timers > 10 && strategy.timers == report.timers_fired,
        ),
        (
            "orders sent",
            strategy.sent > 0 && strategy.sent == report.orders,
        ),
        ("fills reached the strategy", strategy.filled == from_fills),
        (
            "position is the signed sum of fills",
            position == from_fills,
        ),
        ("fills", !report.fills.is_empty()),
        ("pnl cross-check", report.stats().pnl_check),
    ];
    let failed: Vec<&str> = checks.iter().filter(|c| !c.1).map(|c| c.0).collect();
    println!(
        "lib_api: {} timers, {} orders, {} fills; {} passed, {} failed",
        strategy.timers,
        strategy.sent,
        report.fills.len(),
        checks.len() - failed.len(),
        failed.len()
    );
    anyhow::ensure!(failed.is_empty(), "failed: {failed:?}");
    Ok(())
}
