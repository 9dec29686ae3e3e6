//! Every replay reader on arbitrary bytes: it never panics, and every line it does not use is
//! counted (with its reason), so nothing vanishes. Property tests, run briefly in CI.

use std::sync::Arc;

use proptest::prelude::*;
use tradeloop_adapters::input::Skip;
use tradeloop_adapters::recorder::FrameReader;
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_adapters::tardis::TardisReader;
use tradeloop_adapters::tle::{TleInstrument, TleMeta, TleReader, TleWriter};
use tradeloop_engine::event::{Event, EventKind, Side, Trade};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tl-fuzz-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.txt", fastrand_name()));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A unique file name per case (proptest runs cases in one thread, one after another).
fn fastrand_name() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A line: a well-formed frame, a frame-like line with a broken prefix, or arbitrary bytes.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u64..u64::MAX / 2, "[ -~]{0,40}")
            .prop_map(|(ns, frame)| format!("{ns} {{\"x\":\"{frame}\"}}").into_bytes()),
        "[ -~]{0,60}".prop_map(String::into_bytes),
        proptest::collection::vec(
            any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
            0..60
        ),
    ]
}

/// How the frame reader sees a line: empty (skipped silently), a frame, or a counted skip.
fn expected(line: &[u8]) -> Option<bool> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return None;
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Some(false);
    };
    Some(
        text.split_once(' ')
            .is_some_and(|(ts, _)| ts.parse::<u64>().is_ok()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_frame_reader_uses_or_counts_every_line(lines in proptest::collection::vec(line(), 0..40)) {
        let bytes = lines.join(&b'\n');
        let path = temp_file("frames", &bytes);
        let mut reader = FrameReader::open(std::slice::from_ref(&path)).unwrap();
        let mut frames = 0u64;
        while reader.next_frame().unwrap().is_some() {
            frames += 1;
        }
        let want_frames = lines.iter().filter(|l| expected(l) == Some(true)).count() as u64;
        let want_skipped = lines.iter().filter(|l| expected(l) == Some(false)).count() as u64;
        prop_assert_eq!(frames, want_frames);
        let issues = reader.issues();
        prop_assert_eq!(
            issues.count(Skip::NoTimestamp) + issues.count(Skip::NotUtf8),
            want_skipped
        );
        // Each example names its line: the line it names is one that was skipped.
        for e in issues.examples() {
            let l = &lines[usize::try_from(e.line).unwrap() - 1];
            prop_assert_eq!(expected(l), Some(false), "line {}", e.line);
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_tardis_reader_uses_or_counts_every_row(rows in proptest::collection::vec(
        prop_oneof![
            (1u64..1_000_000, 1u64..1_000_000, 1u32..1000, prop::bool::ANY).prop_map(|(a, b, p, buy)| {
                format!("bitmex,XBTUSD,{a},{b},id{a},{},{p}.5,1", if buy { "buy" } else { "sell" }).into_bytes()
            }),
            Just(b"bitmex,ETHUSD,1,2,id,buy,1,1".to_vec()),
            "[ -~]{0,60}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 1..60),
        ],
        0..40,
    )) {
        let mut bytes = b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n".to_vec();
        for r in &rows {
            bytes.extend_from_slice(r);
            bytes.push(b'\n');
        }
        let path = temp_file("tardis", &bytes);
        let mut symbols = SymbolMap::default();
        symbols.insert("XBTUSD", InstrumentIndex(0));
        // A row that is not valid UTF-8 fails the read with the file and line named; every
        // other row is an event or a counted skip.
        let utf8 = rows.iter().all(|r| std::str::from_utf8(r).is_ok());
        let mut reader = match TardisReader::open(std::slice::from_ref(&path), symbols) {
            Ok(r) => r,
            Err(e) => {
                prop_assert!(!utf8, "{}", e);
                prop_assert!(e.to_string().contains(&path.display().to_string()), "{}", e);
                return Ok(());
            }
        };
        let mut events = 0u64;
        loop {
            match reader.next_event() {
                Ok(Some(_)) => events += 1,
                Ok(None) => break,
                Err(e) => {
                    prop_assert!(!utf8, "{}", e);
                    prop_assert!(e.to_string().contains(&path.display().to_string()), "{}", e);
                    return Ok(());
                }
            }
        }
        let issues = reader.issues();
        prop_assert_eq!(events + issues.total(), rows.len() as u64);
        prop_assert_eq!(
            issues.total(),
            issues.count(Skip::MalformedRow) + issues.count(Skip::UnknownSymbolRow)
        );
        let _ = std::fs::remove_file(&path);
    }

    /// Arbitrary bytes, and a sound file with a byte changed or cut short: the reader returns
    /// an error or the events it can prove sound, and never panics.
    #[test]
    fn the_tle_reader_refuses_what_is_damaged(
        noise in proptest::collection::vec(any::<u8>(), 0..512),
        flip in (0usize..4096, 1u8..=255),
        cut in 0usize..4096,
    ) {
        drain(Arc::from(noise));
        let sound = sound_tle();
        let mut flipped = sound.clone();
        let at = flip.0 % flipped.len();
        flipped[at] ^= flip.1;
        drain(Arc::from(flipped));
        drain(Arc::from(&sound[..cut % sound.len()]));
    }
}

/// Reads `bytes` as a `.tle` file to its end or its first error.
fn drain(bytes: Arc<[u8]>) {
    let Ok(mut reader) = TleReader::from_memory(bytes) else {
        return;
    };
    while let Ok(Some(_)) = reader.next_step(|_| {}) {}
}

/// A small sound `.tle` file: 50 steps of one trade each.
fn sound_tle() -> Vec<u8> {
    let meta = TleMeta {
        fixed_decimals: tradeloop_engine::fixed::FIXED_DECIMALS,
        instruments: vec![TleInstrument {
            venue: "sim".into(),
            symbol: "BTCUSDT".into(),
        }],
        sources: vec![],
        conversion: String::new(),
        writer: "test".into(),
    };
    let mut w = TleWriter::new(Vec::new(), &meta, None).unwrap();
    for k in 0..50u64 {
        let ns = 1_000 + k;
        w.begin_step(ns);
        tradeloop_adapters::feed::MarketSink::push(
            &mut w,
            Event::new(
                ns,
                ns,
                EventKind::Trade(Trade {
                    instrument: InstrumentIndex(0),
                    price: Price::from_units(100 + i64::try_from(k).unwrap()),
                    qty: Qty::from_units(1),
                    aggressor: Side::Buy,
                    trade_id: k,
                }),
            ),
        );
        w.end_step(ns, false).unwrap();
    }
    let (_, bytes) = w.finish(0).unwrap();
    let mut r = TleReader::from_memory(Arc::from(bytes.clone())).unwrap();
    let mut steps = 0;
    while r.next_step(|_| {}).unwrap().is_some() {
        steps += 1;
    }
    assert_eq!(steps, 50, "the sound file reads back whole");
    bytes
}
