//! The live Binance execution gateway against the loopback mock of Binance's REST API and
//! user data stream: signing, filters, rejects, rate limits, unknown outcomes, duplicate and
//! reordered reports, stream loss, listen-key expiry, reconciliation and dry run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tradeloop_adapters::binance::exec::gateway::{
    LiveGateway, LiveInstrument, LiveSettings, LiveVenue,
};
use tradeloop_adapters::binance::exec::rest::{Market, RestSettings};
use tradeloop_adapters::binance::exec::sign::Credentials;
use tradeloop_engine::api::Gateway;
use tradeloop_engine::clock::LiveClock;
use tradeloop_engine::event::{
    ClientOrderId, EventKind, FeedState, OrderReport, PositionSync, RejectReason, Side,
};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;
use tradeloop_engine::lane::{Lane, LaneConfig, Lanes};
use tradeloop_engine::order::{Order, OrderRequest};
use tradeloop_testkit::binance_mock::{Fault, MockBinance, MockConfig, MockSymbol};

const KEY: &str = "mock-api-key-0123456789";
const SECRET: &str = "mock-secret-abcdefghijklmnopqrstuvwxyz";
const I: InstrumentIndex = InstrumentIndex(0);
const FEED: u16 = 3;

fn p(s: &str) -> Price {
    s.parse().unwrap()
}
fn q(s: &str) -> Qty {
    s.parse().unwrap()
}

fn mock(market: Market) -> MockBinance {
    MockBinance::start(MockConfig {
        market,
        api_key: KEY.into(),
        secret: SECRET.into(),
        symbols: vec![MockSymbol::usdt("BTCUSDT", "BTC", "50000")],
        skew_ms: 0,
        balances: vec![("USDT".into(), q("100000")), ("BTC".into(), q("0"))],
        weight_limit: 6000,
        orders_10s_limit: 100,
        check_balances: true,
    })
    .unwrap()
}

struct Rig {
    mock: MockBinance,
    venue: Option<LiveVenue>,
    gateway: LiveGateway,
    lanes: Arc<Lanes>,
    next: u32,
}

fn settings(mock: &MockBinance, market: Market, dry_run: bool) -> LiveSettings {
    LiveSettings {
        rest: RestSettings {
            base_url: mock.rest_url(),
            market,
            recv_window_ms: 5000,
            dry_run,
            timeout: Duration::from_secs(5),
            limit_headroom_pct: 90,
        },
        ws_url: mock.ws_url(),
        client_id_prefix: "tl-".into(),
        keepalive: Duration::from_secs(1800),
        queue_capacity: 256,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        instruments: vec![LiveInstrument {
            index: I,
            symbol: "BTCUSDT".into(),
        }],
        feed_id: Some(FEED),
        reconcile_every: None,
    }
}

fn rig_with(mock: MockBinance, market: Market, dry_run: bool) -> Rig {
    let s = settings(&mock, market, dry_run);
    rig_from(mock, s)
}

fn rig_from(mock: MockBinance, settings: LiveSettings) -> Rig {
    let dry_run = settings.rest.dry_run;
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let (venue, gateway) = LiveVenue::start(
        settings,
        Credentials::new(KEY, SECRET),
        Arc::clone(&lanes),
        LiveClock::new(),
    )
    .unwrap();
    let rig = Rig {
        mock,
        venue: Some(venue),
        gateway,
        lanes,
        next: 1,
    };
    if !dry_run {
        // Start-up reconciliation, then the one the stream's first connect asks for.
        rig.wait_until("user stream connected and reconciled", || {
            rig.mock.streams_open() == 1 && rig.venue().stats().reconciliations >= 2
        });
    }
    rig
}

fn rig(market: Market) -> Rig {
    rig_with(mock(market), market, false)
}

impl Rig {
    fn venue(&self) -> &LiveVenue {
        self.venue.as_ref().unwrap()
    }

    fn submit(&mut self, request: OrderRequest) -> ClientOrderId {
        let id = ClientOrderId::new(self.next, self.next);
        self.next += 1;
        self.gateway
            .submit(&Order::new(id, request, 0), 0, &[])
            .unwrap();
        id
    }

    fn amend(&mut self, id: ClientOrderId, request: OrderRequest, price: &str, qty: &str) {
        self.gateway
            .amend(&Order::new(id, request, 0), p(price), q(qty), 0, &[])
            .unwrap();
    }

    fn cancel(&mut self, id: ClientOrderId, request: OrderRequest) {
        self.gateway
            .cancel(&Order::new(id, request, 0), 0, &[])
            .unwrap();
    }

    fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// HIGH-lane events until `done` is satisfied by the collected list.
    fn collect(&self, mut done: impl FnMut(&[EventKind]) -> bool) -> Vec<EventKind> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&out) {
            if let Some(e) = self.lanes.pop(Lane::High) {
                out.push(e.kind);
            } else {
                assert!(Instant::now() < deadline, "timed out; got {out:?}");
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        out
    }

    /// Everything that arrives within `quiet`.
    fn drain(&self, quiet: Duration) -> Vec<EventKind> {
        let mut out = Vec::new();
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            if let Some(e) = self.lanes.pop(Lane::High) {
                out.push(e.kind);
                last = Instant::now();
            } else {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        out
    }
}

fn reports(events: &[EventKind]) -> Vec<OrderReport> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Order(r) => Some(*r),
            _ => None,
        })
        .collect()
}

fn has(events: &[EventKind], want: &OrderReport) -> bool {
    reports(events).contains(want)
}

fn filled(events: &[EventKind], id: ClientOrderId) -> Qty {
    Qty(reports(events)
        .iter()
        .map(|r| match *r {
            OrderReport::Fill { client_id, qty, .. } if client_id == id => qty.0,
            _ => 0,
        })
        .sum())
}

fn buy(price: &str, qty: &str) -> OrderRequest {
    OrderRequest::limit(I, Side::Buy, p(price), q(qty))
}

#[test]
fn places_fills_and_cancels_with_signed_requests() {
    let mut r = rig(Market::Spot);
    let resting = r.submit(buy("49000", "0.01"));
    let ev = r.collect(|e| has(e, &OrderReport::Accepted { client_id: resting }));
    assert_eq!(
        reports(&ev)
            .iter()
            .filter(|x| matches!(x, OrderReport::Accepted { .. }))
            .count(),
        1
    );
    // The market trades through the order: one fill of the whole quantity at the limit.
    r.mock.trade("BTCUSDT", p("48999"));
    let ev = r.collect(|e| filled(e, resting) == q("0.01"));
    assert!(reports(&ev).contains(&OrderReport::Fill {
        client_id: resting,
        price: p("49000"),
        qty: q("0.01"),
        fee: Qty::ZERO,
        maker: true
    }));
    let other = r.submit(buy("40000", "0.02"));
    r.collect(|e| has(e, &OrderReport::Accepted { client_id: other }));
    r.cancel(other, buy("40000", "0.02"));
    r.collect(|e| has(e, &OrderReport::Canceled { client_id: other }));
    let rest = r.drain(Duration::from_millis(200));
    assert!(
        !rest.iter().any(|e| matches!(
            e,
            EventKind::Order(OrderReport::Canceled { .. } | OrderReport::Fill { .. })
        )),
        "the stream's copy of the cancel adds nothing: {rest:?}"
    );
    assert_eq!(r.mock.balance("BTC"), q("0.01"));
    for req in r.mock.requests() {
        assert!(!req.params.contains(SECRET), "the secret never travels");
        if req.path.ends_with("/order")
            || req.path.ends_with("openOrders")
            || req.path.ends_with("account")
        {
            assert_eq!(req.api_key.as_deref(), Some(KEY));
            assert!(
                req.params.contains("&signature=") && req.params.contains("timestamp="),
                "{req:?}"
            );
            assert_eq!(req.status, 200, "{req:?}");
        }
    }
    let s = r.venue().stats();
    assert_eq!((s.orders_sent, s.cancels_sent, s.rejected), (2, 1, 0));
}

#[test]
fn filters_venue_rejects_and_a_wrong_secret() {
    let mut r = rig(Market::Spot);
    let orders_sent = |r: &Rig| {
        r.mock
            .requests()
            .iter()
            .filter(|x| x.path.ends_with("/order"))
            .count()
    };
    let before = orders_sent(&r);
    let bad_tick = r.submit(buy("49000.005", "0.01"));
    r.collect(|e| {
        has(
            e,
            &OrderReport::Rejected {
                client_id: bad_tick,
                reason: RejectReason::InvalidOrder,
            },
        )
    });
    let too_small = r.submit(buy("49000", "0.00001"));
    r.collect(|e| {
        has(
            e,
            &OrderReport::Rejected {
                client_id: too_small,
                reason: RejectReason::InvalidOrder,
            },
        )
    });
    assert_eq!(orders_sent(&r), before, "refused locally: nothing sent");
    assert_eq!(r.venue().stats().refused_by_filter, 2);
    // More than the USDT balance: Binance's -2010.
    let broke = r.submit(buy("50000", "3"));
    r.collect(|e| {
        has(
            e,
            &OrderReport::Rejected {
                client_id: broke,
                reason: RejectReason::InsufficientFunds,
            },
        )
    });
    r.mock.inject(Fault::Error {
        code: -1013,
        msg: "Filter failure: PERCENT_PRICE_BY_SIDE".into(),
    });
    let filtered = r.submit(buy("49000", "0.01"));
    r.collect(|e| {
        has(
            e,
            &OrderReport::Rejected {
                client_id: filtered,
                reason: RejectReason::InvalidOrder,
            },
        )
    });

    // A wrong secret: Binance refuses the signature and start-up says so.
    let m = mock(Market::Spot);
    let err = LiveVenue::start(
        settings(&m, Market::Spot, false),
        Credentials::new(KEY, "not-the-secret"),
        Arc::new(Lanes::new(LaneConfig::default())),
        LiveClock::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("-1022"), "{err}");
}

#[test]
fn rate_limit_backs_off_then_recovers() {
    let mut r = rig(Market::Spot);
    r.mock.inject(Fault::Status {
        status: 429,
        retry_after_s: 1,
    });
    let first = r.submit(buy("49000", "0.01"));
    r.collect(|e| {
        has(
            e,
            &OrderReport::Rejected {
                client_id: first,
                reason: RejectReason::RateLimited,
            },
        )
    });
    let sent = r
        .mock
        .requests()
        .iter()
        .filter(|x| x.path.ends_with("/order"))
        .count();
    let held = r.submit(buy("49000", "0.01"));
    r.collect(|e| {
        has(
            e,
            &OrderReport::Rejected {
                client_id: held,
                reason: RejectReason::RateLimited,
            },
        )
    });
    let after_backoff = r
        .mock
        .requests()
        .iter()
        .filter(|x| x.path.ends_with("/order"))
        .count();
    assert_eq!(after_backoff, sent, "nothing is sent during the back-off");
    let s = r.venue().stats();
    assert_eq!((s.http_429, s.held_back), (1, 1));
    std::thread::sleep(Duration::from_millis(1100));
    let after = r.submit(buy("49000", "0.01"));
    r.collect(|e| has(e, &OrderReport::Accepted { client_id: after }));
}

#[test]
fn order_count_headroom_holds_orders_back_before_binance_does() {
    let m = mock(Market::Spot);
    let m = {
        // A tiny order limit: 5 per 10 s with 90 % headroom = 4 orders.
        drop(m);
        MockBinance::start(MockConfig {
            orders_10s_limit: 5,
            ..base_config()
        })
        .unwrap()
    };
    let mut r = rig_with(m, Market::Spot, false);
    // Stay clear of a 10 s window boundary.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    if now_ms % 10_000 > 7_000 {
        std::thread::sleep(Duration::from_millis(
            u64::try_from(10_000 - now_ms % 10_000).unwrap() + 50,
        ));
    }
    let ids: Vec<_> = (0..6).map(|_| r.submit(buy("40000", "0.01"))).collect();
    let ev = r.collect(|e| reports(e).len() >= 6);
    let accepted = ids
        .iter()
        .filter(|id| has(&ev, &OrderReport::Accepted { client_id: **id }))
        .count();
    let limited = ids
        .iter()
        .filter(|id| {
            has(
                &ev,
                &OrderReport::Rejected {
                    client_id: **id,
                    reason: RejectReason::RateLimited,
                },
            )
        })
        .count();
    assert_eq!((accepted, limited), (4, 2), "{ev:?}");
    assert_eq!(
        r.venue().stats().http_429,
        0,
        "held back locally, never a 429"
    );
}

fn base_config() -> MockConfig {
    MockConfig {
        market: Market::Spot,
        api_key: KEY.into(),
        secret: SECRET.into(),
        symbols: vec![MockSymbol::usdt("BTCUSDT", "BTC", "50000")],
        skew_ms: 0,
        balances: vec![("USDT".into(), q("100000"))],
        weight_limit: 6000,
        orders_10s_limit: 100,
        check_balances: true,
    }
}

#[test]
fn unknown_outcome_is_resolved_by_querying() {
    let mut r = rig(Market::Spot);
    r.mock.inject(Fault::PlacedThen500);
    // Marketable: placed and filled at the venue although the answer is a 500.
    let id = r.submit(buy("50100", "0.01"));
    let ev = r.collect(|e| filled(e, id) == q("0.01"));
    assert!(has(&ev, &OrderReport::Accepted { client_id: id }));
    assert!(!reports(&ev)
        .iter()
        .any(|x| matches!(x, OrderReport::Rejected { .. })));
    let more = r.drain(Duration::from_millis(300));
    assert_eq!(
        filled(&more, id),
        Qty::ZERO,
        "the stream's fill is not counted again"
    );
    assert_eq!(r.venue().stats().unknown_outcomes, 1);
    assert_eq!(r.mock.orders().len(), 1, "never sent twice");
}

#[test]
fn duplicated_and_reversed_reports_fill_exactly_once() {
    let mut r = rig(Market::Spot);
    let id = r.submit(buy("49000", "1"));
    r.collect(|e| has(e, &OrderReport::Accepted { client_id: id }));
    r.mock.inject(Fault::Duplicate(2));
    r.mock.fill("tl-4294967297", q("0.25"));
    r.mock.fill("tl-4294967297", q("0.25"));
    r.mock.inject(Fault::Reverse(2));
    r.mock.fill("tl-4294967297", q("0.2"));
    r.mock.fill("tl-4294967297", q("0.3"));
    r.mock.send_raw("{not json");
    r.mock.send_raw(r#"{"e":"executionReport","E":1}"#);
    let ev = r.collect(|e| filled(e, id) == q("1"));
    let more = r.drain(Duration::from_millis(300));
    assert_eq!(filled(&more, id), Qty::ZERO);
    let fills = reports(&ev)
        .iter()
        .filter(|x| matches!(x, OrderReport::Fill { .. }))
        .count();
    assert!(fills >= 3, "{ev:?}");
    let s = r.venue().stats();
    assert!(s.stream_stale_reports >= 2, "{s:?}");
    assert_eq!(s.stream_bad_messages, 2);
}

#[test]
fn stream_loss_and_listen_key_expiry_reconnect_and_reconcile() {
    let mut r = rig(Market::Spot);
    let id = r.submit(buy("49000", "0.5"));
    r.collect(|e| has(e, &OrderReport::Accepted { client_id: id }));
    // The stream drops; the order fills while it is down: reconciliation finds the fill.
    r.mock.drop_streams();
    r.mock.trade("BTCUSDT", p("48000"));
    let ev = r.collect(|e| {
        filled(e, id) == q("0.5")
            && e.contains(&EventKind::FeedStatus {
                feed: FEED,
                state: FeedState::Live,
            })
    });
    assert!(reports(&ev)
        .iter()
        .all(|x| !matches!(x, OrderReport::Canceled { .. })));
    let states: Vec<FeedState> = ev
        .iter()
        .filter_map(|k| match k {
            EventKind::FeedStatus { feed: FEED, state } => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [FeedState::Reconnecting, FeedState::Live],
        "the user stream reports its state"
    );
    r.wait_until("reconnected", || {
        r.mock.streams_open() == 1 && r.mock.streams_opened() == 2
    });
    let s = r.venue().stats();
    assert!(s.reconciliations >= 2, "{s:?}");
    // The listen key expires: a new one is created and the stream resumes.
    r.mock.expire_listen_keys();
    r.wait_until("new listen key", || {
        r.venue().stats().listen_keys >= 3 && r.mock.streams_open() == 1
    });
    let next = r.submit(buy("47000", "0.1"));
    r.collect(|e| has(e, &OrderReport::Accepted { client_id: next }));
    r.mock.trade("BTCUSDT", p("46000"));
    r.collect(|e| filled(e, next) == q("0.1"));
}

#[test]
fn start_up_reconciliation_cancels_orphans_keeps_foreign_orders_and_syncs_positions() {
    let m = mock(Market::Spot);
    m.place_external("BTCUSDT", "tl-999", true, p("30000"), q("0.01"));
    m.place_external("BTCUSDT", "web_abc123", true, p("30000"), q("0.01"));
    m.set_balance("BTC", q("0.75"));
    let r = rig_with(m, Market::Spot, false);
    let orders = r.mock.orders();
    assert_eq!(
        orders
            .iter()
            .find(|o| o.client_id == "tl-999")
            .unwrap()
            .status,
        "CANCELED"
    );
    assert_eq!(
        orders
            .iter()
            .find(|o| o.client_id == "web_abc123")
            .unwrap()
            .status,
        "NEW"
    );
    let ev = r.collect(|e| e.iter().any(|k| matches!(k, EventKind::PositionSync(_))));
    let sync = ev.iter().find_map(|k| match k {
        EventKind::PositionSync(s) => Some(*s),
        _ => None,
    });
    assert_eq!(
        sync,
        Some(PositionSync {
            instrument: I,
            qty: q("0.75"),
            entry_price: Price::ZERO,
            price: p("50000")
        })
    );
    let s = r.venue().stats();
    assert_eq!((s.orphans_cancelled, s.foreign_orders), (1, 1));
}

#[test]
fn usdm_orders_fills_and_positions() {
    let m = MockBinance::start(MockConfig {
        market: Market::UsdM,
        ..base_config()
    })
    .unwrap();
    m.set_position("BTCUSDT", q("-0.2"), p("51000"));
    let mut r = rig_with(m, Market::UsdM, false);
    let ev = r.collect(|e| e.iter().any(|k| matches!(k, EventKind::PositionSync(_))));
    assert!(
        ev.contains(&EventKind::PositionSync(PositionSync {
            instrument: I,
            qty: q("-0.2"),
            entry_price: p("51000"),
            price: p("50000"),
        })),
        "{ev:?}"
    );
    let mut close = OrderRequest::market(I, Side::Buy, p("50000"), q("0.2"));
    close.reduce_only = true;
    let id = r.submit(close);
    let ev = r.collect(|e| filled(e, id) == q("0.2"));
    assert!(has(&ev, &OrderReport::Accepted { client_id: id }));
    let sent = r
        .mock
        .requests()
        .into_iter()
        .find(|x| x.method == "POST" && x.path == "/fapi/v1/order")
        .unwrap();
    assert!(
        sent.params.contains("reduceOnly=true") && sent.params.contains("type=MARKET"),
        "{sent:?}"
    );
    // After a reconnect the venue's flat position is synced.
    r.mock.drop_streams();
    let ev = r.collect(|e| {
        e.iter()
            .any(|k| matches!(k, EventKind::PositionSync(s) if s.qty == Qty::ZERO))
    });
    assert!(!ev.is_empty());
}

#[test]
fn server_clock_skew_is_measured() {
    let m = MockBinance::start(MockConfig {
        skew_ms: 20_000,
        ..base_config()
    })
    .unwrap();
    let mut r = rig_with(m, Market::Spot, false);
    let id = r.submit(buy("49000", "0.01"));
    r.collect(|e| has(e, &OrderReport::Accepted { client_id: id }));
}

#[test]
fn dry_run_signs_and_sends_nothing_signed() {
    let mut r = rig_with(mock(Market::Spot), Market::Spot, true);
    let id = r.submit(buy("49000", "0.01"));
    r.collect(|e| {
        has(
            e,
            &OrderReport::Rejected {
                client_id: id,
                reason: RejectReason::GatewayUnavailable,
            },
        )
    });
    for req in r.mock.requests() {
        assert!(
            !req.params.contains("signature="),
            "a signed request went out: {req:?}"
        );
        assert!(req.api_key.is_none(), "{req:?}");
    }
    assert_eq!(r.venue().stats().dry_run, 1);
    assert_eq!(r.mock.orders().len(), 0);
    drop(r.venue.take());
}

#[test]
fn listen_key_is_kept_alive_and_recreated_when_binance_forgets_it() {
    let m = mock(Market::Spot);
    let mut s = settings(&m, Market::Spot, false);
    s.keepalive = Duration::from_millis(100);
    let r = rig_from(m, s);
    let puts = |r: &Rig| {
        r.mock
            .requests()
            .iter()
            .filter(|x| x.method == "PUT" && x.path == "/api/v3/userDataStream")
            .map(|x| (x.params.clone(), x.status, x.api_key.clone()))
            .collect::<Vec<_>>()
    };
    r.wait_until("a keep-alive", || !puts(&r).is_empty());
    let (params, status, key) = puts(&r)[0].clone();
    assert!(params.starts_with("listenKey=mockListenKey"), "{params}");
    assert_eq!((status, key.as_deref()), (200, Some(KEY)));
    // Binance no longer knows the key: the next keep-alive gets -1125 and a new key is made.
    r.mock.forget_listen_keys();
    r.wait_until("a new listen key and stream", || {
        r.venue().stats().listen_keys >= 2
            && r.mock.streams_opened() >= 2
            && r.mock.streams_open() == 1
    });
    assert!(
        puts(&r).iter().any(|p| p.1 == 400),
        "the refused keep-alive"
    );
}

/// Many orders under every fault at once, seeded: duplicated and reversed reports, dropped
/// streams, expired listen keys, answers lost after placing, 429s. When the dust settles the
/// engine-side reports say exactly what the venue did, order by order.
#[test]
fn chaos_the_reports_always_add_up_to_the_venue() {
    let mut r = rig(Market::Spot);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut ids = Vec::new();
    let mut events = Vec::new();
    for k in 0..120u32 {
        match rand(12) {
            0 => r
                .mock
                .inject(Fault::Duplicate(1 + u32::try_from(rand(3)).unwrap())),
            1 => r.mock.inject(Fault::Reverse(2)),
            2 => r.mock.inject(Fault::PlacedThen500),
            3 => r.mock.drop_streams(),
            4 if k % 40 == 4 => r.mock.expire_listen_keys(),
            5 => r.mock.inject(Fault::Status {
                status: 429,
                retry_after_s: 0,
            }),
            _ => {}
        }
        // Buys between 49,900 and 50,100 around a market at 50,000: some fill at once,
        // some rest and fill or get cancelled later.
        let px = format!("{}", 49_900 + rand(200));
        let request = buy(&px, "0.01");
        let id = r.submit(request);
        ids.push((id, request));
        if rand(4) == 0 {
            let (old, req) = ids[usize::try_from(rand(ids.len() as u64)).unwrap()];
            r.cancel(old, req);
        }
        if rand(10) == 0 {
            r.mock
                .trade("BTCUSDT", p(&format!("{}", 49_900 + rand(200))));
        }
        events.extend(r.drain(Duration::from_millis(1)));
    }
    // Let everything land: every order ends up rejected, cancelled, filled, or resting.
    r.wait_until("stream back", || r.mock.streams_open() == 1);
    events.extend(r.drain(Duration::from_millis(1500)));
    let venue = r.mock.orders();
    for (id, _) in &ids {
        let venue_id = format!("tl-{}", id.0);
        let o = venue.iter().find(|o| o.client_id == venue_id);
        let got = filled(&events, *id);
        let want = o.map_or(Qty::ZERO, |o| o.executed);
        assert_eq!(got, want, "{venue_id}: engine fills {got} vs venue {want}");
        let ended = reports(&events).iter().any(|x| {
            matches!(*x, OrderReport::Canceled { client_id } | OrderReport::Rejected { client_id, .. } if client_id == *id)
        });
        match o.map(|o| o.status) {
            None => assert!(
                ended,
                "{venue_id} never reached the venue: it must end rejected"
            ),
            Some("CANCELED" | "EXPIRED") => assert!(ended, "{venue_id} ended at the venue"),
            Some("FILLED") => assert_eq!(got, q("0.01")),
            Some(_) => assert!(!ended, "{venue_id} still works at the venue"),
        }
    }
    let s = r.venue().stats();
    assert!(
        s.stream_connects >= 2 && s.unknown_outcomes >= 1 && s.http_429 >= 1,
        "{s:?}"
    );
    // The run covered every ending.
    for status in ["FILLED", "CANCELED", "NEW"] {
        assert!(
            venue.iter().any(|o| o.status == status),
            "no {status} order: {venue:?}"
        );
    }
    assert!(
        venue.len() < ids.len(),
        "some orders never reached the venue (429 back-off)"
    );
}

#[test]
fn periodic_reconciliation_finds_a_silently_lost_fill() {
    for periodic in [false, true] {
        let m = mock(Market::Spot);
        let mut s = settings(&m, Market::Spot, false);
        s.reconcile_every = periodic.then_some(Duration::from_millis(200));
        let mut r = rig_from(m, s);
        let id = r.submit(buy("49000", "0.3"));
        r.collect(|e| has(e, &OrderReport::Accepted { client_id: id }));
        // The stream stays up but the fill's report never comes: only the venue knows.
        r.mock.inject(Fault::Lose(1));
        r.mock.trade("BTCUSDT", p("48000"));
        if !periodic {
            let ev = r.drain(Duration::from_millis(600));
            assert_eq!(
                filled(&ev, id),
                Qty::ZERO,
                "without the periodic pass it stays unseen"
            );
            continue;
        }
        let ev = r.collect(|e| filled(e, id) == q("0.3"));
        assert_eq!(filled(&ev, id), q("0.3"));
        assert_eq!(r.mock.streams_opened(), 1, "found without a reconnect");
        r.wait_until("the periodic pass counted", || {
            r.venue().stats().reconciliations >= 3
        });
    }
}

fn maker(price: &str, qty: &str) -> OrderRequest {
    let mut r = buy(price, qty);
    r.post_only = true;
    r
}

fn amended(client_id: ClientOrderId, price: &str, qty: &str) -> OrderReport {
    OrderReport::Amended {
        client_id,
        price: p(price),
        qty: q(qty),
    }
}

fn count(events: &[EventKind], f: impl Fn(&OrderReport) -> bool) -> usize {
    reports(events).iter().filter(|r| f(r)).count()
}

#[test]
fn usdm_modifies_in_place_and_reports_each_amend_once() {
    let mut r = rig(Market::UsdM);
    let id = r.submit(maker("49000", "0.01"));
    r.collect(|e| has(e, &OrderReport::Accepted { client_id: id }));
    // Up in price and size: one PUT, one Amended although the stream also says AMENDMENT.
    r.amend(id, maker("49000", "0.01"), "49100", "0.02");
    r.collect(|e| has(e, &amended(id, "49100", "0.02")));
    let more = r.drain(Duration::from_millis(200));
    assert_eq!(
        count(&more, |x| matches!(x, OrderReport::Amended { .. })),
        0,
        "the stream's AMENDMENT adds nothing: {more:?}"
    );
    let at_venue = &r.mock.orders()[0];
    assert_eq!(
        (
            at_venue.price,
            at_venue.qty,
            at_venue.amends,
            at_venue.tif.as_str()
        ),
        (p("49100"), q("0.02"), 1, "GTX")
    );
    let put = r
        .mock
        .requests()
        .into_iter()
        .find(|x| x.method == "PUT")
        .expect("a PUT was sent");
    assert_eq!(put.path, "/fapi/v1/order");
    assert!(
        put.params
            .starts_with("symbol=BTCUSDT&origClientOrderId=tl-")
            && put.params.contains("&side=BUY&quantity=0.02&price=49100&"),
        "{put:?}"
    );
    assert_eq!(put.status, 200);
    // A partial fill, then down to 0.015 in all: the rest (0.005) fills at the new terms.
    let venue_id = at_venue.client_id.clone();
    r.mock.fill(&venue_id, q("0.01"));
    r.collect(|e| filled(e, id) == q("0.01"));
    r.amend(id, maker("49100", "0.02"), "49100", "0.015");
    r.collect(|e| has(e, &amended(id, "49100", "0.015")));
    r.mock.trade("BTCUSDT", p("49000"));
    let ev = r.collect(|e| filled(e, id) == q("0.005"));
    assert!(!has(&ev, &OrderReport::Canceled { client_id: id }));
    assert_eq!(r.mock.orders()[0].status, "FILLED");
    // The order is done: an amend now is refused without a request.
    let puts = |r: &Rig| {
        r.mock
            .requests()
            .iter()
            .filter(|x| x.method == "PUT")
            .count()
    };
    let before = puts(&r);
    r.amend(id, maker("49100", "0.015"), "49000", "0.015");
    r.collect(|e| {
        has(
            e,
            &OrderReport::AmendRejected {
                client_id: id,
                reason: RejectReason::UnknownOrder,
            },
        )
    });
    assert_eq!(puts(&r), before);
    let s = r.venue().stats();
    assert_eq!((s.amends_sent, s.amends_rejected), (2, 1));
}

#[test]
fn usdm_refused_and_cancelling_modifies() {
    let mut r = rig(Market::UsdM);
    let id = r.submit(maker("49000", "0.01"));
    r.collect(|e| has(e, &OrderReport::Accepted { client_id: id }));
    let refused = |reason| OrderReport::AmendRejected {
        client_id: id,
        reason,
    };
    // Off the tick: refused locally, nothing sent, the order works on.
    r.amend(id, maker("49000", "0.01"), "49000.005", "0.01");
    r.collect(|e| has(e, &refused(RejectReason::InvalidOrder)));
    assert!(!r.mock.requests().iter().any(|x| x.method == "PUT"));
    // The venue's own refusal (same terms: "No need to modify the order").
    r.amend(id, maker("49000", "0.01"), "49000", "0.01");
    r.collect(|e| has(e, &refused(RejectReason::InvalidOrder)));
    assert_eq!(r.mock.orders()[0].amends, 0);
    assert_eq!(r.mock.orders()[0].status, "NEW");
    // A post-only order moved through the market is cancelled by the venue: Canceled, no
    // Amended.
    r.amend(id, maker("49000", "0.01"), "50500", "0.01");
    let ev = r.collect(|e| has(e, &OrderReport::Canceled { client_id: id }));
    let ev = [ev, r.drain(Duration::from_millis(200))].concat();
    assert_eq!(
        count(&ev, |x| matches!(x, OrderReport::Amended { .. })),
        0,
        "{ev:?}"
    );
    assert_eq!(count(&ev, |x| matches!(x, OrderReport::Canceled { .. })), 1);
    assert_eq!(filled(&ev, id), Qty::ZERO);
    assert_eq!(r.mock.orders()[0].status, "CANCELED");
    let s = r.venue().stats();
    assert_eq!((s.amends_sent, s.amends_rejected), (2, 2));
}

#[test]
fn usdm_lost_modify_answers_are_resolved_by_querying() {
    let mut r = rig(Market::UsdM);
    let id = r.submit(maker("49000", "0.01"));
    r.collect(|e| has(e, &OrderReport::Accepted { client_id: id }));
    // It took effect, but the answer is a 500 and the stream's AMENDMENT is lost.
    r.mock.inject(Fault::Lose(1));
    r.mock.inject(Fault::PlacedThen500);
    r.amend(id, maker("49000", "0.01"), "48900", "0.01");
    r.collect(|e| has(e, &amended(id, "48900", "0.01")));
    assert_eq!(r.venue().stats().unknown_outcomes, 1);
    // It never reached the matching engine (503 before it): the query shows the old terms.
    r.mock.inject(Fault::Status {
        status: 503,
        retry_after_s: 0,
    });
    r.amend(id, maker("48900", "0.01"), "48800", "0.01");
    let ev = r.collect(|e| {
        has(
            e,
            &OrderReport::AmendRejected {
                client_id: id,
                reason: RejectReason::GatewayUnavailable,
            },
        )
    });
    assert!(!reports(&ev)
        .iter()
        .any(|x| matches!(x, OrderReport::Amended { .. })));
    assert_eq!(r.mock.orders()[0].price, p("48900"));
    assert_eq!(r.venue().stats().unknown_outcomes, 2);
}

#[test]
fn spot_has_no_in_place_amend() {
    let mut r = rig(Market::Spot);
    let id = r.submit(buy("49000", "0.01"));
    r.collect(|e| has(e, &OrderReport::Accepted { client_id: id }));
    let got = r.gateway.amend(
        &Order::new(id, buy("49000", "0.01"), 0),
        p("48000"),
        q("0.01"),
        0,
        &[],
    );
    assert_eq!(
        got,
        Err(tradeloop_engine::api::GatewayError::AmendUnsupported)
    );
    assert!(!r.mock.requests().iter().any(|x| x.method == "PUT"));
}
