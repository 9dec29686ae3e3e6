//! The simulated venue's loopback servers: a WebSocket server speaking Binance's combined-stream
//! protocol (`/stream?streams=…` and `SUBSCRIBE` requests) or Bybit v5's public protocol
//! (`op: subscribe | unsubscribe | ping`, with book snapshots sent in-stream on subscription),
//! and an HTTP endpoint for Binance depth snapshots (`/api/v3/depth`, `/fapi/v1/depth`). Market
//! data comes from the synthetic market.
//! Faults can be injected for tests: drop every connection, stall, skip update ids, send
//! garbage. Off the engine's hot path: its own thread and tokio runtime; the market state is
//! shared between the generator and the REST handler under a `parking_lot` mutex.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tradeloop_engine::fixed::{Price, Qty};

use super::market::{stamp_sequence, Rng, SimSymbol, WireProtocol};

/// One simulated symbol's settings.
#[derive(Clone, Debug)]
pub struct SimSymbolConfig {
    /// Symbol, e.g. `BTCUSDT`.
    pub symbol: String,
    /// Starting mid price.
    pub start_price: Price,
    /// Tick size.
    pub tick_size: Price,
    /// Lot size.
    pub lot_size: Qty,
}

/// Replay recorded files instead of the synthetic market.
#[derive(Clone, Debug)]
pub struct ReplaySource {
    /// Files of `<recv_ns> <frame>` lines (gzip or plain), merged in time order.
    pub files: Vec<std::path::PathBuf>,
    /// Playback speed: 1.0 = recorded pace, 10.0 = ten times faster, 0 = as fast as possible.
    pub speed: f64,
}

/// Settings of the simulated venue.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// WebSocket listen address (port 0 picks a free port).
    pub ws_addr: SocketAddr,
    /// HTTP listen address (port 0 picks a free port).
    pub rest_addr: SocketAddr,
    /// Random seed.
    pub seed: u64,
    /// Market steps per second across all symbols (each step is a trade or a book change).
    pub steps_per_second: u32,
    /// Interval of depth diffs (Binance: 100 ms).
    pub depth_interval: Duration,
    /// Levels per side the synthetic books keep.
    pub depth_levels: usize,
    /// Server ping interval.
    pub ping_interval: Duration,
    /// The wire protocol served (Binance, or Bybit with its book depth).
    pub protocol: WireProtocol,
    /// Symbols (synthetic market).
    pub symbols: Vec<SimSymbolConfig>,
    /// Replay these files instead of generating a market (`symbols` then only name what is
    /// served; the data is whatever the files hold).
    pub replay: Option<ReplaySource>,
}

#[derive(Debug)]
struct Shared {
    protocol: WireProtocol,
    market: Mutex<(Rng, Vec<SimSymbol>)>,
    tx: broadcast::Sender<Arc<str>>,
    stop: AtomicBool,
    drop_generation: AtomicU64,
    stall_until: Mutex<Option<Instant>>,
    garbage: AtomicU32,
    gap: AtomicBool,
    /// Bumped by each injected gap: Coinbase connections skip sequence numbers.
    gap_generation: AtomicU64,
    connections: AtomicU64,
    frames_sent: AtomicU64,
    snapshots_served: AtomicU64,
    /// Replay mode: the latest REST snapshot line the replay has reached.
    replay_snapshot: Mutex<Option<String>>,
    replay_done: AtomicBool,
}

/// A running simulated venue. Dropping it stops it.
#[derive(Debug)]
pub struct SimVenue {
    shared: Arc<Shared>,
    ws_addr: SocketAddr,
    rest_addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimVenue {
    /// Binds both listeners (so a port conflict is reported here) and starts serving.
    ///
    /// # Errors
    /// If a listener cannot be bound or the runtime cannot start.
    pub fn start(config: SimConfig) -> std::io::Result<Self> {
        let ws = std::net::TcpListener::bind(config.ws_addr)?;
        let rest = std::net::TcpListener::bind(config.rest_addr)?;
        ws.set_nonblocking(true)?;
        rest.set_nonblocking(true)?;
        let (ws_addr, rest_addr) = (ws.local_addr()?, rest.local_addr()?);
        let mut rng = Rng::new(config.seed);
        let symbols = config
            .symbols
            .iter()
            .map(|s| {
                let mut sym = SimSymbol::new(
                    &s.symbol,
                    s.start_price,
                    s.tick_size,
                    s.lot_size,
                    config.depth_levels,
                    &mut rng,
                );
                sym.speak(config.protocol);
                sym
            })
            .collect();
        // In replay mode the files are the market: no synthetic symbols.
        let symbols: Vec<SimSymbol> = if config.replay.is_some() {
            Vec::new()
        } else {
            symbols
        };
        let (tx, _) = broadcast::channel(65_536);
        let shared = Arc::new(Shared {
            protocol: config.protocol,
            market: Mutex::new((rng, symbols)),
            tx,
            stop: AtomicBool::new(false),
            drop_generation: AtomicU64::new(0),
            stall_until: Mutex::new(None),
            garbage: AtomicU32::new(0),
            gap: AtomicBool::new(false),
            gap_generation: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            snapshots_served: AtomicU64::new(0),
            replay_snapshot: Mutex::new(None),
            replay_done: AtomicBool::new(false),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("sim-venue".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        let ws = TcpListener::from_std(ws)
                            .expect("listener registered with the runtime");
                        let rest = TcpListener::from_std(rest)
                            .expect("listener registered with the runtime");
                        match config.replay.clone() {
                            Some(replay) => {
                                let shared = Arc::clone(&shared);
                                tokio::task::spawn_blocking(move || replay_files(&shared, &replay));
                            }
                            None => {
                                tokio::spawn(generate(Arc::clone(&shared), config.clone()));
                            }
                        }
                        tokio::spawn(serve_rest(Arc::clone(&shared), rest));
                        serve_ws(shared, ws, config.ping_interval).await;
                    });
                })?
        };
        Ok(Self {
            shared,
            ws_addr,
            rest_addr,
            thread: Some(thread),
        })
    }

    /// `ws://` base URL of the market-data server.
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }

    /// `http://` base URL of the REST server.
    #[must_use]
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.rest_addr)
    }

    /// Closes every open connection (clients must reconnect).
    pub fn drop_connections(&self) {
        self.shared.drop_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Sends nothing for `duration` (the market keeps moving; clients see silence, then a gap).
    pub fn stall(&self, duration: Duration) {
        *self.shared.stall_until.lock() = Some(Instant::now() + duration);
    }

    /// Skips update ids on every symbol: the next depth diff does not follow the last one.
    pub fn inject_gap(&self) {
        self.shared.gap.store(true, Ordering::SeqCst);
        self.shared.gap_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Sends `n` malformed frames.
    pub fn inject_garbage(&self, n: u32) {
        self.shared.garbage.fetch_add(n, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Depth snapshots served so far.
    #[must_use]
    pub fn snapshots_served(&self) -> u64 {
        self.shared.snapshots_served.load(Ordering::SeqCst)
    }

    /// Frames written to clients so far.
    #[must_use]
    pub fn frames_sent(&self) -> u64 {
        self.shared.frames_sent.load(Ordering::Relaxed)
    }

    /// `true` once a replay has sent its last frame.
    #[must_use]
    pub fn replay_done(&self) -> bool {
        self.shared.replay_done.load(Ordering::SeqCst)
    }

    /// Stops serving and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.drop_generation.fetch_add(1, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SimVenue {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

async fn generate(shared: Arc<Shared>, config: SimConfig) {
    let tick = Duration::from_millis(1);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut carry = 0u64;
    let mut last_depth = Instant::now();
    let mut frames = Vec::with_capacity(64);
    while !shared.stop.load(Ordering::Relaxed) {
        interval.tick().await;
        // Steps this millisecond, carrying the fraction.
        carry += u64::from(config.steps_per_second);
        let steps = carry / 1000;
        carry %= 1000;
        let now_ms = epoch_ms();
        let stalled = shared
            .stall_until
            .lock()
            .is_some_and(|t| Instant::now() < t);
        let garbage = shared.garbage.swap(0, Ordering::SeqCst);
        for n in 0..garbage {
            let g: Arc<str> = match (n % 2, config.protocol) {
                (0, _) => Arc::from(format!("garbage frame {n} \u{1}")),
                (_, WireProtocol::Binance) => Arc::from(
                    r#"{"stream":"btcusdt@trade","data":{"e":"trade","p":"not-a-number"}}"#,
                ),
                (_, WireProtocol::Bybit { .. }) => Arc::from(
                    r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"p":"not-a-number"}]}"#,
                ),
                (_, WireProtocol::Kraken { .. }) => Arc::from(
                    r#"{"channel":"trade","type":"update","data":[{"symbol":"BTCUSDT","price":"x"}]}"#,
                ),
                (_, WireProtocol::Okx) => Arc::from(
                    r#"{"arg":{"channel":"trades","instId":"BTCUSDT"},"data":[{"px":"x"}]}"#,
                ),
                (_, WireProtocol::Coinbase) => Arc::from(
                    r#"{"channel":"market_trades","events":[{"type":"update","trades":[{"product_id":"BTCUSDT","price":"x"}]}]}"#,
                ),
            };
            let _ = shared.tx.send(g);
        }
        // Frames are broadcast under the market lock, so that a subscription handled under
        // it (Kraken's snapshots) sees every frame generated before it already queued.
        let mut guard = shared.market.lock();
        let (rng, symbols) = &mut *guard;
        if shared.gap.swap(false, Ordering::SeqCst) {
            symbols.iter_mut().for_each(SimSymbol::inject_gap);
        }
        for _ in 0..steps {
            if symbols.is_empty() {
                break;
            }
            let i = rng.below(symbols.len() as u64) as usize;
            symbols[i].step(rng, now_ms, &mut frames);
        }
        if last_depth.elapsed() >= config.depth_interval {
            last_depth = Instant::now();
            frames.extend(symbols.iter_mut().filter_map(|s| s.depth_diff(now_ms)));
        }
        for f in frames.drain(..) {
            if !stalled {
                let _ = shared.tx.send(Arc::from(f));
            }
        }
        drop(guard);
    }
}

/// Plays recorded frames to connected clients at the recorded pace times `speed`, starting
/// when the first client has connected. Snapshot lines are sent in-stream and kept for the
/// REST endpoint.
fn replay_files(shared: &Shared, replay: &ReplaySource) {
    while shared.connections.load(Ordering::SeqCst) == 0 {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let the client's SUBSCRIBE arrive before the first frame.
    std::thread::sleep(Duration::from_millis(100));
    let mut reader = match crate::recorder::FrameReader::open(&replay.files) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "sim replay cannot open its files");
            shared.replay_done.store(true, Ordering::SeqCst);
            return;
        }
    };
    let started = Instant::now();
    let mut first_ns = None;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let (ns, frame) = match reader.next_frame() {
            Ok(Some((ns, f))) => (ns, f),
            Ok(None) => break,
            Err(e) => {
                tracing::error!(error = %e, "sim replay read error");
                break;
            }
        };
        let first = *first_ns.get_or_insert(ns);
        if replay.speed > 0.0 {
            let due = Duration::from_secs_f64(ns.saturating_sub(first) as f64 / 1e9 / replay.speed);
            let elapsed = started.elapsed();
            if due > elapsed + Duration::from_millis(1) {
                std::thread::sleep(due - elapsed);
            }
        }
        if frame.starts_with("{\"lastUpdateId\"") {
            *shared.replay_snapshot.lock() = Some(frame.to_owned());
        }
        let _ = shared.tx.send(Arc::from(frame));
    }
    let issues = reader.issues();
    if issues.total() > 0 {
        tracing::warn!(
            frames = reader.stats().frames,
            skipped = issues.total(),
            "sim replay finished; lines not replayed:\n{}",
            issues.describe().trim_end()
        );
    } else {
        tracing::info!(frames = reader.stats().frames, "sim replay finished");
    }
    shared.replay_done.store(true, Ordering::SeqCst);
}

async fn serve_ws(shared: Arc<Shared>, listener: TcpListener, ping_interval: Duration) {
    while !shared.stop.load(Ordering::Relaxed) {
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        let Ok(Ok((stream, _))) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        shared.connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(serve_client(Arc::clone(&shared), stream, ping_interval));
    }
}

/// Stream name of a Binance combined frame (`{"stream":"<name>",…`) or topic of a Bybit frame
/// (`{"topic":"<name>",…`); `None` for anything else.
fn stream_of(frame: &str) -> Option<&str> {
    let rest = frame
        .strip_prefix("{\"stream\":\"")
        .or_else(|| frame.strip_prefix("{\"topic\":\""))?;
    rest.find('"').map(|end| &rest[..end])
}

/// Whether a client subscribed to `frame`: Binance streams and Bybit topics by name, Kraken,
/// Coinbase and OKX channels by `<channel>:<symbol>` (Coinbase's `l2_data` messages belong to
/// the `level2` channel); frames of no stream (garbage, replies) always go out.
fn wanted(frame: &str, subscribed: &HashSet<String>, key: &mut String) -> bool {
    let rest = frame
        .strip_prefix("{\"channel\":\"")
        .or_else(|| frame.strip_prefix("{\"arg\":{\"channel\":\""));
    if let Some(rest) = rest {
        let Some(end) = rest.find('"') else {
            return true;
        };
        let Some((at, name)) = ["\"symbol\":\"", "\"product_id\":\"", "\"instId\":\""]
            .iter()
            .find_map(|k| frame.find(k).map(|at| (at, k.len())))
        else {
            return true;
        };
        let symbol = &frame[at + name..];
        let Some(len) = symbol.find('"') else {
            return true;
        };
        let channel = match &rest[..end] {
            "l2_data" => "level2",
            c => c,
        };
        key.clear();
        key.push_str(channel);
        key.push(':');
        key.push_str(&symbol[..len]);
        return subscribed.contains(key.as_str());
    }
    stream_of(frame).is_none_or(|s| subscribed.contains(s))
}

/// Coinbase numbers every message a connection receives; other venues' frames go as they are.
struct Numbering {
    coinbase: bool,
    next: u64,
    gap_generation: u64,
}

impl Numbering {
    fn text(&mut self, shared: &Shared, frame: &str) -> Message {
        if !self.coinbase {
            return Message::Text(frame.into());
        }
        let generation = shared.gap_generation.load(Ordering::Relaxed);
        if generation != self.gap_generation {
            // An injected gap: numbers the client never sees.
            self.gap_generation = generation;
            self.next += 3;
        }
        if !frame.contains(super::market::SEQUENCE_PLACEHOLDER) {
            return Message::Text(frame.into());
        }
        let stamped = stamp_sequence(frame, self.next);
        self.next += 1;
        Message::Text(stamped.into())
    }
}

/// Frames sent to a client per flush, at most.
const MAX_BURST: u32 = 256;

async fn serve_client(shared: Arc<Shared>, stream: TcpStream, ping_interval: Duration) {
    let mut requested = String::new();
    #[allow(
        clippy::result_large_err,
        reason = "the signature is tungstenite's handshake callback"
    )]
    let callback = |req: &Request, resp: Response| {
        requested = req.uri().to_string();
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let mut subscribed: HashSet<String> = requested
        .split_once("streams=")
        .map(|(_, s)| {
            s.split('&')
                .next()
                .unwrap_or("")
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut rx = shared.tx.subscribe();
    let generation = shared.drop_generation.load(Ordering::SeqCst);
    let mut ping = tokio::time::interval(ping_interval);
    ping.tick().await;
    let mut check = tokio::time::interval(Duration::from_millis(20));
    let mut key = String::new();
    let mut numbering = Numbering {
        coinbase: shared.protocol == WireProtocol::Coinbase,
        next: 0,
        gap_generation: shared.gap_generation.load(Ordering::SeqCst),
    };
    let mut last_heartbeat = Instant::now();
    let mut heartbeats = 0u64;
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Ok(f) => {
                    // This frame and whatever else is already queued (up to a bound) go out
                    // with one flush: one write per burst instead of one per frame.
                    let (mut next, mut looked, mut sent) = (Some(f), 0u32, 0u64);
                    while let Some(f) = next.take() {
                        looked += 1;
                        if wanted(&f, &subscribed, &mut key) {
                            if ws.feed(numbering.text(&shared, &f)).await.is_err() {
                                return;
                            }
                            sent += 1;
                        }
                        if looked < MAX_BURST {
                            next = rx.try_recv().ok();
                        }
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                    shared.frames_sent.fetch_add(sent, Ordering::Relaxed);
                }
                // A slow client misses frames, as on a real venue; it will see a gap.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let mut backlog = Vec::new();
                    let replies = match shared.protocol {
                        WireProtocol::Binance => handle_request(t.as_str(), &mut subscribed).into_iter().collect(),
                        WireProtocol::Bybit { depth } => handle_bybit_request(&shared, depth, t.as_str(), &mut subscribed),
                        WireProtocol::Kraken { .. } | WireProtocol::Coinbase | WireProtocol::Okx => {
                            // Kraken and Coinbase books have no per-book sequence, and an OKX
                            // update must follow the message before it: every frame
                            // generated before a snapshot must reach the client before it.
                            // Frames are broadcast under the market lock, so taking it and
                            // draining the queue orders them; backlog frames of newly
                            // subscribed channels are older than their snapshot and are not
                            // sent.
                            let mut market = shared.market.lock();
                            while let Ok(f) = rx.try_recv() {
                                if wanted(&f, &subscribed, &mut key) {
                                    backlog.push(f);
                                }
                            }
                            let (replies, books) = match shared.protocol {
                                WireProtocol::Kraken { depth } => {
                                    let r = handle_kraken_request(&mut market.1, depth, t.as_str(), &mut subscribed);
                                    let books = r.iter().filter(|r| r.starts_with(r#"{"channel":"book","type":"snapshot""#)).count();
                                    (r, books)
                                }
                                WireProtocol::Okx => {
                                    let r = handle_okx_request(&market.1, t.as_str(), &mut subscribed);
                                    let books = r.iter().filter(|r| r.contains(r#""action":"snapshot""#)).count();
                                    (r, books)
                                }
                                _ => {
                                    let r = handle_coinbase_request(&market.1, t.as_str(), &mut subscribed);
                                    let books = r.iter().filter(|r| r.starts_with(r#"{"channel":"l2_data""#)).count();
                                    (r, books)
                                }
                            };
                            shared.snapshots_served.fetch_add(books as u64, Ordering::SeqCst);
                            replies
                        }
                    };
                    for f in backlog {
                        if ws.feed(numbering.text(&shared, &f)).await.is_err() {
                            return;
                        }
                    }
                    for reply in replies {
                        if ws.send(numbering.text(&shared, &reply)).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            _ = check.tick() => {
                if shared.drop_generation.load(Ordering::SeqCst) != generation {
                    // An abrupt drop: no close handshake, like a network failure.
                    return;
                }
                let stalled = shared.stall_until.lock().is_some_and(|t| Instant::now() < t);
                if numbering.coinbase && !stalled && subscribed.contains("heartbeats") && last_heartbeat.elapsed() >= Duration::from_secs(1) {
                    last_heartbeat = Instant::now();
                    heartbeats += 1;
                    let beat = super::market::coinbase_envelope(
                        "heartbeats",
                        epoch_ms(),
                        &format!(r#"{{"current_time":"sim","heartbeat_counter":"{heartbeats}"}}"#),
                    );
                    if ws.send(numbering.text(&shared, &beat)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Handles `{"method":"SUBSCRIBE"|"UNSUBSCRIBE"|"LIST_SUBSCRIPTIONS","params":[…],"id":N}`.
fn handle_request(text: &str, subscribed: &mut HashSet<String>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Req {
        method: String,
        #[serde(default)]
        params: Vec<String>,
        id: serde_json::Value,
    }
    let Ok(req) = serde_json::from_str::<Req>(text) else {
        return Some(r#"{"error":{"code":2,"msg":"Invalid request"}}"#.to_owned());
    };
    let id = req.id.to_string();
    match req.method.as_str() {
        "SUBSCRIBE" => {
            subscribed.extend(req.params);
            Some(format!(r#"{{"result":null,"id":{id}}}"#))
        }
        "UNSUBSCRIBE" => {
            for p in &req.params {
                subscribed.remove(p);
            }
            Some(format!(r#"{{"result":null,"id":{id}}}"#))
        }
        "LIST_SUBSCRIPTIONS" => {
            let list = serde_json::to_string(&subscribed.iter().collect::<Vec<_>>())
                .unwrap_or_else(|_| "[]".into());
            Some(format!(r#"{{"result":{list},"id":{id}}}"#))
        }
        _ => Some(format!(
            r#"{{"error":{{"code":2,"msg":"Unknown method"}},"id":{id}}}"#
        )),
    }
}

/// Handles Bybit's `{"op":"subscribe"|"unsubscribe"|"ping","args":[…],"req_id":…}`. A
/// subscription to an unknown topic or symbol, or to another book depth than the venue's, is
/// refused as a whole (`success: false`), as Bybit does; book subscriptions are answered with
/// their snapshots after the reply.
fn handle_bybit_request(
    shared: &Shared,
    depth: u16,
    text: &str,
    subscribed: &mut HashSet<String>,
) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Req {
        op: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        req_id: Option<String>,
    }
    let Ok(req) = serde_json::from_str::<Req>(text) else {
        return vec![
            r#"{"success":false,"ret_msg":"error:request not json","conn_id":"sim","op":""}"#
                .to_owned(),
        ];
    };
    let req_id = serde_json::to_string(&req.req_id.unwrap_or_default()).unwrap_or_default();
    let op = serde_json::to_string(&req.op).unwrap_or_default();
    let reply = |ok: bool, msg: &str| {
        format!(
            r#"{{"success":{ok},"ret_msg":{},"conn_id":"sim","req_id":{req_id},"op":{op}}}"#,
            serde_json::to_string(msg).unwrap_or_default()
        )
    };
    let now_ms = epoch_ms();
    match req.op.as_str() {
        "ping" => vec![reply(true, "pong")],
        "subscribe" => {
            let guard = shared.market.lock();
            let symbol_of = |topic: &str| -> Option<(usize, bool)> {
                let (channel, rest) = topic.split_once('.')?;
                let (book, symbol) = match channel {
                    "publicTrade" => (false, rest),
                    "orderbook" => {
                        let (d, symbol) = rest.split_once('.')?;
                        let d: u16 = d.parse().ok()?;
                        (d == 1 || d == depth).then_some((true, symbol))?
                    }
                    _ => return None,
                };
                let i = guard.1.iter().position(|s| s.symbol() == symbol)?;
                Some((i, book))
            };
            let mut snapshots = Vec::new();
            for topic in &req.args {
                match symbol_of(topic) {
                    Some((i, true)) => {
                        let [bbo, book] = guard.1[i].bybit_snapshots(now_ms);
                        if topic.starts_with("orderbook.1.") {
                            snapshots.push(bbo);
                        } else {
                            // Counted like a REST depth snapshot: one per book (re)sync.
                            shared.snapshots_served.fetch_add(1, Ordering::SeqCst);
                            snapshots.push(book);
                        }
                    }
                    Some((_, false)) => {}
                    None => {
                        return vec![reply(
                            false,
                            &format!("error:handler not found,topic:{topic}"),
                        )];
                    }
                }
            }
            drop(guard);
            subscribed.extend(req.args);
            std::iter::once(reply(true, "")).chain(snapshots).collect()
        }
        "unsubscribe" => {
            for topic in &req.args {
                subscribed.remove(topic);
            }
            vec![reply(true, "")]
        }
        _ => vec![reply(false, "error:unknown op")],
    }
}

/// Handles Kraken v2's `{"method":"subscribe"|"unsubscribe"|"ping","params":{…},"req_id":…}`.
/// Channels `book` (at the venue's depth only), `trade` and `ticker` of known symbols; anything
/// else is refused (`success: false`, with an `error`). A `book` subscription is answered with
/// its snapshot after the reply.
fn handle_kraken_request(
    symbols: &mut [SimSymbol],
    depth: u16,
    text: &str,
    subscribed: &mut HashSet<String>,
) -> Vec<String> {
    #[derive(serde::Deserialize, Default)]
    struct Params {
        #[serde(default)]
        channel: String,
        #[serde(default)]
        symbol: Vec<String>,
        #[serde(default)]
        depth: Option<u16>,
    }
    #[derive(serde::Deserialize)]
    struct Req {
        method: String,
        #[serde(default)]
        params: Params,
        #[serde(default)]
        req_id: Option<u64>,
    }
    let Ok(req) = serde_json::from_str::<Req>(text) else {
        return vec![
            r#"{"error":"request is not valid JSON","method":"","success":false}"#.to_owned(),
        ];
    };
    let now_ns = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    )
    .unwrap_or(0);
    let time = crate::kraken::parse::rfc3339_from_ns(now_ns);
    let req_id = req
        .req_id
        .map_or(String::new(), |id| format!(r#","req_id":{id}"#));
    let method = req.method.as_str();
    let refuse = |why: &str| {
        format!(
            r#"{{"error":{},"method":"{method}","success":false,"time_in":"{time}","time_out":"{time}"{req_id}}}"#,
            serde_json::to_string(why).unwrap_or_default()
        )
    };
    match method {
        "ping" => vec![format!(
            r#"{{"method":"pong","time_in":"{time}","time_out":"{time}"{req_id}}}"#
        )],
        "subscribe" | "unsubscribe" => {
            let p = &req.params;
            if !matches!(p.channel.as_str(), "book" | "trade" | "ticker") {
                return vec![refuse(&format!("Channel {} not supported", p.channel))];
            }
            if p.channel == "book" && p.depth.unwrap_or(10) != depth {
                return vec![refuse(&format!(
                    "Depth {} not served here",
                    p.depth.unwrap_or(10)
                ))];
            }
            let mut out = Vec::new();
            let mut snapshots = Vec::new();
            for symbol in &p.symbol {
                let Some(s) = symbols.iter_mut().find(|s| s.symbol() == symbol) else {
                    out.push(refuse(&format!("Currency pair not supported {symbol}")));
                    continue;
                };
                let key = format!("{}:{symbol}", p.channel);
                if method == "subscribe" {
                    subscribed.insert(key);
                    if p.channel == "book" {
                        snapshots.push(s.kraken_snapshot(now_ns / 1_000_000));
                    }
                } else {
                    subscribed.remove(&key);
                }
                out.push(format!(
                    r#"{{"method":"{method}","result":{{"channel":"{}","symbol":"{symbol}"}},"success":true,"time_in":"{time}","time_out":"{time}"{req_id}}}"#,
                    p.channel
                ));
            }
            out.extend(snapshots);
            out
        }
        _ => vec![refuse("Method not supported")],
    }
}

/// Handles Coinbase's `{"type":"subscribe"|"unsubscribe","product_ids":[…],"channel":…}`.
/// Channels `heartbeats`, `level2`, `market_trades` and `ticker` of known products; anything
/// else is an `{"type":"error",…}`. A `level2` subscription is answered with a snapshot per
/// product after the `subscriptions` reply.
fn handle_coinbase_request(
    symbols: &[SimSymbol],
    text: &str,
    subscribed: &mut HashSet<String>,
) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Req {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        product_ids: Vec<String>,
        #[serde(default)]
        channel: String,
    }
    let error = |why: &str| {
        format!(
            r#"{{"type":"error","message":{}}}"#,
            serde_json::to_string(why).unwrap_or_default()
        )
    };
    let Ok(req) = serde_json::from_str::<Req>(text) else {
        return vec![error("request is not valid JSON")];
    };
    if !matches!(req.kind.as_str(), "subscribe" | "unsubscribe") {
        return vec![error("unknown request type")];
    }
    if !matches!(
        req.channel.as_str(),
        "heartbeats" | "level2" | "market_trades" | "ticker"
    ) {
        return vec![error(&format!("channel {} not supported", req.channel))];
    }
    let now_ms = epoch_ms();
    let mut snapshots = Vec::new();
    if req.channel == "heartbeats" {
        if req.kind == "subscribe" {
            subscribed.insert("heartbeats".to_owned());
        } else {
            subscribed.remove("heartbeats");
        }
    }
    for product in &req.product_ids {
        let Some(s) = symbols.iter().find(|s| s.symbol() == product) else {
            return vec![error(&format!("product {product} not found"))];
        };
        if req.channel == "heartbeats" {
            continue;
        }
        let key = format!("{}:{product}", req.channel);
        if req.kind == "subscribe" {
            subscribed.insert(key);
            if req.channel == "level2" {
                snapshots.push(s.coinbase_snapshot(now_ms));
            }
        } else {
            subscribed.remove(&key);
        }
    }
    let mut list: Vec<&String> = subscribed.iter().collect();
    list.sort();
    let reply = super::market::coinbase_envelope(
        "subscriptions",
        now_ms,
        &format!(
            r#"{{"subscriptions":{}}}"#,
            serde_json::to_string(&list).unwrap_or_default()
        ),
    );
    std::iter::once(reply).chain(snapshots).collect()
}

/// Handles OKX's text `ping` and `{"op":"subscribe"|"unsubscribe","args":[{"channel",
/// "instId"}, …]}` for `trades`, `bbo-tbt` and `books` of known instruments; anything else is
/// an `{"event":"error",…}`. A `books` subscription is answered with its snapshot after the
/// reply.
fn handle_okx_request(
    symbols: &[SimSymbol],
    text: &str,
    subscribed: &mut HashSet<String>,
) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Arg {
        channel: String,
        #[serde(rename = "instId")]
        inst_id: String,
    }
    #[derive(serde::Deserialize)]
    struct Req {
        op: String,
        #[serde(default)]
        args: Vec<Arg>,
    }
    if text == "ping" {
        return vec!["pong".to_owned()];
    }
    let error = |code: &str, why: &str| {
        format!(
            r#"{{"event":"error","code":"{code}","msg":{},"connId":"sim"}}"#,
            serde_json::to_string(why).unwrap_or_default()
        )
    };
    let Ok(req) = serde_json::from_str::<Req>(text) else {
        return vec![error("60012", "Invalid request")];
    };
    if !matches!(req.op.as_str(), "subscribe" | "unsubscribe") {
        return vec![error("60012", "Invalid request")];
    }
    let mut out = Vec::new();
    let mut snapshots = Vec::new();
    for arg in &req.args {
        let known = matches!(arg.channel.as_str(), "trades" | "bbo-tbt" | "books");
        let Some(s) = symbols
            .iter()
            .find(|s| s.symbol() == arg.inst_id)
            .filter(|_| known)
        else {
            out.push(error(
                "60018",
                &format!(
                    "Wrong URL or channel:{},instId:{} doesn't exist",
                    arg.channel, arg.inst_id
                ),
            ));
            continue;
        };
        let key = format!("{}:{}", arg.channel, arg.inst_id);
        if req.op == "subscribe" {
            subscribed.insert(key);
            if arg.channel == "books" {
                snapshots.push(s.okx_snapshot(epoch_ms()));
            }
        } else {
            subscribed.remove(&key);
        }
        out.push(format!(
            r#"{{"event":"{}","arg":{{"channel":"{}","instId":"{}"}},"connId":"sim"}}"#,
            req.op, arg.channel, arg.inst_id
        ));
    }
    out.extend(snapshots);
    out
}

async fn serve_rest(shared: Arc<Shared>, listener: TcpListener) {
    while !shared.stop.load(Ordering::Relaxed) {
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        let Ok(Ok((stream, _))) = accepted else {
            continue;
        };
        tokio::spawn(serve_http(Arc::clone(&shared), stream));
    }
}

async fn serve_http(shared: Arc<Shared>, mut stream: TcpStream) {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    while len < buf.len() {
        let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf[len..])).await
        else {
            return;
        };
        if n == 0 {
            return;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let target = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    let (status, body) = route(&shared, target);
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn route(shared: &Shared, target: &str) -> (&'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/api/v3/depth" && path != "/fapi/v1/depth" {
        return (
            "404 Not Found",
            r#"{"code":-1,"msg":"not found"}"#.to_owned(),
        );
    }
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    let Some(symbol) = param("symbol") else {
        return (
            "400 Bad Request",
            r#"{"code":-1102,"msg":"Mandatory parameter 'symbol' was not sent."}"#.to_owned(),
        );
    };
    let limit = param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100usize)
        .min(5000);
    if let Some(snapshot) = shared.replay_snapshot.lock().clone() {
        shared.snapshots_served.fetch_add(1, Ordering::SeqCst);
        return ("200 OK", snapshot);
    }
    let guard = shared.market.lock();
    if guard.1.is_empty() {
        return (
            "503 Service Unavailable",
            r#"{"code":-1,"msg":"the replay has not reached a snapshot yet"}"#.to_owned(),
        );
    }
    match guard
        .1
        .iter()
        .find(|s| s.symbol().eq_ignore_ascii_case(symbol))
    {
        Some(s) => {
            shared.snapshots_served.fetch_add(1, Ordering::SeqCst);
            ("200 OK", s.snapshot(limit))
        }
        None => (
            "400 Bad Request",
            r#"{"code":-1121,"msg":"Invalid symbol."}"#.to_owned(),
        ),
    }
}
