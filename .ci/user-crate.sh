#!/usr/bin/env bash
# A trader's own crate outside the workspace (.ci/user-crate/, copied to a temporary folder),
# depending on tradeloop by path and using only its public API: its binary is tradeloop's
# command line with the crate's own strategy registered, and a second binary runs the same
# strategy through the library's Backtest builder. Both backtest the shared USD-M capture, and
# their fills.csv must be byte-identical. Builds in the workspace's target folder (debug) with
# the workspace's Cargo.lock, so the dependencies already built are reused.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
data="${TRADELOOP_SHARED_DATA:-$repo/../shared/data}/binance_usdm_btcusdt_20240808.gz"
if [ ! -f "$data" ]; then
    echo "user crate: skipped, $data is absent"
    exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$repo/.ci/user-crate/." "$work/"
sed "s|@REPO@|$repo|" "$work/Cargo.toml.in" > "$work/Cargo.toml"
rm "$work/Cargo.toml.in"
cp "$repo/Cargo.lock" "$work/Cargo.lock"
export CARGO_TARGET_DIR="$repo/target"
cd "$work"
cargo build --quiet --bins --offline 2>/dev/null || cargo build --quiet --bins
# The shipped config with the user's strategy selected and configured.
sed 's|^name = "ma_cross"|name = "timed_taker"|' "$repo/config.toml" > config.toml
cat >> config.toml <<'TOML'

[strategy.timed_taker]
symbol = "BTCUSDT"
every_ms = 2000
qty = "0.002"
TOML
bin="$CARGO_TARGET_DIR/debug"
"$bin/tl-user" -c config.toml config check
if TRADELOOP__STRATEGY__TIMED_TAKER__EVERY_MS=0 "$bin/tl-user" -c config.toml config check 2> err.txt; then
    echo "user crate: a bad parameter was accepted"; exit 1
fi
grep -q 'strategy.timed_taker.every_ms' err.txt || { cat err.txt; echo "user crate: the bad key is not named"; exit 1; }
"$bin/tl-user" -c config.toml backtest --data "$data" --out cli-out
"$bin/lib_api" config.toml "$data" lib-out
cmp cli-out/fills.csv lib-out/fills.csv
grep -q '"name": "timed_taker"' cli-out/summary.json
echo "user crate: the CLI and the library backtest agree ($(($(wc -l < cli-out/fills.csv) - 1)) fills)"
