//! `tradeloop run` in live mode as a user runs it against Binance — here a loopback mock of
//! Binance's REST API and user data stream for orders, and the built-in sim venue (Binance
//! format) for market data. The run's books must equal the venue's at the end, and the API
//! key and secret must appear nowhere but in the signed requests' header.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tradeloop_adapters::binance::exec::rest::Market;
use tradeloop_adapters::sim::market::WireProtocol;
use tradeloop_adapters::sim::server::{SimConfig, SimSymbolConfig, SimVenue};
use tradeloop_engine::event::Side;
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_store::sqlite::SqliteStore;
use tradeloop_testkit::binance_mock::{MockBinance, MockConfig, MockSymbol};

const KEY: &str = "e2eKeyQv8TzR1mN4bW6yX0cA";
const SECRET: &str = "e2eSecretHj3Kp9Lm2Nq5Rs7Tv0Wx4Yz";

fn p(s: &str) -> Price {
    s.parse().unwrap()
}
fn q(s: &str) -> Qty {
    s.parse().unwrap()
}

fn tradeloop() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tradeloop"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn live_env(c: &mut Command, sim: &SimVenue, mock: &MockBinance, db: &std::path::Path) {
    c.env("TRADELOOP__MODE", "\"live\"")
        .env("TRADELOOP__VENUES__0__KIND", "\"binance\"")
        .env(
            "TRADELOOP__VENUES__0__WS_URL",
            format!("\"{}\"", sim.ws_url()),
        )
        .env(
            "TRADELOOP__VENUES__0__REST_URL",
            format!("\"{}\"", sim.rest_url()),
        )
        .env("TRADELOOP__VENUES__0__API_KEY_ENV", "\"TL_E2E_KEY\"")
        .env("TRADELOOP__VENUES__0__API_SECRET_ENV", "\"TL_E2E_SECRET\"")
        .env("TL_E2E_KEY", KEY)
        .env("TL_E2E_SECRET", SECRET)
        .env(
            "TRADELOOP__LIVE__REST_URL",
            format!("\"{}\"", mock.rest_url()),
        )
        .env(
            "TRADELOOP__LIVE__USER_STREAM_URL",
            format!("\"{}\"", mock.ws_url()),
        )
        .env("TRADELOOP__METRICS__ENABLED", "false")
        .env("TRADELOOP__PERSISTENCE__SQLITE_PATH", db)
        .env("RUST_LOG", "info");
}

fn sim_venue() -> SimVenue {
    let sym = |s: &str, px: &str, lot: &str| SimSymbolConfig {
        symbol: s.into(),
        start_price: p(px),
        tick_size: p("0.01"),
        lot_size: q(lot),
    };
    SimVenue::start(SimConfig {
        ws_addr: "127.0.0.1:0".parse().unwrap(),
        rest_addr: "127.0.0.1:0".parse().unwrap(),
        seed: 42,
        steps_per_second: 2000,
        depth_interval: Duration::from_millis(100),
        depth_levels: 200,
        ping_interval: Duration::from_secs(20),
        protocol: WireProtocol::Binance,
        symbols: vec![
            sym("BTCUSDT", "60000", "0.00001"),
            sym("ETHUSDT", "3000", "0.0001"),
        ],
        replay: None,
    })
    .unwrap()
}

fn mock() -> MockBinance {
    MockBinance::start(MockConfig {
        market: Market::Spot,
        api_key: KEY.into(),
        secret: SECRET.into(),
        symbols: vec![
            MockSymbol::usdt("BTCUSDT", "BTC", "60000"),
            MockSymbol::usdt("ETHUSDT", "ETH", "3000"),
        ],
        skew_ms: 1500,
        balances: vec![("USDT".into(), q("10000000"))],
        weight_limit: 6000,
        orders_10s_limit: 100_000,
        // The strategy goes short as well as long: a margin-style account.
        check_balances: false,
    })
    .unwrap()
}

#[test]
fn live_run_trades_on_binance_and_its_books_equal_the_venue() {
    let sim = sim_venue();
    let mock = Arc::new(mock());
    let db = std::env::temp_dir().join(format!("tradeloop-live-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    // The venue's price swings, so some of the strategy's IOC orders fill and some expire.
    let stop = Arc::new(AtomicBool::new(false));
    let swing = {
        let (mock, stop) = (Arc::clone(&mock), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for px in ["50000", "70000"] {
                    mock.trade("BTCUSDT", p(px));
                    std::thread::sleep(Duration::from_millis(40));
                }
            }
        })
    };
    let mut c = tradeloop();
    c.args(["run", "--duration", "6", "--no-histograms"]);
    live_env(&mut c, &sim, &mock, &db);
    let out = c.output().unwrap();
    stop.store(true, Ordering::Relaxed);
    swing.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("LIVE TRADING"), "{err}");
    // ETHUSDT's stepSize at the venue (0.00001) is finer than config.toml's lot (0.0001).
    assert!(
        err.lines()
            .any(|l| l.contains("differ from config.toml") && l.contains("ETHUSDT")),
        "{err}"
    );
    let sent: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("live venue: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no live venue summary:\n{err}"));
    let orders = mock.orders();
    assert!(sent > 0, "the strategy traded:\n{err}");
    assert_eq!(
        orders.len() as u64,
        sent,
        "every order sent reached the venue once"
    );
    assert!(orders.iter().all(|o| o.client_id.starts_with("tl-")));
    let executed: Vec<_> = orders.iter().filter(|o| o.executed.raw() > 0).collect();
    assert!(!executed.is_empty(), "some orders filled");
    assert!(
        orders.iter().any(|o| o.status == "EXPIRED"),
        "some IOC orders expired"
    );
    // Every order request was signed with the key; the secret never travelled.
    for r in mock.requests() {
        assert!(!r.params.contains(SECRET));
        if r.path == "/api/v3/order" && r.method == "POST" {
            assert_eq!(r.api_key.as_deref(), Some(KEY));
            assert!(r.params.contains("&signature="), "{r:?}");
        }
    }
    // The books: the fills the run persisted are the venue's executions, one for one.
    if std::env::var_os("TL_SHOW").is_some() {
        eprintln!("{err}");
    }
    let store = SqliteStore::open(&db, vec!["BTCUSDT".into(), "ETHUSDT".into()]).unwrap();
    let fills = store.recover().unwrap().fills;
    assert_eq!(fills.len(), executed.len(), "{err}");
    let engine_net: i64 = fills
        .iter()
        .map(|f| f.qty.raw() * if f.side == Side::Buy { 1 } else { -1 })
        .sum();
    assert_eq!(
        Qty(engine_net),
        mock.balance("BTC"),
        "the engine's position is the venue's"
    );
    for f in &fills {
        let o = orders
            .iter()
            .find(|o| o.client_id == format!("tl-{}", f.client_id.0))
            .expect("a persisted fill belongs to a venue order");
        assert_eq!((f.qty, f.side == Side::Buy), (o.executed, o.buy));
        assert_eq!(
            Price(i64::try_from(o.quote.raw() / i128::from(o.executed.raw())).unwrap()),
            f.price
        );
    }
    // Secrets appear in no log line and nowhere in the database file.
    for text in [err.as_ref(), stdout.as_ref()] {
        assert!(
            !text.contains(SECRET) && !text.contains(KEY),
            "a credential was logged"
        );
    }
    let bytes = std::fs::read(&db).unwrap();
    for secret in [SECRET, KEY] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} persisted"
        );
    }
    let _ = std::fs::remove_file(&db);
}

#[test]
fn live_dry_run_signs_and_logs_but_sends_no_order() {
    let sim = sim_venue();
    let mock = mock();
    let db = std::env::temp_dir().join(format!("tradeloop-dry-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let mut c = tradeloop();
    c.args(["run", "--duration", "4", "--no-histograms", "--dry-run"]);
    live_env(&mut c, &sim, &mock, &db);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("DRY RUN"), "{err}");
    let logged = err
        .lines()
        .filter(|l| l.contains("dry run: POST /api/v3/order?symbol=BTCUSDT"))
        .count();
    assert!(logged > 0, "signed orders are logged:\n{err}");
    assert!(!err.contains(SECRET) && !err.contains(KEY));
    assert!(mock.orders().is_empty());
    assert!(
        mock.requests()
            .iter()
            .all(|r| r.api_key.is_none() && !r.params.contains("signature")),
        "only public requests (time, exchangeInfo) reach the venue"
    );
    let _ = std::fs::remove_file(&db);

    // Without live mode the flag is refused, and live mode without the key names the variable.
    let paper = tradeloop()
        .args(["run", "--dry-run", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!paper.status.success());
    assert!(String::from_utf8_lossy(&paper.stderr).contains("--dry-run applies to mode = \"live\""));
    let mut c = tradeloop();
    c.args(["run", "--duration", "1", "--no-histograms"]);
    live_env(&mut c, &sim, &mock, &db);
    let missing = c.env_remove("TL_E2E_SECRET").output().unwrap();
    let text = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(text.contains("TL_E2E_SECRET"), "{text}");
}

#[test]
fn live_check_reports_the_account_without_trading() {
    let sim = sim_venue();
    let mock = mock();
    mock.place_external(
        "BTCUSDT",
        "tl-77",
        true,
        "30000".parse().unwrap(),
        q("0.01"),
    );
    mock.place_external(
        "BTCUSDT",
        "web_1",
        true,
        "30000".parse().unwrap(),
        q("0.01"),
    );
    mock.set_balance("BTC", q("0.5"));
    let db = std::env::temp_dir().join(format!("tradeloop-check-{}.db", std::process::id()));
    let mut c = tradeloop();
    c.arg("live-check");
    live_env(&mut c, &sim, &mock, &db);
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "keys accepted",
        "server time offset: ",
        "symbol BTCUSDT: TRADING, tickSize 0.01, stepSize 0.00001,",
        "stepSize 0.00001 (config.toml: 0.0001; the venue's is used)",
        "holding BTC: 0.5",
        "open orders BTCUSDT: 1 placed by tradeloop",
        "1 by others (left alone)",
        "user data stream: listen key created and closed",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(!text.contains(SECRET) && !text.contains(KEY));
    // Read-only: no order was placed or cancelled.
    assert!(mock.requests().iter().all(|r| r.path != "/api/v3/order"));
    assert!(mock.orders().iter().all(|o| o.status == "NEW"));
    // A wrong secret fails with Binance's answer.
    let mut c = tradeloop();
    c.arg("live-check");
    live_env(&mut c, &sim, &mock, &db);
    let bad = c.env("TL_E2E_SECRET", "not-the-secret").output().unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("-1022") && err.contains("Signature"), "{err}");
}

/// The sim venue's mid for `symbol`, from its REST depth snapshot.
fn sim_mid(sim: &SimVenue, symbol: &str) -> Option<Price> {
    use std::io::{Read as _, Write as _};
    let addr = sim.rest_url().trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET /fapi/v1/depth?symbol={symbol}&limit=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = &text[text.find("\r\n\r\n")? + 4..];
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let best = |side: &str| -> Option<Price> { v[side][0][0].as_str()?.parse().ok() };
    let (bid, ask) = (best("bids")?, best("asks")?);
    Some(Price((bid.raw() + ask.raw()) / 2 / 10_000_000 * 10_000_000))
}

#[test]
fn live_market_maker_amends_its_quotes_in_place_on_usdm() {
    let sim = Arc::new(sim_venue());
    let mock = Arc::new(
        MockBinance::start(MockConfig {
            market: Market::UsdM,
            api_key: KEY.into(),
            secret: SECRET.into(),
            symbols: vec![
                MockSymbol {
                    tick: p("0.1"),
                    step: q("0.001"),
                    min_qty: q("0.001"),
                    ..MockSymbol::usdt("BTCUSDT", "BTC", "60000")
                },
                MockSymbol::usdt("ETHUSDT", "ETH", "3000"),
            ],
            skew_ms: 0,
            balances: vec![("USDT".into(), q("10000000"))],
            weight_limit: 6000,
            orders_10s_limit: 100_000,
            check_balances: false,
        })
        .unwrap(),
    );
    let db = std::env::temp_dir().join(format!("tradeloop-live-mm-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    // The venue's last price follows the sim market; every half second a resting quote fills.
    let stop = Arc::new(AtomicBool::new(false));
    let market = {
        let (mock, stop, sim) = (Arc::clone(&mock), Arc::clone(&stop), Arc::clone(&sim));
        std::thread::spawn(move || {
            let mut turn = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if let Some(mid) = sim_mid(&sim, "BTCUSDT") {
                    mock.trade("BTCUSDT", mid);
                }
                turn += 1;
                if turn.is_multiple_of(25) {
                    // Buys and sells in turn, so the position stays inside the limits.
                    let buy = turn.is_multiple_of(50);
                    let working = mock
                        .orders()
                        .into_iter()
                        .find(|o| o.buy == buy && matches!(o.status, "NEW" | "PARTIALLY_FILLED"));
                    if let Some(o) = working {
                        mock.fill(&o.client_id, Qty(o.qty.raw() - o.executed.raw()));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut c = tradeloop();
    c.args([
        "-c",
        "examples/configs/market_maker.toml",
        "run",
        "--duration",
        "6",
        "--no-histograms",
    ]);
    live_env(&mut c, &sim, &mock, &db);
    c.env("TRADELOOP__VENUES__0__KIND", "\"binance-usdm\"")
        // The sim market moves a few ticks in a run: requote on every tick it moves.
        .env("TRADELOOP__STRATEGY__MARKET_MAKER__REQUOTE_TICKS", "1")
        .env("TRADELOOP__STRATEGY__MARKET_MAKER__HALF_SPREAD_TICKS", "2");
    let out = c.output().unwrap();
    stop.store(true, Ordering::Relaxed);
    market.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if std::env::var_os("TL_SHOW").is_some() {
        eprintln!("{err}");
    }
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("live venue: "))
        .unwrap_or_else(|| panic!("no live venue summary:\n{err}"));
    let figure = |after: &str| -> u64 {
        let at = line
            .find(after)
            .unwrap_or_else(|| panic!("{after:?} in {line}"));
        line[..at]
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{after:?} in {line}"))
    };
    let (sent, rejected, amends) = (
        figure(" orders sent"),
        figure(" rejected,"),
        figure(" amends sent"),
    );
    let orders = mock.orders();
    // A post-only quote the venue's last price crosses is refused (-5022) and not recorded.
    assert_eq!(
        orders.len() as u64,
        sent - rejected,
        "every order the venue took is one of the run's, once"
    );
    assert!(
        orders.iter().all(|o| o.tif == "GTX" && o.kind == "LIMIT"),
        "the quotes are post-only limits"
    );
    let modified: u64 = orders.iter().map(|o| u64::from(o.amends)).sum();
    assert!(modified > 0, "quotes were modified in place:\n{err}");
    assert!(amends >= modified, "{line}");
    // The books: the run's fills are the venue's executions; its position is the venue's.
    let store = SqliteStore::open(&db, vec!["BTCUSDT".into(), "ETHUSDT".into()]).unwrap();
    let fills = store.recover().unwrap().fills;
    let executed: Qty = Qty(orders.iter().map(|o| o.executed.raw()).sum());
    assert!(executed.raw() > 0, "some quotes filled:\n{err}");
    assert_eq!(
        Qty(fills.iter().map(|f| f.qty.raw()).sum()),
        executed,
        "{err}"
    );
    let engine_net: i64 = fills
        .iter()
        .map(|f| f.qty.raw() * if f.side == Side::Buy { 1 } else { -1 })
        .sum();
    assert_eq!(Qty(engine_net), mock.position("BTCUSDT"));
    for f in &fills {
        let o = orders
            .iter()
            .find(|o| o.client_id == format!("tl-{}", f.client_id.0))
            .expect("a persisted fill belongs to a venue order");
        assert_eq!(f.side == Side::Buy, o.buy);
    }
    assert!(
        orders
            .iter()
            .all(|o| !matches!(o.status, "NEW" | "PARTIALLY_FILLED")),
        "cancel on exit leaves no quote working"
    );
    let _ = std::fs::remove_file(&db);
}
