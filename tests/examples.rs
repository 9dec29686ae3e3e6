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
    // Queue position: hundreds of quotes lose their place unfilled — at least one for every
    // two fills (most fills come when the market trades or quotes through a quote).
    assert!(
        s.requoted_unfilled > 100 && 2 * s.requoted_unfilled > s.fills,
        "TC3 {s:?}"
    );
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

#[test]
fn a_portfolio_attributes_fills_and_pnl_to_each_member() {
    use tradeloop::strategy::{build_portfolio, Bundled};
    let Some(data) = capture() else { return };
    let config = config("portfolio");
    let bt = Backtest::from_config(&config).unwrap();
    let (portfolio, label) = build_portfolio::<Bundled>(&config, bt.instruments()).unwrap();
    let (report, portfolio) = bt
        .strategy(portfolio)
        .label(label.name, label.params)
        .members(label.members)
        .data([&data])
        .run_into_parts()
        .unwrap();
    let rows = report.by_strategy();
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["market_maker", "imbalance"],
        "TC0 both members traded"
    );
    // Attribution adds up to the account, fill for fill and cent for cent: fees, and total PnL
    // (realised + unrealised). Realised alone does not add up: when one member's sell meets
    // another's long, the account realises while the seller's own book opens a short.
    let s = report.stats();
    let sum = |f: fn(&tradeloop::backtest::StrategyAttribution) -> rust_decimal::Decimal| {
        rows.iter().map(f).sum::<rust_decimal::Decimal>()
    };
    assert_eq!(
        rows.iter().map(|r| r.fills).sum::<u64>(),
        report.fills.len() as u64,
        "TC1"
    );
    assert_eq!(
        sum(|r| r.realized + r.unrealized),
        s.realized + s.unrealized,
        "TC2 total PnL"
    );
    assert_eq!(sum(|r| r.fees), s.fees, "TC3 fees");
    assert_eq!(sum(|r| r.net_pnl), s.net_pnl, "TC4 net");
    // The engine's view of each member agrees with the fills tagged with its id.
    for (k, m) in portfolio.members().iter().enumerate() {
        let tagged = report
            .fills
            .iter()
            .filter(|f| f.strategy.get() == k)
            .count() as u64;
        assert_eq!(m.counters.fills, tagged, "TC5 member {k}");
        let qty: Qty =
            report
                .fills
                .iter()
                .filter(|f| f.strategy.get() == k)
                .fold(Qty::ZERO, |q, f| {
                    if f.side == Side::Buy {
                        q + f.qty
                    } else {
                        q - f.qty
                    }
                });
        assert_eq!(
            m.positions[0].qty, qty,
            "TC6 member {k}'s attributed position"
        );
    }
    // The market maker's own limit holds on its attributed position.
    let mm = &portfolio.members()[0];
    assert!(
        mm.positions[0].qty.abs() <= Qty::parse("0.01").unwrap(),
        "TC7"
    );
    // Members' reduce-only exits are judged on their own positions, never refused for the
    // account's (the market maker often holds the other side).
    assert!(
        !report
            .denials
            .iter()
            .any(|(k, _)| *k == "reduce_only_would_increase"),
        "TC8 {:?}",
        report.denials
    );
    // fills.csv names each fill's member.
    let dir = std::env::temp_dir().join(format!("tl-portfolio-{}", std::process::id()));
    report.write(&dir).unwrap();
    let csv = std::fs::read_to_string(dir.join("fills.csv")).unwrap();
    assert!(
        csv.starts_with("ts_ns,client_order_id,symbol,side,price,qty,fee,maker,strategy\n"),
        "TC9"
    );
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.ends_with(",market_maker") || l.ends_with(",imbalance")),
        "TC10"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_portfolio_member_that_is_not_registered_is_named() {
    use tradeloop::strategy::{validate, Bundled};
    let mut config = config("portfolio");
    let members = config
        .strategy
        .sections
        .get_mut("portfolio")
        .and_then(|t| t.get_mut("members"))
        .and_then(|m| m.as_array_mut())
        .unwrap();
    members[1]
        .as_table_mut()
        .unwrap()
        .insert("strategy".into(), toml::Value::String("scalper".into()));
    let e = validate::<Bundled>(&config, None).unwrap_err();
    assert_eq!(e.key, "strategy.portfolio.members[1].strategy", "TC0 {e}");
    assert!(
        e.reason.contains("\"scalper\"") && e.reason.contains("market_maker"),
        "TC1 {e}"
    );
}

#[test]
fn the_basis_trader_trades_both_legs_of_two_recordings_merged() {
    use tradeloop::examples::basis::Basis;
    let Some(usdm) = capture() else { return };
    let spot = usdm.with_file_name("binance_spot_btcusdt_20240808.gz");
    let config = config("basis");
    let bt = Backtest::from_config(&config).unwrap();
    let (strategy, label) = build::<Basis>(&config, bt.instruments()).unwrap();
    let bind = |venue: &str, p: &Path| PathBuf::from(format!("{venue}={}", p.display()));
    let (report, basis) = bt
        .strategy(strategy)
        .label(label.name, label.params)
        .data([bind("spot", &spot), bind("perp", &usdm)])
        .run_into_parts()
        .unwrap();
    let s = basis.stats;
    // Both recordings replayed, each into its own instrument.
    assert_eq!(report.refused, 0, "TC0");
    assert!(s.samples > 600, "TC1 both books live every sample: {s:?}");
    assert!(s.entries > 0 && s.exits + 1 >= s.entries, "TC2 {s:?}");
    // Every fill is one leg of a hedged pair: the legs trade the same quantity, opposite ways.
    let legs: Vec<Qty> = (0..2)
        .map(|i| {
            report
                .fills
                .iter()
                .filter(|f| f.instrument.get() == i)
                .fold(Qty::ZERO, |q, f| q + f.qty)
        })
        .collect();
    assert!(legs[0] > Qty::ZERO && legs[0] == legs[1], "TC3 {legs:?}");
    assert_eq!(
        report.positions[0].qty + report.positions[1].qty,
        Qty::ZERO,
        "TC4 long spot and short perp, or both flat"
    );
    // The same replay from one converted file of both recordings gives the same fills.
    let dir = std::env::temp_dir().join(format!("tl-basis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tle = dir.join("both.tle");
    let options = tradeloop::convert::ConvertOptions {
        data: vec![bind("spot", &spot), bind("perp", &usdm)],
        out: tle.clone(),
        from_ns: None,
        to_ns: None,
        zstd_level: None,
        allow_partial: false,
    };
    tradeloop::convert::convert(&config, &options).unwrap();
    let bt = Backtest::from_config(&config).unwrap();
    let (strategy, _) = build::<Basis>(&config, bt.instruments()).unwrap();
    let again = bt.strategy(strategy).data([&tle]).run().unwrap();
    assert_eq!(again.fills, report.fills, "TC5 raw and .tle agree");
    let _ = std::fs::remove_dir_all(&dir);
    // A recording bound to a venue the configuration lacks is refused with the names.
    let err = Backtest::from_config(&config)
        .unwrap()
        .strategy(
            build::<Basis>(&config, &config.registry().unwrap())
                .unwrap()
                .0,
        )
        .data([bind("spott", &spot)])
        .run()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"spott\"") && err.contains("spot, perp"),
        "TC6 {err}"
    );
}
