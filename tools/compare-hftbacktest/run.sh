#!/usr/bin/env bash
# tradeloop against hftbacktest on the shared Binance USD-M capture (README.md here).
# Creates a venv under target/, installs hftbacktest 2.4.x and matplotlib from PyPI, builds the
# release binary if needed, and runs compare.py. Extra arguments go to compare.py (--check makes
# it fail outside the tolerance; --runs grid,momentum picks runs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
capture="${CAPTURE:-$root/../shared/data/binance_usdm_btcusdt_20240808.gz}"
out="${OUT:-$root/target/compare-hftbacktest}"
venv="$root/target/compare-venv"

if [ ! -f "$capture" ]; then
    echo "no capture at $capture (../shared/data beside the repository, or CAPTURE=...)" >&2
    exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
(cd "$root" && cargo build --release --quiet)
"$venv/bin/python" "$here/compare.py" --tradeloop "$root/target/release/tradeloop" \
    --capture "$capture" --out "$out" "$@"
