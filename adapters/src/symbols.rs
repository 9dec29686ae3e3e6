//! Venue symbol → instrument index, built at start-up. Hot path: `find` runs per frame; a
//! linear scan with an ASCII case-insensitive compare beats hashing for the handful of
//! instruments one engine trades, and allocates nothing.

use tradeloop_engine::instrument::{InstrumentIndex, InstrumentRegistry};

/// Symbols of one venue and their instrument indices.
#[derive(Clone, Debug, Default)]
pub struct SymbolMap {
    entries: Vec<(String, InstrumentIndex)>,
}

impl SymbolMap {
    /// The instruments of `venue` in a registry.
    #[must_use]
    pub fn for_venue(registry: &InstrumentRegistry, venue: &str) -> Self {
        let mut m = Self::default();
        for i in registry.iter().filter(|i| i.venue == venue) {
            m.insert(&i.symbol, i.index);
        }
        m
    }

    /// Adds a symbol (upper-cased).
    pub fn insert(&mut self, symbol: &str, index: InstrumentIndex) {
        self.entries.push((symbol.to_ascii_uppercase(), index));
    }

    /// The instrument of `symbol`, any case.
    #[inline]
    #[must_use]
    pub fn find(&self, symbol: &str) -> Option<InstrumentIndex> {
        self.entries
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(symbol))
            .map(|(_, i)| *i)
    }

    /// All (symbol, index) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, InstrumentIndex)> {
        self.entries.iter().map(|(s, i)| (s.as_str(), *i))
    }

    /// A table indexed by instrument index: `make(i)` for this map's instruments (which may
    /// decline with `None`), `None` for the indices in between.
    pub fn per_instrument<T>(
        &self,
        mut make: impl FnMut(InstrumentIndex) -> Option<T>,
    ) -> Vec<Option<T>> {
        let len = self
            .entries
            .iter()
            .map(|(_, i)| i.get() + 1)
            .max()
            .unwrap_or(0);
        let mut table: Vec<Option<T>> = (0..len).map(|_| None).collect();
        for (_, i) in &self.entries {
            table[i.get()] = make(*i);
        }
        table
    }

    /// Number of symbols.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` if empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
