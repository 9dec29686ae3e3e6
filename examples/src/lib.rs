//! Real strategies built on tradeloop's engine API, each bundled in the `tradeloop` binary by
//! name and documented with its config in `examples/configs/` (see `examples/README.md`):
//!
//! - [`market_maker::MarketMaker`] (`market_maker`): post-only quotes on both sides of the
//!   mid with inventory skew, requoted by amend on book changes and on a timer;
//! - [`imbalance::Imbalance`] (`imbalance`): takes liquidity when the top of book leans
//!   heavily to one side, and leaves after a holding time;
//! - [`basis::Basis`] (`basis`): trades a spot market against its perpetual when the basis
//!   strays from its moving average, both legs at once;
//! - [`grid::Grid`] (`grid`): fixed post-only quotes ±N ticks around the mid, cancelled and
//!   replaced on a timer — simple enough to be written identically in another backtester;
//! - [`momentum::Momentum`] (`momentum`): an IOC at the touch in the direction the mid moved
//!   since its last look, likewise.
//!
//! The smallest example is the moving-average crossover in the engine crate
//! (`tradeloop_engine::strategies::MaCross`, `ma_cross`).
//!
//! Hot path: every callback runs on the engine thread with integer arithmetic only and no
//! allocation (`tests/zero_alloc.rs` counts).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod basis;
pub mod grid;
pub mod imbalance;
pub mod market_maker;
pub mod momentum;

/// The configured instrument named `symbol` (the `symbol` parameter).
fn instrument<'a>(
    instruments: &'a tradeloop_engine::instrument::InstrumentRegistry,
    symbol: &str,
) -> Result<&'a tradeloop_engine::instrument::Instrument, tradeloop_engine::configurable::ParamError>
{
    instruments.by_symbol(symbol).ok_or_else(|| {
        tradeloop_engine::configurable::ParamError::new(
            "symbol",
            format!("{symbol:?} is not one of the configured instruments"),
        )
    })
}

/// A positive multiple of the instrument's lot size (the `qty` parameter).
fn check_qty(
    qty: tradeloop_engine::fixed::Qty,
    instrument: &tradeloop_engine::instrument::Instrument,
) -> Result<(), tradeloop_engine::configurable::ParamError> {
    if qty.raw() <= 0 || !qty.is_multiple_of(instrument.lot_size) {
        return Err(tradeloop_engine::configurable::ParamError::new(
            "qty",
            format!(
                "must be a positive multiple of the lot size {}, got {qty}",
                instrument.lot_size
            ),
        ));
    }
    Ok(())
}

/// A position limit that allows at least one order of `qty` (the `max_position` parameter).
fn check_max_position(
    max_position: tradeloop_engine::fixed::Qty,
    qty: tradeloop_engine::fixed::Qty,
) -> Result<(), tradeloop_engine::configurable::ParamError> {
    if max_position < qty {
        return Err(tradeloop_engine::configurable::ParamError::new(
            "max_position",
            format!("must be at least qty ({qty}), got {max_position}"),
        ));
    }
    Ok(())
}
