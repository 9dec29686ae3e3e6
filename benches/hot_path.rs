//! Criterion micro-benchmarks of the hot-path pieces. Each group checks the result it times
//! before timing it, sets up outside the timed closure, and `baseline` measures the harness.
//!
//! Run: `cargo bench --bench hot_path` (CI runs `cargo test --benches`, one pass of each).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tradeloop_engine::api::{RiskContext, RiskGate, TradingState};
use tradeloop_engine::book::OrderBook;
use tradeloop_engine::clock::SimClock;
use tradeloop_engine::event::{BookDelta, DeltaFlags, Event, EventKind, Side, Trade};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{ContractKind, InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::lane::{Lane, LaneConfig, Lanes};
use tradeloop_engine::order::{Order, OrderRequest};
use tradeloop_engine::pool::OrderPool;
use tradeloop_engine::position::Position;
use tradeloop_engine::strategies::{MaCross, MaCrossConfig};
use tradeloop_risk::{PreTradeRisk, RiskLimits};
use tradeloop_testkit::gateway::FakeGateway;

const BTC: InstrumentIndex = InstrumentIndex(0);

fn trade(i: u64) -> Event {
    Event::new(
        i,
        i,
        EventKind::Trade(Trade {
            instrument: BTC,
            aggressor: Side::Buy,
            price: Price(6_000_000_000_000 + (i as i64 % 100) * 1_000_000),
            qty: Qty(100_000),
            trade_id: i,
        }),
    )
}

fn baseline(c: &mut Criterion) {
    let mut i = 0u64;
    c.bench_function("baseline/black_box_counter", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(i)
        })
    });
}

fn lanes(c: &mut Criterion) {
    let lanes = Lanes::new(LaneConfig::default());
    assert_eq!(
        lanes.push_normal(trade(1)),
        tradeloop_engine::lane::NormalPush::Pushed
    );
    assert_eq!(lanes.pop(Lane::Normal), Some(trade(1)));
    let ev = trade(7);
    c.bench_function("lane/push_pop_normal", |b| {
        b.iter(|| {
            lanes.push_normal(black_box(ev));
            black_box(lanes.pop(Lane::Normal))
        })
    });
    c.bench_function("lane/push_pop_high", |b| {
        b.iter(|| {
            let _ = lanes.push_high(black_box(ev));
            black_box(lanes.pop(Lane::High))
        })
    });
    c.bench_function("lane/pop_empty", |b| {
        b.iter(|| black_box(lanes.pop(Lane::Critical)))
    });
}

fn pool(c: &mut Criterion) {
    let req = OrderRequest::limit(BTC, Side::Buy, Price::from_units(1), Qty::from_units(1));
    let mut slab = OrderPool::new(4096);
    let id = slab.take(req, 0).expect("empty pool has room");
    assert!(slab.get(id).is_some());
    slab.release(id).expect("taken above");
    c.bench_function("pool/slab_take_release", |b| {
        b.iter(|| {
            let id = slab.take(black_box(req), 0).expect("room");
            slab.release(black_box(id)).expect("live");
        })
    });
    let blank = Order::new(tradeloop_engine::event::ClientOrderId(0), req, 0);
    let op: object_pool::Pool<Order> = object_pool::Pool::new(4096, || blank);
    assert!(op.try_pull().is_some());
    c.bench_function("pool/object_pool_pull_drop", |b| {
        b.iter(|| {
            let mut o = op.try_pull().expect("room");
            o.request = black_box(req);
            black_box(&*o);
        })
    });
}

fn parse(c: &mut Criterion) {
    assert_eq!(Price::parse("61837.63000000"), Ok(Price(6_183_763_000_000)));
    c.bench_function("fixed/parse_price_8dp", |b| {
        b.iter(|| Price::parse_bytes(black_box(b"61837.63000000")))
    });
    c.bench_function("fixed/parse_qty_short", |b| {
        b.iter(|| Qty::parse_bytes(black_box(b"0.002")))
    });
}

fn book(c: &mut Criterion) {
    // Prices are whole multiples of 1,000,000 raw units: that is the tick of the window.
    let tick = Price(1_000_000);
    let mut book = OrderBook::with_window(4096, tick, 32_768);
    let mk = |side, price: i64, qty: i64, flags| BookDelta {
        instrument: BTC,
        side,
        flags: DeltaFlags(flags),
        price: Price(price * 1_000_000),
        qty: Qty(qty * 1_000),
        update_id: 0,
    };
    book.apply(&mk(Side::Buy, 6_000_000, 1, DeltaFlags::SNAPSHOT_BEGIN));
    for i in 1..1000 {
        book.apply(&mk(Side::Buy, 6_000_000 - i, 1, 0));
        book.apply(&mk(Side::Sell, 6_000_001 + i, 1, 0));
    }
    book.apply(&mk(Side::Sell, 6_000_001, 1, DeltaFlags::LAST_IN_MESSAGE));
    assert_eq!(book.len(Side::Buy), 1000);
    let mut i = 0i64;
    c.bench_function("book/apply_near_top_1000_levels", |b| {
        b.iter(|| {
            i += 1;
            let d = mk(
                Side::Buy,
                6_000_000 - (i % 10),
                i % 3,
                DeltaFlags::LAST_IN_MESSAGE,
            );
            black_box(book.apply(black_box(&d)))
        })
    });
    // A deep book like Binance USD-M BTCUSDT (~3,500 levels a side) with inserts and deletes a
    // few hundred levels from the best, where the captured diffs mostly land.
    // The same with the window (the engine's default) and without it (every level in the
    // sorted blocks).
    for (name, window) in [
        ("book/insert_delete_250_deep_3500_levels", 32_768),
        ("book/insert_delete_250_deep_3500_levels_no_window", 0),
    ] {
        let mut deep = OrderBook::with_window(4096, tick, window);
        deep.apply(&mk(Side::Buy, 6_000_000, 1, DeltaFlags::SNAPSHOT_BEGIN));
        for i in 1..3500 {
            deep.apply(&mk(Side::Buy, 6_000_000 - 2 * i, 1, 0));
        }
        deep.apply(&mk(Side::Sell, 6_000_001, 1, DeltaFlags::LAST_IN_MESSAGE));
        assert_eq!(deep.has_window(), window > 0);
        let mut k = 0i64;
        c.bench_function(name, |b| {
            b.iter(|| {
                k += 1;
                // Odd prices are absent: each pair of iterations inserts a level and deletes it.
                let price = 6_000_000 - 500 - 2 * (k % 64) - 1;
                let qty = (k / 64) % 2;
                let d = mk(Side::Buy, price, 1 - qty, DeltaFlags::LAST_IN_MESSAGE);
                black_box(deep.apply(black_box(&d)))
            })
        });
    }
}

fn position(c: &mut Criterion) {
    let mut pos = Position::new(
        BTC,
        ContractKind::Linear {
            multiplier: Qty::from_units(1),
        },
    );
    pos.apply_fill(
        Side::Buy,
        Price::from_units(100),
        Qty::from_units(1),
        Qty::ZERO,
    )
    .expect("valid");
    assert_eq!(pos.qty, Qty::from_units(1));
    let mut flip = false;
    c.bench_function("position/apply_fill_open_close", |b| {
        b.iter(|| {
            flip = !flip;
            let side = if flip { Side::Sell } else { Side::Buy };
            black_box(pos.apply_fill(
                side,
                black_box(Price::from_units(101)),
                Qty::from_units(1),
                Qty::ZERO,
            ))
        })
    });
    c.bench_function("position/unrealized", |b| {
        b.iter(|| black_box(pos.unrealized(black_box(Price::from_units(102)))))
    });
}

fn risk(c: &mut Criterion) {
    let limits = RiskLimits {
        orders_per_second: u32::MAX / 2,
        orders_per_second_per_instrument: u32::MAX / 2,
        ..RiskLimits::default()
    };
    let mut gate = PreTradeRisk::new(limits);
    let ctx = RiskContext {
        position: Qty::ZERO,
        working_buy: Qty::ZERO,
        working_sell: Qty::ZERO,
        open_orders_instrument: 0,
        open_orders_total: 0,
        reference_price: Some(Price::from_units(60_000)),
        tick_size: Price::parse("0.01").expect("constant"),
        lot_size: Qty::parse("0.00001").expect("constant"),
        kind: ContractKind::Spot,
        trading_state: TradingState::Active,
        protective: false,
        now_ns: 1,
    };
    let req = OrderRequest::ioc(
        BTC,
        Side::Buy,
        Price::from_units(60_001),
        Qty::parse("0.01").expect("constant"),
    );
    assert_eq!(gate.check(&req, &ctx), Ok(()));
    let mut now = 1u64;
    c.bench_function("risk/pre_trade_check_pass", |b| {
        b.iter(|| {
            now += 1_000_000;
            let ctx = RiskContext { now_ns: now, ..ctx };
            black_box(gate.check(black_box(&req), &ctx))
        })
    });
}

fn dispatch(c: &mut Criterion) {
    let mut reg = InstrumentRegistry::new();
    reg.add(
        "sim",
        "BTCUSDT",
        Price::parse("0.01").expect("c"),
        Qty::parse("0.00001").expect("c"),
        ContractKind::Spot,
    )
    .expect("one instrument");
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let strategy = MaCross::new(
        &MaCrossConfig::default(),
        BTC,
        Price::parse("0.01").expect("c"),
    );
    let risk = PreTradeRisk::new(RiskLimits::default());
    let mut engine = Engine::new(
        LoopConfig::default(),
        Arc::clone(&lanes),
        reg,
        strategy,
        risk,
        FakeGateway::null(),
        SimClock::new(1),
    );
    lanes.push_normal(trade(1));
    assert_eq!(engine.poll(), 1);
    let mut i = 1u64;
    c.bench_function("loop/dispatch_trade_to_strategy", |b| {
        b.iter(|| {
            i += 1;
            lanes.push_normal(trade(i));
            black_box(engine.poll())
        })
    });
    c.bench_function("loop/poll_idle", |b| b.iter(|| black_box(engine.poll())));
    let mut lanes_batch = 0u64;
    c.bench_function("loop/drain_batch_of_64", |b| {
        b.iter_batched(
            || {
                for _ in 0..64 {
                    lanes_batch += 1;
                    lanes.push_normal(trade(lanes_batch));
                }
            },
            |()| black_box(engine.poll()),
            BatchSize::SmallInput,
        )
    });
}

/// Binance parsers on the first frames of each kind in the real USD-M capture
/// (`../shared/data`, or `TRADELOOP_SHARED_DATA`); skipped with a note when it is absent.
fn venue_parse(c: &mut Criterion) {
    use tradeloop_adapters::binance::parse::{BinanceCodec, Parsed};
    use tradeloop_adapters::recorder::FrameReader;
    use tradeloop_adapters::symbols::SymbolMap;

    let path = tradeloop_adapters::shared_data_dir().join("binance_usdm_btcusdt_20240808.gz");
    let Ok(mut reader) = FrameReader::open(std::slice::from_ref(&path)) else {
        eprintln!("venue_parse: {} absent, skipped", path.display());
        return;
    };
    let (mut trade, mut ticker, mut depth) = (None, None, None);
    while let Ok(Some((_, frame))) = reader.next_frame() {
        let slot = if frame.contains("@trade") {
            &mut trade
        } else if frame.contains("@bookTicker") {
            &mut ticker
        } else if frame.contains("@depth") {
            &mut depth
        } else {
            continue;
        };
        slot.get_or_insert_with(|| frame.to_owned());
        if trade.is_some() && ticker.is_some() && depth.is_some() {
            break;
        }
    }
    let mut symbols = SymbolMap::default();
    symbols.insert("BTCUSDT", BTC);
    let mut codec = BinanceCodec::new(symbols, 1 << 20);
    for (name, frame) in [
        ("venue_parse/binance_trade", trade),
        ("venue_parse/binance_book_ticker", ticker),
        ("venue_parse/binance_depth", depth),
    ] {
        let frame = frame.expect("the capture has every kind");
        assert!(
            !matches!(codec.parse(&frame), Err(_) | Ok(Parsed::ControlReply)),
            "{name} parses"
        );
        c.bench_function(name, |b| {
            b.iter(|| black_box(codec.parse(black_box(&frame)).is_ok()))
        });
    }
}

/// Bybit parsers: a `publicTrade` frame in the form of Bybit's documented example (no real
/// Bybit trade capture is available) and the first delta of the real `orderbook.500.XRPUSDT`
/// capture (skipped with a note when it is absent).
fn venue_parse_bybit(c: &mut Criterion) {
    use tradeloop_adapters::bybit::parse::{BybitCodec, Parsed};
    use tradeloop_adapters::symbols::SymbolMap;

    let mut symbols = SymbolMap::default();
    symbols.insert("BTCUSDT", BTC);
    symbols.insert("XRPUSDT", InstrumentIndex(1));
    let mut codec = BybitCodec::new(symbols, 1 << 22);
    let trade = r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}"#;
    assert_eq!(codec.parse(trade), Ok(Parsed::Trades(1)));
    c.bench_function("venue_parse/bybit_trade", |b| {
        b.iter(|| black_box(codec.parse(black_box(trade)).is_ok()))
    });
    let path = tradeloop_adapters::shared_data_dir().join("bybit_xrpusdt-ob500.data.zip");
    let Ok(zip) = std::fs::read(&path) else {
        eprintln!("venue_parse/bybit_book: {} absent, skipped", path.display());
        return;
    };
    let text = String::from_utf8(tradeloop_adapters::recorder::unzip_first(&zip).unwrap()).unwrap();
    let delta = text
        .lines()
        .find(|l| l.contains("\"type\":\"delta\""))
        .expect("the capture has deltas")
        .to_owned();
    assert!(matches!(codec.parse(&delta), Ok(Parsed::Book(_))));
    c.bench_function("venue_parse/bybit_book", |b| {
        b.iter(|| black_box(codec.parse(black_box(&delta)).is_ok()))
    });
}

/// Kraken v2 parsers on the documented examples: a `trade` message and the checksum guide's
/// 10-level `book` snapshot (prices and quantities as JSON numbers).
fn venue_parse_kraken(c: &mut Criterion) {
    use tradeloop_adapters::kraken::parse::{KrakenCodec, Parsed};
    use tradeloop_adapters::symbols::SymbolMap;

    let mut symbols = SymbolMap::default();
    symbols.insert("BTC/USD", BTC);
    let mut codec = KrakenCodec::new(symbols, 1 << 22);
    let trade = r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":45283.5,"qty":0.00027625,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"}]}"#;
    assert_eq!(codec.parse(trade), Ok(Parsed::Trades(1)));
    c.bench_function("venue_parse/kraken_trade", |b| {
        b.iter(|| black_box(codec.parse(black_box(trade)).is_ok()))
    });
    let book = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.10000000},{"price":45283.4,"qty":1.54582015},{"price":45282.1,"qty":0.10000000},{"price":45281.0,"qty":0.10000000},{"price":45280.3,"qty":1.54592586},{"price":45279.0,"qty":0.07990000},{"price":45277.6,"qty":0.03310103},{"price":45277.5,"qty":0.30000000},{"price":45277.3,"qty":1.54602737},{"price":45276.6,"qty":0.15445238}],"asks":[{"price":45285.2,"qty":0.00100000},{"price":45286.4,"qty":1.54571953},{"price":45286.6,"qty":1.54571109},{"price":45289.6,"qty":1.54560911},{"price":45290.2,"qty":0.15890660},{"price":45291.8,"qty":1.54553491},{"price":45294.7,"qty":0.04454749},{"price":45296.1,"qty":0.35380000},{"price":45297.5,"qty":0.09945542},{"price":45299.5,"qty":0.18772827}],"checksum":3310070434,"timestamp":"2023-10-06T17:35:55.440295Z"}]}"#;
    assert!(matches!(codec.parse(book), Ok(Parsed::Book(_))));
    c.bench_function("venue_parse/kraken_book", |b| {
        b.iter(|| black_box(codec.parse(black_box(book)).is_ok()))
    });
}

/// Coinbase Advanced Trade parsers on the documented examples: a `market_trades` message and
/// an `l2_data` update.
fn venue_parse_coinbase(c: &mut Criterion) {
    use tradeloop_adapters::coinbase::parse::{CoinbaseCodec, Payload};
    use tradeloop_adapters::symbols::SymbolMap;

    let mut symbols = SymbolMap::default();
    symbols.insert("BTC-USD", BTC);
    let mut codec = CoinbaseCodec::new(symbols, 1 << 22);
    let trade = r#"{"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z","sequence_num":4,"events":[{"type":"update","trades":[{"trade_id":"000000000","product_id":"BTC-USD","price":"1260.01","size":"0.3","side":"BUY","time":"2019-08-14T20:42:27.265Z"}]}]}"#;
    assert_eq!(
        codec.parse(trade).map(|p| p.payload),
        Ok(Payload::Trades { history: false })
    );
    c.bench_function("venue_parse/coinbase_trade", |b| {
        b.iter(|| black_box(codec.parse(black_box(trade)).is_ok()))
    });
    let book = r#"{"channel":"l2_data","client_id":"","timestamp":"2023-02-09T20:32:50.714964855Z","sequence_num":5,"events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"2023-02-09T20:32:50.714964855Z","price_level":"21921.73","new_quantity":"0.06317902"},{"side":"offer","event_time":"2023-02-09T20:32:50.714964855Z","price_level":"21922.9","new_quantity":"0"}]}]}"#;
    assert_eq!(codec.parse(book).map(|p| p.payload), Ok(Payload::Books));
    c.bench_function("venue_parse/coinbase_book", |b| {
        b.iter(|| black_box(codec.parse(black_box(book)).is_ok()))
    });
}

/// OKX parsers on the documented push examples: a `trades` message and a `books` snapshot.
fn venue_parse_okx(c: &mut Criterion) {
    use tradeloop_adapters::okx::parse::{OkxCodec, Parsed};
    use tradeloop_adapters::symbols::SymbolMap;

    let mut symbols = SymbolMap::default();
    symbols.insert("BTC-USDT", BTC);
    let mut codec = OkxCodec::new(symbols, 1 << 22);
    let trade = r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897","count":"3"}]}"#;
    assert_eq!(codec.parse(trade), Ok(Parsed::Trades(1)));
    c.bench_function("venue_parse/okx_trade", |b| {
        b.iter(|| black_box(codec.parse(black_box(trade)).is_ok()))
    });
    let book = r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["8476.98","415","0","13"],["8477","7","0","2"]],"bids":[["8476","256","0","12"],["8475.55","101","0","1"]],"ts":"1597026383085","checksum":0,"prevSeqId":123455,"seqId":123456}]}"#;
    assert!(matches!(codec.parse(book), Ok(Parsed::Book(_))));
    c.bench_function("venue_parse/okx_book", |b| {
        b.iter(|| black_box(codec.parse(black_box(book)).is_ok()))
    });
}

criterion_group!(
    benches,
    baseline,
    lanes,
    pool,
    parse,
    venue_parse,
    venue_parse_bybit,
    venue_parse_kraken,
    venue_parse_coinbase,
    venue_parse_okx,
    book,
    position,
    risk,
    dispatch
);
criterion_main!(benches);
