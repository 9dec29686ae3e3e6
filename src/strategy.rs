//! Strategies the command line can run by name: [`Configurable`] ties a
//! [`Strategy`](tradeloop_engine::api::Strategy) to its name and its `[strategy.NAME]`
//! parameters, and a [`Registry`] (made with [`strategies!`](crate::strategies!)) lists the
//! ones a binary offers. The built-in `tradeloop` binary offers [`Bundled`]; a user's own
//! binary lists theirs and gets the same `run`, `backtest`, `--sweep` and `config check`
//! through [`crate::cli::main`].
//!
//! Dispatch is static: a registry hands each strategy type to a generic [`UseStrategy`]
//! visitor, so the engine is monomorphised for every registered strategy and nothing on the
//! per-event path goes through `dyn` (a strategy's methods are generic over the context and
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
//! pub struct Counter { instrument: InstrumentIndex, seen: u64 }
//!
//! #[derive(Clone, Debug, Default, Deserialize, Serialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct CounterParams { symbol: String }
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
use tradeloop_engine::portfolio::{MemberLimits, Portfolio};
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

/// The strategies a binary offers by name. Made with [`strategies!`](crate::strategies!).
pub trait Registry: Send + Sync + 'static {
    /// Any one of the registered strategies: the nested
    /// [`Either`](tradeloop_engine::portfolio::Either) of them all, so that members of a
    /// [`Portfolio`] may be of different types.
    type Any: tradeloop_engine::api::Strategy + Send + 'static;
    /// Registered names, in registration order.
    fn names() -> Vec<&'static str>;
    /// Calls `visitor.with::<S>()` for the strategy named `name`; `None` if none is.
    fn dispatch<V: UseStrategy>(name: &str, visitor: V) -> Option<V::Output>;
    /// Builds the strategy named `name` as [`Self::Any`], its parameters from
    /// `[strategy.SECTION]`; `None` if no strategy has that name.
    fn build_any(
        name: &str,
        section: &str,
        config: &Config,
        instruments: &InstrumentRegistry,
    ) -> Option<Result<(Self::Any, StrategyLabel), ConfigError>>;
}

/// [`strategies!`](crate::strategies!)'s nested `Either` of the registered types.
#[doc(hidden)]
#[macro_export]
macro_rules! __strategies_any {
    ($t:ty) => { $t };
    ($t:ty, $($rest:ty),+) => {
        $crate::engine::portfolio::Either<$t, $crate::__strategies_any!($($rest),+)>
    };
}

/// [`strategies!`](crate::strategies!)'s `build_any`: the strategy at its place in the nested
/// `Either`.
#[doc(hidden)]
#[macro_export]
macro_rules! __strategies_build_any {
    ($name:ident, $section:ident, $config:ident, $instruments:ident; $t:ty) => {
        if $name == <$t as $crate::strategy::Configurable>::NAME {
            ::core::option::Option::Some($crate::strategy::build_section::<$t>(
                $config,
                $section,
                $instruments,
            ))
        } else {
            ::core::option::Option::None
        }
    };
    ($name:ident, $section:ident, $config:ident, $instruments:ident; $t:ty, $($rest:ty),+) => {
        if $name == <$t as $crate::strategy::Configurable>::NAME {
            ::core::option::Option::Some(
                $crate::strategy::build_section::<$t>($config, $section, $instruments)
                    .map(|(s, l)| ($crate::engine::portfolio::Either::Left(s), l)),
            )
        } else {
            $crate::__strategies_build_any!($name, $section, $config, $instruments; $($rest),+)
                .map(|r| r.map(|(s, l)| ($crate::engine::portfolio::Either::Right(s), l)))
        }
    };
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
            type Any = $crate::__strategies_any!($($s),+);

            fn build_any(
                name: &str,
                section: &str,
                config: &$crate::config::Config,
                instruments: &$crate::engine::instrument::InstrumentRegistry,
            ) -> ::core::option::Option<
                ::core::result::Result<
                    (Self::Any, $crate::backtest::StrategyLabel),
                    $crate::config::ConfigError,
                >,
            > {
                $crate::__strategies_build_any!(name, section, config, instruments; $($s),+)
            }

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
        tradeloop_examples::basis::Basis,
        tradeloop_examples::grid::Grid,
        tradeloop_examples::momentum::Momentum,
    }
}

/// `S`'s parameters from `config`'s `[strategy.NAME]` section; errors name the dotted key
/// (`strategy.NAME.KEY`).
///
/// # Errors
/// A [`ConfigError`] for a missing, misspelt or mistyped key.
pub fn params<S: Configurable>(config: &Config) -> Result<S::Params, ConfigError> {
    params_from::<S>(config, S::NAME)
}

/// `S`'s parameters from `[strategy.SECTION]` (a portfolio may run one strategy twice with
/// two sections).
///
/// # Errors
/// A [`ConfigError`] for a missing, misspelt or mistyped key.
pub fn params_from<S: Configurable>(
    config: &Config,
    section: &str,
) -> Result<S::Params, ConfigError> {
    let table = config
        .strategy
        .sections
        .get(section)
        .cloned()
        .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    serde_path_to_error::deserialize(table).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." {
            format!("strategy.{section}")
        } else {
            format!("strategy.{section}.{path}")
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
    build_section::<S>(config, S::NAME, instruments)
}

/// Builds `S` with its parameters from `[strategy.SECTION]`.
///
/// # Errors
/// A [`ConfigError`] naming the key.
pub fn build_section<S: Configurable>(
    config: &Config,
    section: &str,
    instruments: &InstrumentRegistry,
) -> Result<(S, StrategyLabel), ConfigError> {
    let p = params_from::<S>(config, section)?;
    let strategy = S::build(&p, instruments).map_err(|e| ConfigError {
        key: if e.key.is_empty() {
            format!("strategy.{section}")
        } else {
            format!("strategy.{section}.{}", e.key)
        },
        reason: e.reason,
    })?;
    let label = StrategyLabel::new(
        S::NAME,
        serde_json::to_value(&p).unwrap_or(serde_json::Value::Null),
    );
    Ok((strategy, label))
}

/// The name under which `[strategy] name` (or `--strategy`) runs several registered strategies
/// in one engine, listed in `[strategy.portfolio] members`.
pub const PORTFOLIO: &str = "portfolio";

/// `[strategy.portfolio]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortfolioParams {
    /// The members, in [`StrategyId`](tradeloop_engine::event::StrategyId) order.
    pub members: Vec<MemberParams>,
}

/// One `[[strategy.portfolio.members]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemberParams {
    /// A registered strategy's name.
    pub strategy: String,
    /// The `[strategy.SECTION]` its parameters are in (default: its name), so that one
    /// strategy can run twice with different parameters.
    #[serde(default)]
    pub params: Option<String>,
    /// Its largest absolute attributed position per instrument, counting the order sent.
    #[serde(default)]
    pub max_position: Option<tradeloop_engine::fixed::Qty>,
    /// Its most working orders at once.
    #[serde(default)]
    pub max_open_orders: Option<u32>,
}

/// The portfolio `[strategy.portfolio]` describes, with each member built as `R::Any`.
///
/// # Errors
/// A [`ConfigError`] naming the key: no members, an unknown member strategy, or a member's
/// bad parameters.
pub fn build_portfolio<R: Registry>(
    config: &Config,
    instruments: &InstrumentRegistry,
) -> Result<(Portfolio<R::Any>, StrategyLabel), ConfigError> {
    let table = config
        .strategy
        .sections
        .get(PORTFOLIO)
        .cloned()
        .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    let p: PortfolioParams = serde_path_to_error::deserialize(table).map_err(|e| ConfigError {
        key: format!("strategy.{PORTFOLIO}.{}", e.path()),
        reason: e.into_inner().to_string(),
    })?;
    if p.members.is_empty() || p.members.len() > tradeloop_engine::portfolio::MAX_MEMBERS {
        return Err(ConfigError {
            key: format!("strategy.{PORTFOLIO}.members"),
            reason: format!(
                "a portfolio holds 1 to {} strategies, got {}",
                tradeloop_engine::portfolio::MAX_MEMBERS,
                p.members.len()
            ),
        });
    }
    let mut members = Vec::with_capacity(p.members.len());
    let mut names = Vec::with_capacity(p.members.len());
    let mut labels = Vec::with_capacity(p.members.len());
    for (k, m) in p.members.iter().enumerate() {
        let section = m.params.as_deref().unwrap_or(&m.strategy);
        let (strategy, label) = R::build_any(&m.strategy, section, config, instruments)
            .unwrap_or_else(|| {
                Err(unknown::<R>(
                    &format!("strategy.{PORTFOLIO}.members[{k}].strategy"),
                    &m.strategy,
                ))
            })?;
        let limits = MemberLimits {
            max_position: m.max_position,
            max_open_orders: m.max_open_orders,
        };
        members.push((strategy, limits));
        names.push(section.to_owned());
        labels.push(
            serde_json::json!({ "strategy": label.name, "section": section, "params": label.params,
            "max_position": m.max_position, "max_open_orders": m.max_open_orders }),
        );
    }
    let portfolio = Portfolio::new(members, instruments).map_err(|e| ConfigError {
        key: format!("strategy.{PORTFOLIO}.members"),
        reason: e.to_string(),
    })?;
    let label = StrategyLabel {
        name: PORTFOLIO.to_owned(),
        params: serde_json::Value::Array(labels),
        members: names,
    };
    Ok((portfolio, label))
}

/// The error for a name no strategy in `R` has, listing the registered ones.
#[must_use]
pub fn unknown<R: Registry>(key: &str, name: &str) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        reason: format!(
            "no strategy named {name:?}; registered: {} (and {PORTFOLIO}, to run several)",
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
    if name == PORTFOLIO {
        return build_portfolio::<R>(config, &registry).map(drop);
    }
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
