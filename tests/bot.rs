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

/// The three phases driven by hand, as an embedding program would: `start`, its own loop of
/// `poll` and `should_stop`, then `shutdown`. The kill file appearing mid-run is seen by
/// `poll` and trips the kill switch: the summary shows it and no order is left working.
#[test]
fn a_started_bot_polled_by_hand_sees_its_kill_file_and_shuts_down() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/configs/market_maker.toml");
    let mut config = Config::load(&path, &Default::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("tl-bot-poll-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    config.venues[0].ws_url = format!("ws://127.0.0.1:{}", free_port());
    config.venues[0].rest_url = format!("http://127.0.0.1:{}", free_port());
    config.persistence.sqlite_path = dir.join("bot.db");
    let kill_file = dir.join("bot.kill");
    let _ = std::fs::remove_file(&kill_file);
    config.kill_switch.file = kill_file.clone();
    config.metrics.enabled = false;
    let strategy_config = config.clone();
    let stop = AtomicBool::new(false);
    let mut bot = Bot::from_config(&config)
        .strategy_with(
            move |instruments| Ok(build::<MarketMaker>(&strategy_config, instruments)?.0),
        )
        .duration(Duration::from_secs(30))
        .start()
        .expect("the bot starts");
    assert_eq!(bot.should_stop(&stop), None, "TC0 a fresh bot runs on");
    let mut killed_at = None;
    while bot.should_stop(&stop).is_none() {
        std::thread::sleep(Duration::from_millis(20));
        bot.poll();
        if killed_at.is_none() && bot.elapsed() >= Duration::from_secs(2) {
            std::fs::write(&kill_file, b"").unwrap();
            killed_at = Some(bot.elapsed());
        }
        if killed_at.is_some_and(|t| bot.elapsed() >= t + Duration::from_secs(1)) {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    assert_eq!(
        bot.should_stop(&stop),
        Some(tradeloop::run::Ended::Stopped),
        "TC1 stopped by the flag, not the duration"
    );
    let line = bot.status_line();
    assert!(
        line.contains("orders=") && line.contains("store pending="),
        "TC2 {line}"
    );
    let summary = bot.shutdown().expect("it shuts down");
    let c = &summary.report.counters;
    assert_eq!(c.kills, 1, "TC3 the kill file tripped the kill switch once");
    assert!(c.orders_sent > 0, "TC4 it quoted before the kill");
    assert_eq!(
        summary.report.working_orders, 0,
        "TC5 the kill switch cancelled every quote"
    );
    assert!(
        summary.elapsed < Duration::from_secs(30),
        "TC6 it did not wait for its duration"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
