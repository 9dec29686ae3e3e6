//! Prometheus `/metrics` for `tradeloop run` (config `[metrics] enabled`, `listen`).
//!
//! Nothing here touches the hot path: the engine publishes its HDR percentiles and counters
//! into [`Telemetry`] at its publish interval, feeds and lanes keep atomic counters, and the
//! main thread copies all of them into a `metrics` recorder ([`Exporter::update`], once per
//! status interval). A small HTTP/1.1 server on its own thread renders the recorder in the
//! Prometheus text format on `GET /metrics`; it serves one short request at a time, with read
//! and write timeouts, so a stuck scraper cannot hold it.
//!
//! Latency families are summaries: `<name>{quantile="0.5"|"0.9"|"0.99"|"0.999"|"1"}` in
//! seconds (`"1"` is the maximum) plus `<name>_count`, since the start of the run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use metrics::{counter, gauge, with_local_recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use rust_decimal::prelude::ToPrimitive;
use tradeloop_adapters::runner::FeedShared;
use tradeloop_engine::api::Deny;
use tradeloop_engine::book::BookState;
use tradeloop_engine::breakers::{BreakerKind, BreakerState};
use tradeloop_engine::event::FeedState;
use tradeloop_engine::lane::{Lane, Lanes};
use tradeloop_engine::metrics::{Percentiles, Telemetry};

/// The longest request head the server reads.
const MAX_REQUEST: usize = 8 * 1024;
/// Read and write timeout per connection.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// What [`Exporter::update`] reads: the running bot's shared state.
pub struct RunView<'a> {
    /// When the run started (uptime).
    pub started: Instant,
    /// The engine's lanes (depth, drops, refusals).
    pub lanes: &'a Lanes,
    /// What the engine publishes (latencies, counters, books, positions).
    pub telemetry: &'a Telemetry,
    /// Feed name and its shared counters.
    pub feeds: Vec<(&'a str, &'a FeedShared)>,
    /// `venue:symbol` per instrument index.
    pub instruments: &'a [String],
    /// Records queued for the writer and not yet written.
    pub persistence_pending: usize,
    /// Failed write attempts so far.
    pub persistence_failures: u64,
    /// Live execution's counters (live mode only).
    pub live: Option<tradeloop_adapters::binance::exec::gateway::LiveStats>,
}

/// The live-execution series: name, help, value.
fn live_series(
    s: &tradeloop_adapters::binance::exec::gateway::LiveStats,
) -> [(&'static str, &'static str, u64); 17] {
    [
        (
            "tradeloop_live_orders_sent_total",
            "Orders sent to the live venue",
            s.orders_sent,
        ),
        (
            "tradeloop_live_refused_by_filter_total",
            "Orders refused locally by an exchange filter",
            s.refused_by_filter,
        ),
        (
            "tradeloop_live_rejected_total",
            "Orders the venue rejected or that could not be sent",
            s.rejected,
        ),
        (
            "tradeloop_live_cancels_sent_total",
            "Cancels sent to the live venue",
            s.cancels_sent,
        ),
        (
            "tradeloop_live_amends_sent_total",
            "Amends (USD-M modifies) sent to the live venue",
            s.amends_sent,
        ),
        (
            "tradeloop_live_amends_rejected_total",
            "Amends the live venue refused or that could not be sent",
            s.amends_rejected,
        ),
        (
            "tradeloop_live_unknown_outcomes_total",
            "Order answers with an unknown outcome, resolved by a query",
            s.unknown_outcomes,
        ),
        (
            "tradeloop_live_reconciliations_total",
            "Reconciliations completed",
            s.reconciliations,
        ),
        (
            "tradeloop_live_orphans_cancelled_total",
            "Orders of earlier runs cancelled by reconciliation",
            s.orphans_cancelled,
        ),
        (
            "tradeloop_live_position_syncs_deferred_total",
            "Position syncs deferred because the venue's positions moved",
            s.position_syncs_deferred,
        ),
        (
            "tradeloop_live_stream_connects_total",
            "User data stream connections",
            s.stream_connects,
        ),
        (
            "tradeloop_live_stream_bad_messages_total",
            "User data stream messages refused",
            s.stream_bad_messages,
        ),
        (
            "tradeloop_live_stream_stale_reports_total",
            "Order reports already applied (duplicates, echoes of REST answers)",
            s.stream_stale_reports,
        ),
        (
            "tradeloop_live_rest_requests_total",
            "REST requests sent",
            s.rest_sent,
        ),
        (
            "tradeloop_live_rest_held_back_total",
            "REST requests held back (back-off, rate-limit headroom)",
            s.held_back,
        ),
        (
            "tradeloop_live_http_429_total",
            "HTTP 429 answers",
            s.http_429,
        ),
        (
            "tradeloop_live_http_418_total",
            "HTTP 418 answers",
            s.http_418,
        ),
    ]
}

/// The operator's controls on the same listener: `POST /control/kill` and
/// `POST /control/resume` raise these flags; the run's main thread acts on them as on
/// SIGUSR1 / SIGUSR2. A request is accepted only from a loopback peer, without an `Origin`
/// header (so no web page can send it), and with `Authorization: Bearer <token>` matching
/// [`ControlFlags::token`]; without a token the endpoints are disabled.
#[derive(Clone, Debug, Default)]
pub struct ControlFlags {
    /// Raised by an accepted `POST /control/kill`.
    pub kill: Arc<AtomicBool>,
    /// Raised by an accepted `POST /control/resume`.
    pub resume: Arc<AtomicBool>,
    /// The bearer token requests must carry (`None`: the endpoints are disabled).
    pub token: Option<ControlToken>,
    /// The environment variable the token comes from (for messages).
    pub token_env: String,
}

/// The control endpoints' bearer token, read from an environment variable. It is never
/// printed: `Debug` shows only its length.
#[derive(Clone)]
pub struct ControlToken(Arc<[u8]>);

impl ControlToken {
    /// The shortest token accepted.
    pub const MIN_LEN: usize = 16;

    /// The token in environment variable `var`; `None` if it is unset or empty.
    ///
    /// # Errors
    /// If the token is shorter than [`Self::MIN_LEN`], not valid UTF-8, or holds whitespace
    /// or control characters; the message names the variable, never the value.
    pub fn from_env(var: &str) -> anyhow::Result<Option<Self>> {
        match std::env::var(var) {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                anyhow::bail!("${var} (the control endpoints' token) is not valid UTF-8")
            }
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => Self::new(&v).map(Some).with_context(|| format!("${var}")),
        }
    }

    /// A token from its text.
    ///
    /// # Errors
    /// If it is shorter than [`Self::MIN_LEN`] or holds whitespace or control characters.
    pub fn new(token: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            token.len() >= Self::MIN_LEN,
            "the control endpoints' token must be at least {} characters, got {}",
            Self::MIN_LEN,
            token.len()
        );
        anyhow::ensure!(
            token.bytes().all(|b| b.is_ascii_graphic()),
            "the control endpoints' token must be printable ASCII without spaces"
        );
        Ok(Self(token.as_bytes().into()))
    }

    /// Compares in time independent of where the first difference is.
    fn matches(&self, presented: &[u8]) -> bool {
        self.0.len() == presented.len()
            && self
                .0
                .iter()
                .zip(presented)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ControlToken({} bytes, redacted)", self.0.len())
    }
}

/// The recorder and its HTTP server.
pub struct Exporter {
    recorder: PrometheusRecorder,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Binds `listen` (`host:port`; port 0 picks a free one) and starts serving `/metrics`,
    /// and the control endpoints when `control` is given.
    ///
    /// # Errors
    /// If the address does not parse or cannot be bound; the message names `metrics.listen`.
    pub fn start(listen: &str, control: Option<ControlFlags>) -> anyhow::Result<Self> {
        let addr: SocketAddr = listen.parse().with_context(|| {
            format!("metrics.listen: {listen:?} is not an address like 127.0.0.1:9464")
        })?;
        let listener = TcpListener::bind(addr).with_context(|| {
            format!("metrics.listen: cannot listen on {addr} (set another port, or [metrics] enabled = false)")
        })?;
        let addr = listener.local_addr().context("metrics: local address")?;
        listener
            .set_nonblocking(true)
            .context("metrics: non-blocking listener")?;
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        describe(&recorder);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("metrics-http".into())
                .spawn(move || serve(&listener, &handle, control.as_ref(), &stop))
                .context("metrics: cannot start the HTTP thread")?
        };
        Ok(Self {
            recorder,
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The text `GET /metrics` returns now.
    #[cfg(test)]
    #[must_use]
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }

    /// Copies the run's current state into the recorder.
    pub fn update(&self, view: &RunView<'_>) {
        with_local_recorder(&self.recorder, || record(view));
    }

    /// Stops the HTTP thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(
    listener: &TcpListener,
    handle: &PrometheusHandle,
    control: Option<&ControlFlags>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, peer, handle, control) {
                    tracing::debug!(%peer, error = %e, "metrics request failed");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads one request head and answers it; the connection is then closed.
fn answer(
    mut stream: TcpStream,
    peer: SocketAddr,
    handle: &PrometheusHandle,
    control: Option<&ControlFlags>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    let head_end = loop {
        if let Some(i) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(i);
        }
        if len == buf.len() {
            break None;
        }
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            break None;
        }
        len += n;
    };
    let (status, content_type, body) = match head_end {
        None => (
            "431 Request Header Fields Too Large",
            "text/plain",
            "request head too large or incomplete\n".to_owned(),
        ),
        Some(end) => {
            let head = String::from_utf8_lossy(&buf[..end]);
            let mut parts = head.lines().next().unwrap_or("").split(' ');
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = target.split('?').next().unwrap_or("");
            match (method, path) {
                ("GET" | "HEAD", "/metrics") => (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    handle.render(),
                ),
                ("GET" | "HEAD", "/") => (
                    "200 OK",
                    "text/plain; charset=utf-8",
                    "tradeloop: metrics at /metrics\n".to_owned(),
                ),
                ("POST", "/control/kill" | "/control/resume") => {
                    control_request(path, peer, &head, control)
                }
                (_, "/control/kill" | "/control/resume") if control.is_some() => (
                    "405 Method Not Allowed",
                    "text/plain",
                    "POST only\n".to_owned(),
                ),
                ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
                _ => (
                    "405 Method Not Allowed",
                    "text/plain",
                    "only GET (POST for /control/kill and /control/resume)\n".to_owned(),
                ),
            }
        }
    };
    let head_only = buf.starts_with(b"HEAD ");
    let challenge = if status.starts_with("401") {
        "WWW-Authenticate: Bearer realm=\"tradeloop control\"\r\n"
    } else {
        ""
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{challenge}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    // Read what the client sent beyond the head (bounded, briefly) before closing, so the close
    // is a FIN and not a reset that could destroy the response in flight.
    stream.shutdown(std::net::Shutdown::Write)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut drained = 0;
    while drained < 16 * MAX_REQUEST {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

/// The value of header `name` in a request head (first match, name case-insensitive).
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `POST /control/kill` or `/control/resume`: checks where it comes from and its token, then
/// raises the flag the main thread polls. Every call is logged with its answer.
fn control_request(
    path: &str,
    peer: SocketAddr,
    head: &str,
    control: Option<&ControlFlags>,
) -> (&'static str, &'static str, String) {
    let Some(control) = control else {
        return (
            "404 Not Found",
            "text/plain",
            "no control endpoint\n".to_owned(),
        );
    };
    let refuse = |status: &'static str, why: &str, body: String| {
        tracing::warn!(%peer, path, status, "control request refused: {why}");
        (status, "text/plain", body)
    };
    if !peer.ip().is_loopback() {
        return refuse(
            "403 Forbidden",
            "not from loopback",
            "control requests are accepted from loopback only\n".to_owned(),
        );
    }
    if let Some(origin) = header(head, "origin") {
        return refuse(
            "403 Forbidden",
            &format!("sent by a web page (Origin: {origin})"),
            "control requests carrying an Origin header (from a browser) are refused\n".to_owned(),
        );
    }
    let Some(token) = &control.token else {
        return refuse(
            "404 Not Found",
            "the control endpoints are disabled",
            format!(
                "the control endpoints are disabled: set ${} to a token of at least {} characters and restart\n",
                control.token_env,
                ControlToken::MIN_LEN
            ),
        );
    };
    let presented = header(head, "authorization").and_then(|v| {
        let (scheme, value) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
    });
    match presented {
        None => {
            return refuse(
                "401 Unauthorized",
                "no bearer token",
                format!(
                    "send Authorization: Bearer <the token in ${}>\n",
                    control.token_env
                ),
            )
        }
        Some(p) if !token.matches(p.as_bytes()) => {
            return refuse(
                "401 Unauthorized",
                "wrong bearer token",
                "wrong token\n".to_owned(),
            )
        }
        Some(_) => {}
    }
    let (flag, what) = if path == "/control/kill" {
        (&control.kill, "kill switch")
    } else {
        (&control.resume, "resume")
    };
    flag.store(true, Ordering::Release);
    tracing::warn!(%peer, path, status = "202 Accepted", "control request accepted");
    ("202 Accepted", "text/plain", format!("{what} requested\n"))
}

fn describe(recorder: &PrometheusRecorder) {
    use metrics::{describe_counter, describe_gauge, Unit};
    with_local_recorder(recorder, || {
        describe_gauge!(
            "tradeloop_uptime_seconds",
            Unit::Seconds,
            "Seconds since the run started"
        );
        describe_gauge!("tradeloop_lane_depth", "Events queued in the lane now");
        describe_gauge!("tradeloop_lane_capacity", "Slots of the lane");
        describe_counter!(
            "tradeloop_lane_dropped_total",
            "Events dropped from the lane (NORMAL and LOW drop oldest when full)"
        );
        describe_counter!(
            "tradeloop_lane_refused_total",
            "Pushes refused because the lane was full"
        );
        describe_counter!(
            "tradeloop_lane_events_total",
            "Events handled by the engine, per lane"
        );
        describe_gauge!(
            "tradeloop_lane_wait_seconds",
            Unit::Seconds,
            "Queue wait per lane (push to pop), since start"
        );
        describe_gauge!(
            "tradeloop_lane_service_seconds",
            Unit::Seconds,
            "Engine service time per event per lane, since start"
        );
        describe_gauge!(
            "tradeloop_tick_to_trade_seconds",
            Unit::Seconds,
            "Frame arrival to order handed to the gateway, since start"
        );
        describe_counter!(
            "tradeloop_orders_sent_total",
            "Orders handed to the gateway"
        );
        describe_counter!(
            "tradeloop_cancels_sent_total",
            "Cancels handed to the gateway"
        );
        describe_counter!("tradeloop_fills_total", "Fills applied to positions");
        describe_counter!(
            "tradeloop_rejects_total",
            "Orders rejected by the venue or the gateway"
        );
        describe_counter!(
            "tradeloop_orders_denied_total",
            "Orders denied before the gateway, by reason"
        );
        describe_counter!(
            "tradeloop_pool_exhausted_total",
            "Orders refused because the order pool was full"
        );
        describe_counter!(
            "tradeloop_stops_fired_total",
            "Stops that sent their closing order"
        );
        describe_counter!(
            "tradeloop_stops_failed_total",
            "Stops whose closing order was refused"
        );
        describe_counter!(
            "tradeloop_stop_rehearsals_total",
            "Rehearsals of an armed stop's close (engine.stop_warm_events; nothing sent)"
        );
        describe_counter!("tradeloop_timers_fired_total", "Strategy timers fired");
        describe_counter!(
            "tradeloop_timers_refused_total",
            "Timers a strategy could not schedule: every engine.timer_slots slot in use"
        );
        describe_counter!("tradeloop_kill_switch_trips_total", "Kill-switch trips");
        describe_counter!(
            "tradeloop_books_stale_total",
            "Books marked stale after a lost delta"
        );
        describe_counter!(
            "tradeloop_records_lost_total",
            "Essential persistence records lost (outbox and spill full)"
        );
        describe_gauge!("tradeloop_feed_state", "1 for the feed's current state");
        describe_counter!("tradeloop_feed_frames_total", "Frames received per feed");
        describe_counter!("tradeloop_feed_gaps_total", "Book sequence gaps per feed");
        for (name, help, _) in live_series(&Default::default()) {
            describe_counter!(name, help);
        }
        describe_gauge!(
            "tradeloop_live_foreign_orders",
            "Open orders not placed by tradeloop, as of the last reconciliation"
        );
        describe_counter!(
            "tradeloop_position_syncs_total",
            "Positions a live venue's reconciliation changed (the venue wins)"
        );
        describe_counter!("tradeloop_feed_reconnects_total", "Reconnects per feed");
        describe_counter!(
            "tradeloop_feed_resubscribes_total",
            "Book resubscriptions per feed (venues with in-stream snapshots)"
        );
        describe_counter!(
            "tradeloop_feed_refused_total",
            "Frames refused per feed (malformed, unknown)"
        );
        describe_counter!(
            "tradeloop_feed_snapshots_total",
            "REST book snapshots applied per feed"
        );
        describe_gauge!(
            "tradeloop_position",
            "Signed position per instrument, in base units"
        );
        describe_gauge!(
            "tradeloop_realized_pnl_net",
            "Realised PnL minus fees per instrument, quote units"
        );
        describe_gauge!(
            "tradeloop_realized_pnl",
            "Realised PnL before fees per instrument, quote units"
        );
        describe_gauge!("tradeloop_fees", "Fees paid per instrument, quote units");
        describe_gauge!(
            "tradeloop_trading_state",
            "Trading state in force: 0 active, 1 reduce-only, 2 halted (kill switch or breaker)"
        );
        describe_gauge!(
            "tradeloop_best_bid",
            "Best bid per instrument (absent without one)"
        );
        describe_gauge!(
            "tradeloop_best_ask",
            "Best ask per instrument (absent without one)"
        );
        describe_gauge!("tradeloop_book_state", "1 for the book's current state");
        describe_gauge!(
            "tradeloop_breaker_state",
            "1 for the circuit breaker's current state"
        );
        describe_counter!("tradeloop_breaker_trips_total", "Circuit-breaker trips");
        describe_counter!(
            "tradeloop_breaker_recoveries_total",
            "Circuit-breaker recoveries"
        );
        describe_gauge!(
            "tradeloop_persistence_pending_records",
            "Records queued for the persistence writer (its lag)"
        );
        describe_counter!(
            "tradeloop_persistence_failures_total",
            "Failed persistence write attempts (retried)"
        );
    });
}

const QUANTILES: [&str; 5] = ["0.5", "0.9", "0.99", "0.999", "1"];

#[allow(
    clippy::cast_precision_loss,
    reason = "observability output: nanosecond latencies far below 2^53"
)]
fn summary(name: &'static str, labels: &[(&'static str, &'static str)], p: Percentiles) {
    for (q, v) in QUANTILES
        .into_iter()
        .zip([p.p50, p.p90, p.p99, p.p999, p.max])
    {
        let mut l: Vec<(&'static str, String)> =
            labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        l.push(("quantile", q.to_owned()));
        gauge!(name, &l).set(v as f64 / 1e9);
    }
    let l: Vec<(&'static str, String)> =
        labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    gauge!(format!("{name}_count"), &l).set(p.count as f64);
}

fn decimal(d: rust_decimal::Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

#[allow(
    clippy::cast_precision_loss,
    reason = "observability output: counts and depths far below 2^53"
)]
fn record(v: &RunView<'_>) {
    let t = v.telemetry.snapshot();
    let c = &t.counters;
    gauge!("tradeloop_uptime_seconds").set(v.started.elapsed().as_secs_f64());
    for lane in Lane::ALL {
        let name = lane.name();
        let st = v.lanes.stats(lane);
        gauge!("tradeloop_lane_depth", "lane" => name).set(st.depth as f64);
        gauge!("tradeloop_lane_capacity", "lane" => name).set(st.capacity as f64);
        counter!("tradeloop_lane_dropped_total", "lane" => name).absolute(st.dropped);
        counter!("tradeloop_lane_refused_total", "lane" => name).absolute(st.refused);
        counter!("tradeloop_lane_events_total", "lane" => name).absolute(c.events[lane as usize]);
        summary(
            "tradeloop_lane_wait_seconds",
            &[("lane", name)],
            t.wait[lane as usize],
        );
        summary(
            "tradeloop_lane_service_seconds",
            &[("lane", name)],
            t.service[lane as usize],
        );
    }
    summary("tradeloop_tick_to_trade_seconds", &[], t.tick_to_trade);
    counter!("tradeloop_orders_sent_total").absolute(c.orders_sent);
    counter!("tradeloop_cancels_sent_total").absolute(c.cancels_sent);
    counter!("tradeloop_fills_total").absolute(c.fills);
    counter!("tradeloop_rejects_total").absolute(c.rejects);
    for (reason, n) in Deny::NAMES.into_iter().zip(c.denials) {
        counter!("tradeloop_orders_denied_total", "reason" => reason).absolute(n);
    }
    counter!("tradeloop_pool_exhausted_total").absolute(c.pool_exhausted);
    counter!("tradeloop_stops_fired_total").absolute(c.stops_fired);
    counter!("tradeloop_stops_failed_total").absolute(c.stops_failed);
    counter!("tradeloop_stop_rehearsals_total").absolute(c.stop_rehearsals);
    counter!("tradeloop_timers_fired_total").absolute(c.timers_fired);
    counter!("tradeloop_timers_refused_total").absolute(c.timers_refused);
    counter!("tradeloop_kill_switch_trips_total").absolute(c.kills);
    gauge!("tradeloop_trading_state").set(f64::from(c.trading_state));
    counter!("tradeloop_books_stale_total").absolute(c.books_stale);
    counter!("tradeloop_records_lost_total").absolute(c.records_lost);
    counter!("tradeloop_position_syncs_total").absolute(c.position_syncs);
    if let Some(live) = &v.live {
        for (name, _, value) in live_series(live) {
            counter!(name).absolute(value);
        }
        #[allow(clippy::cast_precision_loss, reason = "a count of open orders")]
        gauge!("tradeloop_live_foreign_orders").set(live.foreign_orders as f64);
    }
    for (name, f) in &v.feeds {
        let feed = (*name).to_owned();
        let now = f.state();
        for state in FeedState::ALL {
            let on = if state == now { 1.0 } else { 0.0 };
            gauge!("tradeloop_feed_state", "feed" => feed.clone(), "state" => state.name()).set(on);
        }
        let r = Ordering::Relaxed;
        counter!("tradeloop_feed_frames_total", "feed" => feed.clone()).absolute(f.frames.load(r));
        counter!("tradeloop_feed_gaps_total", "feed" => feed.clone()).absolute(f.gaps.load(r));
        counter!("tradeloop_feed_reconnects_total", "feed" => feed.clone())
            .absolute(f.reconnects.load(r));
        counter!("tradeloop_feed_refused_total", "feed" => feed.clone()).absolute(f.errors.load(r));
        counter!("tradeloop_feed_resubscribes_total", "feed" => feed.clone())
            .absolute(f.resubscribes.load(r));
        counter!("tradeloop_feed_snapshots_total", "feed" => feed).absolute(f.snapshots.load(r));
    }
    for (i, name) in v.instruments.iter().enumerate() {
        let Some(x) = v.telemetry.instrument(i) else {
            continue;
        };
        let instrument = name.clone();
        gauge!("tradeloop_position", "instrument" => instrument.clone())
            .set(decimal(x.position.to_decimal()));
        gauge!("tradeloop_realized_pnl_net", "instrument" => instrument.clone())
            .set(decimal(x.net_realized.to_decimal()));
        gauge!("tradeloop_realized_pnl", "instrument" => instrument.clone())
            .set(decimal(x.realized.to_decimal()));
        gauge!("tradeloop_fees", "instrument" => instrument.clone())
            .set(decimal(x.fees.to_decimal()));
        if let Some(b) = x.best_bid {
            gauge!("tradeloop_best_bid", "instrument" => instrument.clone())
                .set(decimal(b.to_decimal()));
        }
        if let Some(a) = x.best_ask {
            gauge!("tradeloop_best_ask", "instrument" => instrument.clone())
                .set(decimal(a.to_decimal()));
        }
        for state in BookState::ALL {
            let on = if state == x.book_state { 1.0 } else { 0.0 };
            gauge!("tradeloop_book_state", "instrument" => instrument.clone(), "state" => state.name())
                .set(on);
        }
    }
    for kind in BreakerKind::ALL {
        let k = kind as usize;
        let now = BreakerState::from_code(c.breaker_states[k]);
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            let on = if state == now { 1.0 } else { 0.0 };
            gauge!("tradeloop_breaker_state", "breaker" => kind.name(), "state" => state.name())
                .set(on);
        }
        counter!("tradeloop_breaker_trips_total", "breaker" => kind.name())
            .absolute(c.breaker_trips[k]);
        counter!("tradeloop_breaker_recoveries_total", "breaker" => kind.name())
            .absolute(c.breaker_recoveries[k]);
    }
    gauge!("tradeloop_persistence_pending_records").set(v.persistence_pending as f64);
    counter!("tradeloop_persistence_failures_total").absolute(v.persistence_failures);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeloop_engine::event::{Event, EventKind, Trade};
    use tradeloop_engine::fixed::{Price, Qty};
    use tradeloop_engine::instrument::InstrumentIndex;
    use tradeloop_engine::lane::LaneConfig;
    use tradeloop_engine::metrics::{EngineCounters, LoopHistograms};

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read the response");
        out
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
            .parse()
            .unwrap()
    }

    fn trade() -> Event {
        Event::new(
            1,
            1,
            EventKind::Trade(Trade {
                instrument: InstrumentIndex(0),
                price: Price::from_units(100),
                qty: Qty::from_units(1),
                aggressor: tradeloop_engine::event::Side::Buy,
                trade_id: 1,
            }),
        )
    }

    #[test]
    fn serves_the_run_state_in_prometheus_text_format() {
        let exporter = Exporter::start("127.0.0.1:0", None).expect("start");
        let lanes = Lanes::new(LaneConfig::default());
        for _ in 0..3 {
            let _ = lanes.push_normal(trade());
        }
        let telemetry = Telemetry::new(1);
        let mut counters = EngineCounters {
            orders_sent: 5,
            fills: 4,
            stop_rehearsals: 12,
            timers_fired: 31,
            timers_refused: 2,
            ..EngineCounters::default()
        };
        counters.denials[9] = 2; // price_band
        telemetry.publish(&LoopHistograms::new(), &counters, 1);
        let feed = FeedShared::default();
        feed.frames.store(42, Ordering::Relaxed);
        let names = ["sim:BTCUSDT".to_owned()];
        exporter.update(&RunView {
            started: Instant::now(),
            lanes: &lanes,
            telemetry: &telemetry,
            feeds: vec![("sim", &feed)],
            instruments: &names,
            persistence_pending: 17,
            persistence_failures: 1,
            live: Some(tradeloop_adapters::binance::exec::gateway::LiveStats {
                orders_sent: 9,
                http_429: 1,
                foreign_orders: 2,
                ..Default::default()
            }),
        });
        let response = get(exporter.addr(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert_eq!(value(body, "tradeloop_lane_depth{lane=\"normal\"}"), 3.0);
        assert_eq!(value(body, "tradeloop_lane_depth{lane=\"critical\"}"), 0.0);
        assert_eq!(value(body, "tradeloop_orders_sent_total"), 5.0);
        assert_eq!(value(body, "tradeloop_fills_total"), 4.0);
        assert_eq!(value(body, "tradeloop_stop_rehearsals_total"), 12.0);
        assert_eq!(value(body, "tradeloop_timers_fired_total"), 31.0);
        assert_eq!(value(body, "tradeloop_timers_refused_total"), 2.0);
        assert_eq!(
            value(body, "tradeloop_orders_denied_total{reason=\"price_band\"}"),
            2.0
        );
        assert_eq!(
            value(body, "tradeloop_feed_frames_total{feed=\"sim\"}"),
            42.0
        );
        assert_eq!(
            value(
                body,
                "tradeloop_feed_state{feed=\"sim\",state=\"connecting\"}"
            ),
            1.0
        );
        assert_eq!(value(body, "tradeloop_persistence_pending_records"), 17.0);
        assert_eq!(value(body, "tradeloop_live_orders_sent_total"), 9.0);
        assert_eq!(value(body, "tradeloop_live_http_429_total"), 1.0);
        assert_eq!(value(body, "tradeloop_live_foreign_orders"), 2.0);
        assert!(
            body.contains("# HELP tradeloop_live_orders_sent_total"),
            "{body}"
        );
        assert_eq!(
            value(
                body,
                "tradeloop_book_state{instrument=\"sim:BTCUSDT\",state=\"empty\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                body,
                "tradeloop_breaker_state{breaker=\"drawdown\",state=\"closed\"}"
            ),
            1.0
        );
        assert!(
            body.contains("# TYPE tradeloop_orders_sent_total counter"),
            "{body}"
        );
        assert!(body.contains("# HELP tradeloop_lane_depth"), "{body}");
        assert!(
            body.contains("tradeloop_tick_to_trade_seconds{quantile=\"0.99\"}"),
            "{body}"
        );
        // A later update moves the values.
        counters.orders_sent = 6;
        telemetry.publish(&LoopHistograms::new(), &counters, 2);
        exporter.update(&RunView {
            started: Instant::now(),
            lanes: &lanes,
            telemetry: &telemetry,
            feeds: vec![],
            instruments: &[],
            persistence_pending: 0,
            persistence_failures: 1,
            live: None,
        });
        assert_eq!(
            value(&exporter.render(), "tradeloop_orders_sent_total"),
            6.0
        );
    }

    /// Every series the Grafana dashboard (`deploy/grafana/tradeloop.json`) queries is one
    /// this exporter serves, with the labels its legends name.
    #[test]
    fn the_grafana_dashboard_queries_only_served_series() {
        let exporter = Exporter::start("127.0.0.1:0", None).expect("start");
        let lanes = Lanes::new(LaneConfig::default());
        let telemetry = Telemetry::new(1);
        let mut counters = EngineCounters::default();
        counters.denials[9] = 2;
        telemetry.publish(&LoopHistograms::new(), &counters, 1);
        // A book with both sides, so its best bid and ask are served.
        let mut book = tradeloop_engine::book::OrderBook::new(64);
        for (side, price, flags) in [
            (
                tradeloop_engine::event::Side::Buy,
                99,
                tradeloop_engine::event::DeltaFlags::SNAPSHOT_BEGIN,
            ),
            (
                tradeloop_engine::event::Side::Sell,
                101,
                tradeloop_engine::event::DeltaFlags::LAST_IN_MESSAGE,
            ),
        ] {
            book.apply(&tradeloop_engine::event::BookDelta {
                instrument: InstrumentIndex(0),
                side,
                flags: tradeloop_engine::event::DeltaFlags(flags),
                price: Price::from_units(price),
                qty: Qty::from_units(1),
                update_id: 1,
            });
        }
        let position = tradeloop_engine::position::Position::new(
            InstrumentIndex(0),
            tradeloop_engine::instrument::ContractKind::Spot,
        );
        telemetry.publish_instruments(std::slice::from_ref(&book), &[position]);
        let feed = FeedShared::default();
        let names = ["sim:BTCUSDT".to_owned()];
        exporter.update(&RunView {
            started: Instant::now(),
            lanes: &lanes,
            telemetry: &telemetry,
            feeds: vec![("sim", &feed)],
            instruments: &names,
            persistence_pending: 0,
            persistence_failures: 0,
            live: Some(tradeloop_adapters::binance::exec::gateway::LiveStats::default()),
        });
        let served = exporter.render();
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../deploy/grafana/tradeloop.json")).unwrap();
        let mut queried = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap();
                let legend = target["legendFormat"].as_str().unwrap_or("");
                let mut rest = expr;
                while let Some(at) = rest.find("tradeloop_") {
                    let name: String = rest[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    rest = &rest[at + name.len()..];
                    queried += 1;
                    let lines: Vec<&str> = served
                        .lines()
                        .filter(|l| {
                            l.strip_prefix(name.as_str())
                                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
                        })
                        .collect();
                    assert!(
                        !lines.is_empty(),
                        "panel {:?} queries {name}, which is not served",
                        panel["title"]
                    );
                    for label in legend
                        .split("{{")
                        .skip(1)
                        .filter_map(|l| l.split_once("}}"))
                    {
                        assert!(
                            lines.iter().any(|l| l.contains(&format!("{}=\"", label.0))),
                            "panel {:?}: {name} has no label {:?}",
                            panel["title"],
                            label.0
                        );
                    }
                }
            }
        }
        assert!(queried >= 45, "TC0 the dashboard queries {queried} series");
    }

    #[test]
    fn answers_other_requests_with_their_status() {
        let exporter = Exporter::start("127.0.0.1:0", None).expect("start");
        let a = exporter.addr();
        assert!(get(a, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(a, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        let head = get(a, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST)
        );
        assert!(get(a, &huge).starts_with("HTTP/1.1 431"));
        // A client that connects and says nothing is dropped after the read timeout; the
        // next one is answered.
        let idle = TcpStream::connect(a).unwrap();
        let ok = get(a, "GET /metrics HTTP/1.1\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        drop(idle);
    }

    const TOKEN: &str = "s3cret-token-0123456789";

    fn flags(token: Option<&str>) -> ControlFlags {
        ControlFlags {
            token: token.map(|t| ControlToken::new(t).unwrap()),
            token_env: "TRADELOOP_CONTROL_TOKEN".into(),
            ..ControlFlags::default()
        }
    }

    /// Every way a control request is answered: (label, request, status, flag raised).
    #[test]
    fn control_requests_need_loopback_no_origin_and_the_bearer_token() {
        let post = |path: &str, headers: &str| {
            format!("POST {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: 0\r\n\r\n")
        };
        let good = format!("Authorization: Bearer {TOKEN}\r\n");
        let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
            ("TC0 no token", post("/control/kill", ""), "401", None),
            (
                "TC1 wrong token",
                post(
                    "/control/kill",
                    "Authorization: Bearer s3cret-token-0123456780\r\n",
                ),
                "401",
                None,
            ),
            (
                "TC2 a prefix of the token",
                post("/control/resume", "Authorization: Bearer s3cret-token\r\n"),
                "401",
                None,
            ),
            (
                "TC3 not a bearer scheme",
                post(
                    "/control/kill",
                    &format!("Authorization: Basic {TOKEN}\r\n"),
                ),
                "401",
                None,
            ),
            (
                "TC4 Origin present, even with the token",
                post(
                    "/control/resume",
                    &format!("Origin: http://evil.example\r\n{good}"),
                ),
                "403",
                None,
            ),
            (
                "TC5 GET is not a control request",
                format!("GET /control/kill HTTP/1.1\r\n{good}\r\n"),
                "405",
                None,
            ),
            (
                "TC6 the metrics endpoint is read-only",
                post("/metrics", &good),
                "405",
                None,
            ),
            (
                "TC7 kill with the token",
                post("/control/kill", &good),
                "202",
                Some("kill"),
            ),
            (
                "TC8 resume with the token, header names in any case",
                post(
                    "/control/resume",
                    &format!("authorization: bearer {TOKEN}\r\n"),
                ),
                "202",
                Some("resume"),
            ),
        ];
        for (label, request, status, raised) in cases {
            let f = flags(Some(TOKEN));
            let exporter = Exporter::start("127.0.0.1:0", Some(f.clone())).expect("start");
            let r = get(exporter.addr(), &request);
            assert!(r.starts_with(&format!("HTTP/1.1 {status}")), "{label}: {r}");
            assert_eq!(
                f.kill.load(Ordering::Acquire),
                raised == Some("kill"),
                "{label}: kill flag"
            );
            assert_eq!(
                f.resume.load(Ordering::Acquire),
                raised == Some("resume"),
                "{label}: resume flag"
            );
            if status == "401" {
                assert!(r.contains("WWW-Authenticate: Bearer"), "{label}: {r}");
            }
            assert!(!r.contains(TOKEN), "{label}: the token is never echoed");
        }
        // No token configured: the endpoints are disabled, and say how to enable them.
        let off = flags(None);
        let exporter = Exporter::start("127.0.0.1:0", Some(off.clone())).expect("start");
        let r = get(
            exporter.addr(),
            &post(
                "/control/kill",
                &format!("Authorization: Bearer {TOKEN}\r\n"),
            ),
        );
        assert!(r.starts_with("HTTP/1.1 404"), "TC9 {r}");
        assert!(r.contains("$TRADELOOP_CONTROL_TOKEN"), "TC9 {r}");
        assert!(!off.kill.load(Ordering::Acquire), "TC9");
        // Without control flags the endpoints do not exist.
        let plain = Exporter::start("127.0.0.1:0", None).expect("start");
        let r = get(plain.addr(), "POST /control/kill HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 404"), "TC10 {r}");
        // A peer off loopback is refused before anything else.
        let off_loopback = "10.0.0.1:5000".parse().unwrap();
        let head = format!("POST /control/kill HTTP/1.1\r\nAuthorization: Bearer {TOKEN}");
        assert_eq!(
            control_request(
                "/control/kill",
                off_loopback,
                &head,
                Some(&flags(Some(TOKEN)))
            )
            .0,
            "403 Forbidden",
            "TC11"
        );
    }

    #[test]
    fn a_control_token_is_checked_and_never_printed() {
        assert!(ControlToken::new("short").is_err(), "TC0 too short");
        assert!(
            ControlToken::new("has a space in it, long enough").is_err(),
            "TC1 whitespace"
        );
        let t = ControlToken::new(TOKEN).unwrap();
        assert!(!format!("{t:?}").contains("s3cret"), "TC2 {t:?}");
        assert!(
            !format!("{:?}", flags(Some(TOKEN))).contains("s3cret"),
            "TC3"
        );
        assert!(t.matches(TOKEN.as_bytes()), "TC4");
        assert!(!t.matches(b"s3cret-token-012345678"), "TC5 shorter");
        assert!(!t.matches(b"s3cret-token-01234567899"), "TC6 longer");
    }

    #[test]
    fn a_taken_or_bad_address_names_the_key() {
        let first = Exporter::start("127.0.0.1:0", None).expect("start");
        let taken = Exporter::start(&first.addr().to_string(), None)
            .err()
            .expect("in use");
        assert!(taken.to_string().contains("metrics.listen"), "{taken:#}");
        let bad = Exporter::start("localhost", None)
            .err()
            .expect("not an address");
        assert!(bad.to_string().contains("metrics.listen"), "{bad:#}");
    }
}
