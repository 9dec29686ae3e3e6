//! Tardis CSV market data (`trades` and `incremental_book_L2`), gzip or plain, several files
//! merged in receive-time order, as engine events. Off the hot path: backtest input.
//!
//! Columns (<https://docs.tardis.dev/downloadable-csv-files>):
//! `trades`: `exchange,symbol,timestamp,local_timestamp,id,side,price,amount`;
//! `incremental_book_L2`: `exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount`.
//! Timestamps are microseconds since the epoch; `local_timestamp` becomes `recv_ns`. A run of
//! `is_snapshot = true` rows clears the book first; the last row of each local timestamp
//! completes a venue message.

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tradeloop_engine::event::{BookDelta, DeltaFlags, Event, EventKind, Side, Trade};
use tradeloop_engine::fixed::{Price, Qty};

use crate::input::{InputIssues, Skip};
use crate::symbols::SymbolMap;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Trades,
    Book,
}

/// One parsed row, before flags that depend on the next row are known.
#[derive(Clone, Copy, Debug)]
struct Row {
    recv_ns: u64,
    event: Event,
    snapshot: bool,
}

struct Source {
    path: Arc<Path>,
    reader: Box<dyn BufRead + Send>,
    kind: Kind,
    line: String,
    next: Option<Row>,
    in_snapshot: bool,
    line_no: u64,
}

/// Counters of a Tardis reader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TardisStats {
    /// Events returned.
    pub events: u64,
    /// Rows skipped: unknown symbol.
    pub unknown_symbol: u64,
    /// Rows skipped: malformed (wrong column count, bad number or side).
    pub malformed: u64,
}

/// Streams Tardis CSV files as engine events in receive-time order.
pub struct TardisReader {
    sources: Vec<Source>,
    symbols: SymbolMap,
    stats: TardisStats,
    issues: InputIssues,
}

impl std::fmt::Debug for TardisReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TardisReader")
            .field("files", &self.sources.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// `true` if `path` starts with a Tardis CSV header (gzip or plain).
#[must_use]
pub fn is_tardis_csv(path: &Path) -> bool {
    let Ok(mut r) = crate::recorder::open_text(path) else {
        return false;
    };
    let mut header = String::new();
    r.read_line(&mut header).is_ok()
        && header.starts_with("exchange,symbol,timestamp,local_timestamp,")
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One CSV line of `s` as a row, or why it cannot be used.
fn parse_row(s: &mut Source, symbols: &SymbolMap) -> Result<Row, Skip> {
    let cols: Vec<&str> = s.line.trim_end().split(',').collect();
    if cols.len() != 8 {
        return Err(Skip::MalformedRow);
    }
    let instrument = symbols.find(cols[1]).ok_or(Skip::UnknownSymbolRow)?;
    let (Ok(exch_us), Ok(local_us)) = (cols[2].parse::<u64>(), cols[3].parse::<u64>()) else {
        return Err(Skip::MalformedRow);
    };
    let (Ok(price), Ok(qty)) = (Price::parse(cols[6]), Qty::parse(cols[7])) else {
        return Err(Skip::MalformedRow);
    };
    let recv_ns = local_us.saturating_mul(1_000);
    let exch_ns = exch_us.saturating_mul(1_000);
    Ok(match s.kind {
        Kind::Trades => {
            let aggressor = match cols[5] {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                _ => return Err(Skip::MalformedRow),
            };
            let trade = Trade {
                instrument,
                aggressor,
                price,
                qty,
                trade_id: fnv1a(cols[4]),
            };
            Row {
                recv_ns,
                event: Event::new(recv_ns, exch_ns, EventKind::Trade(trade)),
                snapshot: false,
            }
        }
        Kind::Book => {
            let side = match cols[5] {
                "bid" => Side::Buy,
                "ask" => Side::Sell,
                _ => return Err(Skip::MalformedRow),
            };
            let snapshot = cols[4] == "true";
            let begin = snapshot && !s.in_snapshot;
            s.in_snapshot = snapshot;
            let flags = if begin { DeltaFlags::SNAPSHOT_BEGIN } else { 0 };
            let d = BookDelta {
                instrument,
                side,
                flags: DeltaFlags(flags),
                price,
                qty,
                update_id: exch_us,
            };
            Row {
                recv_ns,
                event: Event::new(recv_ns, exch_ns, EventKind::BookDelta(d)),
                snapshot,
            }
        }
    })
}

impl TardisReader {
    /// Opens the files; each must have a Tardis `trades` or `incremental_book_L2` header.
    ///
    /// # Errors
    /// If a file cannot be read or has another header (the error names the file).
    pub fn open(paths: &[PathBuf], symbols: SymbolMap) -> io::Result<Self> {
        let mut sources = Vec::new();
        for p in paths {
            let mut reader = crate::recorder::open_text(p)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let kind = match header.trim_end() {
                "exchange,symbol,timestamp,local_timestamp,id,side,price,amount" => Kind::Trades,
                "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount" => {
                    Kind::Book
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                        "{}: not a Tardis trades or incremental_book_L2 file (header {other:?})",
                        p.display()
                    ),
                    ))
                }
            };
            sources.push(Source {
                path: Arc::from(p.as_path()),
                reader,
                kind,
                line: String::new(),
                next: None,
                in_snapshot: false,
                line_no: 1,
            });
        }
        let mut r = Self {
            sources,
            symbols,
            stats: TardisStats::default(),
            issues: InputIssues::default(),
        };
        for i in 0..r.sources.len() {
            r.fill(i)?;
        }
        Ok(r)
    }

    /// Reads the next usable row of source `i` into `next`; rows it cannot use are counted
    /// with their file and line.
    fn fill(&mut self, i: usize) -> io::Result<()> {
        let s = &mut self.sources[i];
        s.next = None;
        loop {
            s.line.clear();
            let read = s.reader.read_line(&mut s.line).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{}: after line {}: {e}", s.path.display(), s.line_no),
                )
            })?;
            if read == 0 {
                return Ok(());
            }
            s.line_no += 1;
            match parse_row(s, &self.symbols) {
                Ok(row) => {
                    s.next = Some(row);
                    return Ok(());
                }
                Err(skip) => {
                    match skip {
                        Skip::UnknownSymbolRow => self.stats.unknown_symbol += 1,
                        _ => self.stats.malformed += 1,
                    }
                    self.issues
                        .record(skip, &s.path, s.line_no, s.line.trim_end());
                }
            }
        }
    }

    /// Receive time of the next event, if any.
    #[must_use]
    pub fn peek_ns(&self) -> Option<u64> {
        self.sources
            .iter()
            .filter_map(|s| s.next.map(|r| r.recv_ns))
            .min()
    }

    /// The next event in receive-time order.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn next_event(&mut self) -> io::Result<Option<Event>> {
        let Some(i) = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.next.map(|r| (r.recv_ns, i)))
            .min()
            .map(|(_, i)| i)
        else {
            return Ok(None);
        };
        let row = self.sources[i].next.expect("chosen because present");
        self.fill(i)?;
        let mut event = row.event;
        if let EventKind::BookDelta(ref mut d) = event.kind {
            // The last row of a message: the next row of this file has another local time, or
            // switches between snapshot and update rows, or there is none.
            let last = self.sources[i]
                .next
                .is_none_or(|n| n.recv_ns != row.recv_ns || n.snapshot != row.snapshot);
            if last {
                d.flags.0 |= DeltaFlags::LAST_IN_MESSAGE;
            }
        }
        self.stats.events += 1;
        Ok(Some(event))
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> TardisStats {
        self.stats
    }

    /// Files being read.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.sources.iter().map(|s| &*s.path)
    }

    /// The rows skipped so far, by reason, with the first few of each.
    #[must_use]
    pub fn issues(&self) -> &InputIssues {
        &self.issues
    }

    /// Lines read so far in all files (header included).
    #[must_use]
    pub fn lines(&self) -> u64 {
        self.sources.iter().map(|s| s.line_no).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeloop_engine::book::OrderBook;
    use tradeloop_engine::instrument::InstrumentIndex;

    #[test]
    fn shared_tardis_samples_replay() {
        let dir = crate::shared_data_dir();
        let trades = dir.join("tardis_bitmex_trades_XBTUSD.csv");
        let book = dir.join("tardis_deribit_incremental_book_L2_BTC-PERPETUAL.csv");
        if !trades.exists() || !book.exists() {
            eprintln!("skipped: ../shared/data is absent");
            return;
        }
        assert!(is_tardis_csv(&trades) && is_tardis_csv(&book));
        let mut symbols = SymbolMap::default();
        symbols.insert("XBTUSD", InstrumentIndex(0));
        symbols.insert("BTC-PERPETUAL", InstrumentIndex(1));
        let mut r = TardisReader::open(&[trades, book], symbols).unwrap();
        let mut ob = OrderBook::new(256);
        let (mut n_trades, mut last_ns, mut messages) = (0, 0, 0);
        while let Some(e) = r.next_event().unwrap() {
            assert!(e.recv_ns >= last_ns, "time order");
            last_ns = e.recv_ns;
            match e.kind {
                EventKind::Trade(t) => {
                    n_trades += 1;
                    assert_eq!(t.instrument, InstrumentIndex(0));
                }
                EventKind::BookDelta(d) => {
                    if ob.apply(&d) == tradeloop_engine::book::Applied::MessageComplete {
                        messages += 1;
                    }
                }
                _ => unreachable!(),
            }
        }
        assert_eq!(n_trades, 10);
        assert_eq!(
            r.stats(),
            TardisStats {
                events: 25,
                unknown_symbol: 0,
                malformed: 0
            }
        );
        assert!(ob.is_live() && !ob.is_crossed());
        // The sample is one snapshot of 15 ask levels at one local timestamp: one message.
        assert_eq!(messages, 1);
        assert_eq!(ob.len(Side::Sell), 15);
        assert_eq!(
            ob.best_ask().map(|l| l.price),
            Some(Price::parse("6421.5").unwrap())
        );
    }
}
