"""Sweeps the market maker's half spread and inventory skew on the shared Binance USD-M
capture and saves a heat map of net PnL (after fees) as sweep-heatmap.png.

    target/py-venv/bin/pip install matplotlib        # once, beside python/ci.sh's venv
    target/py-venv/bin/python python/examples/sweep.py [--ray ADDRESS]

Run from the repository root. With --ray, each combination is a task on that Ray cluster
(`auto` joins the one `ray start` made on this machine); the capture must be at the same
path on every node.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import tradeloop  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT.parent / "shared" / "data" / "binance_usdm_btcusdt_20240808.gz"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ray", metavar="ADDRESS", help="a Ray cluster's address, or auto")
    p.add_argument("--out", default="sweep-heatmap.png")
    a = p.parse_args()
    spreads, skews = [1, 2, 3, 4, 5], [0, 1, 2, 3]
    s = tradeloop.sweep({"half_spread_ticks": spreads, "skew_ticks": skews}, [CAPTURE],
                        config=ROOT / "examples" / "configs" / "market_maker.toml",
                        ray_address=a.ray)
    t = s.table.to_pylist()
    net = {(int(r["strategy.market_maker.half_spread_ticks"]),
            int(r["strategy.market_maker.skew_ticks"])): float(r["net_pnl"]) for r in t}
    grid = [[net[(sp, sk)] for sp in spreads] for sk in skews]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    im = ax.imshow(grid, cmap="RdYlGn", origin="lower", aspect="auto")
    ax.set_xticks(range(len(spreads)), [str(x) for x in spreads])
    ax.set_yticks(range(len(skews)), [str(x) for x in skews])
    ax.set_xlabel("half_spread_ticks")
    ax.set_ylabel("skew_ticks")
    for y, row in enumerate(grid):
        for x, v in enumerate(row):
            ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, label="net PnL after fees, USDT")
    best = t[0]
    ax.set_title(f"market_maker, 345 s of BTCUSDT perp: {s.tasks} backtests\n"
                 f"({s.mode}, {s.seconds:.2f} s); best net {float(best['net_pnl']):.2f} USDT",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out, dpi=100)
    print(f"{s.tasks} backtests in {s.seconds:.2f} s ({s.mode}); wrote {a.out}")


if __name__ == "__main__":
    main()
