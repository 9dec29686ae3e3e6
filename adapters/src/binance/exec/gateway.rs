//! The live Binance execution gateway.
//!
//! Three parts, so the engine thread never waits on the network:
//! - [`LiveGateway`], the engine's `Gateway`: checks the exchange filters and puts a fixed-size
//!   command on a bounded lock-free queue. No allocation, no lock; a syscall (one unpark)
//!   only when the execution thread is asleep.
//! - The execution thread: signs and sends each command over REST, resolves answers whose
//!   outcome is unknown (timeouts, 5xx) by querying the order, and reconciles.
//! - The user-stream thread: creates, keeps alive and renews the listen key, streams order
//!   events, reconnects with back-off, and asks for a reconciliation after every (re)connect.
//!
//! **Amends.** On USD-M, [`Gateway::amend`] becomes Binance's modify (`PUT /fapi/v1/order`:
//! price and total quantity, LIMIT orders only; the venue re-queues every modified order,
//! and cancels it if a post-only (GTX) order's new price would cross or a partly filled
//! order's new quantity is not above what has filled). The [`Tracker`] reports `Amended` when
//! the first venue report shows the new terms (REST answer or the user stream's `AMENDMENT`),
//! `AmendRejected` when the venue refuses. An answer lost to a timeout is resolved by querying
//! the order a second later: on the new terms it was amended, otherwise it was not. Spot has no
//! in-place amend of price (only a priority-keeping size-down, not used here), so the spot
//! gateway answers [`GatewayError::AmendUnsupported`] and strategies cancel and replace.
//!
//! Both threads feed venue reports through one [`Tracker`], which turns them into exactly the
//! engine reports that keep the engine's books true, and push those on the HIGH lane (waiting
//! for room, never dropping).
//!
//! **Reconciliation** (at start and after every user-stream reconnect; rule: the venue wins):
//! 1. Each tracked order missing from the venue's open orders is queried; its fills and final
//!    state are applied. An order the venue never had (`-2013`) is reported rejected (never
//!    accepted) or cancelled.
//! 2. Each open order with this gateway's client-id prefix that the engine does not track
//!    (left by an earlier run) is cancelled at the venue. Orders without the prefix belong to
//!    someone else: logged and counted, left alone.
//! 3. Positions: the venue's position (USD-M `positionAmt`; spot: the total balance of the
//!    instrument's base asset) replaces the engine's, through a `PositionSync` event, when two
//!    reads taken around step 1 agree (so no fill is counted twice or missed); otherwise the
//!    sync waits for the next reconciliation and a warning is logged. A spot base asset shared
//!    by two instruments is not synced (it cannot be attributed).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use futures_util::{SinkExt as _, StreamExt as _};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;
use tradeloop_engine::api::{Gateway, GatewayError};
use tradeloop_engine::clock::{Clock as _, LiveClock};
use tradeloop_engine::event::{
    ClientOrderId, Event, EventKind, FeedState, OrderReport, PositionSync, RejectReason, Side,
};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;
use tradeloop_engine::lane::Lanes;
use tradeloop_engine::order::{Order, OrderKind, TimeInForce};

use super::filters::{FilterViolation, SymbolFilters};
use super::report::{parse_user_event, RestOrder, UserEvent};
use super::rest::{Auth, Endpoint, Market, Method, RestClient, RestError, RestSettings};
use super::sign::Credentials;
use super::tracker::{engine_client_id, reason_for_code, venue_client_id, Applied, Tracker};

/// One instrument traded on this venue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveInstrument {
    /// Engine index.
    pub index: InstrumentIndex,
    /// Venue symbol, e.g. `BTCUSDT`.
    pub symbol: String,
}

/// Settings of a live venue.
#[derive(Clone, Debug)]
pub struct LiveSettings {
    /// REST client settings (base URL, market, `recvWindow`, dry run).
    pub rest: RestSettings,
    /// User-stream WebSocket base URL (`/ws/<listenKey>` is appended).
    pub ws_url: String,
    /// Prefix of every client order id this gateway sends (identifies its orders).
    pub client_id_prefix: String,
    /// Listen-key keep-alive period (Binance: valid 60 min; keep alive about every 30).
    pub keepalive: Duration,
    /// Capacity of the engine → execution-thread queue.
    pub queue_capacity: usize,
    /// First reconnect delay of the user stream.
    pub backoff_base: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Instruments of this venue.
    pub instruments: Vec<LiveInstrument>,
    /// Reconcile this often even without a reconnect (a silently lost report is then found
    /// within one period); `None`: only at start and after reconnects.
    pub reconcile_every: Option<Duration>,
    /// Feed number the user stream reports its state under (`FeedStatus` on HIGH), so the
    /// feed-down breaker also covers it: while it is down, fills are seen late.
    pub feed_id: Option<u16>,
}

/// Why the live venue could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// A REST request at start-up failed.
    #[error("Binance start-up request failed: {0}")]
    Rest(#[from] RestError),
    /// An instrument's symbol is not in `exchangeInfo`.
    #[error("symbol {0} is not listed in Binance's exchangeInfo at {1}")]
    UnknownSymbol(String, String),
    /// A thread could not be spawned.
    #[error("cannot start the execution threads: {0}")]
    Thread(#[from] std::io::Error),
}

/// What the engine thread hands the execution thread. `Copy`, fixed size.
#[derive(Clone, Copy, Debug)]
enum Command {
    New(Order),
    Cancel(ClientOrderId, InstrumentIndex),
    Refuse(ClientOrderId, FilterViolation),
    /// Amend the order (as the engine holds it) to this price and total quantity.
    Amend(Order, Price, Qty),
    /// The amend's terms break an exchange filter: refuse it, the order works on.
    RefuseAmend(ClientOrderId, FilterViolation),
}

/// Counters of the live venue.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Orders sent.
    pub orders_sent: AtomicU64,
    /// Orders refused locally by an exchange filter.
    pub refused_by_filter: AtomicU64,
    /// Orders Binance rejected, or that could not be sent (rate limit, dry run).
    pub rejected: AtomicU64,
    /// Cancels sent.
    pub cancels_sent: AtomicU64,
    /// Amends (USD-M modifies) sent.
    pub amends_sent: AtomicU64,
    /// Amends the venue refused or that could not be sent (filters included).
    pub amends_rejected: AtomicU64,
    /// Answers whose outcome was unknown (timeout, 5xx), resolved by a query.
    pub unknown_outcomes: AtomicU64,
    /// Reconciliations completed.
    pub reconciliations: AtomicU64,
    /// Orders of an earlier run cancelled by reconciliation.
    pub orphans_cancelled: AtomicU64,
    /// Open orders without this gateway's prefix, as of the last reconciliation.
    pub foreign_orders: AtomicU64,
    /// Position syncs sent to the engine (one per instrument per reconciliation; the engine
    /// counts those that changed a position).
    pub positions_synced: AtomicU64,
    /// Position syncs skipped because the venue's position moved during reconciliation.
    pub position_syncs_deferred: AtomicU64,
    /// User-stream connections made.
    pub stream_connects: AtomicU64,
    /// User-stream messages that could not be decoded.
    pub stream_bad_messages: AtomicU64,
    /// Order events about orders the gateway does not track (stale or foreign).
    pub stream_unknown_orders: AtomicU64,
    /// Duplicate or out-of-order order events ignored.
    pub stream_stale_reports: AtomicU64,
    /// Listen keys created.
    pub listen_keys: AtomicU64,
}

/// A snapshot of [`LiveCounters`] plus the REST and tracker counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// See [`LiveCounters`].
    pub orders_sent: u64,
    /// See [`LiveCounters`].
    pub refused_by_filter: u64,
    /// See [`LiveCounters`].
    pub rejected: u64,
    /// See [`LiveCounters`].
    pub cancels_sent: u64,
    /// See [`LiveCounters`].
    pub amends_sent: u64,
    /// See [`LiveCounters`].
    pub amends_rejected: u64,
    /// See [`LiveCounters`].
    pub unknown_outcomes: u64,
    /// See [`LiveCounters`].
    pub reconciliations: u64,
    /// See [`LiveCounters`].
    pub orphans_cancelled: u64,
    /// See [`LiveCounters`].
    pub foreign_orders: u64,
    /// See [`LiveCounters`].
    pub positions_synced: u64,
    /// See [`LiveCounters`].
    pub position_syncs_deferred: u64,
    /// See [`LiveCounters`].
    pub stream_connects: u64,
    /// See [`LiveCounters`].
    pub stream_bad_messages: u64,
    /// See [`LiveCounters`].
    pub stream_unknown_orders: u64,
    /// See [`LiveCounters`].
    pub stream_stale_reports: u64,
    /// See [`LiveCounters`].
    pub listen_keys: u64,
    /// REST: requests sent.
    pub rest_sent: u64,
    /// REST: 429 answers.
    pub http_429: u64,
    /// REST: 418 answers.
    pub http_418: u64,
    /// REST: requests held back (back-off, limit headroom).
    pub held_back: u64,
    /// REST: signed requests logged instead of sent.
    pub dry_run: u64,
}

struct Inner {
    rest: RestClient,
    settings: LiveSettings,
    lanes: Arc<Lanes>,
    clock: LiveClock,
    tracker: Mutex<Tracker>,
    queue: ArrayQueue<Command>,
    parked: AtomicBool,
    worker: Mutex<Option<std::thread::Thread>>,
    stop: AtomicBool,
    reconcile_requested: AtomicBool,
    counters: LiveCounters,
    /// Per instrument: (index, symbol, base asset, filters).
    symbols: Vec<(InstrumentIndex, String, String, SymbolFilters)>,
}

/// The running live venue: its threads and counters. Dropping it stops the threads.
pub struct LiveVenue {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for LiveVenue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveVenue")
            .field("base_url", &self.inner.settings.rest.base_url)
            .finish_non_exhaustive()
    }
}

/// The engine's side of the live venue.
pub struct LiveGateway {
    inner: Arc<Inner>,
    /// Filters per engine instrument index (`None`: not on this venue).
    filters: Vec<Option<SymbolFilters>>,
}

impl std::fmt::Debug for LiveGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveGateway").finish_non_exhaustive()
    }
}

impl LiveVenue {
    /// Connects: measures the server-time offset, reads `exchangeInfo` (filters and rate
    /// limits), reconciles (unless dry run), and starts the execution and user-stream threads.
    ///
    /// # Errors
    /// [`LiveError`] if a start-up request fails or a symbol is not listed.
    pub fn start(
        settings: LiveSettings,
        credentials: Credentials,
        lanes: Arc<Lanes>,
        clock: LiveClock,
    ) -> Result<(Self, LiveGateway), LiveError> {
        let rest = RestClient::new(settings.rest.clone(), Some(credentials));
        let offset = rest.sync_time()?;
        let names: Vec<&str> = settings
            .instruments
            .iter()
            .map(|i| i.symbol.as_str())
            .collect();
        let info = rest.exchange_info(&names)?;
        let bases = base_assets(&rest, &settings)?;
        let mut symbols = Vec::new();
        for i in &settings.instruments {
            let filters = info.filters(&i.symbol).ok_or_else(|| {
                LiveError::UnknownSymbol(i.symbol.clone(), settings.rest.base_url.clone())
            })?;
            let base = bases
                .iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(&i.symbol))
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            symbols.push((i.index, i.symbol.to_ascii_uppercase(), base, filters));
        }
        tracing::info!(
            base_url = %settings.rest.base_url,
            server_offset_ms = offset,
            symbols = symbols.len(),
            dry_run = settings.rest.dry_run,
            "Binance execution: exchangeInfo read"
        );
        let size = symbols.iter().map(|s| s.0.get() + 1).max().unwrap_or(0);
        let mut filters = vec![None; size];
        for s in &symbols {
            filters[s.0.get()] = Some(s.3);
        }
        let inner = Arc::new(Inner {
            rest,
            queue: ArrayQueue::new(settings.queue_capacity.max(1)),
            settings,
            lanes,
            clock,
            tracker: Mutex::new(Tracker::new()),
            parked: AtomicBool::new(false),
            worker: Mutex::new(None),
            stop: AtomicBool::new(false),
            reconcile_requested: AtomicBool::new(false),
            counters: LiveCounters::default(),
            symbols,
        });
        if !inner.settings.rest.dry_run {
            inner.reconcile()?;
        }
        let mut threads = Vec::new();
        let worker = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("binance-exec".into())
                .spawn(move || inner.work())?
        };
        *inner.worker.lock() = Some(worker.thread().clone());
        threads.push(worker);
        if !inner.settings.rest.dry_run {
            let inner = Arc::clone(&inner);
            threads.push(
                std::thread::Builder::new()
                    .name("binance-user".into())
                    .spawn(move || inner.user_stream())?,
            );
        }
        let gateway = LiveGateway {
            inner: Arc::clone(&inner),
            filters,
        };
        Ok((Self { inner, threads }, gateway))
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> LiveStats {
        self.inner.stats()
    }

    /// The exchange filters read from `exchangeInfo`, per instrument.
    #[must_use]
    pub fn filters(&self) -> Vec<(InstrumentIndex, SymbolFilters)> {
        self.inner.symbols.iter().map(|s| (s.0, s.3)).collect()
    }

    /// Stops the threads (orders at the venue are left as they are).
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.inner.worker.lock().as_ref() {
            t.unpark();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for LiveVenue {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// Base asset per symbol, from `exchangeInfo` (`baseAsset`).
fn base_assets(
    rest: &RestClient,
    settings: &LiveSettings,
) -> Result<Vec<(String, String)>, RestError> {
    #[derive(Deserialize)]
    struct Info {
        symbols: Vec<Sym>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Sym {
        symbol: String,
        #[serde(default)]
        base_asset: String,
    }
    let mut params = Vec::new();
    if settings.rest.market == Market::Spot {
        let list: Vec<String> = settings
            .instruments
            .iter()
            .map(|i| format!("\"{}\"", i.symbol.to_ascii_uppercase()))
            .collect();
        params.push(("symbols", format!("[{}]", list.join(","))));
    }
    let info: Info = rest.call(Method::Get, Endpoint::ExchangeInfo, &params, Auth::None)?;
    Ok(info
        .symbols
        .into_iter()
        .map(|s| (s.symbol, s.base_asset))
        .collect())
}

impl Gateway for LiveGateway {
    fn submit(
        &mut self,
        order: &Order,
        _now_ns: u64,
        _: &tradeloop_engine::api::Books,
    ) -> Result<(), GatewayError> {
        let Some(Some(filters)) = self.filters.get(order.request.instrument.get()) else {
            return Err(GatewayError::NoExecutionVenue);
        };
        let command = match filters.check(&order.request) {
            Ok(()) => Command::New(*order),
            Err(v) => Command::Refuse(order.client_id, v),
        };
        self.inner.enqueue(command)
    }

    fn cancel(
        &mut self,
        order: &Order,
        _now_ns: u64,
        _: &tradeloop_engine::api::Books,
    ) -> Result<(), GatewayError> {
        self.inner
            .enqueue(Command::Cancel(order.client_id, order.request.instrument))
    }

    fn amend(
        &mut self,
        order: &Order,
        price: Price,
        qty: Qty,
        _now_ns: u64,
        _: &tradeloop_engine::api::Books,
    ) -> Result<(), GatewayError> {
        if self.inner.settings.rest.market != Market::UsdM {
            return Err(GatewayError::AmendUnsupported);
        }
        let Some(Some(filters)) = self.filters.get(order.request.instrument.get()) else {
            return Err(GatewayError::NoExecutionVenue);
        };
        let mut terms = order.request;
        (terms.price, terms.qty) = (price, qty);
        let command = match filters.check(&terms) {
            Ok(()) => Command::Amend(*order, price, qty),
            Err(v) => Command::RefuseAmend(order.client_id, v),
        };
        self.inner.enqueue(command)
    }
}

impl Inner {
    fn enqueue(&self, command: Command) -> Result<(), GatewayError> {
        self.queue.push(command).map_err(|_| GatewayError::Full)?;
        if self.parked.load(Ordering::SeqCst) {
            if let Some(t) = self.worker.lock().as_ref() {
                t.unpark();
            }
        }
        Ok(())
    }

    fn stats(&self) -> LiveStats {
        let c = &self.counters;
        let r = self.rest.stats();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LiveStats {
            orders_sent: get(&c.orders_sent),
            refused_by_filter: get(&c.refused_by_filter),
            rejected: get(&c.rejected),
            cancels_sent: get(&c.cancels_sent),
            amends_sent: get(&c.amends_sent),
            amends_rejected: get(&c.amends_rejected),
            unknown_outcomes: get(&c.unknown_outcomes),
            reconciliations: get(&c.reconciliations),
            orphans_cancelled: get(&c.orphans_cancelled),
            foreign_orders: get(&c.foreign_orders),
            positions_synced: get(&c.positions_synced),
            position_syncs_deferred: get(&c.position_syncs_deferred),
            stream_connects: get(&c.stream_connects),
            stream_bad_messages: get(&c.stream_bad_messages),
            stream_unknown_orders: get(&c.stream_unknown_orders),
            stream_stale_reports: get(&c.stream_stale_reports),
            listen_keys: get(&c.listen_keys),
            rest_sent: r.sent,
            http_429: r.http_429,
            http_418: r.http_418,
            held_back: r.held_back,
            dry_run: r.dry_run,
        }
    }

    /// Pushes an event on the HIGH lane, waiting for room (this is an I/O thread).
    fn push(&self, kind: EventKind) {
        let ns = self.lanes_now();
        let mut event = Event::new(ns, 0, kind);
        loop {
            match self.lanes.try_push_high(event) {
                Ok(()) => return,
                Err(full) => {
                    if self.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    event = full.0;
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
    }

    fn lanes_now(&self) -> u64 {
        self.clock.now_ns()
    }

    fn symbol_of(&self, instrument: InstrumentIndex) -> Option<&str> {
        self.symbols
            .iter()
            .find(|s| s.0 == instrument)
            .map(|s| s.1.as_str())
    }

    /// Applies a venue report about `id`, pushing the engine reports it yields (under the
    /// tracker lock, so reports reach the lane in tracker order).
    fn apply_report(&self, id: ClientOrderId, report: &super::report::ExecReport) {
        self.tracker
            .lock()
            .apply(id, report, &mut |r| self.push(EventKind::Order(r)));
    }

    /// `symbol` and `origClientOrderId` naming one of our orders.
    fn order_ref(&self, symbol: &str, id: ClientOrderId) -> [(&'static str, String); 2] {
        [
            ("symbol", symbol.to_owned()),
            (
                "origClientOrderId",
                venue_client_id(&self.settings.client_id_prefix, id),
            ),
        ]
    }

    /// Applies a venue report to the tracker, pushing the engine reports it yields. The
    /// tracker lock is held while pushing, so reports reach the lane in tracker order.
    fn apply(&self, tracker: &mut Tracker, report: &super::report::ExecReport) -> Applied {
        let prefix = &self.settings.client_id_prefix;
        let Some(id) = engine_client_id(prefix, &report.client_order_id) else {
            return Applied::Unknown;
        };
        tracker.apply(id, report, &mut |r| self.push(EventKind::Order(r)))
    }

    // ---- execution thread ----

    fn work(&self) {
        let mut unresolved: Vec<(ClientOrderId, InstrumentIndex, Instant)> = Vec::new();
        let mut unresolved_amends: Vec<(ClientOrderId, InstrumentIndex, Instant)> = Vec::new();
        let mut last_reconcile = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            if self
                .settings
                .reconcile_every
                .is_some_and(|every| last_reconcile.elapsed() >= every)
            {
                self.reconcile_requested.store(true, Ordering::SeqCst);
            }
            while let Some(command) = self.queue.pop() {
                match command {
                    Command::New(order) => {
                        if let Some(u) = self.send_new(&order) {
                            unresolved.push((u, order.request.instrument, Instant::now()));
                        }
                    }
                    Command::Cancel(id, instrument) => self.send_cancel(id, instrument),
                    Command::Refuse(id, violation) => {
                        self.counters
                            .refused_by_filter
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(client_id = id.0, %violation, "order refused locally: it breaks a Binance exchange filter");
                        self.push(EventKind::Order(OrderReport::Rejected {
                            client_id: id,
                            reason: RejectReason::InvalidOrder,
                        }));
                    }
                    Command::Amend(order, price, qty) => {
                        if let Some(u) = self.send_amend(&order, price, qty) {
                            unresolved_amends.push((u, order.request.instrument, Instant::now()));
                        }
                    }
                    Command::RefuseAmend(id, violation) => {
                        self.counters
                            .amends_rejected
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(client_id = id.0, %violation, "amend refused locally: its terms break a Binance exchange filter");
                        self.push(EventKind::Order(OrderReport::AmendRejected {
                            client_id: id,
                            reason: RejectReason::InvalidOrder,
                        }));
                    }
                }
            }
            if self.reconcile_requested.swap(false, Ordering::SeqCst) {
                last_reconcile = Instant::now();
                match self.reconcile() {
                    Ok(()) => unresolved.clear(),
                    Err(e) => {
                        tracing::error!(error = %e, "reconciliation failed; retrying in 1 s");
                        self.sleep_unless_stopped(Duration::from_secs(1));
                    }
                }
            }
            unresolved.retain(|&(id, instrument, since)| {
                since.elapsed() < Duration::from_secs(1) || !self.resolve(id, instrument)
            });
            unresolved_amends.retain(|&(id, instrument, since)| {
                since.elapsed() < Duration::from_secs(1) || !self.resolve_amend(id, instrument)
            });
            self.parked.store(true, Ordering::SeqCst);
            if self.queue.is_empty() && !self.reconcile_requested.load(Ordering::SeqCst) {
                std::thread::park_timeout(Duration::from_millis(100));
            }
            self.parked.store(false, Ordering::SeqCst);
        }
    }

    fn sleep_unless_stopped(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
            std::thread::park_timeout(until - Instant::now());
        }
    }

    /// Sends a new order; returns its id if the outcome is still unknown.
    fn send_new(&self, order: &Order) -> Option<ClientOrderId> {
        let id = order.client_id;
        let Some(symbol) = self.symbol_of(order.request.instrument) else {
            self.reject(id, RejectReason::GatewayUnavailable);
            return None;
        };
        let params = order_params(
            self.settings.rest.market,
            symbol,
            order,
            &venue_client_id(&self.settings.client_id_prefix, id),
        );
        self.tracker
            .lock()
            .insert(id, order.request.instrument, order.request.qty);
        self.counters.orders_sent.fetch_add(1, Ordering::Relaxed);
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Ack {
            order_id: i64,
        }
        match self
            .rest
            .call::<Ack>(Method::Post, Endpoint::Order, &params, Auth::Signed)
        {
            Ok(ack) => {
                let mut t = self.tracker.lock();
                t.accepted(id, ack.order_id, &mut |r| self.push(EventKind::Order(r)));
                None
            }
            Err(e) if e.outcome_unknown() => {
                self.counters
                    .unknown_outcomes
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(client_id = id.0, error = %e, "new order: outcome unknown; querying the order");
                (!self.resolve(id, order.request.instrument)).then_some(id)
            }
            Err(e) => {
                let reason = reason_for_error(&e);
                if !matches!(e, RestError::DryRun { .. }) {
                    tracing::warn!(client_id = id.0, error = %e, ?reason, "new order rejected");
                }
                self.reject(id, reason);
                None
            }
        }
    }

    fn reject(&self, id: ClientOrderId, reason: RejectReason) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        let mut t = self.tracker.lock();
        if t.get(id).is_some() {
            t.rejected(id, reason, &mut |r| self.push(EventKind::Order(r)));
        } else {
            self.push(EventKind::Order(OrderReport::Rejected {
                client_id: id,
                reason,
            }));
        }
    }

    /// Queries an order and applies what the venue says; `true` once resolved.
    fn resolve(&self, id: ClientOrderId, instrument: InstrumentIndex) -> bool {
        let Some(symbol) = self.symbol_of(instrument) else {
            return true;
        };
        let params = self.order_ref(symbol, id);
        match self
            .rest
            .call::<RestOrder>(Method::Get, Endpoint::Order, &params, Auth::Signed)
        {
            Ok(o) => match o.to_report() {
                Ok(report) => {
                    self.apply_report(id, &report);
                    true
                }
                Err(e) => {
                    tracing::error!(client_id = id.0, error = %e, "order query: bad answer");
                    false
                }
            },
            Err(e) if e.code() == Some(-2013) => {
                let mut t = self.tracker.lock();
                t.vanished(id, &mut |r| self.push(EventKind::Order(r)));
                true
            }
            Err(e) => {
                tracing::warn!(client_id = id.0, error = %e, "order query failed; retrying");
                false
            }
        }
    }

    fn send_cancel(&self, id: ClientOrderId, instrument: InstrumentIndex) {
        let Some(symbol) = self.symbol_of(instrument) else {
            return;
        };
        if self.tracker.lock().get(id).is_none() {
            // Already done (its terminal report is on its way) or never sent.
            self.push(EventKind::Order(OrderReport::CancelRejected {
                client_id: id,
                reason: RejectReason::UnknownOrder,
            }));
            return;
        }
        let params = self.order_ref(symbol, id);
        self.counters.cancels_sent.fetch_add(1, Ordering::Relaxed);
        match self
            .rest
            .call::<RestOrder>(Method::Delete, Endpoint::Order, &params, Auth::Signed)
        {
            Ok(o) => match o.to_report() {
                Ok(report) => self.apply_report(id, &report),
                Err(e) => {
                    tracing::error!(client_id = id.0, error = %e, "cancel: bad answer; querying");
                    self.resolve(id, instrument);
                }
            },
            Err(e) => {
                let reason = reason_for_error(&e);
                tracing::warn!(client_id = id.0, error = %e, "cancel refused; querying the order");
                // The order may have filled or been cancelled meanwhile: learn its state.
                let resolved = (e.code() == Some(-2011) || e.outcome_unknown())
                    && self.resolve(id, instrument);
                if self.tracker.lock().get(id).is_some() || !resolved {
                    self.push(EventKind::Order(OrderReport::CancelRejected {
                        client_id: id,
                        reason,
                    }));
                }
            }
        }
    }

    /// Sends a modify (USD-M); returns the order's id if the outcome is still unknown.
    fn send_amend(&self, order: &Order, price: Price, qty: Qty) -> Option<ClientOrderId> {
        let id = order.client_id;
        let refuse = |reason| {
            self.counters
                .amends_rejected
                .fetch_add(1, Ordering::Relaxed);
            self.push(EventKind::Order(OrderReport::AmendRejected {
                client_id: id,
                reason,
            }));
        };
        let Some(symbol) = self.symbol_of(order.request.instrument) else {
            refuse(RejectReason::GatewayUnavailable);
            return None;
        };
        if !self.tracker.lock().amend_sent(id, price, qty) {
            // Ended meanwhile (its terminal report is on its way) or never sent.
            refuse(RejectReason::UnknownOrder);
            return None;
        }
        let [symbol_param, id_param] = self.order_ref(symbol, id);
        let params = [
            symbol_param,
            id_param,
            (
                "side",
                if order.request.side == Side::Buy {
                    "BUY"
                } else {
                    "SELL"
                }
                .to_owned(),
            ),
            ("quantity", qty.to_string()),
            ("price", price.to_string()),
        ];
        self.counters.amends_sent.fetch_add(1, Ordering::Relaxed);
        match self
            .rest
            .call::<RestOrder>(Method::Put, Endpoint::Order, &params, Auth::Signed)
        {
            Ok(o) => {
                match o.to_report() {
                    Ok(report) => self.apply_report(id, &report),
                    Err(e) => {
                        tracing::error!(client_id = id.0, error = %e, "amend: bad answer; querying");
                        return (!self.resolve_amend(id, order.request.instrument)).then_some(id);
                    }
                }
                // An answer on other terms than asked (it should not happen): the amend did
                // not take; the order's state came with the answer.
                let mut t = self.tracker.lock();
                if t.get(id).is_some_and(|o| o.pending_amend.is_some()) {
                    tracing::warn!(client_id = id.0, "amend: the venue answered on other terms");
                    t.amend_refused(id, RejectReason::Venue, &mut |r| {
                        self.push(EventKind::Order(r));
                    });
                }
                None
            }
            Err(e) if e.outcome_unknown() => {
                self.counters
                    .unknown_outcomes
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(client_id = id.0, error = %e, "amend: outcome unknown; querying the order");
                (!self.resolve_amend(id, order.request.instrument)).then_some(id)
            }
            Err(e) => {
                let reason = reason_for_error(&e);
                tracing::warn!(client_id = id.0, error = %e, ?reason, "amend refused");
                self.counters
                    .amends_rejected
                    .fetch_add(1, Ordering::Relaxed);
                self.tracker.lock().amend_refused(id, reason, &mut |r| {
                    self.push(EventKind::Order(r));
                });
                if e.code() == Some(-2013) {
                    // The venue no longer has it: learn how it ended.
                    self.resolve(id, order.request.instrument);
                }
                None
            }
        }
    }

    /// Queries an order with an amend whose answer was lost and applies what the venue says:
    /// on the new terms it was amended (the tracker reports it); still on the old ones, it was
    /// not. `true` once resolved.
    fn resolve_amend(&self, id: ClientOrderId, instrument: InstrumentIndex) -> bool {
        if !self.resolve(id, instrument) {
            return false;
        }
        self.tracker
            .lock()
            .amend_refused(id, RejectReason::GatewayUnavailable, &mut |r| {
                self.push(EventKind::Order(r));
            });
        true
    }

    // ---- reconciliation ----

    /// Reconciles orders and positions with the venue (the venue wins).
    ///
    /// # Errors
    /// The failed request if the open orders cannot be read (another reconciliation is then
    /// requested).
    fn reconcile(&self) -> Result<(), RestError> {
        let started = Instant::now();
        let before = self.read_positions();
        let mut tracker = self.tracker.lock();
        let prefix = self.settings.client_id_prefix.clone();
        let mut open_ids = Vec::new();
        let (mut orphans, mut foreign, mut updated) = (0u64, 0u64, 0u64);
        for (_, symbol, _, _) in &self.symbols {
            let open: Vec<RestOrder> = match self.rest.call(
                Method::Get,
                Endpoint::OpenOrders,
                &[("symbol", symbol.clone())],
                Auth::Signed,
            ) {
                Ok(o) => o,
                Err(e) => {
                    self.reconcile_requested.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            };
            for o in open {
                match engine_client_id(&prefix, &o.client_order_id) {
                    Some(id) if tracker.get(id).is_some() => {
                        open_ids.push(id);
                        if let Ok(report) = o.to_report() {
                            if tracker.apply(id, &report, &mut |r| self.push(EventKind::Order(r)))
                                == Applied::Changed
                            {
                                updated += 1;
                            }
                        }
                    }
                    Some(_) => {
                        let cancelled = self.rest.send(
                            Method::Delete,
                            Endpoint::Order,
                            &[
                                ("symbol", symbol.clone()),
                                ("orderId", o.order_id.to_string()),
                            ],
                            Auth::Signed,
                        );
                        match cancelled {
                            Ok(_) => {
                                orphans += 1;
                                tracing::warn!(symbol, client_order_id = %o.client_order_id, order_id = o.order_id, "reconciliation: cancelled an open order of an earlier run");
                            }
                            Err(e) => {
                                tracing::error!(symbol, client_order_id = %o.client_order_id, error = %e, "reconciliation: cannot cancel an order of an earlier run")
                            }
                        }
                    }
                    None => {
                        foreign += 1;
                        tracing::warn!(symbol, client_order_id = %o.client_order_id, order_id = o.order_id, "reconciliation: open order not placed by tradeloop; left alone");
                    }
                }
            }
        }
        for t in tracker.working() {
            if open_ids.contains(&t.client_id) {
                continue;
            }
            let Some(symbol) = self.symbol_of(t.instrument) else {
                continue;
            };
            let params = [
                ("symbol", symbol.to_owned()),
                ("origClientOrderId", venue_client_id(&prefix, t.client_id)),
            ];
            match self
                .rest
                .call::<RestOrder>(Method::Get, Endpoint::Order, &params, Auth::Signed)
            {
                Ok(o) => {
                    if let Ok(report) = o.to_report() {
                        tracker.apply(t.client_id, &report, &mut |r| {
                            self.push(EventKind::Order(r))
                        });
                        updated += 1;
                    }
                }
                Err(e) if e.code() == Some(-2013) => {
                    tracker.vanished(t.client_id, &mut |r| self.push(EventKind::Order(r)));
                    updated += 1;
                }
                Err(e) => {
                    tracing::error!(client_id = t.client_id.0, error = %e, "reconciliation: order query failed")
                }
            }
        }
        let after = self.read_positions();
        let mut synced = 0u64;
        match (before, after) {
            (Some(a), Some(b)) if a == b => {
                for (instrument, qty, entry, price) in b {
                    self.push(EventKind::PositionSync(PositionSync {
                        instrument,
                        qty,
                        entry_price: entry,
                        price,
                    }));
                    synced += 1;
                }
            }
            (Some(_), Some(_)) => {
                self.counters
                    .position_syncs_deferred
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("reconciliation: the venue's positions moved while reconciling; position sync deferred to the next reconciliation");
                self.reconcile_requested.store(true, Ordering::SeqCst);
            }
            _ => tracing::error!(
                "reconciliation: cannot read positions/balances; engine positions left as they are"
            ),
        }
        drop(tracker);
        self.counters
            .orphans_cancelled
            .fetch_add(orphans, Ordering::Relaxed);
        self.counters
            .foreign_orders
            .store(foreign, Ordering::Relaxed);
        self.counters
            .reconciliations
            .fetch_add(1, Ordering::Relaxed);
        self.counters
            .positions_synced
            .fetch_add(synced, Ordering::Relaxed);
        tracing::info!(
            orders_updated = updated,
            orphans_cancelled = orphans,
            foreign_orders = foreign,
            positions_checked = synced,
            took_ms = started.elapsed().as_millis(),
            "reconciliation done (the venue wins)"
        );
        Ok(())
    }

    /// The venue's position per instrument: (instrument, signed qty, entry price or zero,
    /// current price).
    fn read_positions(&self) -> Option<Vec<(InstrumentIndex, Qty, Price, Price)>> {
        let mut out = Vec::new();
        match self.settings.rest.market {
            Market::Spot => {
                let balances = self
                    .rest
                    .balances()
                    .map_err(|e| tracing::error!(error = %e, "cannot read the account"))
                    .ok()?;
                for (index, symbol, base, _) in &self.symbols {
                    let shared = self.symbols.iter().filter(|s| &s.2 == base).count() > 1;
                    if base.is_empty() || shared {
                        tracing::warn!(symbol, base, "spot position not synced: base asset unknown or shared by several instruments");
                        continue;
                    }
                    let total = balances
                        .iter()
                        .find(|b| &b.0 == base)
                        .map_or(Qty::ZERO, |b| Qty(b.1 .0 + b.2 .0));
                    #[derive(Deserialize)]
                    struct Ticker {
                        price: String,
                    }
                    let last = self
                        .rest
                        .call::<Ticker>(
                            Method::Get,
                            Endpoint::TickerPrice,
                            &[("symbol", symbol.clone())],
                            Auth::None,
                        )
                        .map_err(
                            |e| tracing::error!(symbol, error = %e, "cannot read the last price"),
                        )
                        .ok()?
                        .price
                        .parse()
                        .ok()?;
                    out.push((*index, total, Price::ZERO, last));
                }
            }
            Market::UsdM => {
                let legs = self
                    .rest
                    .positions()
                    .map_err(|e| tracing::error!(error = %e, "cannot read positions"))
                    .ok()?;
                for (index, symbol, _, _) in &self.symbols {
                    // Hedge mode lists LONG and SHORT legs: their sum is the net position.
                    let (mut qty, mut entry, mut mark) = (Qty::ZERO, Price::ZERO, Price::ZERO);
                    for leg in legs.iter().filter(|l| &l.0 == symbol) {
                        qty.0 += leg.1 .0;
                        (entry, mark) = (leg.2, leg.3);
                    }
                    out.push((*index, qty, entry, mark));
                }
            }
        }
        Some(out)
    }

    // ---- user-stream thread ----

    fn user_stream(self: Arc<Self>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "user stream: cannot start its runtime");
                return;
            }
        };
        runtime.block_on(self.stream_loop());
    }

    fn stream_state(&self, state: FeedState) {
        if let Some(feed) = self.settings.feed_id {
            self.push(EventKind::FeedStatus { feed, state });
        }
    }

    async fn stream_loop(self: Arc<Self>) {
        let mut delay = self.settings.backoff_base;
        let mut first = true;
        self.stream_state(FeedState::Connecting);
        while !self.stop.load(Ordering::SeqCst) {
            let me = Arc::clone(&self);
            let key = tokio::task::spawn_blocking(move || me.create_listen_key()).await;
            let key = match key {
                Ok(Ok(k)) => k,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, ?delay, "user stream: cannot create a listen key; retrying");
                    self.sleep(delay).await;
                    delay = (delay * 2).min(self.settings.backoff_max);
                    continue;
                }
                Err(_) => return,
            };
            let url = format!("{}/ws/{key}", self.settings.ws_url.trim_end_matches('/'));
            let ws = match tokio::time::timeout(
                Duration::from_secs(10),
                tokio_tungstenite::connect_async(url.as_str()),
            )
            .await
            {
                Ok(Ok((ws, _))) => ws,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, ?delay, "user stream: cannot connect; retrying");
                    self.sleep(delay).await;
                    delay = (delay * 2).min(self.settings.backoff_max);
                    continue;
                }
                Err(_) => {
                    tracing::error!(?delay, "user stream: connect timed out; retrying");
                    self.sleep(delay).await;
                    delay = (delay * 2).min(self.settings.backoff_max);
                    continue;
                }
            };
            self.counters
                .stream_connects
                .fetch_add(1, Ordering::Relaxed);
            self.stream_state(FeedState::Live);
            delay = self.settings.backoff_base;
            // The stream is up: whatever happened while it was down is read over REST now.
            if !first {
                tracing::warn!("user stream reconnected; reconciling");
            }
            first = false;
            self.reconcile_requested.store(true, Ordering::SeqCst);
            if let Some(t) = self.worker.lock().as_ref() {
                t.unpark();
            }
            self.stream(ws, &key).await;
            if !self.stop.load(Ordering::SeqCst) {
                self.stream_state(FeedState::Reconnecting);
            }
        }
    }

    async fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20).min(until - Instant::now())).await;
        }
    }

    fn create_listen_key(&self) -> Result<String, RestError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Key {
            listen_key: String,
        }
        let k: Key = self
            .rest
            .call(Method::Post, Endpoint::ListenKey, &[], Auth::ApiKey)?;
        self.counters.listen_keys.fetch_add(1, Ordering::Relaxed);
        Ok(k.listen_key)
    }

    async fn stream(
        self: &Arc<Self>,
        mut ws: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        key: &str,
    ) {
        let mut keepalive = tokio::time::interval(self.settings.keepalive);
        keepalive.tick().await;
        let mut check = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if !self.on_message(text.as_str()) {
                            tracing::warn!("user stream: listen key expired; creating a new one");
                            return;
                        }
                    }
                    Some(Ok(Message::Ping(p))) => {
                        let _ = ws.send(Message::Pong(p)).await;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        tracing::warn!("user stream disconnected; reconnecting");
                        return;
                    }
                    Some(Ok(_)) => {}
                },
                _ = keepalive.tick() => {
                    let me = Arc::clone(self);
                    let key = key.to_owned();
                    let kept = tokio::task::spawn_blocking(move || {
                        me.rest.send(Method::Put, Endpoint::ListenKey, &[("listenKey", key)], Auth::ApiKey)
                    })
                    .await;
                    match kept {
                        Ok(Ok(_)) => tracing::debug!("listen key kept alive"),
                        Ok(Err(e)) if e.code() == Some(-1125) => {
                            tracing::warn!("listen key no longer exists; creating a new one");
                            return;
                        }
                        Ok(Err(e)) => tracing::error!(error = %e, "listen key keep-alive failed; retrying at the next period"),
                        Err(_) => return,
                    }
                }
                _ = check.tick() => {
                    if self.stop.load(Ordering::Relaxed) {
                        let _ = ws.close(None).await;
                        return;
                    }
                }
            }
        }
    }

    /// Handles one user-stream message; `false` if the listen key expired.
    fn on_message(&self, text: &str) -> bool {
        match parse_user_event(text) {
            Ok(UserEvent::Order(report)) => {
                let mut tracker = self.tracker.lock();
                match self.apply(&mut tracker, &report) {
                    Applied::Changed => {}
                    Applied::Stale => {
                        self.counters
                            .stream_stale_reports
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Applied::Unknown => {
                        self.counters
                            .stream_unknown_orders
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                true
            }
            Ok(UserEvent::ListenKeyExpired) => false,
            Ok(UserEvent::Account | UserEvent::Other) => true,
            Err(e) => {
                self.counters
                    .stream_bad_messages
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "user stream: message refused");
                true
            }
        }
    }
}

/// The engine's reason for a request that failed.
fn reason_for_error(e: &RestError) -> RejectReason {
    match e {
        RestError::Api { code, msg, .. } => reason_for_code(*code, msg),
        RestError::RateLimited { .. }
        | RestError::BackingOff { .. }
        | RestError::LocalLimit { .. } => RejectReason::RateLimited,
        _ => RejectReason::GatewayUnavailable,
    }
}

/// The `POST order` parameters of an engine order.
#[must_use]
pub fn order_params(
    market: Market,
    symbol: &str,
    order: &Order,
    client_order_id: &str,
) -> Vec<(&'static str, String)> {
    let r = &order.request;
    let mut p = vec![
        ("symbol", symbol.to_owned()),
        (
            "side",
            if r.side == Side::Buy { "BUY" } else { "SELL" }.to_owned(),
        ),
    ];
    let tif = match r.tif {
        TimeInForce::Gtc => "GTC",
        TimeInForce::Ioc => "IOC",
        TimeInForce::Fok => "FOK",
    };
    let (kind, priced, tif) = match (market, r.kind, r.post_only) {
        (_, OrderKind::Market, _) => ("MARKET", false, None),
        (Market::Spot, OrderKind::Limit, true) => ("LIMIT_MAKER", true, None),
        (Market::UsdM, OrderKind::Limit, true) => ("LIMIT", true, Some("GTX")),
        (_, OrderKind::Limit, false) => ("LIMIT", true, Some(tif)),
        (Market::Spot, OrderKind::StopMarket, _) => ("STOP_LOSS", false, None),
        (Market::Spot, OrderKind::StopLimit, _) => ("STOP_LOSS_LIMIT", true, Some(tif)),
        (Market::UsdM, OrderKind::StopMarket, _) => ("STOP_MARKET", false, None),
        (Market::UsdM, OrderKind::StopLimit, _) => ("STOP", true, Some(tif)),
    };
    p.push(("type", kind.to_owned()));
    if let Some(tif) = tif {
        p.push(("timeInForce", tif.to_owned()));
    }
    p.push(("quantity", r.qty.to_string()));
    if priced {
        p.push(("price", r.price.to_string()));
    }
    if r.kind.is_stop() {
        p.push(("stopPrice", r.trigger.to_string()));
    }
    if market == Market::UsdM && r.reduce_only {
        p.push(("reduceOnly", "true".to_owned()));
    }
    p.push(("newClientOrderId", client_order_id.to_owned()));
    p.push(("newOrderRespType", "ACK".to_owned()));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeloop_engine::order::OrderRequest;

    fn order(request: OrderRequest) -> Order {
        Order::new(ClientOrderId(42), request, 0)
    }

    #[test]
    fn order_params_per_type_and_market() {
        let i = InstrumentIndex(0);
        let p: Price = "100.5".parse().unwrap();
        let q: Qty = "0.25".parse().unwrap();
        let names = |v: Vec<(&'static str, String)>| -> String {
            v.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        };
        let limit = order(OrderRequest::limit(i, Side::Buy, p, q));
        assert_eq!(
            names(order_params(Market::Spot, "BTCUSDT", &limit, "tl-42")),
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.25&price=100.5&newClientOrderId=tl-42&newOrderRespType=ACK"
        );
        let market = order(OrderRequest::market(i, Side::Sell, p, q));
        assert_eq!(
            names(order_params(Market::Spot, "BTCUSDT", &market, "tl-42")),
            "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.25&newClientOrderId=tl-42&newOrderRespType=ACK"
        );
        let mut maker = OrderRequest::limit(i, Side::Buy, p, q);
        maker.post_only = true;
        let s = names(order_params(Market::Spot, "X", &order(maker), "c"));
        assert!(
            s.contains("type=LIMIT_MAKER") && !s.contains("timeInForce"),
            "{s}"
        );
        let s = names(order_params(Market::UsdM, "X", &order(maker), "c"));
        assert!(s.contains("type=LIMIT&timeInForce=GTX"), "{s}");
        let mut reduce = OrderRequest::market(i, Side::Sell, p, q);
        reduce.reduce_only = true;
        assert!(
            names(order_params(Market::UsdM, "X", &order(reduce), "c")).contains("reduceOnly=true")
        );
        assert!(!names(order_params(Market::Spot, "X", &order(reduce), "c")).contains("reduceOnly"));
        let stop = order(OrderRequest::stop_market(i, Side::Sell, p, q));
        let s = names(order_params(Market::Spot, "X", &stop, "c"));
        assert!(
            s.contains("type=STOP_LOSS&")
                && s.contains("stopPrice=100.5")
                && !s.contains("price=100.5&"),
            "{s}"
        );
        let s = names(order_params(Market::UsdM, "X", &stop, "c"));
        assert!(s.contains("type=STOP_MARKET&"), "{s}");
    }
}
