#!/usr/bin/env bash
# CI latency gate: instructions per frame on the hot path, counted by callgrind.
#
#   .ci/instructions-gate.sh            compare with .ci/instructions-baseline, fail on growth
#   .ci/instructions-gate.sh --update   measure and write the baseline (commit the file)
#
# `tradeloop hot-path --frames N` runs a seeded, single-threaded workload through the whole hot
# path (Binance frame → parse and book sync → NORMAL lane → engine → strategy → risk → order
# pool → gateway → fill on HIGH → position) on a simulated clock. It runs twice under
# `valgrind --tool=callgrind`, with N1 and N2 frames; (Ir(N2) − Ir(N1)) / (N2 − N1) is the
# instructions one frame costs, with set-up, frame generation and warm-up cancelled out.
# Instruction counts do not depend on machine load (two runs differ by a few hundred
# instructions in 500 million), so the gate can be strict where wall-clock timings cannot.
#
# The figure depends on the compiler: after a toolchain change, re-run with --update.
# TRADELOOP_GATE_THRESHOLD_PCT (default 10) is the growth allowed before failing.
set -euo pipefail
cd "$(dirname "$0")/.."

BASELINE=.ci/instructions-baseline
THRESHOLD_PCT=${TRADELOOP_GATE_THRESHOLD_PCT:-10}
N1=10000
N2=40000
OUT=target/ci
mkdir -p "$OUT"

update=false
case "${1:-}" in
    --update) update=true ;;
    "") ;;
    *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

if ! command -v valgrind >/dev/null; then
    echo "valgrind not found: installing it from Debian's packages"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq valgrind >/dev/null
fi

cargo build --release --quiet --bin tradeloop
BIN=target/release/tradeloop

count() {
    local n=$1 file="$OUT/callgrind.$1.out"
    valgrind --tool=callgrind --callgrind-out-file="$file" \
        "$BIN" -c config.toml hot-path --frames "$n" > "$OUT/hot-path.$n.json" 2> "$OUT/callgrind.$n.log" || {
        echo "hot-path --frames $n failed under callgrind:" >&2
        tail -20 "$OUT/callgrind.$n.log" >&2
        exit 1
    }
    local ir
    ir=$(awk '/^summary:/ { print $2 }' "$file")
    [ -n "$ir" ] || { echo "no summary line in $file" >&2; exit 1; }
    echo "$ir"
}

ir1=$(count $N1)
ir2=$(count $N2)
per_frame=$(( (ir2 - ir1) / (N2 - N1) ))
echo "hot path: $ir1 instructions for $N1 frames, $ir2 for $N2 frames"
echo "hot path: $per_frame instructions per frame (report: $OUT/hot-path.$N2.json)"

if $update; then
    {
        echo "# Instructions per frame of \`tradeloop hot-path\` under callgrind; written by"
        echo "# .ci/instructions-gate.sh --update. Compiler: $(rustc --version)."
        echo "# $(valgrind --version); frames $N1 and $N2."
        echo "instructions_per_frame=$per_frame"
    } > "$BASELINE"
    echo "baseline written to $BASELINE"
    exit 0
fi

[ -f "$BASELINE" ] || { echo "no baseline at $BASELINE: run $0 --update and commit it" >&2; exit 1; }
base=$(awk -F= '/^instructions_per_frame=/ { print $2 }' "$BASELINE")
[ -n "$base" ] || { echo "$BASELINE has no instructions_per_frame line" >&2; exit 1; }
limit=$(( base + base * THRESHOLD_PCT / 100 ))
change_pct=$(awk -v a="$per_frame" -v b="$base" 'BEGIN { printf "%+.1f", (a - b) * 100 / b }')
echo "baseline: $base instructions per frame; now $per_frame ($change_pct %); limit $limit (+$THRESHOLD_PCT %)"
if [ "$per_frame" -gt "$limit" ]; then
    echo "FAIL: the hot path grew by more than $THRESHOLD_PCT % in instructions per frame." >&2
    echo "Profile: callgrind_annotate $OUT/callgrind.$N2.out | head -60" >&2
    echo "If the growth is intended, run .ci/instructions-gate.sh --update and commit the baseline." >&2
    exit 1
fi
if [ "$per_frame" -lt $(( base - base * THRESHOLD_PCT / 100 )) ]; then
    echo "note: more than $THRESHOLD_PCT % below the baseline; consider --update to tighten the gate"
fi
echo "instructions gate: pass"
