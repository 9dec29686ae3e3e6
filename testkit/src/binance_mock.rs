//! A loopback mock of Binance's REST API and user data stream, for tests of the execution
//! gateway. It checks what Binance checks — the API key header, the HMAC signature over the
//! exact parameters, `timestamp` against `recvWindow`, mandatory and unknown parameters,
//! enumerations, and the symbol filters — answers with Binance's error codes and rate-limit
//! headers, keeps orders, balances and positions, sends execution reports on
//! `/ws/<listenKey>`, and injects faults: error answers, 429/418, an order placed but
//! answered 500, duplicated and reversed reports, dropped streams and expired listen keys.
//!
//! Not a venue: matching is "marketable fills at the mock's price, resting orders fill when
//! [`MockBinance::trade`] crosses them", commission is zero, and balances are not locked by
//! open orders.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tradeloop_engine::fixed::{Money, Price, Qty};

use tradeloop_adapters::binance::exec::rest::{unix_ms, Market};
use tradeloop_adapters::binance::exec::sign::Credentials;

/// One symbol of the mock.
#[derive(Clone, Debug)]
pub struct MockSymbol {
    /// Symbol, e.g. `BTCUSDT`.
    pub symbol: String,
    /// Base asset (spot balances).
    pub base: String,
    /// Quote asset.
    pub quote: String,
    /// `PRICE_FILTER.tickSize`.
    pub tick: Price,
    /// `LOT_SIZE.stepSize`.
    pub step: Qty,
    /// `LOT_SIZE.minQty`.
    pub min_qty: Qty,
    /// `LOT_SIZE.maxQty`.
    pub max_qty: Qty,
    /// Minimum notional.
    pub min_notional: Price,
    /// Current price: marketable orders fill here.
    pub price: Price,
}

impl MockSymbol {
    /// A USDT-quoted symbol with BTCUSDT's filters (tick 0.01, step and minimum 0.00001,
    /// maximum 9000, minimum notional 5) at `price`.
    ///
    /// # Panics
    /// If `price` is not a decimal (a test error).
    #[must_use]
    pub fn usdt(symbol: &str, base: &str, price: &str) -> Self {
        let q = |s: &str| s.parse::<Qty>().expect("decimal");
        Self {
            symbol: symbol.into(),
            base: base.into(),
            quote: "USDT".into(),
            tick: "0.01".parse().expect("decimal"),
            step: q("0.00001"),
            min_qty: q("0.00001"),
            max_qty: q("9000"),
            min_notional: "5".parse().expect("decimal"),
            price: price.parse().expect("decimal price"),
        }
    }
}

/// Mock settings.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Spot or USD-M paths and payloads.
    pub market: Market,
    /// The one API key accepted.
    pub api_key: String,
    /// Its secret.
    pub secret: String,
    /// Symbols.
    pub symbols: Vec<MockSymbol>,
    /// Server clock minus local clock, ms.
    pub skew_ms: i64,
    /// Spot balances (asset, free).
    pub balances: Vec<(String, Qty)>,
    /// `REQUEST_WEIGHT` per minute.
    pub weight_limit: u32,
    /// `ORDERS` per 10 s.
    pub orders_10s_limit: u32,
    /// Refuse spot orders the balances do not cover (`false`: balances may go negative, as
    /// on a margin account).
    pub check_balances: bool,
}

/// A fault to inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The next signed request is answered with this Binance error (HTTP 400).
    Error {
        /// Binance code.
        code: i64,
        /// Message.
        msg: String,
    },
    /// The next request of any kind is answered with this status (429 or 418) and
    /// `Retry-After`.
    Status {
        /// HTTP status.
        status: u16,
        /// `Retry-After`, s.
        retry_after_s: u64,
    },
    /// The next new order is placed (or the next modify takes effect), but the answer is
    /// HTTP 500.
    PlacedThen500,
    /// The next `n` execution reports are each sent twice.
    Duplicate(u32),
    /// The next `n` execution reports are held back and then sent in reverse order.
    Reverse(u32),
    /// The next `n` execution reports are never sent.
    Lose(u32),
}

/// A request the mock received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string and body, as sent.
    pub params: String,
    /// `X-MBX-APIKEY`, if sent.
    pub api_key: Option<String>,
    /// HTTP status answered.
    pub status: u16,
}

/// An order at the mock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockOrder {
    /// Symbol.
    pub symbol: String,
    /// Venue id.
    pub order_id: i64,
    /// Client id.
    pub client_id: String,
    /// `true` for BUY.
    pub buy: bool,
    /// `LIMIT`, `MARKET`, `LIMIT_MAKER`.
    pub kind: String,
    /// `GTC`, `IOC`, `FOK`.
    pub tif: String,
    /// Limit price (zero for market).
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Executed quantity.
    pub executed: Qty,
    /// Executed quote.
    pub quote: Money,
    /// Binance status name.
    pub status: &'static str,
    /// Times modified (USD-M `PUT order`).
    pub amends: u32,
}

impl MockOrder {
    /// Average fill price (zero before the first fill).
    fn avg_price(&self) -> Price {
        if self.executed.0 == 0 {
            Price::ZERO
        } else {
            Price(i64::try_from(self.quote.raw() / i128::from(self.executed.0)).unwrap_or(0))
        }
    }

    fn working(&self) -> bool {
        matches!(self.status, "NEW" | "PARTIALLY_FILLED")
    }
}

#[derive(Default)]
struct State {
    orders: Vec<MockOrder>,
    next_order_id: i64,
    next_trade_id: i64,
    next_cancel_id: u64,
    prices: HashMap<String, Price>,
    balances: BTreeMap<String, Qty>,
    /// USD-M: signed quantity and basis per symbol.
    positions: BTreeMap<String, (Qty, Money)>,
    listen_keys: HashMap<String, Instant>,
    next_key: u64,
    streams: Vec<(String, mpsc::UnboundedSender<String>)>,
    faults: VecDeque<Fault>,
    duplicate: u32,
    reverse: u32,
    lose: u32,
    held: Vec<String>,
    requests: Vec<LoggedRequest>,
    weight: (u64, u32),
    orders_10s: (u64, u32),
    streams_opened: u64,
}

struct Shared {
    config: MockConfig,
    credentials: Credentials,
    state: Mutex<State>,
    stop: AtomicBool,
}

/// The running mock.
pub struct MockBinance {
    shared: Arc<Shared>,
    rest_addr: SocketAddr,
    ws_addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MockBinance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockBinance")
            .field("rest", &self.rest_addr)
            .field("ws", &self.ws_addr)
            .finish_non_exhaustive()
    }
}

fn money8(m: Money) -> String {
    // Quote amounts are written with 8 decimals, as Binance writes them.
    let raw = m.raw() / (Money::from_fixed_raw(1).raw());
    Price(i64::try_from(raw).unwrap_or(i64::MAX)).to_string()
}

impl MockBinance {
    /// Starts the mock on two loopback ports.
    ///
    /// # Errors
    /// If a port cannot be bound or the thread cannot start.
    pub fn start(config: MockConfig) -> std::io::Result<Self> {
        let rest = std::net::TcpListener::bind("127.0.0.1:0")?;
        let ws = std::net::TcpListener::bind("127.0.0.1:0")?;
        rest.set_nonblocking(true)?;
        ws.set_nonblocking(true)?;
        let (rest_addr, ws_addr) = (rest.local_addr()?, ws.local_addr()?);
        let mut state = State {
            next_order_id: 1000,
            next_trade_id: 1,
            ..State::default()
        };
        for s in &config.symbols {
            state.prices.insert(s.symbol.clone(), s.price);
        }
        for (asset, qty) in &config.balances {
            state.balances.insert(asset.clone(), *qty);
        }
        let shared = Arc::new(Shared {
            credentials: Credentials::new(&config.api_key, &config.secret),
            config,
            state: Mutex::new(state),
            stop: AtomicBool::new(false),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("mock-binance".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        let rest = TcpListener::from_std(rest).expect("registered listener");
                        let ws = TcpListener::from_std(ws).expect("registered listener");
                        tokio::spawn(accept(Arc::clone(&shared), rest, false));
                        accept(shared, ws, true).await;
                    });
                })?
        };
        Ok(Self {
            shared,
            rest_addr,
            ws_addr,
            thread: Some(thread),
        })
    }

    /// `http://` base URL of the REST API.
    #[must_use]
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.rest_addr)
    }

    /// `ws://` base URL of the user data stream (`/ws/<listenKey>`).
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        self.shared.state.lock().faults.push_back(fault);
    }

    /// Every request received so far.
    #[must_use]
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.state.lock().requests.clone()
    }

    /// Every order, working or done.
    #[must_use]
    pub fn orders(&self) -> Vec<MockOrder> {
        self.shared.state.lock().orders.clone()
    }

    /// A spot balance.
    #[must_use]
    pub fn balance(&self, asset: &str) -> Qty {
        self.shared
            .state
            .lock()
            .balances
            .get(asset)
            .copied()
            .unwrap_or(Qty::ZERO)
    }

    /// Sets a spot balance (as if changed outside this client).
    pub fn set_balance(&self, asset: &str, qty: Qty) {
        self.shared
            .state
            .lock()
            .balances
            .insert(asset.to_owned(), qty);
    }

    /// Sets a USD-M position (as if changed outside this client).
    pub fn set_position(&self, symbol: &str, qty: Qty, entry: Price) {
        self.shared
            .state
            .lock()
            .positions
            .insert(symbol.to_owned(), (qty, Money::notional(entry, qty)));
    }

    /// A USD-M position's signed quantity (zero if none).
    #[must_use]
    pub fn position(&self, symbol: &str) -> Qty {
        self.shared
            .state
            .lock()
            .positions
            .get(symbol)
            .map_or(Qty::ZERO, |p| p.0)
    }

    /// User-stream connections opened so far.
    #[must_use]
    pub fn streams_opened(&self) -> u64 {
        self.shared.state.lock().streams_opened
    }

    /// User-stream connections open now.
    #[must_use]
    pub fn streams_open(&self) -> usize {
        let mut st = self.shared.state.lock();
        st.streams.retain(|(_, tx)| !tx.is_closed());
        st.streams.len()
    }

    /// Places an order as another client (a person on the web UI, or an earlier run).
    pub fn place_external(&self, symbol: &str, client_id: &str, buy: bool, price: Price, qty: Qty) {
        let mut st = self.shared.state.lock();
        let order_id = st.next_order_id;
        st.next_order_id += 1;
        st.orders.push(MockOrder {
            symbol: symbol.to_owned(),
            order_id,
            client_id: client_id.to_owned(),
            buy,
            kind: "LIMIT".into(),
            tif: "GTC".into(),
            price,
            qty,
            executed: Qty::ZERO,
            quote: Money::ZERO,
            status: "NEW",
            amends: 0,
        });
    }

    /// Moves the market: resting orders the price crosses fill completely at their limit.
    pub fn trade(&self, symbol: &str, price: Price) {
        let mut st = self.shared.state.lock();
        st.prices.insert(symbol.to_owned(), price);
        let crossing: Vec<usize> = st
            .orders
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                o.symbol == symbol
                    && o.working()
                    && o.kind != "MARKET"
                    && if o.buy {
                        price <= o.price
                    } else {
                        price >= o.price
                    }
            })
            .map(|(i, _)| i)
            .collect();
        for i in crossing {
            let (qty, px) = (
                Qty(st.orders[i].qty.0 - st.orders[i].executed.0),
                st.orders[i].price,
            );
            execute(&self.shared, &mut st, i, qty, px, true);
        }
    }

    /// Fills `qty` of a working order at its limit price (a partial fill).
    ///
    /// # Panics
    /// If no working order has `client_id` (a test error).
    pub fn fill(&self, client_id: &str, qty: Qty) {
        let mut st = self.shared.state.lock();
        let i = st
            .orders
            .iter()
            .position(|o| o.client_id == client_id && o.working())
            .expect("a working order with this client id");
        let px = st.orders[i].price;
        execute(&self.shared, &mut st, i, qty, px, true);
    }

    /// Closes every user-stream connection (the listen keys stay valid).
    pub fn drop_streams(&self) {
        self.shared.state.lock().streams.clear();
    }

    /// Expires every listen key: sends `listenKeyExpired` and closes the streams.
    pub fn expire_listen_keys(&self) {
        let mut st = self.shared.state.lock();
        let now = unix_ms();
        for (key, tx) in &st.streams {
            let _ = tx.send(format!(
                r#"{{"e":"listenKeyExpired","E":{now},"listenKey":"{key}"}}"#
            ));
        }
        st.streams.clear();
        st.listen_keys.clear();
    }

    /// Forgets every listen key without telling the streams (a keep-alive then gets `-1125`).
    pub fn forget_listen_keys(&self) {
        self.shared.state.lock().listen_keys.clear();
    }

    /// Sends a text message on every user stream (e.g. garbage).
    pub fn send_raw(&self, text: &str) {
        for (_, tx) in &self.shared.state.lock().streams {
            let _ = tx.send(text.to_owned());
        }
    }
}

impl Drop for MockBinance {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.state.lock().streams.clear();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept(shared: Arc<Shared>, listener: TcpListener, ws: bool) {
    while !shared.stop.load(Ordering::Relaxed) {
        let Ok(Ok((stream, _))) =
            tokio::time::timeout(Duration::from_millis(50), listener.accept()).await
        else {
            continue;
        };
        let shared = Arc::clone(&shared);
        if ws {
            tokio::spawn(serve_stream(shared, stream));
        } else {
            tokio::spawn(serve_http(shared, stream));
        }
    }
}

async fn serve_stream(shared: Arc<Shared>, stream: TcpStream) {
    let mut path = String::new();
    #[allow(
        clippy::result_large_err,
        reason = "the signature is tungstenite's handshake callback"
    )]
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let key = path.strip_prefix("/ws/").unwrap_or("").to_owned();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let registered = {
        let mut st = shared.state.lock();
        let valid = st.listen_keys.contains_key(&key);
        if valid {
            st.streams_opened += 1;
            st.streams.push((key, tx));
        }
        valid
    };
    if !registered {
        let _ = ws.close(None).await;
        return;
    }
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(text) => {
                    if ws.send(Message::text(text)).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = ws.close(None).await;
                    return;
                }
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
            }
        }
    }
}

async fn serve_http(shared: Arc<Shared>, mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 64 * 1024 {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let mut api_key = None;
    let mut length = 0usize;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("x-mbx-apikey") {
                api_key = Some(value.trim().to_owned());
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    while buf.len() < head_end + length.min(64 * 1024) {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let reply = handle(&shared, &method, path, query, &body, api_key.as_deref());
    let mut headers = String::new();
    for (k, v) in &reply.headers {
        headers.push_str(&format!("{k}: {v}\r\n"));
    }
    let text = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{}",
        reply.status,
        reason(reply.status),
        reply.body.len(),
        reply.body
    );
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

const fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    }
}

struct Reply {
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
}

fn error(status: u16, code: i64, msg: &str) -> Reply {
    Reply {
        status,
        body: format!(r#"{{"code":{code},"msg":"{}"}}"#, msg.replace('"', "'")),
        headers: Vec::new(),
    }
}

fn ok(body: String) -> Reply {
    Reply {
        status: 200,
        body,
        headers: Vec::new(),
    }
}

fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| b.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let Some(x) = hex {
            out.push(x);
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &str,
    body: &str,
    api_key: Option<&str>,
) -> Reply {
    let mut st = shared.state.lock();
    let mut reply = route(shared, &mut st, method, path, query, body, api_key);
    let now = u64::try_from(unix_ms().max(0)).unwrap_or(0);
    let minute = now / 60_000;
    if st.weight.0 != minute {
        st.weight = (minute, 0);
    }
    st.weight.1 += weight(path);
    let ten = now / 10_000;
    if st.orders_10s.0 != ten {
        st.orders_10s = (ten, 0);
    }
    if matches!(method, "POST" | "PUT") && path.ends_with("/order") && reply.status == 200 {
        st.orders_10s.1 += 1;
    }
    reply
        .headers
        .push(("X-MBX-USED-WEIGHT-1M".into(), st.weight.1.to_string()));
    reply
        .headers
        .push(("X-MBX-ORDER-COUNT-10S".into(), st.orders_10s.1.to_string()));
    st.requests.push(LoggedRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        params: format!("{query}{body}"),
        api_key: api_key.map(str::to_owned),
        status: reply.status,
    });
    reply
}

fn weight(path: &str) -> u32 {
    if path.ends_with("exchangeInfo") || path.ends_with("account") {
        20
    } else if path.ends_with("openOrders") || path.ends_with("positionRisk") {
        6
    } else {
        1
    }
}

fn route(
    shared: &Shared,
    st: &mut State,
    method: &str,
    path: &str,
    query: &str,
    body: &str,
    api_key: Option<&str>,
) -> Reply {
    let cfg = &shared.config;
    let spot = cfg.market == Market::Spot;
    let prefix = if spot { "/api/v3/" } else { "/fapi/" };
    let Some(endpoint) = path.strip_prefix(prefix) else {
        return error(404, -1, "not found");
    };
    if let Some(i) = st
        .faults
        .iter()
        .position(|f| matches!(f, Fault::Status { .. }))
    {
        if let Some(Fault::Status {
            status,
            retry_after_s,
        }) = st.faults.remove(i)
        {
            let mut r = error(
                status,
                -1003,
                "Too many requests; current limit is exceeded.",
            );
            r.headers
                .push(("Retry-After".into(), retry_after_s.to_string()));
            return r;
        }
    }
    let now = u64::try_from(unix_ms().max(0)).unwrap_or(0);
    if st.weight.0 == now / 60_000 && st.weight.1 >= cfg.weight_limit {
        let mut r = error(
            429,
            -1003,
            "Too many requests; current limit of IP is exceeded.",
        );
        r.headers.push(("Retry-After".into(), "1".into()));
        return r;
    }
    let params: Vec<(String, String)> = format!(
        "{query}{}{body}",
        if query.is_empty() || body.is_empty() {
            ""
        } else {
            "&"
        }
    )
    .split('&')
    .filter(|kv| !kv.is_empty())
    .map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k.to_owned(), decode(v))
    })
    .collect();
    let params = Params(params);
    let get = |name: &str| params.get(name);
    match (method, endpoint) {
        ("GET", "v3/time" | "time" | "v1/time") => {
            return ok(format!(r#"{{"serverTime":{}}}"#, unix_ms() + cfg.skew_ms))
        }
        ("GET", "exchangeInfo" | "v1/exchangeInfo") => return ok(exchange_info(cfg)),
        ("GET", "ticker/price" | "v1/ticker/price") => {
            let Some(px) = get("symbol").and_then(|s| st.prices.get(s)) else {
                return error(400, -1121, "Invalid symbol.");
            };
            return ok(format!(
                r#"{{"symbol":"{}","price":"{px}"}}"#,
                get("symbol").unwrap_or("")
            ));
        }
        ("POST" | "PUT" | "DELETE", "userDataStream" | "v1/listenKey") => {
            if api_key != Some(cfg.api_key.as_str()) {
                return error(
                    401,
                    -2015,
                    "Invalid API-key, IP, or permissions for action.",
                );
            }
            return listen_key(st, method, get("listenKey"));
        }
        _ => {}
    }
    // Everything else is SIGNED.
    if api_key != Some(cfg.api_key.as_str()) {
        return error(
            401,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        );
    }
    let total = format!("{query}{body}");
    let Some((signed, signature)) = split_signature(&total) else {
        return error(
            400,
            -1102,
            "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
        );
    };
    if !shared.credentials.verify(&signed, &signature) {
        return error(400, -1022, "Signature for this request is not valid.");
    }
    let Some(timestamp) = get("timestamp").and_then(|t| t.parse::<i64>().ok()) else {
        return error(
            400,
            -1102,
            "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        );
    };
    let recv_window = get("recvWindow").map_or(Some(5000), |w| w.parse::<i64>().ok());
    let Some(recv_window) = recv_window.filter(|w| (1..=60_000).contains(w)) else {
        return error(400, -1131, "recvWindow must be less than 60000");
    };
    let server = unix_ms() + cfg.skew_ms;
    if timestamp >= server + 1000 || server - timestamp > recv_window {
        return error(
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        );
    }
    if let Some(i) = st
        .faults
        .iter()
        .position(|f| matches!(f, Fault::Error { .. }))
    {
        if let Some(Fault::Error { code, msg }) = st.faults.remove(i) {
            return error(400, code, &msg);
        }
    }
    let allowed: &[&str] = match (method, endpoint) {
        ("POST", "order" | "v1/order") => &[
            "symbol",
            "side",
            "type",
            "timeInForce",
            "quantity",
            "price",
            "newClientOrderId",
            "stopPrice",
            "newOrderRespType",
            "reduceOnly",
        ],
        ("PUT", "v1/order") => &[
            "symbol",
            "orderId",
            "origClientOrderId",
            "side",
            "quantity",
            "price",
        ],
        ("GET" | "DELETE", "order" | "v1/order") => &["symbol", "orderId", "origClientOrderId"],
        ("GET", "openOrders" | "v1/openOrders") | ("GET", "v2/positionRisk") => &["symbol"],
        ("DELETE", "openOrders" | "v1/allOpenOrders") => &["symbol"],
        ("GET", "account") => &["omitZeroBalances"],
        _ => return error(404, -1, "not found"),
    };
    if let Some((k, _)) = params.0.iter().find(|(k, _)| {
        !allowed.contains(&k.as_str())
            && !matches!(k.as_str(), "timestamp" | "recvWindow" | "signature")
    }) {
        return error(
            400,
            -1104,
            &format!("Not all sent parameters were read; unexpected parameter '{k}'."),
        );
    }
    match (method, endpoint) {
        ("POST", _) => new_order(shared, st, &params),
        ("PUT", _) => modify_order(shared, st, &params),
        ("GET", "order" | "v1/order") => match find(st, &params) {
            Ok(i) => ok(order_json(cfg.market, &st.orders[i], None)),
            Err(_) => error(400, -2013, "Order does not exist."),
        },
        ("DELETE", "order" | "v1/order") => {
            let Ok(i) = find(st, &params) else {
                return error(400, -2011, "Unknown order sent.");
            };
            if !st.orders[i].working() {
                return error(400, -2011, "Unknown order sent.");
            }
            let cancel_id = cancel(shared, st, i);
            ok(order_json(cfg.market, &st.orders[i], Some(&cancel_id)))
        }
        ("GET", _) if endpoint.ends_with("openOrders") => {
            let symbol = get("symbol");
            let list: Vec<String> = st
                .orders
                .iter()
                .filter(|o| o.working() && symbol.is_none_or(|s| s == o.symbol))
                .map(|o| order_json(cfg.market, o, None))
                .collect();
            ok(format!("[{}]", list.join(",")))
        }
        ("DELETE", _) => {
            let Some(symbol) = get("symbol") else {
                return error(
                    400,
                    -1102,
                    "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
                );
            };
            let ids: Vec<usize> = (0..st.orders.len())
                .filter(|&i| st.orders[i].working() && st.orders[i].symbol == symbol)
                .collect();
            let mut list = Vec::new();
            for i in ids {
                let c = cancel(shared, st, i);
                list.push(order_json(cfg.market, &st.orders[i], Some(&c)));
            }
            if spot {
                ok(format!("[{}]", list.join(",")))
            } else {
                ok(
                    r#"{"code":200,"msg":"The operation of cancel all open order is done."}"#
                        .into(),
                )
            }
        }
        ("GET", "account") => {
            let list: Vec<String> = st
                .balances
                .iter()
                .map(|(a, q)| format!(r#"{{"asset":"{a}","free":"{q}","locked":"0"}}"#))
                .collect();
            ok(format!(
                r#"{{"canTrade":true,"balances":[{}]}}"#,
                list.join(",")
            ))
        }
        ("GET", _) => {
            let list: Vec<String> = cfg
                .symbols
                .iter()
                .map(|s| {
                    let (qty, basis) = st.positions.get(&s.symbol).copied().unwrap_or((Qty::ZERO, Money::ZERO));
                    let entry = if qty.0 == 0 { Money::ZERO } else { Money(basis.0 / i128::from(qty.0) * Money::from_fixed_raw(1).raw()) };
                    format!(
                        r#"{{"symbol":"{}","positionAmt":"{qty}","entryPrice":"{}","markPrice":"{}","positionSide":"BOTH"}}"#,
                        s.symbol,
                        money8(entry),
                        st.prices.get(&s.symbol).copied().unwrap_or(s.price)
                    )
                })
                .collect();
            ok(format!("[{}]", list.join(",")))
        }
        _ => error(404, -1, "not found"),
    }
}

/// Decoded request parameters, in the order sent.
struct Params(Vec<(String, String)>);

impl Params {
    /// A parameter that must be sent and not be empty, or Binance's `-1102` naming it.
    fn mandatory(&self, name: &str) -> Result<&str, Reply> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            error(
                400,
                -1102,
                &format!(
                    "Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
                ),
            )
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The signed payload and the signature (`signature` removed from its place).
fn split_signature(total: &str) -> Option<(String, String)> {
    let mut signature = None;
    let rest: Vec<&str> = total
        .split('&')
        .filter(|kv| match kv.strip_prefix("signature=") {
            Some(s) => {
                signature = Some(s.to_owned());
                false
            }
            None => true,
        })
        .collect();
    Some((rest.join("&"), signature?))
}

fn listen_key(st: &mut State, method: &str, key: Option<&str>) -> Reply {
    let valid = Instant::now() + Duration::from_secs(3600);
    match method {
        "POST" => {
            st.next_key += 1;
            let key = format!("mockListenKey{:060}", st.next_key);
            st.listen_keys.insert(key.clone(), valid);
            ok(format!(r#"{{"listenKey":"{key}"}}"#))
        }
        _ => {
            let Some(key) = key else {
                return error(
                    400,
                    -1102,
                    "Mandatory parameter 'listenKey' was not sent, was empty/null, or malformed.",
                );
            };
            if !st.listen_keys.contains_key(key) {
                return error(400, -1125, "This listenKey does not exist.");
            }
            if method == "PUT" {
                st.listen_keys.insert(key.to_owned(), valid);
            } else {
                st.listen_keys.remove(key);
            }
            ok("{}".into())
        }
    }
}

fn find(st: &State, params: &Params) -> Result<usize, ()> {
    let get = |name: &str| params.get(name);
    let symbol = get("symbol").ok_or(())?;
    let by_id = get("orderId").and_then(|v| v.parse::<i64>().ok());
    let by_client = get("origClientOrderId");
    st.orders
        .iter()
        .position(|o| {
            o.symbol == symbol
                && (by_id == Some(o.order_id) || by_client.is_some_and(|c| c == o.client_id))
        })
        .ok_or(())
}

fn exchange_info(cfg: &MockConfig) -> String {
    let symbols: Vec<String> = cfg
        .symbols
        .iter()
        .map(|s| {
            let notional = if cfg.market == Market::Spot {
                format!(r#"{{"filterType":"NOTIONAL","minNotional":"{}","maxNotional":"0"}}"#, s.min_notional)
            } else {
                format!(r#"{{"filterType":"MIN_NOTIONAL","notional":"{}"}}"#, s.min_notional)
            };
            format!(
                r#"{{"symbol":"{}","status":"TRADING","baseAsset":"{}","quoteAsset":"{}","filters":[{{"filterType":"PRICE_FILTER","minPrice":"{}","maxPrice":"0","tickSize":"{}"}},{{"filterType":"LOT_SIZE","minQty":"{}","maxQty":"{}","stepSize":"{}"}},{notional}]}}"#,
                s.symbol, s.base, s.quote, s.tick, s.tick, s.min_qty, s.max_qty, s.step
            )
        })
        .collect();
    format!(
        r#"{{"timezone":"UTC","serverTime":{},"rateLimits":[{{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":{}}},{{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":{}}}],"symbols":[{}]}}"#,
        unix_ms() + cfg.skew_ms,
        cfg.weight_limit,
        cfg.orders_10s_limit,
        symbols.join(",")
    )
}

fn new_order(shared: &Shared, st: &mut State, params: &Params) -> Reply {
    let cfg = &shared.config;
    let get = |name: &str| params.get(name);
    let mandatory = |name: &'static str| params.mandatory(name);
    let parsed = (|| -> Result<Reply, Reply> {
        let symbol = mandatory("symbol")?;
        let Some(sym) = cfg.symbols.iter().find(|s| s.symbol == symbol) else {
            return Err(error(400, -1121, "Invalid symbol."));
        };
        let buy = match mandatory("side")? {
            "BUY" => true,
            "SELL" => false,
            _ => return Err(error(400, -1117, "Invalid side.")),
        };
        let kind = mandatory("type")?;
        let spot_maker = kind == "LIMIT_MAKER" && cfg.market == Market::Spot;
        if !(matches!(kind, "LIMIT" | "MARKET") || spot_maker) {
            return Err(error(400, -1116, "Invalid orderType."));
        }
        let qty: Qty = mandatory("quantity")?
            .parse()
            .map_err(|_| error(400, -1100, "Illegal characters found in parameter 'quantity'; legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'."))?;
        let (price, tif) = if kind == "MARKET" {
            if get("price").is_some() || get("timeInForce").is_some() {
                return Err(error(
                    400,
                    -1106,
                    "Parameter 'price' sent when not required.",
                ));
            }
            (Price::ZERO, String::from("GTC"))
        } else {
            let price: Price = mandatory("price")?
                .parse()
                .map_err(|_| error(400, -1100, "Illegal characters found in parameter 'price'."))?;
            let tif = if kind == "LIMIT" {
                let t = mandatory("timeInForce")?;
                let gtx = t == "GTX" && cfg.market == Market::UsdM;
                if !(matches!(t, "GTC" | "IOC" | "FOK") || gtx) {
                    return Err(error(400, -1115, "Invalid timeInForce."));
                }
                t.to_owned()
            } else {
                "GTC".to_owned()
            };
            (price, tif)
        };
        let client_id = get("newClientOrderId")
            .map_or_else(|| format!("mock{}", st.next_order_id), str::to_owned);
        let legal = !client_id.is_empty()
            && client_id.len() <= 36
            && client_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b));
        if !legal {
            return Err(error(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'."));
        }
        let market_px = st.prices.get(symbol).copied().unwrap_or(sym.price);
        if kind != "MARKET" && (!price.is_multiple_of(sym.tick) || price < sym.tick) {
            return Err(error(400, -1013, "Filter failure: PRICE_FILTER"));
        }
        if !qty.is_multiple_of(sym.step) || qty < sym.min_qty || qty > sym.max_qty {
            return Err(error(400, -1013, "Filter failure: LOT_SIZE"));
        }
        let ref_px = if kind == "MARKET" { market_px } else { price };
        if Money::notional(ref_px, qty) < Money::from_fixed_raw(sym.min_notional.raw()) {
            return Err(if cfg.market == Market::Spot {
                error(400, -1013, "Filter failure: NOTIONAL")
            } else {
                error(400, -4164, "Order's notional must be no smaller than the minimum (unless you choose reduce only).")
            });
        }
        if st
            .orders
            .iter()
            .any(|o| o.client_id == client_id && o.working())
        {
            return Err(error(400, -2010, "Duplicate order sent."));
        }
        if cfg.market == Market::Spot && cfg.check_balances {
            let (asset, need) = if buy {
                (
                    &sym.quote,
                    Qty(i64::try_from(
                        Money::notional(ref_px, qty).raw() / Money::from_fixed_raw(1).raw(),
                    )
                    .unwrap_or(i64::MAX)),
                )
            } else {
                (&sym.base, qty)
            };
            if st.balances.get(asset).copied().unwrap_or(Qty::ZERO) < need {
                return Err(error(
                    400,
                    -2010,
                    "Account has insufficient balance for requested action.",
                ));
            }
        }
        let marketable = kind == "MARKET"
            || if buy {
                price >= market_px
            } else {
                price <= market_px
            };
        if kind == "LIMIT_MAKER" && marketable {
            return Err(error(400, -2010, "Order would immediately match and take."));
        }
        if tif == "GTX" && marketable {
            return Err(error(
                400,
                -5022,
                "Due to the order could not be executed as maker, the Post Only order will be rejected. The order will not be recorded in the order history",
            ));
        }
        let order_id = st.next_order_id;
        st.next_order_id += 1;
        st.orders.push(MockOrder {
            symbol: symbol.to_owned(),
            order_id,
            client_id,
            buy,
            kind: kind.to_owned(),
            tif: tif.clone(),
            price,
            qty,
            executed: Qty::ZERO,
            quote: Money::ZERO,
            status: "NEW",
            amends: 0,
        });
        let i = st.orders.len() - 1;
        report(shared, st, i, "NEW", None, None);
        if marketable {
            execute(shared, st, i, qty, market_px, false);
        } else if !matches!(tif.as_str(), "GTC" | "GTX") {
            st.orders[i].status = "EXPIRED";
            report(shared, st, i, "EXPIRED", None, None);
        }
        let answer = ok(order_json(cfg.market, &st.orders[i], None));
        Ok(unless_placed_then_500(st, answer))
    })();
    parsed.unwrap_or_else(|e| e)
}

/// `answer`, or a 500 in its place if a [`Fault::PlacedThen500`] is pending (the request took
/// effect; its answer is lost).
fn unless_placed_then_500(st: &mut State, answer: Reply) -> Reply {
    if let Some(at) = st.faults.iter().position(|f| *f == Fault::PlacedThen500) {
        st.faults.remove(at);
        return error(
            500,
            -1000,
            "An unknown error occurred while processing the request.",
        );
    }
    answer
}

/// Binance's most modifies of one order.
const MAX_MODIFIES: u32 = 10_000;

/// USD-M `PUT /fapi/v1/order`: a LIMIT order's price and total quantity, as the venue
/// documents it: both and the side are mandatory; the order loses its queue place (here: it is
/// re-checked against the last price, as a new order would be); a GTX order whose new price
/// would cross, or a partly filled order modified to no more than has filled, is cancelled.
fn modify_order(shared: &Shared, st: &mut State, params: &Params) -> Reply {
    let cfg = &shared.config;
    let mandatory = |name: &'static str| params.mandatory(name);
    let parsed = (|| -> Result<Reply, Reply> {
        let symbol = mandatory("symbol")?;
        let Some(sym) = cfg.symbols.iter().find(|s| s.symbol == symbol) else {
            return Err(error(400, -1121, "Invalid symbol."));
        };
        let buy = match mandatory("side")? {
            "BUY" => true,
            "SELL" => false,
            _ => return Err(error(400, -1117, "Invalid side.")),
        };
        let qty: Qty = mandatory("quantity")?.parse().map_err(|_| {
            error(
                400,
                -1100,
                "Illegal characters found in parameter 'quantity'.",
            )
        })?;
        let price: Price = mandatory("price")?
            .parse()
            .map_err(|_| error(400, -1100, "Illegal characters found in parameter 'price'."))?;
        let i = find(st, params).map_err(|()| error(400, -2013, "Order does not exist."))?;
        let o = &st.orders[i];
        if !o.working() {
            return Err(error(400, -2013, "Order does not exist."));
        }
        if o.kind != "LIMIT" {
            return Err(error(400, -1116, "Invalid orderType."));
        }
        if o.buy != buy {
            return Err(error(400, -1117, "Invalid side."));
        }
        if o.price == price && o.qty == qty {
            return Err(error(400, -5027, "No need to modify the order."));
        }
        if o.amends >= MAX_MODIFIES {
            return Err(error(400, -5026, "Exceed maximum modify order limit."));
        }
        if !price.is_multiple_of(sym.tick) || price < sym.tick {
            return Err(error(400, -1013, "Filter failure: PRICE_FILTER"));
        }
        if !qty.is_multiple_of(sym.step) || qty < sym.min_qty || qty > sym.max_qty {
            return Err(error(400, -1013, "Filter failure: LOT_SIZE"));
        }
        if Money::notional(price, qty) < Money::from_fixed_raw(sym.min_notional.raw()) {
            return Err(error(400, -4164, "Order's notional must be no smaller than the minimum (unless you choose reduce only)."));
        }
        let market_px = st.prices.get(symbol).copied().unwrap_or(sym.price);
        let marketable = if buy {
            price >= market_px
        } else {
            price <= market_px
        };
        let o = &mut st.orders[i];
        o.amends += 1;
        (o.price, o.qty) = (price, qty);
        if o.executed >= qty || (o.tif == "GTX" && marketable) {
            cancel(shared, st, i);
        } else {
            report(shared, st, i, "AMENDMENT", None, None);
            if marketable {
                let rest = Qty(st.orders[i].qty.0 - st.orders[i].executed.0);
                execute(shared, st, i, rest, market_px, false);
            }
        }
        let answer = ok(order_json(cfg.market, &st.orders[i], None));
        Ok(unless_placed_then_500(st, answer))
    })();
    parsed.unwrap_or_else(|e| e)
}

fn execute(shared: &Shared, st: &mut State, i: usize, qty: Qty, px: Price, maker: bool) {
    let (buy, symbol) = (st.orders[i].buy, st.orders[i].symbol.clone());
    let o = &mut st.orders[i];
    o.executed = Qty(o.executed.0 + qty.0);
    o.quote = Money(o.quote.0 + Money::notional(px, qty).0);
    o.status = if o.executed >= o.qty {
        "FILLED"
    } else {
        "PARTIALLY_FILLED"
    };
    let status = o.status;
    if let Some(sym) = shared.config.symbols.iter().find(|s| s.symbol == symbol) {
        let signed = if buy { qty.0 } else { -qty.0 };
        if shared.config.market == Market::Spot {
            let quote =
                i64::try_from(Money::notional(px, qty).raw() / Money::from_fixed_raw(1).raw())
                    .unwrap_or(0);
            let b = st.balances.entry(sym.base.clone()).or_insert(Qty::ZERO);
            b.0 += signed;
            let q = st.balances.entry(sym.quote.clone()).or_insert(Qty::ZERO);
            q.0 -= if buy { quote } else { -quote };
        } else {
            let p = st
                .positions
                .entry(symbol)
                .or_insert((Qty::ZERO, Money::ZERO));
            p.0 .0 += signed;
            p.1 .0 += Money::notional(px, Qty(signed)).0;
        }
    }
    let trade_id = st.next_trade_id;
    st.next_trade_id += 1;
    report(
        shared,
        st,
        i,
        "TRADE",
        Some((qty, px, trade_id, maker)),
        None,
    );
    let _ = status;
}

fn cancel(shared: &Shared, st: &mut State, i: usize) -> String {
    st.orders[i].status = "CANCELED";
    st.next_cancel_id += 1;
    let id = format!("cancel{}", st.next_cancel_id);
    report(shared, st, i, "CANCELED", None, Some(&id));
    id
}

fn order_json(market: Market, o: &MockOrder, cancel_id: Option<&str>) -> String {
    let side = if o.buy { "BUY" } else { "SELL" };
    match market {
        Market::Spot => {
            let (client, orig) = match cancel_id {
                Some(c) => (
                    c.to_owned(),
                    format!(r#""origClientOrderId":"{}","#, o.client_id),
                ),
                None => (o.client_id.clone(), String::new()),
            };
            format!(
                r#"{{"symbol":"{}","orderId":{},"orderListId":-1,{orig}"clientOrderId":"{client}","price":"{}","origQty":"{}","executedQty":"{}","cummulativeQuoteQty":"{}","status":"{}","timeInForce":"{}","type":"{}","side":"{side}","transactTime":{},"isWorking":true}}"#,
                o.symbol,
                o.order_id,
                o.price,
                o.qty,
                o.executed,
                money8(o.quote),
                o.status,
                o.tif,
                o.kind,
                unix_ms()
            )
        }
        Market::UsdM => {
            let avg = o.avg_price();
            format!(
                r#"{{"symbol":"{}","orderId":{},"clientOrderId":"{}","price":"{}","avgPrice":"{avg}","origQty":"{}","executedQty":"{}","cumQuote":"{}","status":"{}","timeInForce":"{}","type":"{}","side":"{side}","reduceOnly":false,"updateTime":{}}}"#,
                o.symbol,
                o.order_id,
                o.client_id,
                o.price,
                o.qty,
                o.executed,
                money8(o.quote),
                o.status,
                o.tif,
                o.kind,
                unix_ms()
            )
        }
    }
}

/// Sends an execution report for order `i` to every stream, applying report faults.
fn report(
    shared: &Shared,
    st: &mut State,
    i: usize,
    exec: &str,
    trade: Option<(Qty, Price, i64, bool)>,
    cancel_id: Option<&str>,
) {
    let o = &st.orders[i];
    let now = unix_ms();
    let side = if o.buy { "BUY" } else { "SELL" };
    let (l, last_px, t, m) = trade.map_or((Qty::ZERO, Price::ZERO, -1, false), |x| x);
    let text = match shared.config.market {
        Market::Spot => {
            let (c, orig) = match cancel_id {
                Some(c) => (c.to_owned(), o.client_id.clone()),
                None => (o.client_id.clone(), String::new()),
            };
            format!(
                r#"{{"e":"executionReport","E":{now},"s":"{}","c":"{c}","S":"{side}","o":"{}","f":"{}","q":"{}","p":"{}","P":"0.00000000","F":"0.00000000","g":-1,"C":"{orig}","x":"{exec}","X":"{}","r":"NONE","i":{},"l":"{l}","z":"{}","L":"{last_px}","n":"0","N":null,"T":{now},"t":{t},"I":0,"w":{},"m":{m},"M":false,"O":{now},"Z":"{}","Y":"{}","Q":"0.00000000"}}"#,
                o.symbol,
                o.kind,
                o.tif,
                o.qty,
                o.price,
                o.status,
                o.order_id,
                o.executed,
                o.working(),
                money8(o.quote),
                money8(Money::notional(last_px, l))
            )
        }
        Market::UsdM => {
            let avg = o.avg_price();
            format!(
                r#"{{"e":"ORDER_TRADE_UPDATE","E":{now},"T":{now},"o":{{"s":"{}","c":"{}","S":"{side}","o":"{}","f":"{}","q":"{}","p":"{}","ap":"{avg}","sp":"0","x":"{exec}","X":"{}","i":{},"l":"{l}","z":"{}","L":"{last_px}","N":"USDT","n":"0","T":{now},"t":{},"b":"0","a":"0","m":{m},"R":false,"wt":"CONTRACT_PRICE","ot":"{}","ps":"BOTH","cp":false,"rp":"0"}}}}"#,
                o.symbol,
                o.client_id,
                o.kind,
                o.tif,
                o.qty,
                o.price,
                o.status,
                o.order_id,
                o.executed,
                t.max(0),
                o.kind
            )
        }
    };
    if let Some(at) = st.faults.iter().position(|f| matches!(f, Fault::Lose(_))) {
        if let Some(Fault::Lose(n)) = st.faults.remove(at) {
            st.lose += n;
        }
    }
    if st.lose > 0 {
        st.lose -= 1;
        return;
    }
    let mut out = vec![text];
    if st.duplicate > 0 || st.faults.iter().any(|f| matches!(f, Fault::Duplicate(_))) {
        if let Some(at) = st
            .faults
            .iter()
            .position(|f| matches!(f, Fault::Duplicate(_)))
        {
            if let Some(Fault::Duplicate(n)) = st.faults.remove(at) {
                st.duplicate += n;
            }
        }
        st.duplicate -= 1;
        out.push(out[0].clone());
    }
    if let Some(at) = st
        .faults
        .iter()
        .position(|f| matches!(f, Fault::Reverse(_)))
    {
        if let Some(Fault::Reverse(n)) = st.faults.remove(at) {
            st.reverse += n;
        }
    }
    if st.reverse > 0 {
        st.reverse -= 1;
        st.held.extend(out);
        if st.reverse > 0 {
            return;
        }
        out = std::mem::take(&mut st.held);
        out.reverse();
    }
    st.streams.retain(|(_, tx)| !tx.is_closed());
    for text in out {
        for (_, tx) in &st.streams {
            let _ = tx.send(text.clone());
        }
    }
}
