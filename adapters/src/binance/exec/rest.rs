//! Binance's REST API for orders, account state and the user data stream's listen key:
//! signing, `recvWindow` and the server-time offset, rate limits read from response headers,
//! back-off on 429/418, and a dry-run mode that signs and logs without sending.
//!
//! Blocking (`ureq`): it runs on the execution thread, never on the engine thread.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Deserialize;

use tradeloop_engine::fixed::{Price, Qty};

use super::filters::{ExchangeInfo, LimitKind, RateLimit};
use super::sign::Credentials;

/// Which Binance API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Market {
    /// Spot (`/api/v3`).
    Spot,
    /// USD-M futures (`/fapi`).
    UsdM,
}

impl Market {
    /// Path of an endpoint in this API.
    #[must_use]
    pub const fn path(self, endpoint: Endpoint) -> &'static str {
        use Endpoint as E;
        match (self, endpoint) {
            (Self::Spot, E::Time) => "/api/v3/time",
            (Self::Spot, E::ExchangeInfo) => "/api/v3/exchangeInfo",
            (Self::Spot, E::Order) => "/api/v3/order",
            (Self::Spot, E::OpenOrders | E::CancelAll) => "/api/v3/openOrders",
            (Self::Spot, E::Account) => "/api/v3/account",
            (Self::Spot, E::ListenKey) => "/api/v3/userDataStream",
            (Self::Spot, E::TickerPrice) => "/api/v3/ticker/price",
            (Self::UsdM, E::Time) => "/fapi/v1/time",
            (Self::UsdM, E::ExchangeInfo) => "/fapi/v1/exchangeInfo",
            (Self::UsdM, E::Order) => "/fapi/v1/order",
            (Self::UsdM, E::OpenOrders) => "/fapi/v1/openOrders",
            (Self::UsdM, E::CancelAll) => "/fapi/v1/allOpenOrders",
            (Self::UsdM, E::Account) => "/fapi/v2/positionRisk",
            (Self::UsdM, E::ListenKey) => "/fapi/v1/listenKey",
            (Self::UsdM, E::TickerPrice) => "/fapi/v1/ticker/price",
        }
    }
}

/// The endpoints the execution gateway uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Server time (unsigned).
    Time,
    /// Symbols, filters and rate limits (unsigned).
    ExchangeInfo,
    /// New, cancel and query one order (signed).
    Order,
    /// Open orders (signed).
    OpenOrders,
    /// Cancel all open orders of a symbol (signed). Not used by the gateway: it would also
    /// cancel orders other clients placed on the account.
    CancelAll,
    /// Balances (spot) or positions (USD-M) (signed).
    Account,
    /// User data stream listen key (API key only).
    ListenKey,
    /// Last price of a symbol (unsigned).
    TickerPrice,
}

/// HTTP method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
}

impl Method {
    /// The method's name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }
}

/// How a request authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Public.
    None,
    /// `X-MBX-APIKEY` header only (`USER_STREAM`).
    ApiKey,
    /// API key plus `timestamp`, `recvWindow` and `signature` (`TRADE`, `USER_DATA`).
    Signed,
}

/// A failed request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// Binance answered with an error code.
    #[error("{method} {path}: HTTP {status}, Binance code {code}: {msg}")]
    Api {
        /// Method.
        method: &'static str,
        /// Path.
        path: &'static str,
        /// HTTP status.
        status: u16,
        /// Binance error code (negative), 0 if the body had none.
        code: i64,
        /// Binance's message.
        msg: String,
    },
    /// 429 (rate limited) or 418 (IP banned for ignoring 429s).
    #[error("{path}: HTTP {status} from Binance, backing off for {retry_after:?}")]
    RateLimited {
        /// Path.
        path: &'static str,
        /// 429 or 418.
        status: u16,
        /// How long nothing is sent.
        retry_after: Duration,
    },
    /// Not sent: still backing off after a 429/418.
    #[error("not sent: backing off after HTTP {status} for another {remaining:?}")]
    BackingOff {
        /// The status that started the back-off.
        status: u16,
        /// Time left.
        remaining: Duration,
    },
    /// Not sent: a limit from `exchangeInfo` would be exceeded.
    #[error("not sent: {header} is {used} of {limit}")]
    LocalLimit {
        /// The header that reported the count.
        header: String,
        /// Last reported count.
        used: u32,
        /// Limit.
        limit: u32,
    },
    /// Connection or protocol failure.
    #[error("{method} {path}: {reason}")]
    Transport {
        /// Method.
        method: &'static str,
        /// Path.
        path: &'static str,
        /// What happened.
        reason: String,
    },
    /// The body is not what the endpoint documents.
    #[error("{path}: unexpected response: {reason}")]
    Decode {
        /// Path.
        path: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Dry run: signed and logged, not sent.
    #[error("dry run: {method} {path} signed and logged, not sent")]
    DryRun {
        /// Method.
        method: &'static str,
        /// Path.
        path: &'static str,
    },
    /// A signed endpoint without credentials.
    #[error("{path} needs API credentials")]
    NoCredentials {
        /// Path.
        path: &'static str,
    },
}

impl RestError {
    /// Binance's error code, if Binance answered with one.
    #[must_use]
    pub const fn code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// `true` if the request may have reached the venue and its outcome is unknown
    /// (a timeout or a 5xx): the order must be queried, not assumed rejected.
    #[must_use]
    pub const fn outcome_unknown(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Settings of a [`RestClient`].
#[derive(Clone, Debug)]
pub struct RestSettings {
    /// Base URL, e.g. `https://api.binance.com` or `https://testnet.binance.vision`.
    pub base_url: String,
    /// Spot or USD-M.
    pub market: Market,
    /// `recvWindow` in ms (Binance allows up to 60,000).
    pub recv_window_ms: u64,
    /// Sign and log signed requests instead of sending them.
    pub dry_run: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Refuse requests once a counter reaches this share of its limit, in percent.
    pub limit_headroom_pct: u32,
}

/// Rate-limit state, updated from every response.
#[derive(Debug)]
struct Limits {
    limits: Vec<RateLimit>,
    /// Last reported count per limit, and the window it was reported in.
    used: Vec<(u32, u64)>,
    /// Back-off after a 429/418: until when, and the status.
    blocked: Option<(Instant, u16)>,
}

/// Counters a [`RestClient`] keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestStats {
    /// Requests sent.
    pub sent: u64,
    /// 429 answers.
    pub http_429: u64,
    /// 418 answers.
    pub http_418: u64,
    /// Requests refused locally (back-off or limit headroom).
    pub held_back: u64,
    /// Signed requests logged instead of sent (dry run).
    pub dry_run: u64,
    /// Server-time resynchronisations after -1021.
    pub time_resyncs: u64,
}

/// A Binance REST client. `Sync`: the execution thread and the user-stream thread share it.
#[derive(Debug)]
pub struct RestClient {
    agent: ureq::Agent,
    settings: RestSettings,
    credentials: Option<Credentials>,
    /// Server time minus local time, ms.
    offset_ms: AtomicI64,
    limits: Mutex<Limits>,
    stats: Mutex<RestStats>,
}

/// Milliseconds since the Unix epoch, local clock.
#[must_use]
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Percent-encodes a parameter value (RFC 3986 unreserved characters pass).
#[must_use]
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RestClient {
    /// A client; `credentials` may be `None` for public endpoints only.
    #[must_use]
    pub fn new(settings: RestSettings, credentials: Option<Credentials>) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout(settings.timeout)
            .user_agent("tradeloop")
            .build();
        Self {
            agent,
            settings,
            credentials,
            offset_ms: AtomicI64::new(0),
            limits: Mutex::new(Limits {
                limits: Vec::new(),
                used: Vec::new(),
                blocked: None,
            }),
            stats: Mutex::new(RestStats::default()),
        }
    }

    /// Settings.
    #[must_use]
    pub const fn settings(&self) -> &RestSettings {
        &self.settings
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> RestStats {
        *self.stats.lock()
    }

    /// Server time minus local time, ms (as last measured).
    #[must_use]
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Adopts the rate limits of `exchangeInfo`.
    pub fn set_rate_limits(&self, limits: &[RateLimit]) {
        let mut l = self.limits.lock();
        l.limits = limits.to_vec();
        l.used = vec![(0, 0); limits.len()];
    }

    /// Measures the server-time offset from `GET time` (half the round trip is assumed
    /// symmetric).
    ///
    /// # Errors
    /// [`RestError`] if the request fails.
    pub fn sync_time(&self) -> Result<i64, RestError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Time {
            server_time: i64,
        }
        let before = unix_ms();
        let t: Time = self.call(Method::Get, Endpoint::Time, &[], Auth::None)?;
        let after = unix_ms();
        let offset = t.server_time - (before + after) / 2;
        self.offset_ms.store(offset, Ordering::Relaxed);
        Ok(offset)
    }

    /// Reads `exchangeInfo` for `symbols` (all symbols if empty) and adopts its rate limits.
    ///
    /// # Errors
    /// [`RestError`] if the request fails or the body is not an `exchangeInfo`.
    pub fn exchange_info(&self, symbols: &[&str]) -> Result<ExchangeInfo, RestError> {
        let mut params = Vec::new();
        if self.settings.market == Market::Spot && !symbols.is_empty() {
            let list: Vec<String> = symbols
                .iter()
                .map(|s| format!("\"{}\"", s.to_ascii_uppercase()))
                .collect();
            params.push(("symbols", format!("[{}]", list.join(","))));
        }
        let path = self.settings.market.path(Endpoint::ExchangeInfo);
        let body = self.send(Method::Get, Endpoint::ExchangeInfo, &params, Auth::None)?;
        let info = ExchangeInfo::parse(body.as_bytes())
            .map_err(|reason| RestError::Decode { path, reason })?;
        self.set_rate_limits(&info.rate_limits);
        Ok(info)
    }

    /// Spot balances: (asset, free, locked) for every asset listed.
    ///
    /// # Errors
    /// [`RestError`] if the request fails or a balance is not a decimal.
    pub fn balances(&self) -> Result<Vec<(String, Qty, Qty)>, RestError> {
        #[derive(Deserialize)]
        struct Account {
            balances: Vec<Balance>,
        }
        #[derive(Deserialize)]
        struct Balance {
            asset: String,
            free: String,
            locked: String,
        }
        let account: Account = self.call(Method::Get, Endpoint::Account, &[], Auth::Signed)?;
        let path = self.settings.market.path(Endpoint::Account);
        account
            .balances
            .into_iter()
            .map(|b| {
                let parse = |v: &str| {
                    v.parse::<Qty>().map_err(|_| RestError::Decode {
                        path,
                        reason: format!("{}: {v:?} is not a decimal", b.asset),
                    })
                };
                Ok((b.asset.clone(), parse(&b.free)?, parse(&b.locked)?))
            })
            .collect()
    }

    /// USD-M positions: (symbol, signed quantity, entry price, mark price) per position leg
    /// (hedge mode lists LONG and SHORT legs separately).
    ///
    /// # Errors
    /// [`RestError`] if the request fails or a figure is not a decimal.
    pub fn positions(&self) -> Result<Vec<(String, Qty, Price, Price)>, RestError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Risk {
            symbol: String,
            position_amt: String,
            entry_price: String,
            mark_price: String,
        }
        let risks: Vec<Risk> = self.call(Method::Get, Endpoint::Account, &[], Auth::Signed)?;
        let path = self.settings.market.path(Endpoint::Account);
        let bad = |v: &str| RestError::Decode {
            path,
            reason: format!("{v:?} is not a decimal"),
        };
        risks
            .into_iter()
            .map(|r| {
                Ok((
                    r.symbol,
                    r.position_amt.parse().map_err(|_| bad(&r.position_amt))?,
                    r.entry_price.parse().map_err(|_| bad(&r.entry_price))?,
                    r.mark_price.parse().map_err(|_| bad(&r.mark_price))?,
                ))
            })
            .collect()
    }

    /// Sends a request and decodes its JSON answer.
    ///
    /// # Errors
    /// [`RestError`]; a -1021 (timestamp outside `recvWindow`) resynchronises the clock offset
    /// and retries once.
    pub fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        endpoint: Endpoint,
        params: &[(&str, String)],
        auth: Auth,
    ) -> Result<T, RestError> {
        let body = match self.send(method, endpoint, params, auth) {
            Err(e) if e.code() == Some(-1021) && auth == Auth::Signed => {
                self.stats.lock().time_resyncs += 1;
                tracing::warn!(offset_ms = self.offset_ms(), "Binance says the timestamp is outside recvWindow; resynchronising the server-time offset");
                self.sync_time()?;
                self.send(method, endpoint, params, auth)?
            }
            other => other?,
        };
        let path = self.settings.market.path(endpoint);
        serde_json::from_str(&body).map_err(|e| RestError::Decode {
            path,
            reason: e.to_string(),
        })
    }

    /// Sends a request and returns its body.
    ///
    /// # Errors
    /// [`RestError`].
    pub fn send(
        &self,
        method: Method,
        endpoint: Endpoint,
        params: &[(&str, String)],
        auth: Auth,
    ) -> Result<String, RestError> {
        let path = self.settings.market.path(endpoint);
        // New orders and USD-M modifies count against the venue's order-rate limits.
        let is_order = endpoint == Endpoint::Order && matches!(method, Method::Post | Method::Put);
        self.admit(is_order)?;
        let mut query = String::new();
        for (k, v) in params {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(k);
            query.push('=');
            query.push_str(&encode(v));
        }
        let creds = match auth {
            Auth::None => None,
            Auth::ApiKey | Auth::Signed => Some(
                self.credentials
                    .as_ref()
                    .ok_or(RestError::NoCredentials { path })?,
            ),
        };
        if auth == Auth::Signed {
            let creds = creds.ok_or(RestError::NoCredentials { path })?;
            let timestamp = unix_ms() + self.offset_ms();
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&format!(
                "recvWindow={}&timestamp={timestamp}",
                self.settings.recv_window_ms
            ));
            let signature = creds.sign(&query);
            if self.settings.dry_run {
                self.stats.lock().dry_run += 1;
                // A shortened signature: proves the request was signed without leaving a
                // replayable request in the log.
                tracing::info!(
                    target: "tradeloop::dry_run",
                    "dry run: {} {}?{}&signature={}…",
                    method.name(),
                    path,
                    query,
                    &signature[..12]
                );
                return Err(RestError::DryRun {
                    method: method.name(),
                    path,
                });
            }
            query.push_str("&signature=");
            query.push_str(&signature);
        }
        let url = if query.is_empty() {
            format!("{}{path}", self.settings.base_url)
        } else {
            format!("{}{path}?{query}", self.settings.base_url)
        };
        let mut request = self.agent.request(method.name(), &url);
        if let Some(c) = creds {
            request = request.set("X-MBX-APIKEY", c.api_key());
        }
        self.stats.lock().sent += 1;
        let result = request.call();
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(status, r)) => {
                self.observe(&r);
                return Err(self.failure(method, path, status, r));
            }
            Err(e) => {
                return Err(RestError::Transport {
                    method: method.name(),
                    path,
                    reason: e.to_string(),
                })
            }
        };
        self.observe(&response);
        response.into_string().map_err(|e| RestError::Transport {
            method: method.name(),
            path,
            reason: e.to_string(),
        })
    }

    /// Refuses a request while backing off, or an order when an order count is at its limit,
    /// or anything when the weight is at its limit.
    fn admit(&self, is_order: bool) -> Result<(), RestError> {
        let now = Instant::now();
        let mut l = self.limits.lock();
        if let Some((until, status)) = l.blocked {
            if now < until {
                drop(l);
                self.stats.lock().held_back += 1;
                return Err(RestError::BackingOff {
                    status,
                    remaining: until - now,
                });
            }
            l.blocked = None;
        }
        let now_ms = u64::try_from(unix_ms().max(0)).unwrap_or(0);
        let headroom = u64::from(self.settings.limit_headroom_pct.clamp(1, 100));
        for (limit, &(used, window)) in l.limits.iter().zip(&l.used) {
            if limit.kind == LimitKind::Orders && !is_order {
                continue;
            }
            let len = u64::try_from(limit.window.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let current = now_ms / len == window;
            let cap = u64::from(limit.limit) * headroom / 100;
            if current && u64::from(used) >= cap {
                let e = RestError::LocalLimit {
                    header: limit.header.clone(),
                    used,
                    limit: limit.limit,
                };
                drop(l);
                self.stats.lock().held_back += 1;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Reads the rate-limit headers of a response.
    fn observe(&self, response: &ureq::Response) {
        let now_ms = u64::try_from(unix_ms().max(0)).unwrap_or(0);
        let mut l = self.limits.lock();
        let Limits { limits, used, .. } = &mut *l;
        for (limit, slot) in limits.iter().zip(used.iter_mut()) {
            if let Some(v) = response
                .header(&limit.header)
                .and_then(|v| v.trim().parse().ok())
            {
                let len = u64::try_from(limit.window.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                *slot = (v, now_ms / len);
            }
        }
    }

    fn failure(
        &self,
        method: Method,
        path: &'static str,
        status: u16,
        response: ureq::Response,
    ) -> RestError {
        if status == 429 || status == 418 {
            let retry_after = response
                .header("Retry-After")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(
                    Duration::from_secs(if status == 418 { 120 } else { 60 }),
                    Duration::from_secs,
                );
            {
                let mut s = self.stats.lock();
                if status == 429 {
                    s.http_429 += 1;
                } else {
                    s.http_418 += 1;
                }
            }
            self.limits.lock().blocked = Some((Instant::now() + retry_after, status));
            tracing::error!(
                status,
                ?retry_after,
                path,
                "Binance rate limit hit: nothing is sent until the back-off ends"
            );
            return RestError::RateLimited {
                path,
                status,
                retry_after,
            };
        }
        #[derive(Deserialize)]
        struct ApiError {
            code: i64,
            msg: String,
        }
        let body = response.into_string().unwrap_or_default();
        let (code, msg) = serde_json::from_str::<ApiError>(&body).map_or_else(
            |_| (0, body.chars().take(200).collect()),
            |e| (e.code, e.msg),
        );
        RestError::Api {
            method: method.name(),
            path,
            status,
            code,
            msg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_binance_expects() {
        assert_eq!(encode("BTCUSDT"), "BTCUSDT");
        assert_eq!(
            encode("[\"BTCUSDT\",\"ETHUSDT\"]"),
            "%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D"
        );
        assert_eq!(encode("tl-1.2_x~"), "tl-1.2_x~");
    }

    #[test]
    fn paths_per_market() {
        assert_eq!(Market::Spot.path(Endpoint::CancelAll), "/api/v3/openOrders");
        assert_eq!(
            Market::UsdM.path(Endpoint::CancelAll),
            "/fapi/v1/allOpenOrders"
        );
        assert_eq!(Market::UsdM.path(Endpoint::ListenKey), "/fapi/v1/listenKey");
    }

    #[test]
    fn unknown_outcome_only_for_transport_and_5xx() {
        let api = |status| RestError::Api {
            method: "POST",
            path: "/api/v3/order",
            status,
            code: -2010,
            msg: String::new(),
        };
        assert!(!api(400).outcome_unknown());
        assert!(api(503).outcome_unknown());
        assert!(RestError::Transport {
            method: "POST",
            path: "/api/v3/order",
            reason: "timed out".into()
        }
        .outcome_unknown());
    }
}
