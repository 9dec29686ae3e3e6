//! What replay input was not used, and why: every skipped line, refused frame and dropped
//! CSV row of a backtest, a conversion or the sim venue's replay is counted by reason, and the
//! first few of each reason are kept with their file and line so the user can look at them.
//!
//! Off the hot path: a reader calls [`InputIssues::record`] only for input it does not use,
//! and only the first [`InputIssues::EXAMPLES_PER_REASON`] of each reason allocate.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::wire::ParseError;

/// Why a line, frame or row of input was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    /// A recorded line without its `<recv_ns> ` prefix.
    NoTimestamp,
    /// A line that is not valid UTF-8.
    NotUtf8,
    /// A frame the venue's parser refused (its [`ParseError::index`]).
    Refused(u8),
    /// A CSV row with the wrong number of columns, a bad number or a bad side.
    MalformedRow,
    /// A CSV row of a symbol that is not a configured instrument.
    UnknownSymbolRow,
    /// The rest of a file that could not be decoded (replayed only with `--allow-partial`).
    Truncated,
}

impl Skip {
    /// Number of distinct reasons.
    pub const COUNT: usize = 5 + ParseError::KINDS;

    /// Every reason, in [`Self::index`] order.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..Self::COUNT).map(Self::from_index)
    }

    /// A stable index in `0..COUNT`.
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::NoTimestamp => 0,
            Self::NotUtf8 => 1,
            Self::MalformedRow => 2,
            Self::UnknownSymbolRow => 3,
            Self::Truncated => 4,
            Self::Refused(k) => 5 + k as usize,
        }
    }

    const fn from_index(i: usize) -> Self {
        match i {
            0 => Self::NoTimestamp,
            1 => Self::NotUtf8,
            2 => Self::MalformedRow,
            3 => Self::UnknownSymbolRow,
            4 => Self::Truncated,
            #[allow(
                clippy::cast_possible_truncation,
                reason = "below COUNT, so below 5 + ParseError::KINDS"
            )]
            k => Self::Refused((k - 5) as u8),
        }
    }

    /// The reason a parser refusal maps to.
    #[must_use]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "ParseError::KINDS is far below 256"
    )]
    pub const fn refused(e: &ParseError) -> Self {
        Self::Refused(e.index() as u8)
    }

    /// A stable snake-case name (`summary.json` keys).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::NoTimestamp => "no_timestamp",
            Self::NotUtf8 => "not_utf8",
            Self::MalformedRow => "malformed_row",
            Self::UnknownSymbolRow => "unknown_symbol_row",
            Self::Truncated => "truncated",
            Self::Refused(k) => match k {
                0 => "refused_malformed",
                1 => "refused_unknown_stream",
                2 => "refused_unknown_symbol",
                3 => "refused_invalid_number",
                4 => "refused_oversize",
                _ => "refused_venue_error",
            },
        }
    }

    /// What the user can do about it, where something can be done.
    #[must_use]
    pub const fn fix(self) -> Option<&'static str> {
        match self {
            Self::NoTimestamp => Some(
                "a recording has one `<recv_ns> <frame>` per line (as `tradeloop record` writes); \
                 check the file is one",
            ),
            Self::Refused(2) | Self::UnknownSymbolRow => Some(
                "the symbol is not in [[instruments]] for this venue: add it (with its venue, \
                 tick_size, lot_size and contract) or ignore these",
            ),
            Self::Refused(1) => Some(
                "a stream this venue's parser does not read (e.g. another venue's protocol in \
                 the same file); name the venue with --data VENUE=PATH if detection picked the \
                 wrong one",
            ),
            Self::Refused(4) => Some("raise [feed] max_frame_bytes"),
            Self::Truncated => Some(
                "the file ends early or is damaged; re-download or re-record it, or pass \
                 --allow-partial to replay what decodes",
            ),
            _ => None,
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One skipped line, kept as an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// Why.
    pub skip: Skip,
    /// The file.
    pub file: Arc<Path>,
    /// Its line number (1-based; 0 when the position is a byte offset in `detail`).
    pub line: u64,
    /// The start of the line (at most [`InputIssues::EXAMPLE_CHARS`] characters), or what
    /// went wrong.
    pub detail: String,
}

impl fmt::Display for Example {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                self.line,
                self.skip,
                self.detail
            )
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.skip, self.detail)
        }
    }
}

/// Input not used, counted by reason, with the first few of each reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputIssues {
    counts: [u64; Skip::COUNT],
    examples: Vec<Example>,
    /// A file was cut short and its decodable part replayed (`--allow-partial`).
    partial: bool,
}

impl InputIssues {
    /// Examples kept per reason.
    pub const EXAMPLES_PER_REASON: usize = 3;
    /// Characters of a line kept in an example.
    pub const EXAMPLE_CHARS: usize = 120;

    /// Counts one skipped line; keeps it as an example if it is among the first of its reason.
    pub fn record(&mut self, skip: Skip, file: &Arc<Path>, line: u64, text: &str) {
        let n = &mut self.counts[skip.index()];
        *n += 1;
        if *n as usize <= Self::EXAMPLES_PER_REASON {
            self.examples.push(Example {
                skip,
                file: Arc::clone(file),
                line,
                detail: shorten(text),
            });
        }
        if skip == Skip::Truncated {
            self.partial = true;
        }
    }

    /// Adds `other`'s counts and examples (examples beyond the per-reason limit dropped).
    pub fn merge(&mut self, other: &Self) {
        for e in &other.examples {
            let shown = self.examples.iter().filter(|x| x.skip == e.skip).count();
            if shown < Self::EXAMPLES_PER_REASON {
                self.examples.push(e.clone());
            }
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.partial |= other.partial;
    }

    /// How many were skipped for `skip`.
    #[must_use]
    pub fn count(&self, skip: Skip) -> u64 {
        self.counts[skip.index()]
    }

    /// Every skip.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The reasons with a non-zero count, with their counts, in index order.
    pub fn by_reason(&self) -> impl Iterator<Item = (Skip, u64)> + '_ {
        Skip::all()
            .map(|s| (s, self.counts[s.index()]))
            .filter(|&(_, n)| n > 0)
    }

    /// The examples kept, in the order they were met.
    #[must_use]
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    /// Whether a file was cut short and only its decodable part used.
    #[must_use]
    pub const fn partial(&self) -> bool {
        self.partial
    }

    /// What `command` did not use, for stderr: the total, [`Self::describe`], and a PARTIAL
    /// line when a file was cut short; `None` when everything was used.
    #[must_use]
    pub fn report(&self, command: &str) -> Option<String> {
        if self.total() == 0 {
            return None;
        }
        let mut s = format!(
            "{command}: {} lines, frames or rows of the input were not used:\n{}",
            self.total(),
            self.describe().trim_end()
        );
        if self.partial {
            s.push_str(&format!(
                "\n{command}: PARTIAL — a file could not be decoded to its end; only what precedes the break was used"
            ));
        }
        Some(s)
    }

    /// A report for people: one line per reason with its count and fix, then the examples.
    /// Empty when nothing was skipped.
    #[must_use]
    pub fn describe(&self) -> String {
        use fmt::Write as _;
        let mut s = String::new();
        for (skip, n) in self.by_reason() {
            let _ = write!(s, "  {n} {skip}");
            if let Some(fix) = skip.fix() {
                let _ = write!(s, " — {fix}");
            }
            s.push('\n');
            for e in self.examples.iter().filter(|e| e.skip == skip) {
                let _ = writeln!(s, "    {e}");
            }
        }
        s
    }
}

/// The start of `text`, on a character boundary, control characters shown as `?`.
fn shorten(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(InputIssues::EXAMPLE_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > InputIssues::EXAMPLE_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_their_index_and_have_distinct_names() {
        let names: std::collections::BTreeSet<&str> = Skip::all().map(Skip::name).collect();
        assert_eq!(names.len(), Skip::COUNT, "TC0 distinct names");
        for s in Skip::all() {
            assert_eq!(Skip::from_index(s.index()), s, "TC1 {s}");
        }
        assert_eq!(
            Skip::refused(&ParseError::UnknownSymbol).name(),
            "refused_unknown_symbol",
            "TC2"
        );
    }

    #[test]
    fn counts_everything_and_keeps_the_first_few_of_each_reason() {
        let file: Arc<Path> = Arc::from(Path::new("a.gz"));
        let mut issues = InputIssues::default();
        for line in 1..=10 {
            issues.record(Skip::NoTimestamp, &file, line, "garbage");
        }
        issues.record(Skip::NotUtf8, &file, 11, "");
        assert_eq!(issues.count(Skip::NoTimestamp), 10, "TC0");
        assert_eq!(issues.total(), 11, "TC1");
        assert_eq!(
            issues.examples().len(),
            InputIssues::EXAMPLES_PER_REASON + 1,
            "TC2"
        );
        assert_eq!(
            issues.examples()[0].to_string(),
            "a.gz:1: no_timestamp: garbage",
            "TC3"
        );
        let text = issues.describe();
        assert!(
            text.contains("10 no_timestamp — a recording has"),
            "TC4 {text}"
        );
        assert!(!issues.partial(), "TC5");
        let mut merged = InputIssues::default();
        merged.merge(&issues);
        merged.merge(&issues);
        assert_eq!(merged.count(Skip::NoTimestamp), 20, "TC6");
        assert_eq!(
            merged
                .examples()
                .iter()
                .filter(|e| e.skip == Skip::NoTimestamp)
                .count(),
            InputIssues::EXAMPLES_PER_REASON,
            "TC7 merged examples stay bounded"
        );
        let long = "x".repeat(500);
        merged.record(Skip::Truncated, &file, 0, &long);
        assert!(merged.partial(), "TC8");
        assert!(
            merged.examples().last().unwrap().detail.chars().count()
                <= InputIssues::EXAMPLE_CHARS + 1,
            "TC9"
        );
    }
}
