//! Binance spot and USD-M market data: wire parsing ([`parse`]) and the documented order-book
//! synchronisation ([`book_sync`]), combined per feed by [`feed::BinanceFeed`].

pub mod book_sync;
pub mod exec;
pub mod feed;
pub mod parse;
