#!/usr/bin/env bash
# Builds the Python package into a venv (maturin + PyO3) and runs its tests (python/README.md).
# The tests compare with the CLI's release binary (TRADELOOP_BIN, default target/release/tradeloop),
# which this script builds if missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$root/target/py-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.7,<2" "pyarrow>=14" \
    "pytest>=8" "ray>=2.9,<3"
[ -x "$root/target/release/tradeloop" ] || (cd "$root" && cargo build --release --quiet)
# Its own workspace and lockfile; its build directory stays under target/.
export CARGO_TARGET_DIR="$root/target/python"
cargo fmt --manifest-path "$here/Cargo.toml" -- --check
cargo clippy --quiet --manifest-path "$here/Cargo.toml" --all-targets -- -D warnings
(cd "$here" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop --release --quiet)
cd "$root"
"$venv/bin/python" -m pytest -q python/tests "$@"
