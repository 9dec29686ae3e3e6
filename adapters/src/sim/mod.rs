//! The built-in exchange simulator: a synthetic market ([`market`]) served over loopback in
//! Binance's wire format ([`server`]), so the real feed client, parser and book sync run
//! offline exactly as against Binance.

pub mod config;
pub mod gateway;
pub mod market;
pub mod matching;
pub mod server;
