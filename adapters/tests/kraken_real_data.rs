//! Kraken trade decoding on real data: the 1,000 XBTUSDT trades of the REST capture in
//! ../shared/data are written as Kraken v2 `trade` messages — prices and quantities as JSON
//! *numbers* with the capture's exact digits, as the v2 feed sends them — and every one decodes
//! to exactly the capture's decimal values, side, id and time (no `f64` anywhere).

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use tradeloop_adapters::kraken::parse::{rfc3339_from_ns, KrakenCodec, Parsed};
use tradeloop_adapters::shared_data_dir;
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_adapters::wire::Codec as _;
use tradeloop_engine::event::Side;
use tradeloop_engine::instrument::InstrumentIndex;

#[derive(Deserialize)]
struct Rest {
    result: std::collections::BTreeMap<String, Box<RawValue>>,
}

type RestTrade = (String, String, Box<RawValue>, String, String, String, u64);

/// ns since the epoch of a `seconds.fraction` literal (exact: no float), truncated to µs as
/// Kraken's v2 timestamps are.
fn epoch_ns(literal: &str) -> u64 {
    let (secs, frac) = literal.split_once('.').unwrap_or((literal, ""));
    let micros: String = format!("{frac:0<6}").chars().take(6).collect();
    secs.parse::<u64>().unwrap() * 1_000_000_000 + micros.parse::<u64>().unwrap() * 1_000
}

#[test]
fn real_trades_decode_exactly_from_json_numbers() {
    let path = shared_data_dir().join("kraken_http_trades_XBTUSDT.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {} is absent", path.display());
        return;
    };
    let rest: Rest = serde_json::from_str(&text).unwrap();
    let trades: Vec<RestTrade> = serde_json::from_str(rest.result["XBTUSDT"].get()).unwrap();
    assert_eq!(trades.len(), 1000);
    let mut symbols = SymbolMap::default();
    symbols.insert("BTC/USDT", InstrumentIndex(0));
    let mut codec = KrakenCodec::new(symbols, 1 << 20);
    let (mut sum_want, mut sum_got) = (Decimal::ZERO, Decimal::ZERO);
    let (mut buys, mut sells) = (0, 0);
    for (price, qty, time, side, _kind, _misc, id) in &trades {
        let side_word = if side == "b" { "buy" } else { "sell" };
        let want_ns = epoch_ns(time.get());
        let ts = rfc3339_from_ns(want_ns);
        let frame = format!(
            r#"{{"channel":"trade","type":"update","data":[{{"symbol":"BTC/USDT","side":"{side_word}","price":{price},"qty":{qty},"ord_type":"limit","trade_id":{id},"timestamp":"{ts}"}}]}}"#
        );
        assert_eq!(codec.parse(&frame), Ok(Parsed::Trades(1)), "{frame}");
        let (t, ns) = codec.trades()[0];
        let p: Decimal = price.parse().unwrap();
        let q: Decimal = qty.parse().unwrap();
        assert_eq!(
            t.price.to_string().parse::<Decimal>().unwrap(),
            p,
            "{frame}"
        );
        assert_eq!(t.qty.to_string().parse::<Decimal>().unwrap(), q, "{frame}");
        assert_eq!(t.trade_id, *id);
        assert_eq!(ns, want_ns, "{ts}");
        match t.aggressor {
            Side::Buy => buys += 1,
            Side::Sell => sells += 1,
        }
        sum_want += q;
        sum_got += t.qty.to_string().parse::<Decimal>().unwrap();
    }
    assert_eq!(sum_got, sum_want, "total volume exact");
    assert_eq!(
        (buys, sells),
        (
            trades.iter().filter(|t| t.3 == "b").count(),
            trades.iter().filter(|t| t.3 == "s").count()
        )
    );
    assert!(buys > 0 && sells > 0);
}
