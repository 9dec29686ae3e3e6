//! What tradeloop's tests, benchmarks and load tests drive the engine with, kept out of the
//! engine's and the adapters' public APIs:
//!
//! - [`binance_mock::MockBinance`]: a loopback mock of Binance's REST API and user data stream
//!   for the live execution gateway's tests and the `bench` command's `live` group;
//! - [`gateway::FakeGateway`]: one configurable stand-in for a venue — it accepts and forgets,
//!   fills at once at the limit through the real HIGH lane, or hands orders to another thread —
//!   optionally stamping when a reduce-only order (a fired stop) reaches it;
//! - [`fixtures`]: the bench instrument, its codec and the simulated venue's BTCUSDT frames.
//!
//! The shipped `tradeloop` binary depends on it for `bench` only.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binance_mock;
pub mod fixtures;
pub mod gateway;
