//! Recorder and replay files: one frame per line as `<recv_ns> <raw frame>`, gzip, rotated
//! daily (UTC) — the format hftbacktest's collector writes, so files from either tool replay in
//! both. Off the hot path: file I/O on the recorder or replay thread.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use crate::input::{InputIssues, Skip};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

const NS_PER_DAY: u64 = 86_400_000_000_000;

/// (year, month, day) of a day count since 1970-01-01 (civil-from-days, Hinnant's algorithm).
#[must_use]
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `YYYYMMDD` of a Unix-epoch nanosecond time, UTC.
#[must_use]
pub fn utc_date(epoch_ns: u64) -> String {
    let (year, month, day) =
        civil_from_days(i64::try_from(epoch_ns / NS_PER_DAY).unwrap_or(i64::MAX / 2));
    format!("{year:04}{month:02}{day:02}")
}

/// Writes `<recv_ns> <frame>` lines to `DIR/<prefix>_<YYYYMMDD>.gz`, starting a new file when
/// the UTC day of `recv_ns` changes.
#[derive(Debug)]
pub struct FrameWriter {
    dir: PathBuf,
    prefix: String,
    day: u64,
    out: Option<GzEncoder<BufWriter<File>>>,
    lines: u64,
    files: Vec<PathBuf>,
}

impl FrameWriter {
    /// A writer into `dir` (created if missing) with file names starting `prefix`.
    ///
    /// # Errors
    /// If the directory cannot be created.
    pub fn new(dir: &Path, prefix: &str) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            prefix: prefix.to_owned(),
            day: u64::MAX,
            out: None,
            lines: 0,
            files: Vec::new(),
        })
    }

    /// Appends one frame. Newlines inside the frame are replaced by spaces (JSON allows it), so
    /// one line stays one frame.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn write(&mut self, recv_ns: u64, frame: &str) -> io::Result<()> {
        let day = recv_ns / NS_PER_DAY;
        if day != self.day || self.out.is_none() {
            self.finish_file()?;
            let path = self
                .dir
                .join(format!("{}_{}.gz", self.prefix, utc_date(recv_ns)));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            self.out = Some(GzEncoder::new(BufWriter::new(file), Compression::fast()));
            self.files.push(path);
            self.day = day;
        }
        let out = self.out.as_mut().expect("opened above");
        write!(out, "{recv_ns} ")?;
        if frame.contains(['\n', '\r']) {
            out.write_all(frame.replace(['\n', '\r'], " ").as_bytes())?;
        } else {
            out.write_all(frame.as_bytes())?;
        }
        out.write_all(b"\n")?;
        self.lines += 1;
        Ok(())
    }

    fn finish_file(&mut self) -> io::Result<()> {
        if let Some(out) = self.out.take() {
            out.finish()?.flush()?;
        }
        Ok(())
    }

    /// Flushes and closes the current file (each file is a complete gzip stream).
    ///
    /// # Errors
    /// On I/O failure.
    pub fn finish(mut self) -> io::Result<Vec<PathBuf>> {
        self.finish_file()?;
        Ok(std::mem::take(&mut self.files))
    }

    /// Lines written.
    #[must_use]
    pub fn lines(&self) -> u64 {
        self.lines
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        let _ = self.finish_file();
    }
}

/// Bytes per chunk handed from a reader thread to the replay thread.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks in flight per file (bounded memory: this many plus one being read, plus one held).
const CHUNKS_IN_FLIGHT: usize = 2;

/// Whole lines of one file, UTF-8 checked, from its reader thread. A line that is not valid
/// UTF-8 is replaced by [`NOT_UTF8`] so the replay side still counts it, with its number.
struct Chunk {
    text: String,
}

/// The line that stands for a line that was not valid UTF-8.
const NOT_UTF8: &str = "\0";

/// One input file: a reader thread decompresses it and cuts it into chunks of whole lines;
/// the replay thread only splits lines, so decompression and UTF-8 checking run on another
/// core.
struct Source {
    chunks: mpsc::Receiver<io::Result<Chunk>>,
    recycle: mpsc::Sender<Vec<u8>>,
    chunk: String,
    /// Start of the next unread line in `chunk`.
    pos: usize,
    /// The current line's frame (after `<recv_ns> `) as a range of `chunk`.
    frame: (usize, usize),
    recv_ns: u64,
    done: bool,
    /// The file, for messages.
    path: Arc<Path>,
    /// Lines read so far: the current frame's line number.
    line: u64,
    /// Bytes read from the file so far (compressed, for a gzip file).
    file_bytes: Arc<AtomicU64>,
}

/// Reads `reader` to its end in chunks of whole lines; stops early if the replay side hangs up.
fn read_chunks(
    mut reader: Box<dyn Read + Send>,
    chunks: &mpsc::SyncSender<io::Result<Chunk>>,
    recycle: &mpsc::Receiver<Vec<u8>>,
) {
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut buf = recycle
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK_BYTES));
        buf.clear();
        buf.append(&mut carry);
        let mut eof = false;
        // Fill to a chunk, then cut after the last newline; a line longer than a chunk grows
        // the buffer until it ends.
        let cut = loop {
            let want = (CHUNK_BYTES.max(buf.len() * 2) - buf.len()) as u64;
            match (&mut reader).take(want).read_to_end(&mut buf) {
                Ok(n) if (n as u64) < want => eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The whole lines decoded before the error are still handed on (an
                    // `--allow-partial` replay uses them), then the error.
                    let cut = memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1);
                    buf.truncate(cut);
                    if !buf.is_empty() {
                        let chunk = match String::from_utf8(buf) {
                            Ok(text) => Chunk { text },
                            Err(e) => keep_utf8_lines(&e.into_bytes()),
                        };
                        let _ = chunks.send(Ok(chunk));
                    }
                    let _ = chunks.send(Err(e));
                    return;
                }
            }
            if eof {
                break buf.len();
            }
            if let Some(i) = memchr::memrchr(b'\n', &buf) {
                break i + 1;
            }
        };
        carry.extend_from_slice(&buf[cut..]);
        buf.truncate(cut);
        let chunk = match String::from_utf8(buf) {
            Ok(text) => Chunk { text },
            Err(e) => keep_utf8_lines(&e.into_bytes()),
        };
        if chunks.send(Ok(chunk)).is_err() || eof {
            return;
        }
    }
}

/// The valid UTF-8 lines of `bytes`, each other line replaced by [`NOT_UTF8`].
#[cold]
fn keep_utf8_lines(bytes: &[u8]) -> Chunk {
    let mut text = String::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        match std::str::from_utf8(line) {
            Ok(l) => text.push_str(l),
            Err(_) => {
                text.push_str(NOT_UTF8);
                text.push('\n');
            }
        }
    }
    Chunk { text }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Counters of a reader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Frames returned.
    pub frames: u64,
    /// Lines skipped because they had no `<recv_ns> ` prefix or were not valid UTF-8 (each
    /// is in [`FrameReader::issues`] with its file and line).
    pub bad_lines: u64,
}

/// Streams frames from one or more recorded files (gzip or plain, detected by content) in
/// receive-time order, merging files line by line. Each file is read and decompressed on its
/// own thread, at most a few MB ahead.
pub struct FrameReader {
    sources: Vec<Source>,
    current: Option<usize>,
    stats: ReaderStats,
    issues: InputIssues,
    /// A file that cannot be decoded to its end ends there (counted `truncated`) instead of
    /// failing the read.
    allow_partial: bool,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("files", &self.sources.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Opens a file for reading, decompressing it if it is gzip (by content).
///
/// # Errors
/// If the file cannot be opened.
pub fn open_read(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    open_read_counted(path, Arc::default())
}

/// [`open_read`], counting the bytes read from the file itself (compressed, for gzip) in
/// `read`: where in the file a decoding error happened.
fn open_read_counted(path: &Path, read: Arc<AtomicU64>) -> io::Result<Box<dyn Read + Send>> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    let file = Counting {
        inner: File::open(path)?,
        read,
    };
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            file,
        ))))
    } else {
        Ok(Box::new(file))
    }
}

/// The first member of a zip archive (deflated or stored), checked against its CRC-32: how
/// venue exports such as Bybit's historical order-book files are shipped.
///
/// # Errors
/// `InvalidData` naming the problem: not a zip local file header, a compression method other
/// than deflate or stored, a truncated member, or a CRC mismatch.
pub fn unzip_first(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("zip: {why}"));
    let field = |at: usize, len: usize| {
        bytes
            .get(at..at + len)
            .ok_or_else(|| bad("truncated header"))
            .map(|b| b.iter().rev().fold(0u32, |v, x| (v << 8) | u32::from(*x)))
    };
    if field(0, 4)? != 0x0403_4b50 {
        return Err(bad("not a local file header"));
    }
    let (method, crc, size) = (field(8, 2)?, field(14, 4)?, field(18, 4)? as usize);
    let start = 30 + field(26, 2)? as usize + field(28, 2)? as usize;
    let data = bytes.get(start..).ok_or_else(|| bad("truncated member"))?;
    let mut out = Vec::new();
    match method {
        8 => {
            flate2::read::DeflateDecoder::new(data).read_to_end(&mut out)?;
        }
        0 => out.extend_from_slice(data.get(..size).ok_or_else(|| bad("truncated member"))?),
        m => {
            return Err(bad(&format!(
                "compression method {m} (only deflate and stored)"
            )))
        }
    }
    if crc32fast::hash(&out) != crc {
        return Err(bad("CRC mismatch"));
    }
    Ok(out)
}

/// Opens a text file for buffered reading, decompressing it if it is gzip (by content).
///
/// # Errors
/// If the file cannot be opened.
pub fn open_text(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    Ok(Box::new(BufReader::with_capacity(
        1 << 20,
        open_read(path)?,
    )))
}

impl FrameReader {
    /// Opens the files and starts one reader thread per file.
    ///
    /// # Errors
    /// If a file cannot be opened (the error names it) or a thread cannot be started.
    pub fn open(paths: &[PathBuf]) -> io::Result<Self> {
        Self::open_with(paths, false)
    }

    /// [`Self::open`]; with `allow_partial`, a file that cannot be decoded to its end (a
    /// truncated or damaged gzip stream) ends where it breaks, counted as
    /// [`Skip::Truncated`], instead of failing the read.
    ///
    /// # Errors
    /// If a file cannot be opened (the error names it) or a thread cannot be started.
    pub fn open_with(paths: &[PathBuf], allow_partial: bool) -> io::Result<Self> {
        let mut sources = Vec::with_capacity(paths.len());
        for p in paths {
            let file_bytes = Arc::new(AtomicU64::new(0));
            let reader = open_read_counted(p, Arc::clone(&file_bytes))
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            let (chunk_tx, chunk_rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
            let (recycle_tx, recycle_rx) = mpsc::channel();
            let name = p.display().to_string();
            std::thread::Builder::new()
                .name("tradeloop-read".into())
                .spawn(move || {
                    read_chunks(reader, &chunk_tx, &recycle_rx);
                    tracing::trace!(file = %name, "reader thread done");
                })?;
            sources.push(Source {
                chunks: chunk_rx,
                recycle: recycle_tx,
                chunk: String::new(),
                pos: 0,
                frame: (0, 0),
                recv_ns: 0,
                done: false,
                path: Arc::from(p.as_path()),
                line: 0,
                file_bytes,
            });
        }
        let mut r = Self {
            sources,
            current: None,
            stats: ReaderStats::default(),
            issues: InputIssues::default(),
            allow_partial,
        };
        for i in 0..r.sources.len() {
            r.advance(i)?;
        }
        Ok(r)
    }

    fn advance(&mut self, i: usize) -> io::Result<()> {
        let s = &mut self.sources[i];
        loop {
            if s.pos >= s.chunk.len() {
                match s.chunks.recv() {
                    Ok(Ok(next)) => {
                        let old = std::mem::replace(&mut s.chunk, next.text);
                        // The reader thread may already be gone at the end of its file.
                        let _ = s.recycle.send(old.into_bytes());
                        s.pos = 0;
                        continue;
                    }
                    Ok(Err(e)) => {
                        s.done = true;
                        let at = s.file_bytes.load(Ordering::Relaxed);
                        let size = std::fs::metadata(&*s.path).map_or(0, |m| m.len());
                        let what = format!(
                            "cannot decode past byte {at} of {size} (after line {}): {e}",
                            s.line
                        );
                        if self.allow_partial {
                            tracing::warn!(file = %s.path.display(), "{what}; replaying the lines before it (--allow-partial)");
                            self.issues.record(Skip::Truncated, &s.path, 0, &what);
                            return Ok(());
                        }
                        return Err(io::Error::new(
                            e.kind(),
                            format!(
                                "{}: {what} (the file is truncated or damaged; --allow-partial replays the lines before it)",
                                s.path.display()
                            ),
                        ));
                    }
                    Err(mpsc::RecvError) => {
                        s.done = true;
                        return Ok(());
                    }
                }
            }
            let bytes = &s.chunk.as_bytes()[s.pos..];
            let len = memchr::memchr(b'\n', bytes).unwrap_or(bytes.len());
            let (start, next) = (s.pos, s.pos + len + 1);
            s.pos = next;
            s.line += 1;
            let line = s.chunk[start..start + len].trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let parsed = memchr::memchr(b' ', line.as_bytes())
                .and_then(|sp| line[..sp].parse::<u64>().ok().map(|v| (v, sp + 1)));
            match parsed {
                Some((ns, skip)) => {
                    s.recv_ns = ns;
                    s.frame = (start + skip, start + line.len());
                    return Ok(());
                }
                None if line == NOT_UTF8 => {
                    self.stats.bad_lines += 1;
                    self.issues
                        .record(Skip::NotUtf8, &s.path, s.line, "(not valid UTF-8)");
                }
                None => {
                    self.stats.bad_lines += 1;
                    self.issues.record(Skip::NoTimestamp, &s.path, s.line, line);
                }
            }
        }
    }

    /// Receive time of the next frame, if any (does not consume it).
    ///
    /// # Errors
    /// On I/O or decompression failure.
    pub fn peek_ns(&mut self) -> io::Result<Option<u64>> {
        if let Some(prev) = self.current.take() {
            self.advance(prev)?;
        }
        Ok(self
            .sources
            .iter()
            .filter(|s| !s.done)
            .map(|s| s.recv_ns)
            .min())
    }

    /// The next frame in receive-time order, or `None` at the end of every file.
    ///
    /// # Errors
    /// On I/O or decompression failure.
    pub fn next_frame(&mut self) -> io::Result<Option<(u64, &str)>> {
        if let Some(prev) = self.current.take() {
            self.advance(prev)?;
        }
        let next = self
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.done)
            .min_by_key(|(_, s)| s.recv_ns)
            .map(|(i, _)| i);
        let Some(i) = next else { return Ok(None) };
        self.current = Some(i);
        self.stats.frames += 1;
        let s = &self.sources[i];
        Ok(Some((s.recv_ns, &s.chunk[s.frame.0..s.frame.1])))
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    /// The lines skipped so far, by reason, with the first few of each.
    #[must_use]
    pub fn issues(&self) -> &InputIssues {
        &self.issues
    }

    /// Records a frame the caller could not use (a parser refusal) against the file and line
    /// of the frame [`Self::next_frame`] returned last.
    pub fn record_issue(&mut self, skip: Skip) {
        if let Some(i) = self.current {
            let s = &self.sources[i];
            let frame = &s.chunk[s.frame.0..s.frame.1];
            self.issues.record(skip, &s.path, s.line, frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unzip_refuses_what_is_not_a_sound_zip_member() {
        // A stored member "hi\n" built by hand: header, name "a", data.
        let data = b"hi\n";
        let mut zip = vec![0x50, 0x4b, 0x03, 0x04, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        zip.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        zip.extend_from_slice(&3u32.to_le_bytes());
        zip.extend_from_slice(&3u32.to_le_bytes());
        zip.extend_from_slice(&1u16.to_le_bytes());
        zip.extend_from_slice(&0u16.to_le_bytes());
        zip.push(b'a');
        zip.extend_from_slice(data);
        assert_eq!(unzip_first(&zip).unwrap(), data);
        let mut corrupt = zip.clone();
        *corrupt.last_mut().unwrap() = b'!';
        assert!(unzip_first(&corrupt)
            .unwrap_err()
            .to_string()
            .contains("CRC"));
        assert!(unzip_first(&zip[..20]).is_err());
        assert!(unzip_first(&zip[..32]).is_err());
        assert!(unzip_first(b"PK\x05\x06").is_err());
        let mut other = zip;
        other[8] = 12; // bzip2
        assert!(unzip_first(&other)
            .unwrap_err()
            .to_string()
            .contains("method 12"));
    }

    #[test]
    fn utc_dates() {
        let cases = [
            ("TC0 epoch", 0u64, "19700101"),
            ("TC1 capture day", 1_723_161_253_937_085_768, "20240808"),
            ("TC2 leap day", 1_709_164_800_000_000_000, "20240229"),
            ("TC3 last ns of 2024", 1_735_689_599_999_999_999, "20241231"),
        ];
        for (label, ns, want) in cases {
            assert_eq!(utc_date(ns), want, "{label}");
        }
    }

    #[test]
    fn write_rotate_and_merge_read_back_in_time_order() {
        let dir = std::env::temp_dir().join(format!("tradeloop-rec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let day = NS_PER_DAY * 19_943; // 2024-08-08
        let mut a = FrameWriter::new(&dir, "a").unwrap();
        a.write(day + 10, "{\"x\":1}").unwrap();
        a.write(day + 30, "{\"x\":\n3}").unwrap();
        a.write(day + NS_PER_DAY + 5, "{\"x\":5}").unwrap();
        let files_a = a.finish().unwrap();
        assert_eq!(files_a.len(), 2, "rotated at midnight UTC");
        assert!(files_a[0].ends_with("a_20240808.gz") && files_a[1].ends_with("a_20240809.gz"));
        let plain = dir.join("b.txt");
        std::fs::write(
            &plain,
            format!(
                "{} {{\"x\":2}}\nnot-a-line\n{} {{\"x\":4}}\n",
                day + 20,
                day + 40
            ),
        )
        .unwrap();
        let mut paths = files_a.clone();
        paths.push(plain);
        let mut r = FrameReader::open(&paths).unwrap();
        let mut got = Vec::new();
        while let Some((ns, f)) = r.next_frame().unwrap() {
            got.push((ns - day, f.to_owned()));
        }
        let want: Vec<(u64, String)> = vec![
            (10, "{\"x\":1}".into()),
            (20, "{\"x\":2}".into()),
            (30, "{\"x\": 3}".into()),
            (40, "{\"x\":4}".into()),
            (NS_PER_DAY + 5, "{\"x\":5}".into()),
        ];
        assert_eq!(got, want);
        assert_eq!(
            r.stats(),
            ReaderStats {
                frames: 5,
                bad_lines: 1
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Lines across chunk boundaries, a line longer than a chunk, CRLF endings and a line
    /// that is not UTF-8: every good frame comes back whole and in order, the bad one counted.
    #[test]
    fn chunked_reading_keeps_lines_whole() {
        let dir = std::env::temp_dir().join(format!("tradeloop-chunks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("frames.txt");
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for k in 0..40_000u64 {
            let frame = format!(
                "{{\"k\":{k},\"pad\":\"{}\"}}",
                "x".repeat((k % 97) as usize)
            );
            bytes.extend_from_slice(format!("{} {frame}", 1000 + k).as_bytes());
            bytes.extend_from_slice(if k % 3 == 0 { b"\r\n" } else { b"\n" });
            want.push((1000 + k, frame));
            if k == 20_000 {
                let long = format!("{{\"long\":\"{}\"}}", "y".repeat(3 * CHUNK_BYTES));
                bytes.extend_from_slice(format!("{} {long}\n", 1000 + k).as_bytes());
                want.push((1000 + k, long));
                bytes.extend_from_slice(b"21000 {\"bad\":\"\xff\xfe\"}\n");
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let mut r = FrameReader::open(&[path]).unwrap();
        let mut got = Vec::new();
        while let Some((ns, f)) = r.next_frame().unwrap() {
            got.push((ns, f.to_owned()));
        }
        assert_eq!(got.len(), want.len(), "TC1 frame count");
        assert!(got == want, "TC2 frames whole and in order");
        assert_eq!(
            r.stats().bad_lines,
            1,
            "TC3 the invalid UTF-8 line is counted"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
