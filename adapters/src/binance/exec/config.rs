//! The `[live]` section of config.toml: live execution on Binance (spot and USD-M), validated
//! with the offending key named. Which `[[venues]]` entry it trades on is chosen by the
//! configuration that holds both.

use serde::{Deserialize, Serialize};

/// `[live]`: live execution on Binance (used with `mode = "live"` only; optional).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveSection {
    /// The `[[venues]]` entry orders go to (kind `binance` or `binance-usdm`). Empty: the
    /// only such venue.
    pub venue: String,
    /// REST base URL for orders and account state (default: the venue's `rest_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rest_url: Option<String>,
    /// User data stream WebSocket base URL (default: the venue's `ws_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_stream_url: Option<String>,
    /// `recvWindow` of signed requests, ms (1–60000).
    pub recv_window_ms: u64,
    /// Timeout of one REST request, ms.
    pub request_timeout_ms: u64,
    /// Prefix of every client order id sent (marks this bot's orders; 1–16 of `A-Za-z0-9._:/-`).
    pub client_id_prefix: String,
    /// Listen-key keep-alive period, s (60–3300; Binance keys live 60 min).
    pub keepalive_secs: u64,
    /// Engine → execution-thread queue capacity.
    pub queue_capacity: usize,
    /// Refuse requests once a rate-limit counter reaches this percentage of its limit.
    pub limit_headroom_pct: u32,
    /// Sign and log orders instead of sending them (also `tradeloop run --dry-run`).
    pub dry_run: bool,
    /// On exit, halt new orders and cancel every working order before stopping.
    pub cancel_on_exit: bool,
    /// How long the exit waits for the venue to confirm those cancels, ms.
    pub exit_grace_ms: u64,
    /// Reconcile this often besides start and reconnects, s (0 = never).
    pub reconcile_interval_secs: u64,
}

impl Default for LiveSection {
    fn default() -> Self {
        Self {
            venue: String::new(),
            rest_url: None,
            user_stream_url: None,
            recv_window_ms: 5000,
            request_timeout_ms: 5000,
            client_id_prefix: "tl-".into(),
            keepalive_secs: 1800,
            queue_capacity: 1024,
            limit_headroom_pct: 90,
            dry_run: false,
            cancel_on_exit: true,
            exit_grace_ms: 5000,
            reconcile_interval_secs: 300,
        }
    }
}

impl LiveSection {
    /// Checks the section against the venue it trades on (whose `rest_url` and `ws_url` are
    /// the defaults of `rest_url` and `user_stream_url`).
    ///
    /// # Errors
    /// `(key, reason)` naming the offending key below `live`.
    pub fn validate(
        &self,
        venue_rest_url: &str,
        venue_ws_url: &str,
    ) -> Result<(), (&'static str, String)> {
        if !(1..=60_000).contains(&self.recv_window_ms) {
            return Err((
                "recv_window_ms",
                format!(
                    "must be within 1..=60000 (Binance's maximum), got {}",
                    self.recv_window_ms
                ),
            ));
        }
        if self.request_timeout_ms < 100 {
            return Err((
                "request_timeout_ms",
                format!("must be at least 100, got {}", self.request_timeout_ms),
            ));
        }
        let legal = |b: u8| b.is_ascii_alphanumeric() || b"._:/-".contains(&b);
        let prefix = &self.client_id_prefix;
        if prefix.is_empty() || prefix.len() > 16 || !prefix.bytes().all(legal) {
            return Err(("client_id_prefix", format!("must be 1 to 16 of A-Z a-z 0-9 . _ : / - (Binance allows 36 characters and the id adds up to 20 digits), got {prefix:?}")));
        }
        if !(60..=3300).contains(&self.keepalive_secs) {
            return Err((
                "keepalive_secs",
                format!(
                    "must be within 60..=3300 (a listen key lives 60 min), got {}",
                    self.keepalive_secs
                ),
            ));
        }
        if self.queue_capacity == 0 {
            return Err(("queue_capacity", "must be at least 1".to_owned()));
        }
        if !(1..=100).contains(&self.limit_headroom_pct) {
            return Err((
                "limit_headroom_pct",
                format!("must be within 1..=100, got {}", self.limit_headroom_pct),
            ));
        }
        for (key, url, schemes) in [
            (
                "rest_url",
                self.rest_url.as_deref().unwrap_or(venue_rest_url),
                ["https://", "http://"],
            ),
            (
                "user_stream_url",
                self.user_stream_url.as_deref().unwrap_or(venue_ws_url),
                ["wss://", "ws://"],
            ),
        ] {
            if !schemes.iter().any(|s| url.starts_with(s)) {
                return Err((
                    key,
                    format!("{url:?} must start with {} or {}", schemes[0], schemes[1]),
                ));
            }
        }
        Ok(())
    }
}
