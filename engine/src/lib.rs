//! tradeloop's hot core: fixed-point numbers, instruments, events, the four priority lanes, the
//! single-threaded event loop, the order pool and state machine, positions and PnL, L2 books,
//! latency histograms, and the traits the loop calls (`Strategy`, `RiskGate`, `Gateway`), and the outbound persistence queue with the
//! `Store` trait its writer calls.
//!
//! Everything on the per-event path allocates only at construction; see each module's
//! `# Allocation` notes and `tests/zero_alloc.rs`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod book;
pub mod breakers;
pub mod clock;
pub mod configurable;
pub mod event;
pub mod event_loop;
pub mod fixed;
pub mod instrument;
pub mod lane;
pub mod metrics;
pub mod order;
pub mod persist;
pub mod pool;
pub mod portfolio;
pub mod position;
pub mod stops;
pub mod strategies;
pub mod timers;
pub mod types;
