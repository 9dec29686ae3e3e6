//! Recording a venue's raw frames for replay: subscribe to trades, book tickers and depth diffs,
//! write every frame as `<recv_ns> <frame>` into one gzip file per symbol per UTC day, and,
//! like hftbacktest's collector, write a REST depth snapshot line after each symbol's first diff
//! following every (re)connect, so a replay can sync its book. Reconnects with backoff. Off the
//! hot path: its own thread and runtime.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tradeloop_engine::clock::Clock;

use crate::binance::parse::Market;
use crate::recorder::FrameWriter;
use crate::runner::backoff;
use crate::sim::market::Rng;

/// What to record and where.
#[derive(Clone, Debug)]
pub struct RecordSettings {
    /// WebSocket base URL (`/stream` is appended).
    pub ws_url: String,
    /// REST base URL for snapshots.
    pub rest_url: String,
    /// Spot or USD-M (snapshot path).
    pub market: Market,
    /// Symbols, e.g. `BTCUSDT`.
    pub symbols: Vec<String>,
    /// Depth stream suffix, e.g. `depth@100ms`.
    pub depth_stream: String,
    /// Snapshot levels.
    pub snapshot_limit: u32,
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

/// Records until `stop` is set or `deadline` passes.
///
/// # Errors
/// If the output directory cannot be written; connection problems are retried.
pub fn record<C: Clock>(
    settings: &RecordSettings,
    clock: &C,
    stop: &AtomicBool,
    deadline: Option<Instant>,
) -> std::io::Result<RecordReport> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut writers: BTreeMap<String, FrameWriter> = BTreeMap::new();
    for s in &settings.symbols {
        let lower = s.to_ascii_lowercase();
        writers.insert(
            lower.clone(),
            FrameWriter::new(&settings.out_dir, &format!("{}_{lower}", settings.prefix))?,
        );
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
        report.files.extend(w.finish()?);
    }
    Ok(report)
}

async fn session<C: Clock>(
    settings: &RecordSettings,
    clock: &C,
    writers: &mut BTreeMap<String, FrameWriter>,
    report: &mut RecordReport,
    stop: &AtomicBool,
    deadline: Option<Instant>,
) -> Result<(), String> {
    let url = format!("{}/stream", settings.ws_url.trim_end_matches('/'));
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .map_err(|_| format!("connect to {url} timed out"))?
    .map_err(|e| format!("connect to {url}: {e}"))?;
    report.connections += 1;
    let params: Vec<String> = settings
        .symbols
        .iter()
        .flat_map(|s| {
            let s = s.to_ascii_lowercase();
            [
                format!("{s}@trade"),
                format!("{s}@bookTicker"),
                format!("{s}@{}", settings.depth_stream),
            ]
        })
        .collect();
    let sub =
        serde_json::json!({ "method": "SUBSCRIBE", "params": params, "id": report.connections });
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    // Symbols that still need a snapshot on this connection.
    let mut need_snapshot: Vec<String> = writers.keys().cloned().collect();
    let mut last_data = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(msg) = msg else { return Err("stream ended".into()) };
                match msg.map_err(|e| format!("read: {e}"))? {
                    Message::Text(text) => {
                        last_data = Instant::now();
                        let recv_ns = clock.now_ns();
                        let text = text.as_str();
                        let Some(symbol) = stream_symbol(text) else { continue };
                        let Some(w) = writers.get_mut(symbol) else { continue };
                        w.write(recv_ns, text).map_err(|e| format!("write: {e}"))?;
                        report.frames += 1;
                        let is_depth = text.contains("@depth");
                        if is_depth {
                            if let Some(pos) = need_snapshot.iter().position(|s| s == symbol) {
                                let symbol = need_snapshot.swap_remove(pos);
                                let body = fetch_snapshot(settings, &symbol).await?;
                                let w = writers.get_mut(&symbol).ok_or("writer for a subscribed symbol")?;
                                w.write(clock.now_ns(), body.trim()).map_err(|e| format!("write: {e}"))?;
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
        }
    }
}

/// The lower-case symbol of a combined frame's stream name.
fn stream_symbol(frame: &str) -> Option<&str> {
    let rest = frame.strip_prefix("{\"stream\":\"")?;
    let end = rest.find(['@', '"'])?;
    Some(&rest[..end])
}

async fn fetch_snapshot(settings: &RecordSettings, symbol: &str) -> Result<String, String> {
    let path = match settings.market {
        Market::Spot => "/api/v3/depth",
        Market::UsdM => "/fapi/v1/depth",
    };
    let url = format!(
        "{}{path}?symbol={}&limit={}",
        settings.rest_url.trim_end_matches('/'),
        symbol.to_ascii_uppercase(),
        settings.snapshot_limit
    );
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
