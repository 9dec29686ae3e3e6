//! The reconnecting WebSocket feed runner: one I/O thread per feed with its own tokio runtime.
//! Connects, subscribes, answers pings, fetches depth snapshots over REST, watches for silence,
//! reconnects with exponential backoff and jitter, resubscribes and resyncs, and reports every
//! state change as a `FeedStatus` event (LOW lane; a feed down past its limit goes to CRITICAL).
//! Parsed events are pushed into the NORMAL lane: the push is the last thing this thread does
//! for a frame. Off the engine's hot path: this thread may allocate and log.

pub mod config;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tradeloop_engine::clock::Clock;
use tradeloop_engine::event::{Event, EventKind, FeedState};
use tradeloop_engine::instrument::InstrumentIndex;
use tradeloop_engine::lane::{Lanes, NormalPush};
use tradeloop_engine::stops::StopGuard;

use crate::feed::{FeedStats, FrameOutcome, MarketSink, VenueFeed};
use crate::sim::market::Rng;

/// Settings of one feed (from `[feed]` and the venue entry in config.toml).
#[derive(Clone, Debug)]
pub struct FeedSettings {
    /// Feed number carried by its `FeedStatus` events.
    pub feed_id: u16,
    /// Name for logs.
    pub name: String,
    /// The venue's WebSocket URL (the venue's feed decides the endpoint from it).
    pub ws_url: String,
    /// REST base URL for depth snapshots (venues that resync over REST).
    pub rest_url: String,
    /// No data frame for this long (pings do not count): the connection is dead.
    pub idle_timeout: Duration,
    /// First reconnect delay.
    pub backoff_base: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Give up after this many failed attempts in a row (0 = never).
    pub max_attempts: u32,
    /// Down for longer than this: a CRITICAL `FeedStatus::Down`.
    pub down_critical_after: Duration,
    /// The engine's stop levels: trades crossing them go to CRITICAL at once (ingress stop
    /// guard). `None` turns the guard off.
    pub stop_guard: Option<Arc<StopGuard>>,
}

/// Live counters and state of a feed, readable from any thread.
#[derive(Debug, Default)]
pub struct FeedShared {
    state: AtomicU8,
    /// Connections established.
    pub connects: AtomicU64,
    /// Reconnect attempts.
    pub reconnects: AtomicU64,
    /// Frames received.
    pub frames: AtomicU64,
    /// Frames refused by the parser.
    pub errors: AtomicU64,
    /// Sequence gaps detected.
    pub gaps: AtomicU64,
    /// Snapshots applied (from REST or in-stream).
    pub snapshots: AtomicU64,
    /// Times the idle watchdog fired.
    pub watchdog_fired: AtomicU64,
    /// Snapshot fetches that failed.
    pub snapshot_failures: AtomicU64,
    /// Resubscriptions sent to recover a book (venues with in-stream snapshots).
    pub resubscribes: AtomicU64,
}

impl FeedShared {
    /// Current state.
    #[must_use]
    pub fn state(&self) -> FeedState {
        match self.state.load(Ordering::Acquire) {
            0 => FeedState::Connecting,
            1 => FeedState::Live,
            2 => FeedState::Stale,
            3 => FeedState::Reconnecting,
            _ => FeedState::Down,
        }
    }
}

/// A running feed.
#[derive(Debug)]
pub struct FeedHandle {
    /// Live state and counters.
    pub shared: Arc<FeedShared>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<FeedStats>>,
}

impl FeedHandle {
    /// Stops the feed and returns its final counters.
    pub fn stop(mut self) -> FeedStats {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for FeedHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Pushes market data into the NORMAL lane; a lost book is flagged to the engine. With a stop
/// guard it is the **ingress stop guard**: a trade, or a quote on the closing side, at or through
/// a published stop level also goes to CRITICAL as `StopTriggered` at once, ahead of any
/// NORMAL backlog.
#[derive(Debug)]
pub struct LaneSink {
    lanes: Arc<Lanes>,
    guard: Option<(Arc<StopGuard>, Box<[u32]>)>,
    /// Events dropped from NORMAL to make room (oldest first).
    pub dropped: u64,
    /// Stop triggers raised on CRITICAL.
    pub stops_raised: u64,
}

impl LaneSink {
    /// A sink into `lanes`.
    #[must_use]
    pub fn new(lanes: Arc<Lanes>) -> Self {
        Self {
            lanes,
            guard: None,
            dropped: 0,
            stops_raised: 0,
        }
    }

    /// Checks every trade against the engine's published stop levels (`instruments` is the
    /// registry's size; allocates the per-instrument memory of raised generations here).
    #[must_use]
    pub fn with_stop_guard(mut self, guard: Arc<StopGuard>, instruments: usize) -> Self {
        self.guard = Some((guard, vec![0; instruments].into_boxed_slice()));
        self
    }
}

impl MarketSink for LaneSink {
    #[inline]
    fn push(&mut self, event: Event) {
        if let Some((guard, raised)) = &mut self.guard {
            self.lanes.warm_critical();
            let stop = match &event.kind {
                EventKind::Trade(t) => guard.check(t.instrument, t.price, raised),
                EventKind::Quote(q) => {
                    guard.check_quote(q.instrument, q.bid_price, q.ask_price, raised)
                }
                _ => None,
            };
            if let Some(stop) = stop {
                let critical =
                    Event::new(event.recv_ns, event.exch_ns, EventKind::StopTriggered(stop));
                // CRITICAL is never dropped: a full lane makes this wait, not lose the stop.
                if self.lanes.push_critical(critical).is_ok() {
                    self.stops_raised += 1;
                }
            }
        }
        if let NormalPush::DroppedOldest { dropped, .. } = self.lanes.push_normal(event) {
            // A dropped delta has already flagged its book stale and requested a resync.
            self.dropped += u64::from(dropped);
        }
    }
    fn book_lost(&mut self, instrument: InstrumentIndex) {
        self.lanes.mark_book_stale(instrument);
    }
}

/// Starts a venue's feed (Binance, Bybit, or the simulated venue speaking either) on its own
/// thread.
///
/// # Errors
/// If the thread or its runtime cannot start.
pub fn spawn_feed<F: VenueFeed, C: Clock + Clone + 'static>(
    settings: FeedSettings,
    feed: F,
    lanes: Arc<Lanes>,
    clock: C,
) -> std::io::Result<FeedHandle> {
    let shared = Arc::new(FeedShared::default());
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = {
        let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
        std::thread::Builder::new()
            .name(format!("feed-{}", settings.name))
            .spawn(move || {
                let sink = match settings.stop_guard.clone() {
                    Some(g) => {
                        let n = g.instruments();
                        LaneSink::new(Arc::clone(&lanes)).with_stop_guard(g, n)
                    }
                    None => LaneSink::new(Arc::clone(&lanes)),
                };
                let mut runner = Runner {
                    settings,
                    feed,
                    sink,
                    lanes,
                    clock,
                    shared,
                    stop,
                    state: None,
                };
                runtime.block_on(runner.run());
                *runner.feed.stats()
            })?
    };
    Ok(FeedHandle {
        shared,
        stop,
        thread: Some(thread),
    })
}

struct Runner<F, C> {
    settings: FeedSettings,
    feed: F,
    sink: LaneSink,
    lanes: Arc<Lanes>,
    clock: C,
    shared: Arc<FeedShared>,
    stop: Arc<AtomicBool>,
    state: Option<FeedState>,
}

/// Why a connection ended.
enum Ended {
    Stopped,
    Closed(String),
    Idle,
}

impl<F: VenueFeed, C: Clock> Runner<F, C> {
    fn set_state(&mut self, state: FeedState) {
        if self.state == Some(state) {
            return;
        }
        self.state = Some(state);
        self.shared.state.store(state as u8, Ordering::Release);
        tracing::info!(feed = %self.settings.name, ?state, "feed state");
        let now = self.clock.now_ns();
        let ev = Event::new(
            now,
            now,
            EventKind::FeedStatus {
                feed: self.settings.feed_id,
                state,
            },
        );
        // Status is telemetry (LOW, drop newest) except a feed that is down, which must arrive.
        let _ = if state == FeedState::Down {
            self.lanes.push_critical(ev).map_err(|_| ())
        } else {
            self.lanes.push_low(ev).map_err(|_| ())
        };
    }

    async fn run(&mut self) {
        let mut failures: u32 = 0;
        let mut down_since: Option<Instant> = None;
        let mut critical_sent = false;
        let mut rng = Rng::new(self.clock.now_ns() | 1);
        while !self.stop.load(Ordering::Relaxed) {
            self.set_state(if failures == 0 {
                FeedState::Connecting
            } else {
                FeedState::Reconnecting
            });
            match self.connect_and_stream().await {
                Ok(Ended::Stopped) => break,
                Ok(ended) => {
                    let why = match ended {
                        Ended::Idle => "idle watchdog: no message within the limit".to_owned(),
                        Ended::Closed(r) => r,
                        Ended::Stopped => unreachable!("handled above"),
                    };
                    tracing::warn!(feed = %self.settings.name, %why, "feed disconnected");
                    failures = 1;
                }
                Err(e) => {
                    tracing::warn!(feed = %self.settings.name, error = %e, "feed connection failed");
                    failures = failures.saturating_add(1);
                }
            }
            // Whatever happened, continuity is lost: every book resyncs after reconnecting.
            self.feed.reset_books(&mut self.sink);
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let since = *down_since.get_or_insert_with(Instant::now);
            if self.settings.max_attempts > 0 && failures > self.settings.max_attempts {
                self.set_state(FeedState::Down);
                tracing::error!(feed = %self.settings.name, failures, "feed gave up after max_attempts");
                return;
            }
            if !critical_sent && since.elapsed() >= self.settings.down_critical_after {
                self.set_state(FeedState::Down);
                critical_sent = true;
            }
            self.set_state(FeedState::Reconnecting);
            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
            let delay = backoff(
                self.settings.backoff_base,
                self.settings.backoff_max,
                failures,
                &mut rng,
            );
            let until = Instant::now() + delay;
            while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(10).min(delay)).await;
            }
            if self.state == Some(FeedState::Live) {
                down_since = None;
                critical_sent = false;
            }
        }
    }

    async fn connect_and_stream(&mut self) -> Result<Ended, String> {
        let url = self.feed.ws_endpoint(&self.settings.ws_url);
        let config = WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(16 << 20));
        let connect =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
        let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| format!("connect to {url} timed out"))?
            .map_err(|e| format!("connect to {url}: {e}"))?;
        let mut req_id = self.shared.connects.fetch_add(1, Ordering::Relaxed) * 1_000_000 + 1;
        for request in self.feed.subscribe_requests(req_id) {
            ws.send(Message::Text(request.into()))
                .await
                .map_err(|e| format!("subscribe: {e}"))?;
        }
        self.set_state(FeedState::Stale);
        let mut last_message = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        // The venue's application-level ping, if it needs one (first one after one period).
        let ping_every = self
            .feed
            .app_ping(0)
            .map_or(Duration::from_secs(3600), |(every, _)| every);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let mut error_samples = 0u64;
        loop {
            tokio::select! {
                msg = ws.next() => {
                    let Some(msg) = msg else { return Ok(Ended::Closed("stream ended".into())) };
                    let msg = msg.map_err(|e| format!("read: {e}"))?;
                    match msg {
                        Message::Text(text) => {
                            let recv_ns = self.clock.now_ns();
                            self.shared.frames.fetch_add(1, Ordering::Relaxed);
                            let control_before = self.feed.stats().control;
                            let outcome = self.feed.on_frame(recv_ns, text.as_str(), &mut self.sink);
                            // Only data counts as liveness: a venue that still answers pings
                            // (WebSocket or application pongs) but sends no market data on busy
                            // streams is stalled.
                            if self.feed.stats().control == control_before {
                                last_message = Instant::now();
                            }
                            match outcome {
                                FrameOutcome::Handled => {}
                                FrameOutcome::NeedSnapshot(i) => self.resync(i).await,
                                FrameOutcome::Resubscribe(i) => {
                                    req_id += 1;
                                    self.resubscribe(&mut ws, i, req_id).await?;
                                }
                                FrameOutcome::Refused(e) => {
                                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                                    error_samples += 1;
                                    if error_samples <= 5 || error_samples.is_multiple_of(1000) {
                                        let sample: String = text.as_str().chars().take(160).collect();
                                        tracing::warn!(feed = %self.settings.name, error = %e, count = error_samples, %sample, "refused frame");
                                    }
                                }
                            }
                            self.publish_counters();
                            self.update_liveness();
                        }
                        Message::Binary(_) => {
                            self.shared.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Message::Close(frame) => return Ok(Ended::Closed(format!("closed by venue: {frame:?}"))),
                        // Pings are answered by the protocol layer on the next read.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                _ = tick.tick() => {
                    if self.stop.load(Ordering::Relaxed) {
                        let _ = ws.close(None).await;
                        return Ok(Ended::Stopped);
                    }
                    if last_message.elapsed() >= self.settings.idle_timeout {
                        self.shared.watchdog_fired.fetch_add(1, Ordering::Relaxed);
                        self.set_state(FeedState::Stale);
                        return Ok(Ended::Idle);
                    }
                    // A delta lost in the NORMAL lane: resync that book.
                    // Iterates the symbol map: nothing allocates on a tick without a lost delta.
                    let lost: Vec<InstrumentIndex> = self.feed.symbols().iter().map(|(_, i)| i).filter(|i| self.lanes.take_resync_request(*i)).collect();
                    for i in lost {
                        self.feed.reset_book(i, &mut self.sink);
                        if self.feed.snapshot_url(&self.settings.rest_url, i).is_some() {
                            self.resync(i).await;
                        } else {
                            req_id += 1;
                            self.resubscribe(&mut ws, i, req_id).await?;
                        }
                    }
                }
                _ = ping.tick() => {
                    req_id += 1;
                    if let Some((_, request)) = self.feed.app_ping(req_id) {
                        ws.send(Message::Text(request.into()))
                            .await
                            .map_err(|e| format!("ping: {e}"))?;
                    }
                }
            }
        }
    }

    /// Mirrors the feed's gap and snapshot counters (REST and in-stream snapshots alike).
    fn publish_counters(&self) {
        let stats = self.feed.stats();
        self.shared.gaps.store(stats.gaps, Ordering::Relaxed);
        self.shared
            .snapshots
            .store(stats.snapshots, Ordering::Relaxed);
    }

    fn update_liveness(&mut self) {
        // Live unless a book that has data is waiting for its snapshot.
        let state = if self.feed.resyncing() {
            FeedState::Stale
        } else {
            FeedState::Live
        };
        self.set_state(state);
    }

    /// Asks the venue for `instrument`'s book again (venues whose snapshots come in-stream).
    async fn resubscribe<W>(
        &mut self,
        ws: &mut W,
        instrument: InstrumentIndex,
        req_id: u64,
    ) -> Result<(), String>
    where
        W: futures_util::Sink<Message> + Unpin,
        W::Error: std::fmt::Display,
    {
        let symbol = self.feed.symbol_of(instrument).unwrap_or("?").to_owned();
        tracing::info!(feed = %self.settings.name, %symbol, "book lost continuity: resubscribing for a fresh snapshot");
        self.shared.resubscribes.fetch_add(1, Ordering::Relaxed);
        for request in self.feed.resubscribe_requests(instrument, req_id) {
            ws.send(Message::Text(request.into()))
                .await
                .map_err(|e| format!("resubscribe: {e}"))?;
        }
        Ok(())
    }

    /// Fetches a depth snapshot and applies it (retrying a few times on failure).
    async fn resync(&mut self, instrument: InstrumentIndex) {
        let (Some(url), Some(symbol)) = (
            self.feed.snapshot_url(&self.settings.rest_url, instrument),
            self.feed.symbol_of(instrument).map(str::to_owned),
        ) else {
            return;
        };
        for attempt in 0..3u32 {
            let u = url.clone();
            let fetched = tokio::task::spawn_blocking(move || -> Result<String, String> {
                let agent = ureq::AgentBuilder::new()
                    .timeout_connect(Duration::from_secs(5))
                    .timeout(Duration::from_secs(10))
                    .build();
                agent
                    .get(&u)
                    .call()
                    .map_err(|e| e.to_string())?
                    .into_string()
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            match fetched {
                Ok(body) => {
                    let recv_ns = self.clock.now_ns();
                    match self
                        .feed
                        .on_snapshot(instrument, recv_ns, &body, &mut self.sink)
                    {
                        FrameOutcome::Handled => {
                            self.publish_counters();
                            tracing::info!(feed = %self.settings.name, %symbol, "book synced from snapshot");
                            return;
                        }
                        FrameOutcome::NeedSnapshot(_) | FrameOutcome::Resubscribe(_) => {
                            tracing::info!(feed = %self.settings.name, %symbol, "snapshot older than buffered diffs; fetching again");
                        }
                        FrameOutcome::Refused(e) => {
                            self.shared
                                .snapshot_failures
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(feed = %self.settings.name, %symbol, error = %e, "bad snapshot");
                        }
                    }
                }
                Err(e) => {
                    self.shared
                        .snapshot_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(feed = %self.settings.name, %symbol, attempt, error = %e, "snapshot fetch failed");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }
}

/// Exponential backoff with jitter: `base × 2^(failures−1)`, capped at `max`, scaled by a random
/// factor in [0.5, 1.0] so that many clients do not reconnect in lockstep.
#[must_use]
pub fn backoff(base: Duration, max: Duration, failures: u32, rng: &mut Rng) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let jitter_permille = 500 + rng.below(501);
    capped * u32::try_from(jitter_permille).unwrap_or(1000) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let mut rng = Rng::new(3);
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for (failures, lo, hi) in [
            (1, 50, 100),
            (2, 100, 200),
            (3, 200, 400),
            (6, 1000, 2000),
            (30, 1000, 2000),
        ] {
            for _ in 0..50 {
                let d = backoff(base, max, failures, &mut rng).as_millis();
                assert!((lo..=hi).contains(&d), "failures {failures}: {d} ms");
            }
        }
    }
}
