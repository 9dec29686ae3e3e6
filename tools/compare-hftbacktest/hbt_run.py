"""hftbacktest's side of the comparison: the `grid` and `momentum` strategies of tradeloop's
examples crate (examples/src/grid.rs, examples/src/momentum.rs), written again against
hftbacktest's API, decision for decision, and run on hftbacktest's conversion of the same
capture.

    python hbt_run.py --data usdm.npz --strategy grid --out hbt-grid.npz \
        --entry-ns 10000000 --response-ns 10000000 --queue risk_averse

Writes an .npz with `steps` (one row per decision instant: ts, position, balance, fee, mid,
orders sent so far) and `fills` (the step at which the fill was seen, side, price, qty, fee),
and prints
a JSON summary. Fills are read back from the orders' states at each step: every order rests at
or takes at its own limit price (post-only quotes, IOCs at the touch), so a fill's price is the
order's price and its quantity the change of `qty - leaves_qty`.
"""

import argparse
import json

import numpy as np
from numba import njit
from numba.core import types
from numba.typed import Dict

from hftbacktest import GTX, LIMIT, BacktestAsset, HashMapMarketDepthBacktest

IOC = 3  # hftbacktest.order.IOC (not re-exported at the top level in 2.4)
MAX_STEPS = 1 << 16
MAX_FILLS = 1 << 16


@njit
def _collect_fills(hbt, seen, fills, nf, maker_fee, taker_fee):
    """Appends the fills visible in the orders' states since the last look; returns nf."""
    values = hbt.orders(0).values()
    while values.has_next():
        o = values.get()
        filled = o.qty - o.leaves_qty
        prev = seen.get(o.order_id, 0.0)
        if filled > prev + 1e-12 and nf < MAX_FILLS:
            q = filled - prev
            seen[o.order_id] = filled
            side = 1.0 if o.side == 1 else -1.0
            # A post-only order only ever makes; an IOC only ever takes.
            rate = maker_fee if o.time_in_force == GTX else taker_fee
            fills[nf, 0] = hbt.current_timestamp  # seen at this step
            fills[nf, 1] = side
            fills[nf, 2] = o.price
            fills[nf, 3] = q
            fills[nf, 4] = o.price * q * rate
            nf += 1
    return nf


@njit
def _record(hbt, steps, n, sent):
    sv = hbt.state_values(0)
    d = hbt.depth(0)
    steps[n, 0] = hbt.current_timestamp
    steps[n, 1] = hbt.position(0)
    steps[n, 2] = sv.balance
    steps[n, 3] = sv.fee
    steps[n, 4] = (d.best_bid + d.best_ask) / 2.0
    steps[n, 5] = sent


@njit
def grid(hbt, qty, half_spread, max_position, refresh_ns, maker_fee, taker_fee):
    """examples/src/grid.rs: every refresh, post-only quotes at ceil(mid - N) and floor(mid + N)
    ticks, orders at other prices cancelled."""
    steps = np.zeros((MAX_STEPS, 6))
    fills = np.zeros((MAX_FILLS, 5))
    seen = Dict.empty(key_type=types.uint64, value_type=types.float64)
    n, nf, sent, cancels, rejected = 0, 0, 0, 0, 0
    next_id = 1
    eps = 1e-9
    code = 0
    while n < MAX_STEPS:
        code = hbt.elapse(refresh_ns)
        if code != 0:
            break
        nf = _collect_fills(hbt, seen, fills, nf, maker_fee, taker_fee)
        values = hbt.orders(0).values()
        while values.has_next():
            o = values.get()
            if o.status == 2 and o.qty == o.leaves_qty:  # EXPIRED unfilled: post-only refused
                rejected += 1
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        bb, ba = depth.best_bid_tick, depth.best_ask_tick
        tick = depth.tick_size
        position = hbt.position(0)
        live = bb < ba and depth.best_bid_qty > 0 and depth.best_ask_qty > 0
        want_bid, want_ask = False, False
        buy, sell = 0, 0
        if live:
            s = bb + ba
            buy = min((s - 2 * half_spread + 1) // 2, ba - 1)
            sell = max((s + 2 * half_spread) // 2, bb + 1)
            want_bid = position < max_position - eps
            want_ask = position > -max_position + eps
        have_bid, have_ask = False, False
        values = hbt.orders(0).values()
        while values.has_next():
            o = values.get()
            if o.side == 1:
                if want_bid and o.price_tick == buy:
                    have_bid = True
                    continue
            else:
                if want_ask and o.price_tick == sell:
                    have_ask = True
                    continue
            if o.cancellable:
                hbt.cancel(0, o.order_id, False)
                cancels += 1
        if want_bid and not have_bid:
            hbt.submit_buy_order(0, next_id, buy * tick, qty, GTX, LIMIT, False)
            next_id += 1
            sent += 1
        if want_ask and not have_ask:
            hbt.submit_sell_order(0, next_id, sell * tick, qty, GTX, LIMIT, False)
            next_id += 1
            sent += 1
        _record(hbt, steps, n, sent)
        n += 1
    # Let what is in flight arrive, as tradeloop's backtest does at the end.
    hbt.elapse(refresh_ns)
    nf = _collect_fills(hbt, seen, fills, nf, maker_fee, taker_fee)
    _record(hbt, steps, n, sent)
    n += 1
    return steps[:n], fills[:nf], sent, cancels, rejected, code


@njit
def momentum(hbt, qty, max_position, interval_ns, maker_fee, taker_fee):
    """examples/src/momentum.rs: every interval, an IOC at the touch in the direction the mid
    moved since the last look."""
    steps = np.zeros((MAX_STEPS, 6))
    fills = np.zeros((MAX_FILLS, 5))
    seen = Dict.empty(key_type=types.uint64, value_type=types.float64)
    n, nf, sent, missed = 0, 0, 0, 0
    next_id = 1
    eps = 1e-9
    last_mid2 = -1
    code = 0
    while n < MAX_STEPS:
        code = hbt.elapse(interval_ns)
        if code != 0:
            break
        nf = _collect_fills(hbt, seen, fills, nf, maker_fee, taker_fee)
        values = hbt.orders(0).values()
        while values.has_next():
            o = values.get()
            if o.status == 2 and o.qty == o.leaves_qty:
                missed += 1
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        bb, ba = depth.best_bid_tick, depth.best_ask_tick
        tick = depth.tick_size
        live = bb < ba and depth.best_bid_qty > 0 and depth.best_ask_qty > 0
        if live:
            mid2 = bb + ba
            if last_mid2 >= 0:
                position = hbt.position(0)
                if mid2 > last_mid2 and position < max_position - eps:
                    hbt.submit_buy_order(0, next_id, ba * tick, qty, IOC, LIMIT, False)
                    next_id += 1
                    sent += 1
                elif mid2 < last_mid2 and position > -max_position + eps:
                    hbt.submit_sell_order(0, next_id, bb * tick, qty, IOC, LIMIT, False)
                    next_id += 1
                    sent += 1
            last_mid2 = mid2
        _record(hbt, steps, n, sent)
        n += 1
    hbt.elapse(interval_ns)
    nf = _collect_fills(hbt, seen, fills, nf, maker_fee, taker_fee)
    _record(hbt, steps, n, sent)
    n += 1
    return steps[:n], fills[:nf], sent, 0, missed, code


def build(data, entry_ns, response_ns, maker_bps, taker_bps, tick, lot, queue):
    """A one-asset backtest: linear contract, constant order latency, fees on traded value,
    no partial fills (the strategies trade one lot at a time, so nothing fills partly in
    either engine, and hftbacktest 2.4's partial-fill exchange stops with InvalidOrderStatus
    on touch quotes: nkaz001/hftbacktest#301, #312)."""
    asset = (
        BacktestAsset()
        .data([str(data)])
        .linear_asset(1.0)
        .constant_order_latency(entry_ns, response_ns)
        .trading_value_fee_model(maker_bps / 1e4, taker_bps / 1e4)
        .tick_size(tick)
        .lot_size(lot)
        .no_partial_fill_exchange()
    )
    if queue == "risk_averse":
        asset = asset.risk_adverse_queue_model()
    elif queue == "log":
        asset = asset.log_prob_queue_model()
    elif queue.startswith("power:"):
        asset = asset.power_prob_queue_model(float(queue.split(":", 1)[1]))
    else:
        raise SystemExit(f"queue model {queue!r}: expected risk_averse, power:N or log")
    return HashMapMarketDepthBacktest([asset])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="hftbacktest .npz (its converter's output)")
    p.add_argument("--strategy", choices=["grid", "momentum"], required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--entry-ns", type=int, default=10_000_000)
    p.add_argument("--response-ns", type=int, default=10_000_000)
    p.add_argument("--queue", default="risk_averse", help="risk_averse | power:N | log")
    p.add_argument("--maker-bps", type=float, default=2.0)
    p.add_argument("--taker-bps", type=float, default=5.0)
    p.add_argument("--tick", type=float, default=0.1)
    p.add_argument("--lot", type=float, default=0.001)
    p.add_argument("--qty", type=float, default=0.001)
    p.add_argument("--half-spread-ticks", type=int, default=1)
    p.add_argument("--max-position", type=float, default=0.01)
    p.add_argument("--period-ms", type=int, default=100)
    a = p.parse_args()

    hbt = build(a.data, a.entry_ns, a.response_ns, a.maker_bps, a.taker_bps, a.tick, a.lot, a.queue)
    period_ns = a.period_ms * 1_000_000
    maker, taker = a.maker_bps / 1e4, a.taker_bps / 1e4
    if a.strategy == "grid":
        steps, fills, sent, cancels, refused, code = grid(
            hbt, a.qty, a.half_spread_ticks, a.max_position, period_ns, maker, taker
        )
    else:
        steps, fills, sent, cancels, refused, code = momentum(
            hbt, a.qty, a.max_position, period_ns, maker, taker
        )
    sv = hbt.state_values(0)
    summary = {
        "end_code": int(code),
        "orders": int(sent),
        "cancels": int(cancels),
        "unfilled_refused_or_missed": int(refused),
        "fills": int(len(fills)),
        "num_trades": int(sv.num_trades),
        "trading_volume": float(sv.trading_volume),
        "trading_value": float(sv.trading_value),
        "position": float(hbt.position(0)),
        "balance": float(sv.balance),
        "fee": float(sv.fee),
    }
    hbt.close()
    np.savez(a.out, steps=steps, fills=fills)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
