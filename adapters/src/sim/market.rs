//! A synthetic market for the simulated venue: per symbol, a random walk of the mid price with
//! a real multi-level book (realistic spread and depth), trades that consume the top of the
//! book, and wire frames for all of it with consistent update ids, in Binance spot's format or
//! Bybit v5's ([`WireProtocol`]). Deterministic for a seed. Off the engine's hot path: runs on the simulator's thread and allocates freely.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tradeloop_engine::fixed::{Price, Qty};

/// xorshift64*: small, fast, deterministic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is mapped to a fixed non-zero state).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Which venue's wire format the simulated venue speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum WireProtocol {
    /// Binance spot combined streams: `@trade`, `@bookTicker`, `@depth@100ms` and REST
    /// snapshots.
    #[default]
    Binance,
    /// Bybit v5 public topics: `publicTrade`, `orderbook.1` and `orderbook.{depth}` with
    /// snapshots sent in-stream on subscription.
    Bybit {
        /// The book topic's depth.
        depth: u16,
    },
    /// Kraken spot v2 channels: `trade`, `ticker` (best bid/offer) and `book` truncated to
    /// `depth` with Kraken's CRC32 checksum, snapshots sent on subscription.
    Kraken {
        /// The book channel's depth.
        depth: u16,
    },
    /// Coinbase Advanced Trade channels: `market_trades`, `ticker`, `level2` (`l2_data`) and
    /// `heartbeats`; the server numbers every message it sends (`sequence_num`), so frames
    /// carry `"sequence_num":0` until a connection stamps them ([`stamp_sequence`]).
    Coinbase,
    /// OKX v5 channels: `trades`, `bbo-tbt` and `books` with `seqId`/`prevSeqId` and the
    /// checksum, snapshots sent on subscription.
    Okx,
}

/// The placeholder Coinbase frames carry until a connection numbers them.
pub const SEQUENCE_PLACEHOLDER: &str = "\"sequence_num\":0,";

/// `frame` with its Coinbase `sequence_num` placeholder replaced by `n` (other frames as they
/// are).
#[must_use]
pub fn stamp_sequence(frame: &str, n: u64) -> String {
    frame.replacen(SEQUENCE_PLACEHOLDER, &format!("\"sequence_num\":{n},"), 1)
}

/// A Coinbase message envelope of `channel` at `now_ms` around `events`.
pub(crate) fn coinbase_envelope(channel: &str, now_ms: u64, events: &str) -> String {
    format!(
        r#"{{"channel":"{channel}","client_id":"","timestamp":"{}",{SEQUENCE_PLACEHOLDER}"events":[{events}]}}"#,
        crate::kraken::parse::rfc3339_from_ns(now_ms * 1_000_000)
    )
}

/// The top levels of a book, (price ticks, lots) best first: (bids, asks).
type TopLevels = (Vec<(i64, i64)>, Vec<(i64, i64)>);

/// One simulated symbol.
#[derive(Clone, Debug)]
pub struct SimSymbol {
    symbol: String,
    stream_prefix: String,
    tick: i64,
    lot: i64,
    /// Price ticks → quantity lots.
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
    update_id: u64,
    trade_id: u64,
    /// Levels changed since the last depth diff: (is_bid, price ticks) → new lots.
    pending: BTreeMap<(bool, i64), i64>,
    pending_first_id: Option<u64>,
    depth_levels: usize,
    protocol: WireProtocol,
    /// Bybit: `u` of the `orderbook.{depth}` topic and of `orderbook.1`.
    book_u: u64,
    bbo_u: u64,
    /// Kraken: the book as subscribers hold it after the last update (top `depth` levels a
    /// side, best first, as (price ticks, lots)).
    published: Option<TopLevels>,
    corrupt_checksum: bool,
    /// OKX: `seqId` of the last `books` message.
    okx_seq: i64,
}

impl SimSymbol {
    /// A book around `mid` with `depth_levels` levels per side.
    #[must_use]
    pub fn new(
        symbol: &str,
        mid: Price,
        tick: Price,
        lot: Qty,
        depth_levels: usize,
        rng: &mut Rng,
    ) -> Self {
        let tick_raw = tick.raw().max(1);
        let mid_ticks = (mid.raw() / tick_raw).max(depth_levels as i64 * 4 + 10);
        let mut s = Self {
            symbol: symbol.to_ascii_uppercase(),
            stream_prefix: symbol.to_ascii_lowercase(),
            tick: tick_raw,
            lot: lot.raw().max(1),
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            update_id: 1_000_000 + rng.below(1_000_000),
            trade_id: 1,
            pending: BTreeMap::new(),
            pending_first_id: None,
            depth_levels: depth_levels.max(5),
            protocol: WireProtocol::Binance,
            book_u: 1_000 + rng.below(1_000),
            bbo_u: 1_000 + rng.below(1_000),
            published: None,
            corrupt_checksum: false,
            okx_seq: 1_000 + rng.below(1_000) as i64,
        };
        for i in 0..s.depth_levels as i64 {
            s.bids.insert(
                mid_ticks - 1 - i * (1 + rng.below(3) as i64),
                s.random_lots(rng),
            );
            s.asks.insert(
                mid_ticks + 1 + i * (1 + rng.below(3) as i64),
                s.random_lots(rng),
            );
        }
        s
    }

    fn random_lots(&self, rng: &mut Rng) -> i64 {
        // Sizes skewed small with an occasional large order, like real books.
        let base = 1 + rng.below(200) as i64;
        if rng.below(20) == 0 {
            base * 25
        } else {
            base
        }
    }

    /// Speaks `protocol` from now on.
    pub fn speak(&mut self, protocol: WireProtocol) {
        self.protocol = protocol;
    }

    /// Upper-case symbol.
    #[must_use]
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// Current last update id.
    #[must_use]
    pub fn update_id(&self) -> u64 {
        self.update_id
    }

    fn best_bid(&self) -> Option<(i64, i64)> {
        self.bids.iter().next_back().map(|(p, q)| (*p, *q))
    }

    fn best_ask(&self) -> Option<(i64, i64)> {
        self.asks.iter().next().map(|(p, q)| (*p, *q))
    }

    fn set_level(&mut self, bid: bool, price: i64, lots: i64) {
        self.update_id += 1;
        self.pending_first_id.get_or_insert(self.update_id);
        let side = if bid { &mut self.bids } else { &mut self.asks };
        if lots <= 0 {
            side.remove(&price);
        } else {
            side.insert(price, lots);
        }
        self.pending.insert((bid, price), lots.max(0));
    }

    /// Skips update ids without telling anyone: the next diff will not follow the last one
    /// (fault injection for gap handling).
    pub fn inject_gap(&mut self) {
        self.update_id += 5;
        self.book_u += 5;
        self.okx_seq += 5;
        // Kraken has no ids: the next update's checksum disagrees with the subscribers' book.
        self.corrupt_checksum = true;
        self.pending_first_id = None;
        self.pending.clear();
    }

    /// One market step at `now_ms`: a book change or a trade. Appends frames to `out`.
    pub fn step(&mut self, rng: &mut Rng, now_ms: u64, out: &mut Vec<String>) {
        let roll = rng.below(100);
        if roll < 30 {
            self.trade(rng, now_ms, out);
        } else {
            self.requote(rng);
        }
        self.keep_depth(rng);
        out.push(self.book_ticker_frame(now_ms));
    }

    fn trade(&mut self, rng: &mut Rng, now_ms: u64, out: &mut Vec<String>) {
        // Aggressive buyers slightly more often when the mid drifts up, and vice versa.
        let buyer_aggressor = rng.below(2) == 0;
        let (price, lots) = if buyer_aggressor {
            let Some(a) = self.best_ask() else { return };
            a
        } else {
            let Some(b) = self.best_bid() else { return };
            b
        };
        let take = (1 + rng.below(lots.max(1) as u64) as i64).min(lots);
        self.set_level(!buyer_aggressor, price, lots - take);
        self.trade_id += 1;
        let mut f = String::with_capacity(200);
        if let WireProtocol::Bybit { .. } = self.protocol {
            let _ = write!(
                f,
                r#"{{"topic":"publicTrade.{s}","type":"snapshot","ts":{now_ms},"data":[{{"T":{now_ms},"s":"{s}","S":"{}","v":"{}","p":"{}","L":"ZeroPlusTick","i":"{}","BT":false}}]}}"#,
                if buyer_aggressor { "Buy" } else { "Sell" },
                Qty(take * self.lot),
                Price(price * self.tick),
                self.trade_id,
                s = self.symbol,
            );
            out.push(f);
            return;
        }
        if let WireProtocol::Okx = self.protocol {
            let _ = write!(
                f,
                r#"{{"arg":{{"channel":"trades","instId":"{s}"}},"data":[{{"instId":"{s}","tradeId":"{}","px":"{}","sz":"{}","side":"{}","ts":"{now_ms}","count":"1"}}]}}"#,
                self.trade_id,
                Price(price * self.tick),
                Qty(take * self.lot),
                if buyer_aggressor { "buy" } else { "sell" },
                s = self.symbol,
            );
            out.push(f);
            return;
        }
        if let WireProtocol::Coinbase = self.protocol {
            // The maker's side is reported.
            let trade = format!(
                r#"{{"type":"update","trades":[{{"trade_id":"{}","product_id":"{}","price":"{}","size":"{}","side":"{}","time":"{}"}}]}}"#,
                self.trade_id,
                self.symbol,
                Price(price * self.tick),
                Qty(take * self.lot),
                if buyer_aggressor { "SELL" } else { "BUY" },
                crate::kraken::parse::rfc3339_from_ns(now_ms * 1_000_000),
            );
            out.push(coinbase_envelope("market_trades", now_ms, &trade));
            return;
        }
        if let WireProtocol::Kraken { .. } = self.protocol {
            let _ = write!(
                f,
                r#"{{"channel":"trade","type":"update","data":[{{"symbol":"{}","side":"{}","price":{},"qty":{},"ord_type":"market","trade_id":{},"timestamp":"{}"}}]}}"#,
                self.symbol,
                if buyer_aggressor { "buy" } else { "sell" },
                Price(price * self.tick),
                Qty(take * self.lot),
                self.trade_id,
                crate::kraken::parse::rfc3339_from_ns(now_ms * 1_000_000),
            );
            out.push(f);
            return;
        }
        let _ = write!(
            f,
            r#"{{"stream":"{}@trade","data":{{"e":"trade","E":{now_ms},"s":"{}","t":{},"p":"{}","q":"{}","T":{now_ms},"m":{},"M":true}}}}"#,
            self.stream_prefix,
            self.symbol,
            self.trade_id,
            Price(price * self.tick),
            Qty(take * self.lot),
            !buyer_aggressor,
        );
        out.push(f);
    }

    fn requote(&mut self, rng: &mut Rng) {
        let bid = rng.below(2) == 0;
        let (best, other_best) = if bid {
            (self.best_bid().map(|b| b.0), self.best_ask().map(|a| a.0))
        } else {
            (self.best_ask().map(|a| a.0), self.best_bid().map(|b| b.0))
        };
        let Some(best) = best else { return };
        let depth = rng.below(8) as i64;
        let price = if bid { best - depth } else { best + depth };
        // Sometimes improve the price by one tick (never crossing).
        let price = if rng.below(6) == 0 {
            let improved = if bid { best + 1 } else { best - 1 };
            match other_best {
                Some(o) if (bid && improved < o) || (!bid && improved > o) => improved,
                _ => price,
            }
        } else {
            price
        };
        let lots = if rng.below(4) == 0 {
            0
        } else {
            self.random_lots(rng)
        };
        self.set_level(bid, price, lots);
    }

    fn keep_depth(&mut self, rng: &mut Rng) {
        // Refill a side that was eaten so the book never empties.
        while self.bids.len() < self.depth_levels / 2 {
            let p = self
                .bids
                .keys()
                .next()
                .copied()
                .or_else(|| self.best_ask().map(|a| a.0))
                .unwrap_or(1000)
                - 1
                - rng.below(3) as i64;
            let lots = self.random_lots(rng);
            self.set_level(true, p.max(1), lots);
        }
        while self.asks.len() < self.depth_levels / 2 {
            let p = self
                .asks
                .keys()
                .next_back()
                .copied()
                .or_else(|| self.best_bid().map(|b| b.0))
                .unwrap_or(1000)
                + 1
                + rng.below(3) as i64;
            let lots = self.random_lots(rng);
            self.set_level(false, p, lots);
        }
    }

    fn book_ticker_frame(&mut self, now_ms: u64) -> String {
        let (bp, bq) = self.best_bid().unwrap_or((0, 0));
        let (ap, aq) = self.best_ask().unwrap_or((0, 0));
        if let WireProtocol::Bybit { .. } = self.protocol {
            // Level 1 as a delta carrying both current bests (absolute quantities).
            self.bbo_u += 1;
            return self.bybit_bbo("delta", now_ms);
        }
        if let WireProtocol::Okx = self.protocol {
            return format!(
                r#"{{"arg":{{"channel":"bbo-tbt","instId":"{}"}},"data":[{{"asks":[["{}","{}","0","1"]],"bids":[["{}","{}","0","1"]],"ts":"{now_ms}","seqId":{}}}]}}"#,
                self.symbol,
                Price(ap * self.tick),
                Qty(aq * self.lot),
                Price(bp * self.tick),
                Qty(bq * self.lot),
                self.update_id,
            );
        }
        if let WireProtocol::Coinbase = self.protocol {
            let ticker = format!(
                r#"{{"type":"update","tickers":[{{"type":"ticker","product_id":"{}","best_bid":"{}","best_bid_quantity":"{}","best_ask":"{}","best_ask_quantity":"{}"}}]}}"#,
                self.symbol,
                Price(bp * self.tick),
                Qty(bq * self.lot),
                Price(ap * self.tick),
                Qty(aq * self.lot),
            );
            return coinbase_envelope("ticker", now_ms, &ticker);
        }
        if let WireProtocol::Kraken { .. } = self.protocol {
            return format!(
                r#"{{"channel":"ticker","type":"update","data":[{{"symbol":"{}","bid":{},"bid_qty":{},"ask":{},"ask_qty":{}}}]}}"#,
                self.symbol,
                Price(bp * self.tick),
                Qty(bq * self.lot),
                Price(ap * self.tick),
                Qty(aq * self.lot),
            );
        }
        format!(
            r#"{{"stream":"{}@bookTicker","data":{{"u":{},"s":"{}","b":"{}","B":"{}","a":"{}","A":"{}"}}}}"#,
            self.stream_prefix,
            self.update_id,
            self.symbol,
            Price(bp * self.tick),
            Qty(bq * self.lot),
            Price(ap * self.tick),
            Qty(aq * self.lot),
        )
    }

    /// The depth diff of everything changed since the last one (`None` if nothing changed).
    pub fn depth_diff(&mut self, now_ms: u64) -> Option<String> {
        let first = self.pending_first_id.take()?;
        if let WireProtocol::Kraken { depth } = self.protocol {
            self.pending.clear();
            return self.kraken_update(usize::from(depth), now_ms);
        }
        let levels = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|((bid, price), lots)| (bid, price, lots));
        if let WireProtocol::Coinbase = self.protocol {
            return Some(self.coinbase_l2("update", levels, now_ms));
        }
        if let WireProtocol::Okx = self.protocol {
            let prev = self.okx_seq;
            self.okx_seq += 1;
            return Some(self.okx_book("update", levels, prev, now_ms));
        }
        let (bids, asks) = self.level_lists(levels);
        if let WireProtocol::Bybit { depth } = self.protocol {
            self.book_u += 1;
            return Some(format!(
                r#"{{"topic":"orderbook.{depth}.{s}","type":"delta","ts":{now_ms},"data":{{"s":"{s}","b":[{bids}],"a":[{asks}],"u":{},"seq":{}}},"cts":{now_ms}}}"#,
                self.book_u,
                self.update_id,
                s = self.symbol,
            ));
        }
        // `pu` (the previous diff's `u`; ids are contiguous here) is what USD-M adds; spot
        // clients ignore it, so one stream serves `binance` and `binance-usdm` venues alike.
        Some(format!(
            r#"{{"stream":"{}@depth@100ms","data":{{"e":"depthUpdate","E":{now_ms},"s":"{}","U":{first},"u":{},"pu":{},"b":[{bids}],"a":[{asks}]}}}}"#,
            self.stream_prefix,
            self.symbol,
            self.update_id,
            first.saturating_sub(1),
        ))
    }

    /// Level lists of (is_bid, price ticks, lots) levels, as (bids, asks): `["price","qty"],…`
    /// (Binance and Bybit), or `{"price":…,"qty":…},…` with JSON numbers (Kraken).
    fn level_lists(&self, levels: impl Iterator<Item = (bool, i64, i64)>) -> (String, String) {
        let (mut bids, mut asks) = (String::new(), String::new());
        for (bid, price, lots) in levels {
            let target = if bid { &mut bids } else { &mut asks };
            if !target.is_empty() {
                target.push(',');
            }
            let (p, q) = (Price(price * self.tick), Qty(lots * self.lot));
            let _ = match self.protocol {
                WireProtocol::Kraken { .. } => write!(target, r#"{{"price":{p},"qty":{q}}}"#),
                WireProtocol::Okx => write!(target, r#"["{p}","{q}","0","1"]"#),
                _ => write!(target, r#"["{p}","{q}"]"#),
            };
        }
        (bids, asks)
    }

    fn bybit_bbo(&self, kind: &str, now_ms: u64) -> String {
        let best = self
            .best_bid()
            .map(|(p, q)| (true, p, q))
            .into_iter()
            .chain(self.best_ask().map(|(p, q)| (false, p, q)));
        let (b, a) = self.level_lists(best);
        format!(
            r#"{{"topic":"orderbook.1.{s}","type":"{kind}","ts":{now_ms},"data":{{"s":"{s}","b":[{b}],"a":[{a}],"u":{},"seq":{}}},"cts":{now_ms}}}"#,
            self.bbo_u,
            self.update_id,
            s = self.symbol,
        )
    }

    /// Bybit: the snapshots a new subscription to `orderbook.1` and `orderbook.{depth}` gets
    /// (the whole book at the topics' current `u`; later deltas continue from there).
    #[must_use]
    pub fn bybit_snapshots(&self, now_ms: u64) -> [String; 2] {
        let depth = match self.protocol {
            WireProtocol::Bybit { depth } => depth,
            _ => 0,
        };
        let levels = self.all_levels();
        let (b, a) = self.level_lists(levels);
        [
            self.bybit_bbo("snapshot", now_ms),
            format!(
                r#"{{"topic":"orderbook.{depth}.{s}","type":"snapshot","ts":{now_ms},"data":{{"s":"{s}","b":[{b}],"a":[{a}],"u":{},"seq":{}}},"cts":{now_ms}}}"#,
                self.book_u,
                self.update_id,
                s = self.symbol,
            ),
        ]
    }

    fn top(&self, depth: usize) -> TopLevels {
        (
            self.bids
                .iter()
                .rev()
                .take(depth)
                .map(|(p, q)| (*p, *q))
                .collect(),
            self.asks
                .iter()
                .take(depth)
                .map(|(p, q)| (*p, *q))
                .collect(),
        )
    }

    fn kraken_checksum(&self, bids: &[(i64, i64)], asks: &[(i64, i64)]) -> u32 {
        use crate::kraken::feed::{book_checksum, Precision};
        let levels = |side: &[(i64, i64)]| -> Vec<crate::wire::Level> {
            side.iter()
                .map(|(p, q)| crate::wire::Level {
                    price: Price(p * self.tick),
                    qty: Qty(q * self.lot),
                })
                .collect()
        };
        let precision = Precision::of(Price(self.tick), Qty(self.lot));
        book_checksum(&levels(asks), &levels(bids), precision).unwrap_or(0)
    }

    fn kraken_book(&self, kind: &str, b: &str, a: &str, checksum: u32, now_ms: u64) -> String {
        format!(
            r#"{{"channel":"book","type":"{kind}","data":[{{"symbol":"{}","bids":[{b}],"asks":[{a}],"checksum":{checksum},"timestamp":"{}"}}]}}"#,
            self.symbol,
            crate::kraken::parse::rfc3339_from_ns(now_ms * 1_000_000),
        )
    }

    /// Coinbase: an `l2_data` event of (is_bid, price ticks, lots) levels.
    fn coinbase_l2(
        &self,
        kind: &str,
        levels: impl Iterator<Item = (bool, i64, i64)>,
        now_ms: u64,
    ) -> String {
        let time = crate::kraken::parse::rfc3339_from_ns(now_ms * 1_000_000);
        let mut updates = String::new();
        for (bid, price, lots) in levels {
            if !updates.is_empty() {
                updates.push(',');
            }
            let _ = write!(
                updates,
                r#"{{"side":"{}","event_time":"{time}","price_level":"{}","new_quantity":"{}"}}"#,
                if bid { "bid" } else { "offer" },
                Price(price * self.tick),
                Qty(lots * self.lot)
            );
        }
        let event = format!(
            r#"{{"type":"{kind}","product_id":"{}","updates":[{updates}]}}"#,
            self.symbol
        );
        coinbase_envelope("l2_data", now_ms, &event)
    }

    /// OKX: a `books` message of (is_bid, price ticks, lots) levels after `prev`, at the
    /// current `seqId`, with the checksum of the whole book's top 25 levels.
    fn okx_book(
        &self,
        action: &str,
        levels: impl Iterator<Item = (bool, i64, i64)>,
        prev: i64,
        now_ms: u64,
    ) -> String {
        let (b, a) = self.level_lists(levels);
        let side = |side: &mut dyn Iterator<Item = (&i64, &i64)>| -> Vec<crate::wire::Level> {
            side.take(25)
                .map(|(p, q)| crate::wire::Level {
                    price: Price(p * self.tick),
                    qty: Qty(q * self.lot),
                })
                .collect()
        };
        let checksum = crate::okx::feed::book_checksum(
            &side(&mut self.bids.iter().rev()),
            &side(&mut self.asks.iter()),
        );
        format!(
            r#"{{"arg":{{"channel":"books","instId":"{}"}},"action":"{action}","data":[{{"asks":[{a}],"bids":[{b}],"ts":"{now_ms}","checksum":{checksum},"prevSeqId":{prev},"seqId":{}}}]}}"#,
            self.symbol, self.okx_seq,
        )
    }

    /// OKX: the `books` snapshot a new subscription gets (the whole book at the current
    /// `seqId`; later updates continue from it).
    #[must_use]
    pub fn okx_snapshot(&self, now_ms: u64) -> String {
        self.okx_book("snapshot", self.all_levels(), -1, now_ms)
    }

    /// The whole book as (is_bid, price ticks, lots), bids best first, then asks best first.
    fn all_levels(&self) -> impl Iterator<Item = (bool, i64, i64)> + '_ {
        self.bids
            .iter()
            .rev()
            .map(|(p, q)| (true, *p, *q))
            .chain(self.asks.iter().map(|(p, q)| (false, *p, *q)))
    }

    /// Coinbase: the `l2_data` snapshot a new `level2` subscription gets (the whole book).
    #[must_use]
    pub fn coinbase_snapshot(&self, now_ms: u64) -> String {
        let levels = self.all_levels();
        self.coinbase_l2("snapshot", levels, now_ms)
    }

    /// Kraken: the update that takes subscribers from the published book to the current top
    /// `depth`: changed or new levels inside the window, removals of deleted levels; levels
    /// only pushed out of the window are left to the subscribers' truncation, as Kraken does.
    fn kraken_update(&mut self, depth: usize, now_ms: u64) -> Option<String> {
        let (new_bids, new_asks) = self.top(depth);
        let (old_bids, old_asks) = self.published.take().unwrap_or_default();
        let mut changes = Vec::new();
        for (bid, old, new, book) in [
            (true, &old_bids, &new_bids, &self.bids),
            (false, &old_asks, &new_asks, &self.asks),
        ] {
            for &(p, q) in new {
                if !old.contains(&(p, q)) {
                    changes.push((bid, p, q));
                }
            }
            for &(p, _) in old {
                if !book.contains_key(&p) {
                    changes.push((bid, p, 0));
                }
            }
        }
        let mut checksum = self.kraken_checksum(&new_bids, &new_asks);
        self.published = Some((new_bids, new_asks));
        if changes.is_empty() {
            return None;
        }
        if std::mem::take(&mut self.corrupt_checksum) {
            checksum = checksum.wrapping_add(1);
        }
        let (b, a) = self.level_lists(changes.into_iter());
        Some(self.kraken_book("update", &b, &a, checksum, now_ms))
    }

    /// Kraken: the snapshot a new `book` subscription gets: the book as subscribers hold it
    /// (later updates continue from there).
    pub fn kraken_snapshot(&mut self, now_ms: u64) -> String {
        let depth = match self.protocol {
            WireProtocol::Kraken { depth } => usize::from(depth),
            _ => 10,
        };
        let (bids, asks) = match &self.published {
            Some(p) => p.clone(),
            None => {
                let top = self.top(depth);
                self.published = Some(top.clone());
                top
            }
        };
        let checksum = self.kraken_checksum(&bids, &asks);
        let levels = bids
            .iter()
            .map(|(p, q)| (true, *p, *q))
            .chain(asks.iter().map(|(p, q)| (false, *p, *q)));
        let (b, a) = self.level_lists(levels);
        self.kraken_book("snapshot", &b, &a, checksum, now_ms)
    }

    /// A REST depth snapshot of the top `limit` levels, consistent with `update_id`.
    #[must_use]
    pub fn snapshot(&self, limit: usize) -> String {
        let mut s = format!(r#"{{"lastUpdateId":{},"bids":["#, self.update_id);
        for (i, (p, q)) in self.bids.iter().rev().take(limit).enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, r#"["{}","{}"]"#, Price(p * self.tick), Qty(q * self.lot));
        }
        s.push_str(r#"],"asks":["#);
        for (i, (p, q)) in self.asks.iter().take(limit).enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, r#"["{}","{}"]"#, Price(p * self.tick), Qty(q * self.lot));
        }
        s.push_str("]}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::feed::BinanceFeed;
    use crate::binance::parse::{BinanceCodec, Market};
    use crate::feed::{FrameOutcome, MarketSink};
    use crate::symbols::SymbolMap;
    use tradeloop_engine::book::OrderBook;
    use tradeloop_engine::event::{Event, EventKind};
    use tradeloop_engine::instrument::InstrumentIndex;

    struct Sink {
        book: OrderBook,
        quotes_checked: u64,
        trades: u64,
        lost: u64,
    }

    impl MarketSink for Sink {
        fn push(&mut self, e: Event) {
            match e.kind {
                EventKind::BookDelta(d) => {
                    self.book.apply(&d);
                }
                EventKind::Quote(q)
                    if self.book.is_live() && self.book.last_update_id() == q.update_id =>
                {
                    let (b, a) = (self.book.best_bid().unwrap(), self.book.best_ask().unwrap());
                    assert_eq!(
                        (b.price, b.qty, a.price, a.qty),
                        (q.bid_price, q.bid_qty, q.ask_price, q.ask_qty)
                    );
                    self.quotes_checked += 1;
                }
                EventKind::Trade(_) => self.trades += 1,
                _ => {}
            }
        }
        fn book_lost(&mut self, _: InstrumentIndex) {
            self.lost += 1;
            self.book.mark_stale();
        }
    }

    /// The generator's frames go through the real Binance feed: the rebuilt book matches every
    /// ticker, a snapshot mid-stream syncs, and an injected gap is detected and resynced.
    #[test]
    fn frames_rebuild_a_consistent_book_and_gaps_are_detected() {
        let mut rng = Rng::new(7);
        let mut sym = SimSymbol::new(
            "BTCUSDT",
            Price::from_units(60_000),
            Price::parse("0.01").unwrap(),
            Qty::parse("0.00001").unwrap(),
            50,
            &mut rng,
        );
        let mut symbols = SymbolMap::default();
        symbols.insert("BTCUSDT", InstrumentIndex(0));
        let mut feed = BinanceFeed::new(BinanceCodec::new(symbols, 1 << 20), Market::Spot, 1000);
        let mut sink = Sink {
            book: OrderBook::new(4096),
            quotes_checked: 0,
            trades: 0,
            lost: 0,
        };
        let mut frames = Vec::new();
        let mut snapshots = 0;
        for step in 0..20_000u64 {
            if step == 7_000 {
                sym.inject_gap();
            }
            sym.step(&mut rng, step, &mut frames);
            if step % 10 == 9 {
                // Deliver the diff ahead of this step's ticker so their update ids meet.
                if let Some(diff) = sym.depth_diff(step) {
                    frames.insert(frames.len() - 1, diff);
                }
            }
            for f in frames.drain(..) {
                match feed.on_frame(step, &f, &mut sink) {
                    FrameOutcome::NeedSnapshot(i) => {
                        snapshots += 1;
                        feed.on_snapshot(i, step, &sym.snapshot(1000), &mut sink);
                    }
                    FrameOutcome::Refused(e) => panic!("{e}: {f}"),
                    FrameOutcome::Resubscribe(i) => panic!("binance never resubscribes: {i:?}"),
                    FrameOutcome::Handled => {}
                }
            }
        }
        assert_eq!(feed.stats().errors_total(), 0);
        assert_eq!(feed.stats().gaps, 1, "the injected gap");
        assert_eq!(sink.lost, 1);
        assert_eq!(snapshots, 2, "initial sync + resync after the gap");
        assert!(sink.book.is_live());
        assert!(
            sink.quotes_checked > 1_000,
            "tickers matched the rebuilt book: {}",
            sink.quotes_checked
        );
        assert!(sink.trades > 4_000);
        assert_eq!(sink.book.crossed_messages(), 0);
    }
}
