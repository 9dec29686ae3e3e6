//! [`Configurable`]: a strategy that can be built by name from its `[strategy.NAME]`
//! parameters, which is what a command line's strategy registry needs of it (see the
//! `tradeloop` crate's `strategy` module and its `strategies!` macro). Off the hot path: a
//! strategy is built once at start-up.

use crate::api::Strategy;
use crate::instrument::InstrumentRegistry;

/// A bad strategy parameter: the key below `strategy.NAME` (empty for the section as a whole)
/// and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    /// Key below `strategy.NAME`, e.g. `symbol` or `quote.levels`.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ParamError {
    /// An error naming `key`.
    #[must_use]
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl core::fmt::Display for ParamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "`{}`: {}", self.key, self.reason)
    }
}

impl std::error::Error for ParamError {}

/// A strategy that can be built from configuration.
pub trait Configurable: Strategy + Sized + Send + 'static {
    /// Its name: `[strategy] name`, `--strategy`, and the `[strategy.NAME]` section.
    const NAME: &'static str;
    /// Its parameters, deserialised from `[strategy.NAME]` (an absent section is an empty
    /// table). Use `#[serde(deny_unknown_fields)]` so that a misspelt key is refused.
    type Params: serde::de::DeserializeOwned + serde::Serialize + Clone + Send + Sync + 'static;
    /// Builds the strategy on the configured instruments, checking the parameters.
    ///
    /// # Errors
    /// A [`ParamError`] naming the offending key.
    fn build(params: &Self::Params, instruments: &InstrumentRegistry) -> Result<Self, ParamError>;
}
