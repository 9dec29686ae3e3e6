//! A read-only check of a live venue before trading on it: the keys work, the clock offset,
//! the symbols and their filters, the rate limits, the account's balances or positions, the
//! open orders (this bot's and others'), and that a user data stream can be opened. Sends no
//! order; the listen key it creates is closed again.

use serde::Deserialize;
use tradeloop_engine::fixed::Qty;

use super::filters::{RateLimit, SymbolFilters};
use super::report::RestOrder;
use super::rest::{Auth, Endpoint, Market, Method, RestClient, RestError, RestSettings};
use super::sign::Credentials;
use super::tracker::engine_client_id;

/// What the check found (a listen key was created and closed again, or the check failed).
#[derive(Clone, Debug)]
pub struct Preflight {
    /// Server time minus local time, ms.
    pub offset_ms: i64,
    /// Per symbol: its filters, or `None` if Binance does not list it.
    pub symbols: Vec<(String, Option<SymbolFilters>)>,
    /// Rate limits.
    pub rate_limits: Vec<RateLimit>,
    /// Spot: (asset, free, locked) of every non-zero balance; USD-M: (symbol, position, 0).
    pub holdings: Vec<(String, Qty, Qty)>,
    /// Open orders per symbol: (symbol, with this bot's prefix, others).
    pub open_orders: Vec<(String, usize, usize)>,
}

/// Runs the check.
///
/// # Errors
/// The first request that fails (a bad key shows as Binance's `-2015` or `-1022`).
pub fn preflight(
    settings: RestSettings,
    credentials: Credentials,
    symbols: &[String],
    prefix: &str,
) -> Result<Preflight, RestError> {
    let market = settings.market;
    let rest = RestClient::new(settings, Some(credentials));
    let offset_ms = rest.sync_time()?;
    let names: Vec<&str> = symbols.iter().map(String::as_str).collect();
    let info = rest.exchange_info(&names)?;
    let holdings = match market {
        Market::Spot => rest
            .balances()?
            .into_iter()
            .filter(|b| !b.1.is_zero() || !b.2.is_zero())
            .collect(),
        Market::UsdM => rest
            .positions()?
            .into_iter()
            .filter(|p| symbols.iter().any(|s| s.eq_ignore_ascii_case(&p.0)))
            .map(|p| (p.0, p.1, Qty::ZERO))
            .collect(),
    };
    let mut open_orders = Vec::new();
    for s in symbols {
        let open: Vec<RestOrder> = rest.call(
            Method::Get,
            Endpoint::OpenOrders,
            &[("symbol", s.to_ascii_uppercase())],
            Auth::Signed,
        )?;
        let ours = open
            .iter()
            .filter(|o| engine_client_id(prefix, &o.client_order_id).is_some())
            .count();
        open_orders.push((s.clone(), ours, open.len() - ours));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Key {
        listen_key: String,
    }
    let key: Key = rest.call(Method::Post, Endpoint::ListenKey, &[], Auth::ApiKey)?;
    rest.send(
        Method::Delete,
        Endpoint::ListenKey,
        &[("listenKey", key.listen_key)],
        Auth::ApiKey,
    )?;
    Ok(Preflight {
        offset_ms,
        symbols: symbols
            .iter()
            .map(|s| (s.clone(), info.filters(s)))
            .collect(),
        rate_limits: info.rate_limits,
        holdings,
        open_orders,
    })
}
