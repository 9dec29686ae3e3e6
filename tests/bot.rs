//! `Bot` through the library: the market maker example in paper mode against the simulated
//! venue on loopback (real WebSocket feed, real SQLite file), stopped by its duration, and the
//! `RunSummary` it returns.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tradeloop::config::Config;
use tradeloop::examples::market_maker::MarketMaker;
use tradeloop::run::Bot;
use tradeloop::strategy::build;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_bot_runs_the_market_maker_on_the_sim_venue_and_returns_its_summary() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/configs/market_maker.toml");
    let mut config = Config::load(&path, &Default::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("tl-bot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    config.venues[0].ws_url = format!("ws://127.0.0.1:{}", free_port());
    config.venues[0].rest_url = format!("http://127.0.0.1:{}", free_port());
    config.persistence.sqlite_path = dir.join("bot.db");
    config.kill_switch.file = dir.join("bot.kill");
    config.metrics.enabled = false;
    let strategy_config = config.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let summary = Bot::from_config(&config)
        .strategy_with(
            move |instruments| Ok(build::<MarketMaker>(&strategy_config, instruments)?.0),
        )
        .duration(Duration::from_secs(4))
        .run_until(&stop)
        .expect("the bot runs");
    let c = &summary.report.counters;
    assert!(
        summary.elapsed >= Duration::from_secs(4),
        "TC0 ran its duration"
    );
    assert!(
        c.orders_sent > 0 && c.amends_sent > 0,
        "TC1 quoted and requoted: {c:?}"
    );
    assert!(c.timers_fired > 0, "TC2 its timer fired");
    let (sim, lost) = summary.sim.expect("paper mode");
    assert_eq!(
        sim.arrived, c.orders_sent,
        "TC3 every quote reached the simulated venue"
    );
    let answered = sim.amended + sim.amends_rejected;
    assert!(
        answered <= c.amends_sent && c.amends_sent - answered <= 2,
        "TC4 every amend answered but at most one per side still in flight: {answered} of {}",
        c.amends_sent
    );
    assert_eq!(lost, 0, "TC5");
    assert_eq!(
        summary.flushed.report.written, summary.flushed.queued,
        "TC6 every record written"
    );
    assert!(
        summary
            .feeds
            .iter()
            .all(|(_, f)| f.frames > 0 && f.gaps == 0),
        "TC7 {:?}",
        summary.feeds
    );
    let text = summary.to_string();
    assert!(text.starts_with("run ended after"), "TC8 {text}");
    assert!(text.contains("amends sent"), "TC9 {text}");
    assert!(dir.join("bot.db").exists(), "TC10 the SQLite file");
    let _ = std::fs::remove_dir_all(&dir);
}
