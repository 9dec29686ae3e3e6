//! Strategies the command line can run by name: [`Configurable`] ties a
//! [`Strategy`](tradeloop_engine::api::Strategy) to its name and its `[strategy.NAME]`
//! parameters, and a [`Registry`] (made with [`strategies!`]) lists the ones a binary offers.
//! The built-in `tradeloop` binary offers [`Bundled`]; a user's own binary lists theirs and
//! gets the same `run`, `backtest`, `--sweep` and `config check` through [`crate::cli::main`].
//!
//! Dispatch is static: a registry hands each strategy type to a generic [`UseStrategy`]
//! visitor, so the engine is monomorphised for every registered strategy and nothing on the
//! per-event path goes through `dyn` ([`Strategy`]'s methods are generic over the context and
//! so not object-safe, by design). Off the hot path: names and parameters are resolved once at
//! start-up.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tradeloop::engine::api::{Context, Strategy};
//! use tradeloop::engine::event::Trade;
//! use tradeloop::engine::instrument::{InstrumentIndex, InstrumentRegistry};
//! use tradeloop::strategy::{Configurable, ParamError};
//!
//! /// Counts trades on one symbol.
//! struct Counter { instrument: InstrumentIndex, seen: u64 }
//!
//! #[derive(Clone, Debug, Default, Deserialize, Serialize)]
//! #[serde(deny_unknown_fields)]
//! struct CounterParams { symbol: String }
//!
//! impl Strategy for Counter {
//!     fn on_trade<C: Context>(&mut self, _ctx: &mut C, trade: &Trade) {
//!         self.seen += u64::from(trade.instrument == self.instrument);
//!     }
//! }
//!
//! impl Configurable for Counter {
//!     const NAME: &'static str = "counter";
//!     type Params = CounterParams;
//!     fn build(p: &CounterParams, instruments: &InstrumentRegistry) -> Result<Self, ParamError> {
//!         let i = instruments.by_symbol(&p.symbol).ok_or_else(|| {
//!             ParamError::new("symbol", format!("{:?} is not a configured instrument", p.symbol))
//!         })?;
//!         Ok(Counter { instrument: i.index, seen: 0 })
//!     }
//! }
//!
//! tradeloop::strategies! {
//!     /// This binary's strategies.
//!     pub struct Mine { tradeloop::engine::strategies::MaCross, Counter }
//! }
//!
//! use tradeloop::strategy::Registry;
//! assert_eq!(Mine::names(), ["ma_cross", "counter"]);
//! ```

use tradeloop_engine::instrument::InstrumentRegistry;
use tradeloop_engine::strategies::MaCross;

use crate::backtest::StrategyLabel;
use crate::config::{Config, ConfigError};

pub use tradeloop_engine::configurable::{Configurable, ParamError};

/// What to do with the strategy a name resolved to (see [`Registry::dispatch`]).
pub trait UseStrategy {
    /// The result.
    type Output;
    /// Called with the registered type `S`.
    fn with<S: Configurable>(self) -> Self::Output;
}

/// The strategies a binary offers by name. Made with [`strategies!`].
pub trait Registry: Send + Sync + 'static {
    /// Registered names, in registration order.
    fn names() -> Vec<&'static str>;
    /// Calls `visitor.with::<S>()` for the strategy named `name`; `None` if none is.
    fn dispatch<V: UseStrategy>(name: &str, visitor: V) -> Option<V::Output>;
}

/// Declares a [`Registry`] of strategy types (each [`Configurable`]), in the order their
/// names are listed:
///
/// ```ignore
/// tradeloop::strategies! {
///     /// This binary's strategies.
///     pub struct MyStrategies { tradeloop::engine::strategies::MaCross, my_crate::Maker }
/// }
/// ```
#[macro_export]
macro_rules! strategies {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($s:ty),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default)]
        $vis struct $name;

        impl $crate::strategy::Registry for $name {
            fn names() -> ::std::vec::Vec<&'static str> {
                ::std::vec![$(<$s as $crate::strategy::Configurable>::NAME),+]
            }
            fn dispatch<V: $crate::strategy::UseStrategy>(
                name: &str,
                visitor: V,
            ) -> ::core::option::Option<V::Output> {
                $(
                    if name == <$s as $crate::strategy::Configurable>::NAME {
                        return ::core::option::Option::Some(visitor.with::<$s>());
                    }
                )+
                ::core::option::Option::None
            }
        }
    };
}

strategies! {
    /// The strategies the `tradeloop` binary offers: the moving-average crossover and the
    /// examples crate's (`examples/README.md`).
    pub struct Bundled {
        MaCross,
        tradeloop_examples::market_maker::MarketMaker,
        tradeloop_examples::imbalance::Imbalance,
    }
}

/// `S`'s parameters from `config`'s `[strategy.NAME]` section; errors name the dotted key
/// (`strategy.NAME.KEY`).
///
/// # Errors
/// A [`ConfigError`] for a missing, misspelt or mistyped key.
pub fn params<S: Configurable>(config: &Config) -> Result<S::Params, ConfigError> {
    let section = config
        .strategy
        .sections
        .get(S::NAME)
        .cloned()
        .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    serde_path_to_error::deserialize(section).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." {
            format!("strategy.{}", S::NAME)
        } else {
            format!("strategy.{}.{path}", S::NAME)
        };
        ConfigError {
            key,
            reason: e.into_inner().to_string(),
        }
    })
}

/// Builds `S` from `config` on `instruments`, with the label `summary.json` gives it.
///
/// # Errors
/// A [`ConfigError`] naming the key.
pub fn build<S: Configurable>(
    config: &Config,
    instruments: &InstrumentRegistry,
) -> Result<(S, StrategyLabel), ConfigError> {
    let p = params::<S>(config)?;
    let strategy = S::build(&p, instruments).map_err(|e| ConfigError {
        key: if e.key.is_empty() {
            format!("strategy.{}", S::NAME)
        } else {
            format!("strategy.{}.{}", S::NAME, e.key)
        },
        reason: e.reason,
    })?;
    let label = StrategyLabel {
        name: S::NAME.to_owned(),
        params: serde_json::to_value(&p).unwrap_or(serde_json::Value::Null),
    };
    Ok((strategy, label))
}

/// The error for a name no strategy in `R` has, listing the registered ones.
#[must_use]
pub fn unknown<R: Registry>(key: &str, name: &str) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        reason: format!(
            "no strategy named {name:?}; registered: {}",
            R::names().join(", ")
        ),
    }
}

/// Checks that `config`'s strategy (`[strategy] name`, or `name` when given) is registered in
/// `R` and that its parameters build on the configured instruments.
///
/// # Errors
/// A [`ConfigError`] naming the key.
pub fn validate<R: Registry>(config: &Config, name: Option<&str>) -> Result<(), ConfigError> {
    struct Check<'a>(&'a Config, &'a InstrumentRegistry);
    impl UseStrategy for Check<'_> {
        type Output = Result<(), ConfigError>;
        fn with<S: Configurable>(self) -> Self::Output {
            build::<S>(self.0, self.1).map(drop)
        }
    }
    let registry = config.registry()?;
    let (key, name) = match name {
        Some(n) => ("--strategy", n),
        None => ("strategy.name", config.strategy.name.as_str()),
    };
    R::dispatch(name, Check(config, &registry)).unwrap_or_else(|| Err(unknown::<R>(key, name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = include_str!("../config.toml");

    fn config(extra: &[(&str, &str)]) -> Config {
        let env = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_toml(DEFAULT, &env).expect("valid")
    }

    #[test]
    fn the_shipped_config_builds_ma_cross() {
        let c = config(&[]);
        assert_eq!(validate::<Bundled>(&c, None), Ok(()));
        let (_, label) = build::<MaCross>(&c, &c.registry().unwrap()).unwrap();
        assert_eq!(label.name, "ma_cross");
        assert_eq!(label.params["fast"], 20);
        assert_eq!(label.params["target_qty"], "0.01");
    }

    #[test]
    fn bad_names_and_params_name_the_key() {
        let cases = [
            (
                "TC0 unknown name",
                vec![("TRADELOOP__STRATEGY__NAME", "\"nope\"")],
                None,
                "strategy.name",
                "registered: ma_cross",
            ),
            (
                "TC1 unknown --strategy",
                vec![],
                Some("nope"),
                "--strategy",
                "registered: ma_cross",
            ),
            (
                "TC2 misspelt key",
                vec![("TRADELOOP__STRATEGY__MA_CROSS__FASST", "3")],
                None,
                "strategy.ma_cross.fasst",
                "unknown field `fasst`",
            ),
            (
                "TC3 wrong type",
                vec![("TRADELOOP__STRATEGY__MA_CROSS__FAST", "\"x\"")],
                None,
                "strategy.ma_cross.fast",
                "invalid type",
            ),
            (
                "TC4 validate",
                vec![("TRADELOOP__STRATEGY__MA_CROSS__SLOW", "5")],
                None,
                "strategy.ma_cross.slow",
                "greater than fast",
            ),
            (
                "TC5 symbol",
                vec![("TRADELOOP__STRATEGY__MA_CROSS__SYMBOL", "\"DOGEUSDT\"")],
                None,
                "strategy.ma_cross.symbol",
                "DOGEUSDT",
            ),
        ];
        for (label, env, name, key, reason) in cases {
            let c = config(&env);
            let e = validate::<Bundled>(&c, name).expect_err(label);
            assert_eq!(e.key, key, "{label}: {e}");
            assert!(e.reason.contains(reason), "{label}: {e}");
        }
    }
}
