//! Recording a venue's raw frames for replay: subscribe as the venue's feed does (trades, best
//! bid/offer and book depth), write every frame as `<recv_ns> <frame>` into one gzip file per
//! symbol per UTC day, and, for venues that resync over REST (Binance), like hftbacktest's
//! collector, write a REST depth snapshot line after each symbol's first diff following every
//! (re)connect, so a replay can sync its book. Venues that send snapshots in-stream (Bybit) need
//! nothing more. Sends the venue's application ping. Reconnects with backoff. Off the hot path:
//! its own thread and runtime.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tradeloop_engine::clock::Clock;

use tradeloop_engine::instrument::InstrumentIndex;

use crate::feed::VenueFeed;
use crate::recorder::FrameWriter;
use crate::runner::backoff;
use crate::sim::market::Rng;

/// What to record and where.
#[derive(Clone, Debug)]
pub struct RecordSettings {
    /// The venue's WebSocket URL (the feed decides the endpoint from it).
    pub ws_url: String,
    /// REST base URL for snapshots.
    pub rest_url: String,
    /// Output directory.
    pub out_dir: PathBuf,
    /// File name prefix (the venue), files are `<prefix>_<symbol>_<YYYYMMDD>.gz`.
    pub prefix: String,
    /// No data for this long: reconnect.
    pub idle_timeout: Duration,
    /// Reconnect backoff base.
    pub backoff_base: Duration,
    /// Reconnect backoff cap.
    pub backoff_max: Duration,
}

/// What a recording wrote.
#[derive(Clone, Debug, Default)]
pub struct RecordReport {
    /// Stream frames written.
    pub frames: u64,
    /// Snapshot lines written.
    pub snapshots: u64,
    /// Connections made.
    pub connections: u64,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// One recorded symbol.
struct Output {
    instrument: InstrumentIndex,
    writer: FrameWriter,
}

/// Records `feed`'s symbols (its subscriptions, ping and snapshot rule; its parser is not used)
/// until `stop` is set or `deadline` passes.
///
/// # Errors
/// If the output directory cannot be written; connection problems are retried.
pub fn record<F: VenueFeed, C: Clock>(
    settings: &RecordSettings,
    feed: &F,
    clock: &C,
    stop: &AtomicBool,
    deadline: Option<Instant>,
) -> std::io::Result<RecordReport> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Keyed by lower-case symbol.
    let mut writers: BTreeMap<String, Output> = BTreeMap::new();
    for instrument in feed.instruments() {
        let Some(symbol) = feed.symbol_of(instrument) else {
            continue;
        };
        let lower = symbol.to_ascii_lowercase();
        let writer = FrameWriter::new(&settings.out_dir, &format!("{}_{lower}", settings.prefix))?;
        writers.insert(lower, Output { instrument, writer });
    }
    let mut report = RecordReport::default();
    let mut rng = Rng::new(clock.now_ns() | 1);
    let mut failures = 0u32;
    let done = |stop: &AtomicBool| {
        stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d)
    };
    while !done(stop) {
        let result = runtime.block_on(session(
            settings,
            feed,
            clock,
            &mut writers,
            &mut report,
            stop,
            deadline,
        ));
        match result {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "recording connection ended");
            }
        }
        if done(stop) {
            break;
        }
        let delay = backoff(
            settings.backoff_base,
            settings.backoff_max,
            failures.max(1),
            &mut rng,
        );
        let until = Instant::now() + delay;
        while Instant::now() < until && !done(stop) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for (_, w) in writers {
        report.files.extend(w.writer.finish()?);
    }
    Ok(report)
}

async fn session<F: VenueFeed, C: Clock>(
    settings: &RecordSettings,
    feed: &F,
    clock: &C,
    writers: &mut BTreeMap<String, Output>,
    report: &mut RecordReport,
    stop: &AtomicBool,
    deadline: Option<Instant>,
) -> Result<(), String> {
    let url = feed.ws_endpoint(&settings.ws_url);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .map_err(|_| format!("connect to {url} timed out"))?
    .map_err(|e| format!("connect to {url}: {e}"))?;
    report.connections += 1;
    let mut req_id = report.connections * 1_000_000;
    for request in feed.subscribe_requests(req_id) {
        ws.send(Message::Text(request.into()))
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
    }
    // Symbols that still need a REST snapshot on this connection (venues that resync over
    // REST only).
    let mut need_snapshot: Vec<String> = writers
        .iter()
        .filter(|(_, o)| {
            feed.snapshot_url(&settings.rest_url, o.instrument)
                .is_some()
        })
        .map(|(s, _)| s.clone())
        .collect();
    let mut last_data = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let ping_every = feed
        .app_ping(0)
        .map_or(Duration::from_secs(3600), |(every, _)| every);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(msg) = msg else { return Err("stream ended".into()) };
                match msg.map_err(|e| format!("read: {e}"))? {
                    Message::Text(text) => {
                        last_data = Instant::now();
                        let recv_ns = clock.now_ns();
                        let text = text.as_str();
                        let Some((symbol, is_depth)) = feed.frame_symbol(text) else { continue };
                        let symbol = symbol.to_ascii_lowercase();
                        let Some(out) = writers.get_mut(&symbol) else { continue };
                        out.writer.write(recv_ns, text).map_err(|e| format!("write: {e}"))?;
                        report.frames += 1;
                        if is_depth {
                            if let Some(pos) = need_snapshot.iter().position(|s| *s == symbol) {
                                need_snapshot.swap_remove(pos);
                                let url = feed
                                    .snapshot_url(&settings.rest_url, out.instrument)
                                    .ok_or("snapshot URL of a REST venue")?;
                                let body = fetch_snapshot(url).await?;
                                out.writer.write(clock.now_ns(), body.trim()).map_err(|e| format!("write: {e}"))?;
                                report.snapshots += 1;
                            }
                        }
                    }
                    Message::Close(f) => return Err(format!("closed by venue: {f:?}")),
                    _ => {}
                }
            }
            _ = tick.tick() => {
                if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
                if last_data.elapsed() >= settings.idle_timeout {
                    return Err("idle watchdog: no data".into());
                }
            }
            _ = ping.tick() => {
                req_id += 1;
                if let Some((_, request)) = feed.app_ping(req_id) {
                    ws.send(Message::Text(request.into()))
                        .await
                        .map_err(|e| format!("ping: {e}"))?;
                }
            }
        }
    }
}

async fn fetch_snapshot(url: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build();
        agent
            .get(&url)
            .call()
            .map_err(|e| format!("snapshot {url}: {e}"))?
            .into_string()
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}
