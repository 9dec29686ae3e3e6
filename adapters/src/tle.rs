//! `.tle` files: the engine's normalized market-data events, written once by `tradeloop convert`
//! (through the venue parsers and book sync) and replayed by `tradeloop backtest` without any
//! parsing.
//!
//! A replay advances in *steps*: one step is one recorded frame or CSV row, with the events the
//! parser and book sync produced from it (possibly none) and the books it invalidated. The file
//! keeps step boundaries, so a replay of a converted file hands the engine exactly the calls,
//! in the same order and at the same clock times, as a replay of the raw recording.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! header   magic "TLEVENT\0" | version u16 | flags u16 | meta_len u32 | meta (JSON) | crc32(meta) u32
//! chunk*   records u32 (> 0) | stored_len u32 | crc32(records) u32 | stored bytes
//! trailer  0u32 | steps u64 | records u64 | extra_refused u64 | crc32(previous 24 bytes) u32
//! ```
//!
//! A chunk holds whole steps, `records × 64` bytes once decompressed (zstd when the header's
//! flag bit 0 is set; the checksum is over the decompressed bytes). A record is 64 bytes:
//!
//! ```text
//! 0  recv_ns u64 | 8 exch_ns u64 | 16 tag u8 | 17 flags u8 | 18 instrument u16 | 20 side u8
//! 21 delta flags u8 | 22..24 zero | 24..64 five 8-byte fields, by tag:
//!    trade      price, qty, trade_id
//!    quote      bid_price, bid_qty, ask_price, ask_qty, update_id
//!    book delta price, qty, update_id
//!    mark       mark_price, index_price, funding_rate, next_funding_ns
//!    liquidation price, avg_price, filled_qty
//! ```
//!
//! Record flags: bit 0 = last record of its step, bit 1 = the step's frame was refused by the
//! parser. Tags: 0 = no event (a step that produced none), 1 trade, 2 quote, 3 book delta,
//! 4 mark price, 5 liquidation, 6 book lost (the instrument's book lost continuity).
//!
//! Reading allocates two buffers at start (grown only for a chunk larger than any before);
//! decoding a record allocates nothing.

use std::io::{self, Read, Write};
use std::sync::Arc;

use tradeloop_engine::event::{
    BookDelta, DeltaFlags, Event, EventKind, Liquidation, MarkPrice, Quote, Side, Trade,
};
use tradeloop_engine::fixed::{Price, Qty, FIXED_DECIMALS};
use tradeloop_engine::instrument::InstrumentIndex;

use crate::feed::MarketSink;

/// First bytes of every `.tle` file.
pub const MAGIC: [u8; 8] = *b"TLEVENT\0";
/// Format version this build writes and reads.
pub const VERSION: u16 = 1;
/// Bytes per record.
pub const RECORD_BYTES: usize = 64;
/// Records per chunk (a chunk closes at the first step end past this).
pub const CHUNK_RECORDS: usize = 16_384;
/// Header flag: chunks are zstd-compressed.
pub const FLAG_ZSTD: u16 = 1;
/// Upper bound on one chunk's stored or decompressed size (a corrupt length is refused, not
/// allocated).
const MAX_CHUNK_BYTES: usize = 256 << 20;
/// Upper bound on the metadata size.
const MAX_META_BYTES: usize = 16 << 20;

const TAG_NONE: u8 = 0;
const TAG_TRADE: u8 = 1;
const TAG_QUOTE: u8 = 2;
const TAG_DELTA: u8 = 3;
const TAG_MARK: u8 = 4;
const TAG_LIQ: u8 = 5;
const TAG_BOOK_LOST: u8 = 6;

const REC_END: u8 = 1;
const REC_REFUSED: u8 = 2;

/// One instrument of the file, in index order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TleInstrument {
    /// Venue name as configured when converting.
    pub venue: String,
    /// Venue symbol.
    pub symbol: String,
}

/// The file's metadata (JSON in the header).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TleMeta {
    /// Decimal places of every fixed-point price and quantity.
    pub fixed_decimals: u32,
    /// Instruments; a record's instrument field indexes this list.
    pub instruments: Vec<TleInstrument>,
    /// Inputs the file was converted from (names and sizes, for the record).
    pub sources: Vec<String>,
    /// Book sync rule and limits the conversion ran with, for the record.
    pub conversion: String,
    /// Program and version that wrote the file.
    pub writer: String,
}

/// Counts stored in the trailer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TleTotals {
    /// Steps (frames and rows).
    pub steps: u64,
    /// Records.
    pub records: u64,
    /// Input refused without a step of its own (malformed CSV rows, unknown symbols).
    pub extra_refused: u64,
}

/// Why a file cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TleError {
    /// I/O.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Not a `.tle` file, another version, a checksum mismatch, or a truncated file.
    #[error("{0}")]
    Format(String),
    /// An event that does not belong in a market-data file.
    #[error("event kind {0} is not market data")]
    NotMarketData(&'static str),
}

fn format(msg: impl Into<String>) -> TleError {
    TleError::Format(msg.into())
}

/// Writes a `.tle` file. Implements [`MarketSink`], so a feed writes into it directly; call
/// [`Self::end_step`] after each frame or row.
pub struct TleWriter<W: Write> {
    out: W,
    chunk: Vec<u8>,
    step_start: usize,
    totals: TleTotals,
    zstd_level: Option<i32>,
    error: Option<TleError>,
    current_ns: u64,
}

impl<W: Write> TleWriter<W> {
    /// Writes the header. `zstd_level` compresses chunks (1..=19; `None` stores them raw).
    ///
    /// # Errors
    /// I/O, or metadata that cannot be encoded.
    pub fn new(mut out: W, meta: &TleMeta, zstd_level: Option<i32>) -> Result<Self, TleError> {
        let json = serde_json::to_vec(meta).map_err(|e| format(format!("metadata: {e}")))?;
        let meta_len = u32::try_from(json.len()).map_err(|_| format("metadata too large"))?;
        out.write_all(&MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        let flags = if zstd_level.is_some() { FLAG_ZSTD } else { 0 };
        out.write_all(&flags.to_le_bytes())?;
        out.write_all(&meta_len.to_le_bytes())?;
        out.write_all(&json)?;
        out.write_all(&crc32fast::hash(&json).to_le_bytes())?;
        Ok(Self {
            out,
            chunk: Vec::with_capacity((CHUNK_RECORDS + 1024) * RECORD_BYTES),
            step_start: 0,
            totals: TleTotals::default(),
            zstd_level,
            error: None,
            current_ns: 0,
        })
    }

    /// Sets the receive time of the step being written (events carry their own; this is for
    /// book-lost marks and empty steps).
    pub fn begin_step(&mut self, recv_ns: u64) {
        self.current_ns = recv_ns;
    }

    fn record(&mut self, recv_ns: u64, exch_ns: u64, tag: u8, instrument: u16) -> &mut [u8] {
        let at = self.chunk.len();
        self.chunk.resize(at + RECORD_BYTES, 0);
        let r = &mut self.chunk[at..];
        r[0..8].copy_from_slice(&recv_ns.to_le_bytes());
        r[8..16].copy_from_slice(&exch_ns.to_le_bytes());
        r[16] = tag;
        r[18..20].copy_from_slice(&instrument.to_le_bytes());
        r
    }

    /// Appends one market-data event to the current step.
    ///
    /// # Errors
    /// [`TleError::NotMarketData`] for order reports, controls and the like.
    pub fn write_event(&mut self, e: &Event) -> Result<(), TleError> {
        fn put(r: &mut [u8], i: usize, v: i64) {
            r[24 + i * 8..32 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        fn put_u(r: &mut [u8], i: usize, v: u64) {
            r[24 + i * 8..32 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        match e.kind {
            EventKind::Trade(t) => {
                let r = self.record(e.recv_ns, e.exch_ns, TAG_TRADE, t.instrument.0);
                r[20] = t.aggressor as u8;
                put(r, 0, t.price.raw());
                put(r, 1, t.qty.raw());
                put_u(r, 2, t.trade_id);
            }
            EventKind::Quote(q) => {
                let r = self.record(e.recv_ns, e.exch_ns, TAG_QUOTE, q.instrument.0);
                put(r, 0, q.bid_price.raw());
                put(r, 1, q.bid_qty.raw());
                put(r, 2, q.ask_price.raw());
                put(r, 3, q.ask_qty.raw());
                put_u(r, 4, q.update_id);
            }
            EventKind::BookDelta(d) => {
                let r = self.record(e.recv_ns, e.exch_ns, TAG_DELTA, d.instrument.0);
                r[20] = d.side as u8;
                r[21] = d.flags.0;
                put(r, 0, d.price.raw());
                put(r, 1, d.qty.raw());
                put_u(r, 2, d.update_id);
            }
            EventKind::MarkPrice(m) => {
                let r = self.record(e.recv_ns, e.exch_ns, TAG_MARK, m.instrument.0);
                put(r, 0, m.mark_price.raw());
                put(r, 1, m.index_price.raw());
                put(r, 2, m.funding_rate.raw());
                put_u(r, 3, m.next_funding_ns);
            }
            EventKind::Liquidation(l) => {
                let r = self.record(e.recv_ns, e.exch_ns, TAG_LIQ, l.instrument.0);
                r[20] = l.side as u8;
                put(r, 0, l.price.raw());
                put(r, 1, l.avg_price.raw());
                put(r, 2, l.filled_qty.raw());
            }
            EventKind::Order(_) => return Err(TleError::NotMarketData("order report")),
            EventKind::StopTriggered(_) => return Err(TleError::NotMarketData("stop trigger")),
            EventKind::FeedStatus { .. } => return Err(TleError::NotMarketData("feed status")),
            EventKind::StoreStatus { .. } => return Err(TleError::NotMarketData("store status")),
            EventKind::Timer { .. } => return Err(TleError::NotMarketData("timer")),
            EventKind::Control(_) => return Err(TleError::NotMarketData("control")),
            EventKind::Breaker(_) => return Err(TleError::NotMarketData("breaker")),
            EventKind::PositionSync(_) => return Err(TleError::NotMarketData("position sync")),
        }
        Ok(())
    }

    /// Appends a book-lost mark to the current step.
    pub fn write_book_lost(&mut self, instrument: InstrumentIndex) {
        let ns = self.current_ns;
        self.record(ns, 0, TAG_BOOK_LOST, instrument.0);
    }

    /// Closes the step begun at `recv_ns` (`refused`: the parser refused its frame).
    ///
    /// # Errors
    /// The first error met while writing the step's events, or I/O.
    pub fn end_step(&mut self, recv_ns: u64, refused: bool) -> Result<(), TleError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.chunk.len() == self.step_start {
            self.record(recv_ns, 0, TAG_NONE, 0);
        }
        let mut flags = REC_END;
        if refused {
            flags |= REC_REFUSED;
        }
        let last = self.chunk.len() - RECORD_BYTES;
        self.chunk[last + 17] |= flags;
        self.totals.steps += 1;
        if self.chunk.len() >= CHUNK_RECORDS * RECORD_BYTES {
            self.flush_chunk()?;
        }
        self.step_start = self.chunk.len();
        Ok(())
    }

    fn flush_chunk(&mut self) -> Result<(), TleError> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let records = self.chunk.len() / RECORD_BYTES;
        let n = u32::try_from(records).map_err(|_| format("chunk too large"))?;
        let crc = crc32fast::hash(&self.chunk);
        let compressed;
        let stored: &[u8] = match self.zstd_level {
            Some(level) => {
                compressed = zstd::bulk::compress(&self.chunk, level)?;
                &compressed
            }
            None => &self.chunk,
        };
        let len = u32::try_from(stored.len()).map_err(|_| format("chunk too large"))?;
        self.out.write_all(&n.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(stored)?;
        self.totals.records += records as u64;
        self.chunk.clear();
        self.step_start = 0;
        Ok(())
    }

    /// Writes the last chunk and the trailer; returns the totals and the output.
    ///
    /// # Errors
    /// I/O, or a step left open (events after the last [`Self::end_step`]).
    pub fn finish(mut self, extra_refused: u64) -> Result<(TleTotals, W), TleError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.chunk.len() != self.step_start {
            return Err(format("events after the last step end"));
        }
        self.flush_chunk()?;
        self.totals.extra_refused = extra_refused;
        let mut t = [0u8; 24];
        t[0..8].copy_from_slice(&self.totals.steps.to_le_bytes());
        t[8..16].copy_from_slice(&self.totals.records.to_le_bytes());
        t[16..24].copy_from_slice(&extra_refused.to_le_bytes());
        self.out.write_all(&0u32.to_le_bytes())?;
        self.out.write_all(&t)?;
        self.out.write_all(&crc32fast::hash(&t).to_le_bytes())?;
        self.out.flush()?;
        Ok((self.totals, self.out))
    }
}

impl<W: Write> MarketSink for TleWriter<W> {
    fn push(&mut self, event: Event) {
        if let Err(e) = self.write_event(&event) {
            self.error.get_or_insert(e);
        }
    }

    fn book_lost(&mut self, instrument: InstrumentIndex) {
        self.write_book_lost(instrument);
    }
}

/// What one record asks of the replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TleItem {
    /// Hand this event to the engine.
    Event(Event),
    /// This instrument's book lost continuity.
    BookLost(InstrumentIndex),
    /// Nothing (a step whose frame produced no event).
    Nothing,
}

/// One decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TleRecord {
    /// Receive time of the step.
    pub recv_ns: u64,
    /// What to do.
    pub item: TleItem,
    /// Last record of its step.
    pub end_of_step: bool,
    /// The step's frame was refused by the parser.
    pub refused: bool,
}

/// Where the file's bytes come from.
enum Input {
    /// The whole file in memory, shared read-only (parameter sweeps): raw chunks are decoded
    /// in place.
    Memory { data: Arc<[u8]>, pos: usize },
    /// A stream read one chunk at a time into a reused buffer.
    Stream(Box<dyn Read + Send>),
}

/// Reads a `.tle` file chunk by chunk, checking every checksum.
pub struct TleReader {
    input: Input,
    meta: TleMeta,
    zstd: bool,
    /// Decoded chunk (stream input, or compressed memory input).
    buf: Vec<u8>,
    stored: Vec<u8>,
    /// One zstd context for the whole file (created at the first compressed chunk).
    unzstd: Option<zstd::bulk::Decompressor<'static>>,
    /// Current chunk: `[start, end)` in `buf`, or in the memory input when `in_memory`.
    start: usize,
    end: usize,
    in_memory: bool,
    /// Instrument of each file index in the reader's registry (`None`: not configured, its
    /// events are dropped).
    map: Vec<Option<InstrumentIndex>>,
    totals: Option<TleTotals>,
    records: u64,
    steps: u64,
}

fn take<'a>(data: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], TleError> {
    let end = pos
        .checked_add(n)
        .filter(|&e| e <= data.len())
        .ok_or_else(|| format("truncated file"))?;
    let s = &data[*pos..end];
    *pos = end;
    Ok(s)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn read_exact_or(r: &mut dyn Read, buf: &mut [u8], what: &str) -> Result<(), TleError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            format(format!("truncated file ({what})"))
        } else {
            TleError::Io(e)
        }
    })
}

impl TleReader {
    /// `true` if the file starts with the `.tle` magic.
    #[must_use]
    pub fn is_tle(path: &std::path::Path) -> bool {
        let mut magic = [0u8; 8];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
            && magic == MAGIC
    }

    /// Reads a file from a stream (one chunk in memory at a time).
    ///
    /// # Errors
    /// I/O, or a header that is not a `.tle` v1 header.
    pub fn from_reader(mut r: Box<dyn Read + Send>) -> Result<Self, TleError> {
        let mut fixed = [0u8; 16];
        read_exact_or(&mut r, &mut fixed, "header")?;
        let (zstd, meta_len) = Self::check_header(&fixed)?;
        let mut meta = vec![0u8; meta_len + 4];
        read_exact_or(&mut r, &mut meta, "metadata")?;
        let meta = Self::check_meta(&meta)?;
        Ok(Self::with(Input::Stream(r), meta, zstd))
    }

    /// Reads a file held in memory (shared read-only between replays).
    ///
    /// # Errors
    /// A header that is not a `.tle` v1 header.
    pub fn from_memory(data: Arc<[u8]>) -> Result<Self, TleError> {
        let mut pos = 0;
        let (zstd, meta_len) = Self::check_header(take(&data, &mut pos, 16)?)?;
        let meta = Self::check_meta(take(&data, &mut pos, meta_len + 4)?)?;
        Ok(Self::with(Input::Memory { data, pos }, meta, zstd))
    }

    fn with(input: Input, meta: TleMeta, zstd: bool) -> Self {
        let map = (0..meta.instruments.len())
            .map(|i| u16::try_from(i).ok().map(InstrumentIndex))
            .collect();
        Self {
            input,
            meta,
            zstd,
            buf: Vec::new(),
            stored: Vec::new(),
            unzstd: None,
            start: 0,
            end: 0,
            in_memory: false,
            map,
            totals: None,
            records: 0,
            steps: 0,
        }
    }

    fn check_header(h: &[u8]) -> Result<(bool, usize), TleError> {
        if h[..8] != MAGIC {
            return Err(format("not a .tle file (bad magic)"));
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version != VERSION {
            return Err(format(format!(
                ".tle version {version}; this build reads version {VERSION} (convert the recording again)"
            )));
        }
        let flags = u16::from_le_bytes([h[10], h[11]]);
        if flags & !FLAG_ZSTD != 0 {
            return Err(format(format!("unknown header flags {flags:#x}")));
        }
        let meta_len = u32_at(h, 12) as usize;
        if meta_len > MAX_META_BYTES {
            return Err(format(format!("metadata length {meta_len} is implausible")));
        }
        Ok((flags & FLAG_ZSTD != 0, meta_len))
    }

    fn check_meta(b: &[u8]) -> Result<TleMeta, TleError> {
        let (json, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(json) != u32_at(crc, 0) {
            return Err(format("metadata checksum mismatch"));
        }
        let meta: TleMeta =
            serde_json::from_slice(json).map_err(|e| format(format!("metadata: {e}")))?;
        if meta.fixed_decimals != FIXED_DECIMALS {
            return Err(format(format!(
                "file uses {} fixed-point decimals, this build {FIXED_DECIMALS}",
                meta.fixed_decimals
            )));
        }
        Ok(meta)
    }

    /// The file's metadata.
    #[must_use]
    pub fn meta(&self) -> &TleMeta {
        &self.meta
    }

    /// Maps the file's instruments onto a registry by symbol (`resolve` returns the index of a
    /// symbol, or `None` to drop its events).
    pub fn map_instruments(
        &mut self,
        mut resolve: impl FnMut(&TleInstrument) -> Option<InstrumentIndex>,
    ) {
        self.map = self.meta.instruments.iter().map(&mut resolve).collect();
    }

    /// The trailer's totals, once the last record has been read.
    #[must_use]
    pub fn totals(&self) -> Option<TleTotals> {
        self.totals
    }

    /// Loads the next chunk; `false` at the trailer.
    fn next_chunk(&mut self) -> Result<bool, TleError> {
        let mut head = [0u8; 12];
        match &mut self.input {
            Input::Memory { data, pos } => {
                head[..4].copy_from_slice(take(data, pos, 4)?);
                if u32_at(&head, 0) != 0 {
                    head[4..].copy_from_slice(take(data, pos, 8)?);
                }
            }
            Input::Stream(r) => {
                read_exact_or(r, &mut head[..4], "chunk header")?;
                if u32_at(&head, 0) != 0 {
                    read_exact_or(r, &mut head[4..], "chunk header")?;
                }
            }
        }
        let records = u32_at(&head, 0) as usize;
        if records == 0 {
            self.read_trailer()?;
            return Ok(false);
        }
        let stored_len = u32_at(&head, 4) as usize;
        let crc = u32_at(&head, 8);
        let raw_len = records
            .checked_mul(RECORD_BYTES)
            .filter(|&n| n <= MAX_CHUNK_BYTES && stored_len <= MAX_CHUNK_BYTES)
            .ok_or_else(|| format(format!("chunk of {records} records is implausible")))?;
        if !self.zstd && stored_len != raw_len {
            return Err(format(format!(
                "chunk stores {stored_len} bytes for {records} records"
            )));
        }
        match &mut self.input {
            Input::Memory { data, pos } => {
                let at = *pos;
                let stored = take(data, pos, stored_len)?;
                if self.zstd {
                    unpack(&mut self.unzstd, stored, &mut self.buf, raw_len)?;
                    self.in_memory = false;
                    self.start = 0;
                } else {
                    self.in_memory = true;
                    self.start = at;
                }
            }
            Input::Stream(r) => {
                self.in_memory = false;
                self.start = 0;
                if self.zstd {
                    self.stored.resize(stored_len, 0);
                    read_exact_or(r, &mut self.stored, "chunk")?;
                    unpack(&mut self.unzstd, &self.stored, &mut self.buf, raw_len)?;
                } else {
                    self.buf.resize(stored_len, 0);
                    read_exact_or(r, &mut self.buf, "chunk")?;
                }
            }
        }
        self.end = self.start + raw_len;
        let bytes = self.chunk_bytes();
        if crc32fast::hash(bytes) != crc {
            return Err(format("chunk checksum mismatch"));
        }
        if bytes[raw_len - RECORD_BYTES + 17] & REC_END == 0 {
            return Err(format("chunk ends inside a step"));
        }
        Ok(true)
    }

    fn chunk_bytes(&self) -> &[u8] {
        match &self.input {
            Input::Memory { data, .. } if self.in_memory => &data[self.start..self.end],
            _ => &self.buf[self.start..self.end],
        }
    }

    fn read_trailer(&mut self) -> Result<(), TleError> {
        let mut t = [0u8; 28];
        match &mut self.input {
            Input::Memory { data, pos } => t.copy_from_slice(take(data, pos, 28)?),
            Input::Stream(r) => read_exact_or(r, &mut t, "trailer")?,
        }
        if crc32fast::hash(&t[..24]) != u32_at(&t, 24) {
            return Err(format("trailer checksum mismatch"));
        }
        let totals = TleTotals {
            steps: u64_at(&t, 0),
            records: u64_at(&t, 8),
            extra_refused: u64_at(&t, 16),
        };
        if totals.records != self.records || totals.steps != self.steps {
            return Err(format(format!(
                "trailer counts {} steps / {} records, the file holds {} / {}",
                totals.steps, totals.records, self.steps, self.records
            )));
        }
        self.totals = Some(totals);
        Ok(())
    }

    /// Receive time of the next record without consuming it; `None` at the end of the file.
    ///
    /// # Errors
    /// I/O, a checksum mismatch, or a truncated file.
    #[inline]
    pub fn peek_ns(&mut self) -> Result<Option<u64>, TleError> {
        if self.start == self.end && (self.totals.is_some() || !self.next_chunk()?) {
            return Ok(None);
        }
        Ok(Some(u64_at(self.chunk_bytes(), 0)))
    }

    /// The next record, or `None` at the end of the file.
    ///
    /// # Errors
    /// I/O, a checksum mismatch, a truncated file, or a record with an unknown tag.
    #[inline]
    pub fn next_record(&mut self) -> Result<Option<TleRecord>, TleError> {
        if self.peek_ns()?.is_none() {
            return Ok(None);
        }
        let r = &self.chunk_bytes()[..RECORD_BYTES];
        let rec = decode(r, &self.map)?;
        self.start += RECORD_BYTES;
        self.records += 1;
        self.steps += u64::from(rec.end_of_step);
        Ok(Some(rec))
    }

    /// Hands every item of the next step to `f`, in order, and returns whether the step's frame
    /// was refused; `None` at the end of the file. A chunk holds whole steps, so a step is
    /// decoded in one pass over its chunk, with no per-record end-of-chunk check.
    ///
    /// # Errors
    /// I/O, a checksum mismatch, a truncated file, or a record with an unknown tag (the step's
    /// earlier items have then been handed to `f`).
    #[inline]
    pub fn next_step(&mut self, mut f: impl FnMut(TleItem)) -> Result<Option<bool>, TleError> {
        if self.peek_ns()?.is_none() {
            return Ok(None);
        }
        let bytes = self.chunk_bytes();
        let mut at = 0;
        let result = loop {
            // A loaded chunk ends with a step's last record (checked when it was loaded).
            let r = &bytes[at..at + RECORD_BYTES];
            at += RECORD_BYTES;
            match decode(r, &self.map) {
                Ok(rec) => {
                    f(rec.item);
                    if rec.end_of_step {
                        break Ok(Some(rec.refused));
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.start += at;
        self.records += (at / RECORD_BYTES) as u64;
        self.steps += u64::from(result.is_ok());
        result
    }
}

/// Decompresses one chunk into `out`, which must come to exactly `len` bytes (a corrupt chunk
/// cannot make it allocate more).
fn unpack(
    ctx: &mut Option<zstd::bulk::Decompressor<'static>>,
    stored: &[u8],
    out: &mut Vec<u8>,
    len: usize,
) -> Result<(), TleError> {
    out.resize(len, 0);
    let ctx = match ctx {
        Some(c) => c,
        None => ctx.insert(zstd::bulk::Decompressor::new()?),
    };
    let n = ctx
        .decompress_to_buffer(stored, &mut out[..])
        .map_err(|e| format(format!("chunk does not decompress: {e}")))?;
    if n != len {
        return Err(format(format!(
            "chunk decompresses to {n} bytes, expected {len}"
        )));
    }
    Ok(())
}

/// The payload of an event record (`tag` in `TAG_TRADE..=TAG_LIQ`).
#[inline(always)]
fn event_kind(r: &[u8], tag: u8, instrument: InstrumentIndex) -> EventKind {
    let side = if r[20] == 0 { Side::Buy } else { Side::Sell };
    let price = |i: usize| Price::from_raw(i64_at(r, 24 + i * 8));
    let qty = |i: usize| Qty::from_raw(i64_at(r, 24 + i * 8));
    let id = |i: usize| u64_at(r, 24 + i * 8);
    match tag {
        TAG_TRADE => EventKind::Trade(Trade {
            instrument,
            aggressor: side,
            price: price(0),
            qty: qty(1),
            trade_id: id(2),
        }),
        TAG_QUOTE => EventKind::Quote(Quote {
            instrument,
            bid_price: price(0),
            bid_qty: qty(1),
            ask_price: price(2),
            ask_qty: qty(3),
            update_id: id(4),
        }),
        TAG_DELTA => EventKind::BookDelta(BookDelta {
            instrument,
            side,
            flags: DeltaFlags(r[21]),
            price: price(0),
            qty: qty(1),
            update_id: id(2),
        }),
        TAG_MARK => EventKind::MarkPrice(MarkPrice {
            instrument,
            mark_price: price(0),
            index_price: price(1),
            funding_rate: price(2),
            next_funding_ns: id(3),
        }),
        // TAG_LIQ, the last tag of the range the caller matched.
        _ => EventKind::Liquidation(Liquidation {
            instrument,
            side,
            price: price(0),
            avg_price: price(1),
            filled_qty: qty(2),
        }),
    }
}

/// Decodes one record (instrument indices through `map`).
#[inline(always)]
fn decode(r: &[u8], map: &[Option<InstrumentIndex>]) -> Result<TleRecord, TleError> {
    let recv_ns = u64_at(r, 0);
    let exch_ns = u64_at(r, 8);
    let (tag, flags) = (r[16], r[17]);
    let instrument = map
        .get(usize::from(u16::from_le_bytes([r[18], r[19]])))
        .copied()
        .flatten();
    let item = match (tag, instrument) {
        (TAG_NONE, _) | (TAG_TRADE..=TAG_BOOK_LOST, None) => TleItem::Nothing,
        (TAG_BOOK_LOST, Some(instrument)) => TleItem::BookLost(instrument),
        (TAG_TRADE..=TAG_LIQ, Some(instrument)) => {
            TleItem::Event(Event::new(recv_ns, exch_ns, event_kind(r, tag, instrument)))
        }
        (t, _) => return Err(format(format!("record with unknown tag {t}"))),
    };
    Ok(TleRecord {
        recv_ns,
        item,
        end_of_step: flags & REC_END != 0,
        refused: flags & REC_REFUSED != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> TleMeta {
        TleMeta {
            fixed_decimals: FIXED_DECIMALS,
            instruments: vec![
                TleInstrument {
                    venue: "binance".into(),
                    symbol: "BTCUSDT".into(),
                },
                TleInstrument {
                    venue: "binance".into(),
                    symbol: "ETHUSDT".into(),
                },
            ],
            sources: vec!["test".into()],
            conversion: "test".into(),
            writer: "test".into(),
        }
    }

    fn i(n: u16) -> InstrumentIndex {
        InstrumentIndex(n)
    }

    /// One event of every market kind, with values that use every field.
    fn events() -> Vec<Event> {
        vec![
            Event::new(
                10,
                9,
                EventKind::Trade(Trade {
                    instrument: i(1),
                    aggressor: Side::Sell,
                    price: Price::from_raw(-5),
                    qty: Qty::from_raw(i64::MAX),
                    trade_id: u64::MAX,
                }),
            ),
            Event::new(
                11,
                0,
                EventKind::Quote(Quote {
                    instrument: i(0),
                    bid_price: Price::from_raw(1),
                    bid_qty: Qty::from_raw(2),
                    ask_price: Price::from_raw(3),
                    ask_qty: Qty::from_raw(4),
                    update_id: 5,
                }),
            ),
            Event::new(
                11,
                7,
                EventKind::BookDelta(BookDelta {
                    instrument: i(0),
                    side: Side::Sell,
                    flags: DeltaFlags(DeltaFlags::SNAPSHOT_BEGIN | DeltaFlags::LAST_IN_MESSAGE),
                    price: Price::from_raw(6_000_000_000_000),
                    qty: Qty::ZERO,
                    update_id: 99,
                }),
            ),
            Event::new(
                12,
                8,
                EventKind::MarkPrice(MarkPrice {
                    instrument: i(1),
                    mark_price: Price::from_raw(7),
                    index_price: Price::from_raw(8),
                    funding_rate: Price::from_raw(-9),
                    next_funding_ns: 10,
                }),
            ),
            Event::new(
                13,
                1,
                EventKind::Liquidation(Liquidation {
                    instrument: i(0),
                    side: Side::Buy,
                    price: Price::from_raw(11),
                    avg_price: Price::from_raw(12),
                    filled_qty: Qty::from_raw(13),
                }),
            ),
        ]
    }

    /// Steps: [trade], [quote, delta, book lost], [] refused, [mark], [liquidation], then
    /// `filler` one-trade steps to cross chunk boundaries.
    fn write(zstd: Option<i32>, filler: usize) -> (Vec<u8>, Vec<Vec<TleItem>>) {
        let ev = events();
        let mut w = TleWriter::new(Vec::new(), &meta(), zstd).unwrap();
        let mut steps: Vec<(u64, Vec<TleItem>, bool)> = vec![
            (10, vec![TleItem::Event(ev[0])], false),
            (
                11,
                vec![
                    TleItem::Event(ev[1]),
                    TleItem::Event(ev[2]),
                    TleItem::BookLost(i(1)),
                ],
                false,
            ),
            (11, vec![], true),
            (12, vec![TleItem::Event(ev[3])], false),
            (13, vec![TleItem::Event(ev[4])], false),
        ];
        for k in 0..filler {
            let mut e = ev[0];
            e.recv_ns = 100 + k as u64;
            steps.push((e.recv_ns, vec![TleItem::Event(e)], false));
        }
        for (ns, items, refused) in &steps {
            w.begin_step(*ns);
            for it in items {
                match it {
                    TleItem::Event(e) => w.push(*e),
                    TleItem::BookLost(x) => w.book_lost(*x),
                    TleItem::Nothing => unreachable!(),
                }
            }
            w.end_step(*ns, *refused).unwrap();
        }
        let (totals, bytes) = w.finish(3).unwrap();
        assert_eq!(totals.steps, steps.len() as u64);
        (bytes, steps.into_iter().map(|s| s.1).collect())
    }

    type Steps = (Vec<Vec<TleItem>>, Vec<bool>, TleTotals);

    fn read_all(mut r: TleReader) -> Result<Steps, TleError> {
        let (mut steps, mut refused, mut cur) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(rec) = r.next_record()? {
            if rec.item != TleItem::Nothing {
                cur.push(rec.item);
            }
            if rec.end_of_step {
                steps.push(std::mem::take(&mut cur));
                refused.push(rec.refused);
            }
        }
        assert!(cur.is_empty(), "records after the last step end");
        Ok((steps, refused, r.totals().expect("trailer read")))
    }

    /// [`read_all`] a step at a time through [`TleReader::next_step`].
    fn read_steps(mut r: TleReader) -> Result<Steps, TleError> {
        let (mut steps, mut refused) = (Vec::new(), Vec::new());
        loop {
            let mut cur = Vec::new();
            let Some(bad) = r.next_step(|item| {
                if item != TleItem::Nothing {
                    cur.push(item);
                }
            })?
            else {
                break;
            };
            steps.push(cur);
            refused.push(bad);
        }
        Ok((steps, refused, r.totals().expect("trailer read")))
    }

    #[test]
    fn round_trips_every_kind_raw_and_zstd_from_memory_and_stream() {
        for (zstd, filler) in [(None, 0), (Some(3), 0), (None, 40_000), (Some(1), 40_000)] {
            let (bytes, want) = write(zstd, filler);
            let mem = TleReader::from_memory(Arc::from(bytes.clone())).unwrap();
            assert_eq!(mem.meta(), &meta());
            let stream = TleReader::from_reader(Box::new(io::Cursor::new(bytes.clone()))).unwrap();
            let by_step = TleReader::from_memory(Arc::from(bytes.clone())).unwrap();
            let stream_by_step = TleReader::from_reader(Box::new(io::Cursor::new(bytes))).unwrap();
            for (r, read) in [
                (mem, read_all as fn(TleReader) -> Result<Steps, TleError>),
                (stream, read_all),
                (by_step, read_steps),
                (stream_by_step, read_steps),
            ] {
                let (got, refused, totals) = read(r).unwrap();
                assert_eq!(got, want, "zstd {zstd:?} filler {filler}");
                assert_eq!(refused.iter().filter(|&&r| r).count(), 1);
                assert!(refused[2]);
                assert_eq!(totals.extra_refused, 3);
                assert_eq!(totals.steps, want.len() as u64);
            }
        }
    }

    #[test]
    fn unmapped_instruments_are_dropped_and_others_remapped() {
        let (bytes, _) = write(None, 0);
        let mut r = TleReader::from_memory(Arc::from(bytes)).unwrap();
        // The reader's registry has ETHUSDT at 0 and no BTCUSDT.
        r.map_instruments(|x| (x.symbol == "ETHUSDT").then_some(i(0)));
        let (steps, _, _) = read_all(r).unwrap();
        let instruments: Vec<Option<InstrumentIndex>> = steps
            .iter()
            .flatten()
            .map(|it| match it {
                TleItem::Event(e) => e.instrument(),
                TleItem::BookLost(x) => Some(*x),
                TleItem::Nothing => None,
            })
            .collect();
        // trade(ETH), book lost(ETH), mark(ETH): all now index 0; BTC's quote, delta, liquidation gone.
        assert_eq!(instruments, vec![Some(i(0)); 3]);
        assert_eq!(steps.len(), 5, "steps survive even when emptied");
    }

    #[test]
    fn corruption_and_truncation_are_errors_not_panics() {
        for zstd in [None, Some(3)] {
            let (bytes, _) = write(zstd, 20_000);
            // Flip one byte anywhere: an error (checksum, format) or, for a flip in a chunk's
            // stored bytes that zstd still decodes, a checksum mismatch — never silent.
            let step = bytes.len() / 97;
            for at in (0..bytes.len()).step_by(step.max(1)) {
                let mut bad = bytes.clone();
                bad[at] ^= 0x5a;
                for read in [
                    read_all as fn(TleReader) -> Result<Steps, TleError>,
                    read_steps,
                ] {
                    let res = TleReader::from_memory(Arc::from(bad.clone()))
                        .and_then(|r| read(r).map(|_| ()));
                    assert!(
                        res.is_err(),
                        "flip at {at} of {} (zstd {zstd:?}) went unnoticed",
                        bytes.len()
                    );
                }
            }
            for cut in [0, 5, 20, bytes.len() / 2, bytes.len() - 1] {
                let res = TleReader::from_reader(Box::new(io::Cursor::new(bytes[..cut].to_vec())))
                    .and_then(|r| read_all(r).map(|_| ()));
                let err = res.expect_err("truncated file accepted").to_string();
                assert!(err.contains("truncated") || err.contains("magic"), "{err}");
            }
        }
    }

    #[test]
    fn order_reports_are_refused_and_open_steps_detected() {
        let mut w = TleWriter::new(Vec::new(), &meta(), None).unwrap();
        w.push(Event::new(1, 0, EventKind::Timer { id: 1 }));
        let err = w.end_step(1, false).unwrap_err();
        assert!(matches!(err, TleError::NotMarketData("timer")), "{err}");
        let mut w = TleWriter::new(Vec::new(), &meta(), None).unwrap();
        w.push(events()[0]);
        assert!(w
            .finish(0)
            .unwrap_err()
            .to_string()
            .contains("after the last step"));
    }

    #[test]
    fn other_versions_and_files_are_refused_by_name() {
        let (mut bytes, _) = write(None, 0);
        bytes[8] = 2;
        let err = TleReader::from_memory(Arc::from(bytes))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("version 2"), "{err}");
        let err = TleReader::from_memory(Arc::from(b"0 {\"e\":1}\n".to_vec()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("not a .tle file") || err.contains("truncated"),
            "{err}"
        );
    }
}
