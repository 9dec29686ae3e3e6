//! Live execution on Binance spot and USD-M: signed REST orders, the user data stream,
//! exchange filters, rate limits and reconciliation.

pub mod config;
pub mod filters;
pub mod gateway;
pub mod preflight;
pub mod report;
pub mod rest;
pub mod sign;
pub mod tracker;
