//! Coinbase Advanced Trade public market data: wire parsing ([`parse`]) and the
//! connection-wide sequence check with `level2` resubscription on a gap ([`feed::CoinbaseFeed`]).

pub mod feed;
pub mod parse;
