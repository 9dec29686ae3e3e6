//! Binance's local order-book procedure, as a small state machine per instrument. Hot path
//! (feed thread): one comparison per diff; no allocation.
//!
//! Spot (<https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams#how-to-manage-a-local-order-book-correctly>):
//! buffer diffs, take a REST snapshot, drop diffs with `u <= lastUpdateId`, the first applied
//! diff must have `U <= lastUpdateId + 1 <= u`, then each diff must have `U == previous u + 1`.
//!
//! USD-M (<https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/How-to-manage-a-local-order-book-correctly>):
//! drop diffs with `u < lastUpdateId`, the first applied diff must have
//! `U <= lastUpdateId <= u`, then each diff's `pu` must equal the previous diff's `u`.
//!
//! Any other diff is a gap: the book is discarded, marked stale, and resynced from a new
//! snapshot.

use super::parse::{DepthDiff, Market};

/// Where an instrument's book is in the procedure.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SyncState {
    /// Buffering diffs until a snapshot arrives.
    AwaitingSnapshot,
    /// Snapshot applied; waiting for the first diff that straddles it.
    AwaitingFirst {
        /// The snapshot's `lastUpdateId`.
        snapshot_id: u64,
    },
    /// In sync; `last_id` is the `u` of the last applied diff.
    Synced {
        /// Last applied `u`.
        last_id: u64,
    },
}

/// What to do with a diff.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DiffAction {
    /// Apply it to the book.
    Apply,
    /// Keep it until the snapshot arrives.
    Buffer,
    /// Older than the book: ignore it.
    DropOld,
    /// It does not follow the book: discard the book and resync.
    Gap {
        /// The id continuity required.
        expected: u64,
        /// The id the diff carried (`U` on spot, `pu` on USD-M).
        got: u64,
    },
}

/// The procedure for one instrument.
#[derive(Clone, Copy, Debug)]
pub struct BookSync {
    market: Market,
    state: SyncState,
}

impl BookSync {
    /// A book that has not been synced yet.
    #[must_use]
    pub const fn new(market: Market) -> Self {
        Self {
            market,
            state: SyncState::AwaitingSnapshot,
        }
    }

    /// Current state.
    #[must_use]
    pub const fn state(&self) -> SyncState {
        self.state
    }

    /// A snapshot was applied.
    pub fn on_snapshot(&mut self, last_update_id: u64) {
        self.state = SyncState::AwaitingFirst {
            snapshot_id: last_update_id,
        };
    }

    /// Discards the book (gap, reconnect): wait for a new snapshot.
    pub fn reset(&mut self) {
        self.state = SyncState::AwaitingSnapshot;
    }

    /// Decides what to do with a diff and advances the state.
    #[inline]
    pub fn on_diff(&mut self, d: &DepthDiff) -> DiffAction {
        let action = match (self.state, self.market) {
            (SyncState::AwaitingSnapshot, _) => DiffAction::Buffer,
            (SyncState::AwaitingFirst { snapshot_id: s }, Market::Spot) => {
                if d.last_id <= s {
                    DiffAction::DropOld
                } else if d.first_id <= s + 1 {
                    DiffAction::Apply
                } else {
                    DiffAction::Gap {
                        expected: s + 1,
                        got: d.first_id,
                    }
                }
            }
            (SyncState::AwaitingFirst { snapshot_id: s }, Market::UsdM) => {
                if d.last_id < s {
                    DiffAction::DropOld
                } else if d.first_id <= s {
                    DiffAction::Apply
                } else {
                    DiffAction::Gap {
                        expected: s,
                        got: d.first_id,
                    }
                }
            }
            (SyncState::Synced { last_id }, Market::Spot) => {
                if d.first_id == last_id + 1 {
                    DiffAction::Apply
                } else if d.last_id <= last_id {
                    DiffAction::DropOld
                } else {
                    DiffAction::Gap {
                        expected: last_id + 1,
                        got: d.first_id,
                    }
                }
            }
            (SyncState::Synced { last_id }, Market::UsdM) => match d.prev_last_id {
                Some(pu) if pu == last_id => DiffAction::Apply,
                _ if d.last_id <= last_id => DiffAction::DropOld,
                pu => DiffAction::Gap {
                    expected: last_id,
                    got: pu.unwrap_or(0),
                },
            },
        };
        match action {
            DiffAction::Apply => self.state = SyncState::Synced { last_id: d.last_id },
            DiffAction::Gap { .. } => self.state = SyncState::AwaitingSnapshot,
            DiffAction::Buffer | DiffAction::DropOld => {}
        }
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeloop_engine::instrument::InstrumentIndex;

    fn diff(first_id: u64, last_id: u64, pu: Option<u64>) -> DepthDiff {
        DepthDiff {
            instrument: InstrumentIndex(0),
            first_id,
            last_id,
            prev_last_id: pu,
            exch_ns: 0,
        }
    }

    #[test]
    fn spot_table() {
        let mut s = BookSync::new(Market::Spot);
        let cases = [
            (
                "TC0 buffered before snapshot",
                diff(90, 95, None),
                DiffAction::Buffer,
            ),
            (
                "TC1 (snapshot 100) old dropped",
                diff(96, 100, None),
                DiffAction::DropOld,
            ),
            (
                "TC2 first straddles 101",
                diff(99, 105, None),
                DiffAction::Apply,
            ),
            ("TC3 continuous", diff(106, 110, None), DiffAction::Apply),
            (
                "TC4 duplicate dropped",
                diff(106, 110, None),
                DiffAction::DropOld,
            ),
            (
                "TC5 gap",
                diff(112, 115, None),
                DiffAction::Gap {
                    expected: 111,
                    got: 112,
                },
            ),
            (
                "TC6 after gap: buffer",
                diff(116, 120, None),
                DiffAction::Buffer,
            ),
        ];
        for (i, (label, d, want)) in cases.into_iter().enumerate() {
            if i == 1 {
                s.on_snapshot(100);
            }
            assert_eq!(s.on_diff(&d), want, "{label}");
        }
        s.on_snapshot(200);
        assert_eq!(
            s.on_diff(&diff(205, 210, None)),
            DiffAction::Gap {
                expected: 201,
                got: 205
            },
            "TC7 first does not straddle"
        );
    }

    #[test]
    fn usdm_table() {
        let mut s = BookSync::new(Market::UsdM);
        s.on_snapshot(100);
        let cases = [
            (
                "TC0 u < lastUpdateId dropped",
                diff(90, 99, Some(89)),
                DiffAction::DropOld,
            ),
            (
                "TC1 first straddles (U <= 100 <= u)",
                diff(95, 100, Some(94)),
                DiffAction::Apply,
            ),
            (
                "TC2 pu == previous u",
                diff(101, 130, Some(100)),
                DiffAction::Apply,
            ),
            (
                "TC3 old repeated",
                diff(101, 130, Some(100)),
                DiffAction::DropOld,
            ),
            (
                "TC4 pu mismatch",
                diff(140, 150, Some(135)),
                DiffAction::Gap {
                    expected: 130,
                    got: 135,
                },
            ),
        ];
        for (label, d, want) in cases {
            assert_eq!(s.on_diff(&d), want, "{label}");
        }
        assert_eq!(s.state(), SyncState::AwaitingSnapshot);
    }
}
