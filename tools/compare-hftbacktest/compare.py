"""Runs tradeloop and hftbacktest on the same capture with the same strategies and settings, and
compares what they did (tools/compare-hftbacktest/README.md).

    python compare.py --tradeloop target/release/tradeloop \
        --capture ../shared/data/binance_usdm_btcusdt_20240808.gz --out target/compare-hftbacktest

For each strategy (`grid`, `momentum`) and queue model it writes, under --out:
`tradeloop-<run>/` (tradeloop's backtest output), `hbt-<run>.npz`, and in the end
`comparison.md`, `comparison.json` and `equity-<run>.png`. With --check it exits non-zero when
a figure is outside the tolerance stated in the README (the CI gate).
"""

import argparse
import csv
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Settings both engines get. Latencies in ns; fees in basis points.
ENTRY_NS = 10_000_000
RESPONSE_NS = 10_000_000
MAKER_BPS = 2
TAKER_BPS = 5
TICK, LOT = 0.1, 0.001
RUNS = {
    # run name: (strategy, queue model, period ms, grid half spread in ticks)
    "grid": ("grid", "risk_averse", 100, 1),
    "grid-power3": ("grid", "power:3", 100, 1),
    "grid-log": ("grid", "log", 100, 1),
    "grid-behind": ("grid", "risk_averse", 100, 2),
    "momentum": ("momentum", "risk_averse", 1000, 0),
}
GRID = dict(qty=0.001, max_position=0.01)
MOMENTUM = dict(qty=0.001, max_position=0.005)

# The CI gate (README "Tolerance"): relative differences of counts and volumes, absolute of
# PnL per unit of traded notional, and the position paths' correlation.
TOLERANCE = {
    "fills_rel": 0.10,
    "volume_rel": 0.10,
    "orders_rel": 0.05,
    "total_pnl_bps_of_value": 2.0,
    "position_corr": 0.90,
}


def convert(capture: Path, out: Path) -> Path:
    """hftbacktest's own converter (hftbacktest.data.utils.binancefutures.convert)."""
    npz = out / "usdm.npz"
    if not npz.exists():
        from hftbacktest.data.utils import binancefutures

        binancefutures.convert(str(capture), output_filename=str(npz), combined_stream=True)
    return npz


def feed_timing(capture: Path, npz: Path):
    """(offset, md_latency_ns): how far hftbacktest's converter moved the local clock, and the
    median venue -> us delay above the fastest (per message), which tradeloop's venue takes as
    its constant market-data latency."""
    data = np.load(npz)["data"]
    pairs = np.unique(np.stack([data["local_ts"], data["exch_ts"]], axis=1), axis=0)
    delay = pairs[:, 0] - pairs[:, 1]
    md = int(np.median(delay))
    first_raw = None
    with gzip.open(capture, "rt") as f:
        for line in f:
            body = line[20:]
            if '"bookTicker"' in body[:60]:
                continue  # the converter leaves the book ticker out
            first_raw = int(line[:19])
            break
    offset = int(data["local_ts"].min()) - first_raw
    return offset, md


def run_tradeloop(binary: Path, capture: Path, out: Path, strategy: str, queue: str, md_ns: int,
                  half_spread: int):
    env = dict(os.environ)
    env["TRADELOOP__STRATEGY__GRID__HALF_SPREAD_TICKS"] = str(max(half_spread, 1))
    env["TRADELOOP__EXECUTION__MD_LATENCY_US"] = str(md_ns // 1000)
    env["TRADELOOP__EXECUTION__ENTRY_LATENCY_US"] = str(ENTRY_NS // 1000)
    env["TRADELOOP__EXECUTION__RESPONSE_LATENCY_US"] = str(RESPONSE_NS // 1000)
    env["TRADELOOP__EXECUTION__MAKER_FEE_BPS"] = str(MAKER_BPS)
    env["TRADELOOP__EXECUTION__TAKER_FEE_BPS"] = str(TAKER_BPS)
    if queue == "risk_averse":
        env["TRADELOOP__EXECUTION__QUEUE_MODEL"] = '"risk_averse"'
    elif queue == "log":
        env["TRADELOOP__EXECUTION__QUEUE_MODEL"] = '"log"'
    else:
        env["TRADELOOP__EXECUTION__QUEUE_MODEL"] = "{ power = %s }" % float(queue.split(":")[1])
    cmd = [
        str(binary), "-c", str(HERE / "tradeloop.toml"), "backtest", "--strategy", strategy,
        "--data", str(capture), "--out", str(out),
    ]
    t = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"tradeloop failed ({' '.join(cmd)}):\n{r.stderr}")
    wall = time.monotonic() - t
    summary = json.loads((out / "summary.json").read_text())
    fills = []
    with open(out / "fills.csv") as f:
        for row in csv.DictReader(f):
            side = 1.0 if row["side"] == "buy" else -1.0
            fills.append((int(row["ts_ns"]), side, float(row["price"]), float(row["qty"]),
                          float(row["fee"])))
    equity = []
    with open(out / "equity.csv") as f:
        for row in csv.DictReader(f):
            equity.append((int(row["ts_ns"]), float(row["equity"])))
    return summary, np.array(fills).reshape(-1, 5), np.array(equity), wall


def run_hbt(npz: Path, out: Path, strategy: str, queue: str, period_ms: int, half_spread: int):
    import hbt_run

    hbt = hbt_run.build(npz, ENTRY_NS, RESPONSE_NS, MAKER_BPS, TAKER_BPS, TICK, LOT, queue)
    t = time.monotonic()
    period = period_ms * 1_000_000
    m, tk = MAKER_BPS / 1e4, TAKER_BPS / 1e4
    if strategy == "grid":
        steps, fills, sent, cancels, _, code = hbt_run.grid(
            hbt, GRID["qty"], half_spread, GRID["max_position"], period, m, tk)
    else:
        steps, fills, sent, cancels, _, code = hbt_run.momentum(
            hbt, MOMENTUM["qty"], MOMENTUM["max_position"], period, m, tk)
    wall = time.monotonic() - t
    if code != 1:
        sys.exit(f"hftbacktest stopped before the end of the data (elapse returned {code})")
    sv = hbt.state_values(0)
    own = {"balance": sv.balance, "fee": sv.fee, "position": hbt.position(0),
           "num_trades": sv.num_trades}
    hbt.close()
    np.savez(out, steps=steps, fills=fills)
    return steps, fills, int(sent), int(cancels), own, wall


def pnl(fills, mark):
    """(realised before fees, unrealised at `mark`, fees) by average cost, the same arithmetic
    for both engines' fills."""
    pos, avg, realized, fees = 0.0, 0.0, 0.0, 0.0
    for _, side, price, qty, fee in fills:
        fees += fee
        signed = side * qty
        if pos == 0 or (pos > 0) == (signed > 0):
            avg = (avg * abs(pos) + price * qty) / (abs(pos) + qty)
            pos += signed
        else:
            closed = min(qty, abs(pos))
            realized += closed * (price - avg) * (1 if pos > 0 else -1)
            pos += signed
            if abs(pos) < 1e-12:
                pos, avg = 0.0, 0.0
            elif (pos > 0) == (signed > 0):
                avg = price  # went through zero: the rest opened at this price
    return realized, pos * (mark - avg) if pos else 0.0, fees


def position_at(fills, times):
    """Position after the fills up to each time."""
    if len(fills) == 0:
        return np.zeros(len(times))
    order = np.argsort(fills[:, 0], kind="stable")
    ts = fills[order, 0]
    cum = np.cumsum(fills[order, 1] * fills[order, 3])
    idx = np.searchsorted(ts, times, side="right") - 1
    return np.where(idx >= 0, cum[np.clip(idx, 0, None)], 0.0)


def matched_fills(a, b, window_ns):
    """Fills of `a` with a fill of `b` of the same side and price within `window_ns` (each of
    `b` used once)."""
    used = np.zeros(len(b), dtype=bool)
    n = 0
    for ts, side, price, _, _ in a:
        cand = np.where(~used & (b[:, 1] == side) & (np.abs(b[:, 2] - price) < 1e-6)
                        & (np.abs(b[:, 0] - ts) <= window_ns))[0]
        if len(cand):
            used[cand[np.argmin(np.abs(b[cand, 0] - ts))]] = True
            n += 1
    return n


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def compare_run(name, tl, hbt, offset, period_ms):
    summary, tl_fills, tl_equity, tl_wall = tl
    steps, hb_fills, sent, cancels, own, hb_wall = hbt
    # hftbacktest's clock = the capture's local clock + offset: bring it back.
    steps = steps.copy()
    steps[:, 0] -= offset
    hb_fills = hb_fills.copy()
    if len(hb_fills):
        hb_fills[:, 0] -= offset
    times = steps[:, 0]
    mark = steps[-1, 4]
    period = period_ms * 1_000_000
    # tradeloop's fills as hftbacktest's loop would have seen them: at the next step.
    tl_seen = tl_fills.copy()
    if len(tl_seen):
        k = np.searchsorted(times, tl_seen[:, 0], side="left")
        tl_seen[:, 0] = times[np.clip(k, 0, len(times) - 1)]
    pos_tl = position_at(tl_seen, times)
    pos_hb = steps[:, 1]
    if np.std(pos_tl) > 0 and np.std(pos_hb) > 0:
        corr = float(np.corrcoef(pos_tl, pos_hb)[0, 1])
    else:
        corr = 1.0 if np.allclose(pos_tl, pos_hb) else 0.0
    same_pos = float(np.mean(np.abs(pos_tl - pos_hb) < LOT / 2))
    r_tl, u_tl, f_tl = pnl(tl_fills, mark)
    r_hb, u_hb, f_hb = pnl(hb_fills, mark)
    value_tl = float(np.sum(tl_fills[:, 2] * tl_fills[:, 3])) if len(tl_fills) else 0.0
    value_hb = float(np.sum(hb_fills[:, 2] * hb_fills[:, 3])) if len(hb_fills) else 0.0
    hb_total_own = own["balance"] + own["position"] * mark - own["fee"]
    row = {
        "run": name,
        "tradeloop": {
            "orders": summary["orders"], "cancels": summary["cancels"],
            "fills": len(tl_fills), "volume": float(np.sum(tl_fills[:, 3])) if len(tl_fills) else 0.0,
            "value": value_tl, "position": float(pos_tl[-1]) if len(pos_tl) else 0.0,
            "realized": r_tl, "fees": f_tl, "total_pnl": r_tl + u_tl - f_tl,
            "own_net_pnl": float(summary["stats"]["net_pnl"]), "wall_s": tl_wall,
        },
        "hftbacktest": {
            "orders": sent, "cancels": cancels,
            "fills": len(hb_fills), "volume": float(np.sum(hb_fills[:, 3])) if len(hb_fills) else 0.0,
            "value": value_hb, "position": float(pos_hb[-1]),
            "realized": r_hb, "fees": f_hb, "total_pnl": r_hb + u_hb - f_hb,
            "own_net_pnl": hb_total_own, "wall_s": hb_wall,
        },
        "position_corr": corr,
        "same_position_share": same_pos,
        "fills_matched_within_step": matched_fills(tl_seen, hb_fills, period // 2) if len(tl_seen) else 0,
    }
    t, h = row["tradeloop"], row["hftbacktest"]
    value = max(t["value"], h["value"], 1e-9)
    row["diff"] = {
        "orders_rel": rel(t["orders"], h["orders"]),
        "fills_rel": rel(t["fills"], h["fills"]),
        "volume_rel": rel(t["volume"], h["volume"]),
        "total_pnl_bps_of_value": abs(t["total_pnl"] - h["total_pnl"]) / value * 1e4,
    }
    # Equity over time, each engine's own: tradeloop's equity.csv, hftbacktest's state values.
    row["_equity"] = (
        tl_equity,
        np.stack([times, steps[:, 2] + steps[:, 1] * steps[:, 4] - steps[:, 3]], axis=1),
    )
    return row


def chart(row, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl, hb = row["_equity"]
    t0 = min(tl[0, 0], hb[0, 0])
    fig, ax = plt.subplots(2, 1, figsize=(10, 6), sharex=True,
                           gridspec_kw={"height_ratios": [3, 1]})
    ax[0].plot((tl[:, 0] - t0) / 1e9, tl[:, 1], label="tradeloop (equity.csv, 1 s)")
    ax[0].plot((hb[:, 0] - t0) / 1e9, hb[:, 1], label="hftbacktest (state values)", alpha=0.8)
    ax[0].set_ylabel("equity, USDT (after fees)")
    ax[0].set_title(f"{row['run']}: equity on binance_usdm_btcusdt_20240808")
    ax[0].legend()
    ax[0].grid(alpha=0.3)
    interp = np.interp(tl[:, 0], hb[:, 0], hb[:, 1])
    ax[1].plot((tl[:, 0] - t0) / 1e9, tl[:, 1] - interp, color="gray")
    ax[1].set_ylabel("difference")
    ax[1].set_xlabel("seconds from the first event")
    ax[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table(rows, md_ns, offset):
    out = []
    out.append(f"Settings in both: tick {TICK}, lot {LOT}, maker {MAKER_BPS} bps, taker {TAKER_BPS} bps, "
               f"entry {ENTRY_NS // 1_000_000} ms, response {RESPONSE_NS // 1_000_000} ms, "
               f"no partial fills (one lot a time); tradeloop's market-data latency {md_ns / 1e6:.3f} ms "
               f"(median feed delay above the fastest; hftbacktest moved the local clock by "
               f"{offset / 1e9:.6f} s).")
    out.append("")
    out.append("| run | engine | orders | cancels | fills | volume | value | final position | realised | fees | total PnL | own net PnL |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for eng in ("tradeloop", "hftbacktest"):
            e = r[eng]
            out.append(f"| {r['run']} | {eng} | {e['orders']} | {e['cancels']} | {e['fills']} | "
                       f"{e['volume']:.3f} | {e['value']:.2f} | {e['position']:+.3f} | "
                       f"{e['realized']:+.4f} | {e['fees']:.4f} | {e['total_pnl']:+.4f} | "
                       f"{e['own_net_pnl']:+.4f} |")
    out.append("")
    out.append("| run | orders Δ | fills Δ | volume Δ | total PnL Δ (bps of value) | position corr | same position | fills matched |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        d = r["diff"]
        n = max(r["tradeloop"]["fills"], 1)
        out.append(f"| {r['run']} | {d['orders_rel']:.1%} | {d['fills_rel']:.1%} | {d['volume_rel']:.1%} | "
                   f"{d['total_pnl_bps_of_value']:.2f} | {r['position_corr']:.3f} | "
                   f"{r['same_position_share']:.1%} | {r['fills_matched_within_step']}/{n} |")
    return "\n".join(out)


def check(rows):
    bad = []
    for r in rows:
        d = r["diff"]
        for k in ("fills_rel", "volume_rel", "orders_rel", "total_pnl_bps_of_value"):
            if d[k] > TOLERANCE[k]:
                bad.append(f"{r['run']}: {k} = {d[k]:.4f} above {TOLERANCE[k]}")
        if r["position_corr"] < TOLERANCE["position_corr"]:
            bad.append(f"{r['run']}: position_corr = {r['position_corr']:.3f} below {TOLERANCE['position_corr']}")
    return bad


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tradeloop", required=True, type=Path, help="the tradeloop binary")
    p.add_argument("--capture", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--runs", default=",".join(RUNS), help="comma-separated: " + ", ".join(RUNS))
    p.add_argument("--check", action="store_true", help="exit 1 outside the tolerance")
    p.add_argument("--md-latency-us", type=int,
                   help="tradeloop's market-data latency instead of the capture's median feed delay")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    npz = convert(a.capture, a.out)
    offset, md_ns = feed_timing(a.capture, npz)
    if a.md_latency_us is not None:
        md_ns = a.md_latency_us * 1000
    rows = []
    for name in a.runs.split(","):
        strategy, queue, period_ms, half_spread = RUNS[name]
        tl = run_tradeloop(a.tradeloop, a.capture, a.out / f"tradeloop-{name}", strategy, queue,
                           md_ns, half_spread)
        hb = run_hbt(npz, a.out / f"hbt-{name}.npz", strategy, queue, period_ms, half_spread)
        row = compare_run(name, tl, hb, offset, period_ms)
        chart(row, a.out / f"equity-{name}.png")
        rows.append(row)
    text = table(rows, md_ns, offset)
    print(text)
    (a.out / "comparison.md").write_text(text + "\n")
    (a.out / "comparison.json").write_text(json.dumps(
        {"md_latency_ns": md_ns, "clock_offset_ns": offset, "tolerance": TOLERANCE,
         "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]},
        indent=2) + "\n")
    if a.check:
        bad = check(rows)
        if bad:
            print("\noutside the tolerance:\n  " + "\n  ".join(bad), file=sys.stderr)
            sys.exit(1)
        print("\nwithin the tolerance", file=sys.stderr)


if __name__ == "__main__":
    main()
