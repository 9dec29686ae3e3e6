//! Wire helpers every venue codec shares: the [`Codec`] trait and the [`FrameBuffers`] every
//! codec parses into, the parsed price level, the typed parse error counted per kind, exact
//! decimal strings to fixed point while deserializing, and a level-list seed that fills a
//! reused buffer. Hot path (feed threads): nothing here allocates once the level buffers have
//! grown.

use core::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use tradeloop_engine::event::Trade;
use tradeloop_engine::fixed::{FixedError, Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;

use crate::symbols::SymbolMap;

/// What a venue codec parses into, reused frame after frame: the symbols it knows, the book
/// levels and trades of the last frame, and the largest frame it takes.
///
/// # Allocation
/// Only when a codec is built and while a buffer grows past its first capacity.
#[derive(Clone, Debug)]
pub struct FrameBuffers {
    pub(crate) symbols: SymbolMap,
    pub(crate) bids: Vec<Level>,
    pub(crate) asks: Vec<Level>,
    pub(crate) trades: Vec<(Trade, u64)>,
    pub(crate) max_frame_bytes: usize,
}

impl FrameBuffers {
    /// Buffers for `symbols` with room for `levels` levels a side, refusing frames above
    /// `max_frame_bytes`.
    #[must_use]
    pub(crate) fn new(symbols: SymbolMap, max_frame_bytes: usize, levels: usize) -> Self {
        Self {
            symbols,
            bids: Vec::with_capacity(levels),
            asks: Vec::with_capacity(levels),
            trades: Vec::with_capacity(64),
            max_frame_bytes,
        }
    }

    /// Refuses a frame above the size limit.
    ///
    /// # Errors
    /// [`ParseError::Oversize`].
    #[inline]
    pub(crate) const fn check_size(&self, frame: &str) -> Result<(), ParseError> {
        if frame.len() > self.max_frame_bytes {
            Err(ParseError::Oversize)
        } else {
            Ok(())
        }
    }

    /// [`Self::check_size`], then empties the levels and trades for the frame.
    ///
    /// # Errors
    /// [`ParseError::Oversize`].
    #[inline]
    pub(crate) fn begin(&mut self, frame: &str) -> Result<(), ParseError> {
        self.check_size(frame)?;
        self.trades.clear();
        self.bids.clear();
        self.asks.clear();
        Ok(())
    }

    /// The buffers, emptied by [`Self::begin`], lent to one frame's visitors.
    #[inline]
    pub(crate) fn out<V>(&mut self) -> Out<'_, V> {
        Out {
            symbols: &self.symbols,
            bids: &mut self.bids,
            asks: &mut self.asks,
            trades: &mut self.trades,
            unknown_symbol: false,
            unknown_topic: false,
            venue: core::marker::PhantomData,
        }
    }

    /// The instrument of a venue symbol.
    ///
    /// # Errors
    /// [`ParseError::UnknownSymbol`].
    #[inline]
    pub(crate) fn instrument(&self, symbol: &str) -> Result<InstrumentIndex, ParseError> {
        self.symbols.find(symbol).ok_or(ParseError::UnknownSymbol)
    }
}

/// Where one frame's `data` visitors write, borrowed from a codec's [`FrameBuffers`], and the
/// typed errors a visitor can only signal by flag. `V` names the venue, so that each venue
/// implements [`DataBuffers`] for its own `Out<'_, V>`.
pub(crate) struct Out<'b, V> {
    pub(crate) symbols: &'b SymbolMap,
    pub(crate) bids: &'b mut Vec<Level>,
    pub(crate) asks: &'b mut Vec<Level>,
    pub(crate) trades: &'b mut Vec<(Trade, u64)>,
    /// An unknown symbol was met.
    pub(crate) unknown_symbol: bool,
    /// An unknown topic or channel was met.
    pub(crate) unknown_topic: bool,
    venue: core::marker::PhantomData<V>,
}

impl<V> Out<'_, V> {
    /// The typed error of a failed parse: an unknown symbol, an unknown topic, else the JSON
    /// error's kind.
    pub(crate) fn error_of(&self, e: &serde_json::Error) -> ParseError {
        if self.unknown_symbol {
            ParseError::UnknownSymbol
        } else if self.unknown_topic {
            ParseError::UnknownStream
        } else {
            json_err(e)
        }
    }
}

/// `impl Codec for $codec` with its inherent `parse` and its `buf: FrameBuffers` field.
macro_rules! impl_codec {
    ($codec:ty) => {
        impl $crate::wire::Codec for $codec {
            type Parsed = Parsed;

            #[inline]
            fn parse(&mut self, frame: &str) -> Result<Parsed, $crate::wire::ParseError> {
                <$codec>::parse(self, frame)
            }

            #[inline]
            fn buffers(&self) -> &$crate::wire::FrameBuffers {
                &self.buf
            }
        }
    };
}
pub(crate) use impl_codec;

/// A venue's market-data codec: parses one frame into its own `Parsed` value and leaves the
/// frame's book levels and trades in its [`FrameBuffers`]. Hot path: `parse` never allocates
/// once the buffers have grown, and never panics on any input.
pub trait Codec {
    /// What one frame is (the venue's own message kinds).
    type Parsed;

    /// Parses one frame.
    ///
    /// # Errors
    /// [`ParseError`].
    fn parse(&mut self, frame: &str) -> Result<Self::Parsed, ParseError>;

    /// The buffers the last frame was parsed into.
    fn buffers(&self) -> &FrameBuffers;

    /// The symbol map.
    fn symbols(&self) -> &SymbolMap {
        &self.buffers().symbols
    }

    /// Bid levels of the last book message parsed, in the order the venue sent them.
    fn bids(&self) -> &[Level] {
        &self.buffers().bids
    }

    /// Ask levels of the last book message parsed, in the order the venue sent them.
    fn asks(&self) -> &[Level] {
        &self.buffers().asks
    }

    /// Trades of the last trade message parsed, with their venue times (ns since the epoch).
    fn trades(&self) -> &[(Trade, u64)] {
        &self.buffers().trades
    }
}

/// One price level as parsed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Level {
    /// Price.
    pub price: Price,
    /// Absolute quantity (zero removes the level).
    pub qty: Qty,
}

/// Why a frame was refused. Small and `Copy`: counted per kind by the feed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or JSON of an unexpected shape.
    #[error("malformed frame ({0})")]
    Malformed(&'static str),
    /// A stream or event type this codec does not handle.
    #[error("unknown stream or event type")]
    UnknownStream,
    /// A symbol that is not a configured instrument.
    #[error("unknown symbol")]
    UnknownSymbol,
    /// A price or quantity that is not an exact decimal in range.
    #[error("invalid number: {0}")]
    Number(FixedError),
    /// Larger than the configured frame limit.
    #[error("frame too large")]
    Oversize,
    /// The venue answered a request with an error (e.g. a refused subscription).
    #[error("venue error reply")]
    VenueError,
}

impl ParseError {
    /// Number of kinds (for per-kind counters).
    pub const KINDS: usize = 6;

    /// Stable index for counters.
    #[must_use]
    pub const fn index(&self) -> usize {
        match self {
            Self::Malformed(_) => 0,
            Self::UnknownStream => 1,
            Self::UnknownSymbol => 2,
            Self::Number(_) => 3,
            Self::Oversize => 4,
            Self::VenueError => 5,
        }
    }

    /// Names indexed by [`Self::index`].
    pub const NAMES: [&'static str; Self::KINDS] = [
        "malformed",
        "unknown_stream",
        "unknown_symbol",
        "invalid_number",
        "oversize",
        "venue_error",
    ];
}

pub(crate) fn json_err(e: &serde_json::Error) -> ParseError {
    let msg = e.to_string();
    if let Some(pos) = msg.find(NUMBER_ERR_TAG) {
        // Recover the typed fixed-point error smuggled through serde's string error.
        let kind = &msg[pos + NUMBER_ERR_TAG.len()..];
        let err = match kind.as_bytes().first() {
            Some(b'E') => FixedError::Empty,
            Some(b'P') => FixedError::TooPrecise,
            Some(b'O') => FixedError::Overflow,
            _ => FixedError::InvalidChar { position: 0 },
        };
        return ParseError::Number(err);
    }
    ParseError::Malformed(match e.classify() {
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Eof => "truncated",
        serde_json::error::Category::Data => "unexpected shape",
        serde_json::error::Category::Io => "io",
    })
}

const NUMBER_ERR_TAG: &str = "tradeloop-number:";

pub(crate) fn number_err<E: de::Error>(e: FixedError) -> E {
    let code = match e {
        FixedError::Empty => 'E',
        FixedError::TooPrecise => 'P',
        FixedError::Overflow => 'O',
        FixedError::InvalidChar { .. } => 'I',
    };
    E::custom(format_args!("{NUMBER_ERR_TAG}{code}"))
}

/// A decimal string field parsed to fixed point while deserializing.
pub(crate) struct Fixed(pub(crate) i64);

impl<'de> Deserialize<'de> for Fixed {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <&str>::deserialize(d)?;
        tradeloop_engine::fixed::parse_fixed_raw(s.as_bytes())
            .map(Fixed)
            .map_err(number_err)
    }
}

/// Fills a level buffer from `[["price","qty"], …]` without allocating per level.
pub(crate) struct LevelsSeed<'b>(pub(crate) &'b mut Vec<Level>);

impl<'de> DeserializeSeed<'de> for LevelsSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for LevelsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of [price, quantity] string pairs")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some((p, q)) = seq.next_element::<(&'de str, &'de str)>()? {
            let price = Price::parse(p).map_err(number_err)?;
            let qty = Qty::parse(q).map_err(number_err)?;
            self.0.push(Level { price, qty });
        }
        Ok(())
    }
}

/// A list whose elements go through `f` one by one (an error from `f` stops it); nothing is
/// collected, so nothing allocates.
pub(crate) struct Each<T, F>(F, core::marker::PhantomData<fn(T)>);

pub(crate) fn each<T, F>(f: F) -> Each<T, F> {
    Each(f, core::marker::PhantomData)
}

impl<'de, F, T> DeserializeSeed<'de> for Each<T, F>
where
    F: FnMut(T) -> Result<(), String>,
    T: Deserialize<'de>,
{
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F, T> Visitor<'de> for Each<T, F>
where
    F: FnMut(T) -> Result<(), String>,
    T: Deserialize<'de>,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<T>()? {
            (self.0)(item).map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

/// A venue codec's buffers, filled from a message's payload (`data`, `events`) once the key that
/// selects how it parses (topic, channel, arg) is known. Venues write that key first, so the
/// payload is read in the envelope's own pass ([`DataSeed`]); in any other key order it is kept
/// raw and read in a second pass ([`payload_pass`]).
pub(crate) trait DataBuffers<'de> {
    /// What selects how the payload parses.
    type Key: Copy;
    /// What the payload was.
    type Data;
    /// Reads the payload of `key` from `d` into the buffers.
    fn data<D: de::Deserializer<'de>>(
        &mut self,
        key: Self::Key,
        d: D,
    ) -> Result<Self::Data, D::Error>;
    /// The typed error behind a serde error the visitors raised (they can only flag it).
    fn error(&self, e: &serde_json::Error) -> ParseError;
}

/// Reads a payload with [`DataBuffers::data`] as a serde seed.
pub(crate) struct DataSeed<'r, 'de, B: DataBuffers<'de>>(pub &'r mut B, pub B::Key);

impl<'de, B: DataBuffers<'de>> DeserializeSeed<'de> for DataSeed<'_, 'de, B> {
    type Value = B::Data;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<B::Data, D::Error> {
        self.0.data(self.1, d)
    }
}

/// `text` parsed whole by `seed` (trailing characters are an error).
pub(crate) fn parse_whole<'de, S: DeserializeSeed<'de>>(
    text: &'de str,
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The second pass over a payload that came before its key.
pub(crate) fn payload_pass<'de, B: DataBuffers<'de>>(
    buffers: &mut B,
    key: B::Key,
    raw: &'de RawValue,
) -> Result<B::Data, ParseError> {
    parse_whole(raw.get(), DataSeed(&mut *buffers, key)).map_err(|e| buffers.error(&e))
}
