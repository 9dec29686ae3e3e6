//! tradeloop as a library: the wiring that the `tradeloop` binary runs — configuration, the
//! trading bot (`run`), replay backtests and parameter sweeps, `.tle` conversion, recording,
//! persistence start-up, the metrics exporter and the benchmarks — for a trader's own crate to
//! build bots and backtests on with their own [`Strategy`](tradeloop_engine::api::Strategy).
//!
//! Off the hot path: everything here runs at start-up, between runs or beside the engine
//! thread. The per-event path is the engine's (`tradeloop_engine`), reached through generics.
//!
//! The crates underneath are re-exported, so a user crate needs only this one dependency:
//! [`engine`], [`adapters`], [`risk`], [`store`] and the example strategies, [`examples`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use tradeloop_adapters as adapters;
pub use tradeloop_engine as engine;
pub use tradeloop_examples as examples;
pub use tradeloop_risk as risk;
pub use tradeloop_store as store;

pub mod backtest;
pub mod bench;
pub mod cli;
pub mod config;
pub mod convert;
pub mod exporter;
pub mod hdrlog;
pub mod hotpath;
pub mod persistence;
pub mod record;
pub mod report;
pub mod run;
pub mod status;
pub mod strategy;
pub mod sweep;
pub mod venues;

/// The README's Rust examples, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The book's "Write a strategy" examples, compiled as doctests.
#[doc = include_str!("../docs/src/how-to/write-a-strategy.md")]
#[cfg(doctest)]
pub struct WriteAStrategyDoctests;
