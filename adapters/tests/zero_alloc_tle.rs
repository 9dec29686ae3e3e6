//! Reading a `.tle` file allocates nothing per record: after the first record (which sizes the
//! chunk buffers), 200,000 records across many chunks — raw chunks from memory, raw and zstd
//! chunks from a stream — are read under a counting global allocator with zero allocations.
//! One test per binary so no other test allocates concurrently. (zstd's C library allocates
//! through malloc, which this counter does not see; the reader creates one zstd context per
//! file and reuses it for every chunk.)

use std::io::Cursor;
use std::sync::Arc;

use tradeloop_adapters::tle::{TleInstrument, TleItem, TleMeta, TleReader, TleWriter};
use tradeloop_engine::event::{BookDelta, DeltaFlags, Event, EventKind, Side, Trade};
use tradeloop_engine::fixed::{Price, Qty, FIXED_DECIMALS};
use tradeloop_engine::instrument::InstrumentIndex;

#[path = "../../engine/tests/alloc_counter/mod.rs"]
mod alloc_counter;

const RECORDS: u64 = 200_000;

/// Steps of one trade and three book levels (uniform chunk sizes, so the buffers sized by the
/// first chunk fit every later one).
fn file(zstd: Option<i32>) -> Vec<u8> {
    let meta = TleMeta {
        fixed_decimals: FIXED_DECIMALS,
        instruments: vec![TleInstrument {
            venue: "binance".into(),
            symbol: "BTCUSDT".into(),
        }],
        sources: vec![],
        conversion: String::new(),
        writer: "test".into(),
    };
    let mut w = TleWriter::new(Vec::new(), &meta, zstd).unwrap();
    let i = InstrumentIndex(0);
    for k in 0..RECORDS / 4 {
        let ns = 1_000 + k;
        w.begin_step(ns);
        w.write_event(&Event::new(
            ns,
            ns,
            EventKind::Trade(Trade {
                instrument: i,
                aggressor: Side::Buy,
                price: Price::from_raw(6_000_000_000_000 + k as i64),
                qty: Qty::from_raw(1_000),
                trade_id: k,
            }),
        ))
        .unwrap();
        for l in 0..3 {
            w.write_event(&Event::new(
                ns,
                ns,
                EventKind::BookDelta(BookDelta {
                    instrument: i,
                    side: Side::Sell,
                    flags: DeltaFlags(if l == 2 {
                        DeltaFlags::LAST_IN_MESSAGE
                    } else {
                        0
                    }),
                    price: Price::from_raw(6_000_000_000_000 + l),
                    qty: Qty::from_raw(l),
                    update_id: k,
                }),
            ))
            .unwrap();
        }
        w.end_step(ns, false).unwrap();
    }
    w.finish(0).unwrap().1
}

/// Reads everything after the first record; returns (allocations, records, sum of trade ids).
fn read(mut r: TleReader) -> (u64, u64, u64) {
    r.next_record().unwrap().unwrap();
    let before = alloc_counter::allocations();
    let (mut n, mut ids) = (1u64, 0u64);
    while let Some(rec) = r.next_record().unwrap() {
        n += 1;
        if let TleItem::Event(Event {
            kind: EventKind::Trade(t),
            ..
        }) = rec.item
        {
            ids += t.trade_id;
        }
    }
    (alloc_counter::allocations() - before, n, ids)
}

#[test]
fn reading_allocates_nothing_per_record() {
    let want_ids: u64 = (1..RECORDS / 4).sum(); // the first trade (id 0) is read before counting
    let raw = file(None);
    let zstd = file(Some(3));
    let cases: [(&str, TleReader); 3] = [
        (
            "memory raw",
            TleReader::from_memory(Arc::from(raw.clone())).unwrap(),
        ),
        (
            "stream raw",
            TleReader::from_reader(Box::new(Cursor::new(raw))).unwrap(),
        ),
        (
            "stream zstd",
            TleReader::from_reader(Box::new(Cursor::new(zstd))).unwrap(),
        ),
    ];
    for (name, reader) in cases {
        let (allocs, n, ids) = read(reader);
        assert_eq!(n, RECORDS, "{name}");
        assert_eq!(ids, want_ids, "{name}");
        assert_eq!(allocs, 0, "{name}: {allocs} allocations while reading");
    }
}
