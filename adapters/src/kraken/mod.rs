//! Kraken spot WebSocket v2 public market data: wire parsing with exact JSON numbers
//! ([`parse`]) and the depth-truncated book checked by Kraken's CRC32 ([`feed::KrakenFeed`]).

pub mod feed;
pub mod parse;
