#!/usr/bin/env bash
# Runs the README's and docs/src/getting-started.md's five-minute tour as written (durations
# shortened; opening the report in a browser left out), against the release binary, in a
# temporary directory, and checks that each step left what the tour says it leaves.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin tradeloop
T="$PWD/target/release/tradeloop"
DATA="$PWD/../shared/data/binance_usdm_btcusdt_20240808.gz"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp config.toml "$work/"
cd "$work"
export TRADELOOP__METRICS__ENABLED=false
echo "-- run"
"$T" run --duration 5 --no-histograms --plain 2>run.log
grep -q "^run ended after" run.log
echo "-- record"
"$T" record --venue sim --symbols BTCUSDT --out rec --duration 3 2>record.log
ls rec/*.gz >/dev/null
echo "-- backtest of the recording"
"$T" backtest --data rec/*.gz --out bt-rec 2>bt-rec.log
test -s bt-rec/report.html
if [ -f "$DATA" ]; then
    echo "-- backtest of the shared capture"
    "$T" backtest --data "$DATA" --out bt 2>bt.log
    for f in summary.json fills.csv report.html equity.svg position.svg price-BTCUSDT.svg; do
        test -s "bt/$f"
    done
    echo "-- convert"
    "$T" convert --data "$DATA" --out usdm.tle 2>convert.log
    echo "-- sweep"
    "$T" backtest --data usdm.tle --sweep fast=10,20,40 --sweep slow=100,200 --out sw 2>sweep.log
    test "$(wc -l < sw/sweep.csv)" -eq 7
else
    echo "skipped the shared-capture steps: ../shared/data is absent"
fi
echo "tour: every step ran as written"
