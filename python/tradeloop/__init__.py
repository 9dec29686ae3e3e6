"""tradeloop from Python: backtests on the Rust engine, with a strategy registered in the
`tradeloop` binary (no Python on the per-event path, the GIL released while it runs), and
the results as Arrow tables.

    import tradeloop
    r = tradeloop.backtest(
        ["../shared/data/binance_usdm_btcusdt_20240808.gz"],
        config="examples/configs/market_maker.toml",
        params={"half_spread_ticks": 2},
        overrides={"execution.queue_model": "log"},
    )
    r.summary["stats"]["net_pnl"], r.fills.num_rows
    r.fills.to_pandas(); polars.from_arrow(r.equity)
    r.write("results/mm")            # the CLI's files: summary.json, fills.csv, ...
    r.write_parquet("results/mm")    # fills.parquet, equity.parquet
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa

from ._tradeloop import ConfigError, TradeloopError
from ._tradeloop import backtest as _backtest
from ._tradeloop import check_config as _check_config
from ._tradeloop import convert as _convert
from ._tradeloop import load_tle as _load_tle
from ._tradeloop import sweep_columns as _sweep_columns
from ._tradeloop import sweep_plan as _sweep_plan

__all__ = ["backtest", "check_config", "convert", "load_tle", "sweep", "Result", "Sweep",
           "TradeloopError", "ConfigError"]

SORT_BY = ("net-pnl", "max-drawdown", "sharpe", "sortino", "fills", "win-rate")


def _toml(value: Any) -> str:
    """A Python value as a TOML literal (what a `TRADELOOP__…` override holds)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a basic TOML string has JSON's escapes
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a configuration value")


def _overrides(strategy: str | None, params: Mapping[str, Any] | None,
               overrides: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    out = [(k, _toml(v)) for k, v in (overrides or {}).items()]
    if params:
        if strategy is None:
            raise TypeError("params need strategy= (the [strategy.NAME] section they go to)")
        out += [(f"strategy.{strategy}.{k}", _toml(v)) for k, v in params.items()]
    return out


class _Stream:
    """An Arrow stream for `pyarrow.table()` (the PyCapsule interface)."""

    def __init__(self, make):
        self._make = make

    def __arrow_c_stream__(self, requested_schema=None):
        return self._make()


class Result:
    """One backtest: `summary` (summary.json as a dict), `fills`, `orders` and `equity`
    (Arrow tables, prices and amounts as exact decimal128(38, 8)), and the CLI's files on
    request."""

    def __init__(self, native):
        self._native = native
        self.summary: dict = json.loads(native.summary_json)
        self.fills: pa.Table = pa.table(_Stream(native.fills_stream))
        self.orders: pa.Table = pa.table(_Stream(native.orders_stream))
        self.equity: pa.Table = pa.table(_Stream(native.equity_stream))

    @property
    def wall_seconds(self) -> float:
        """How long the replay took."""
        return self._native.wall_seconds

    def write(self, directory: str | os.PathLike) -> Path:
        """Writes summary.json, fills.csv, orders.csv, equity.csv and report.html, as
        `tradeloop backtest --out` does."""
        path = Path(directory)
        self._native.write(str(path))
        return path

    def write_parquet(self, directory: str | os.PathLike) -> Path:
        """Writes fills.parquet, orders.parquet and equity.parquet."""
        import pyarrow.parquet as pq

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.fills, path / "fills.parquet")
        pq.write_table(self.orders, path / "orders.parquet")
        pq.write_table(self.equity, path / "equity.parquet")
        return path

    def __repr__(self) -> str:
        s = self.summary
        return (f"<tradeloop.Result {s['strategy']['name']}: {s['fills']} fills, "
                f"net {s['stats']['net_pnl']}>")


def backtest(data: Iterable[str | os.PathLike], *, config: str | os.PathLike | None = None,
             strategy: str | None = None, params: Mapping[str, Any] | None = None,
             overrides: Mapping[str, Any] | None = None, from_ns: int | None = None,
             to_ns: int | None = None, allow_partial: bool = False) -> Result:
    """Runs one backtest, as `tradeloop -c CONFIG backtest --strategy NAME --data ...`.

    `config` defaults to `config.toml` in the working directory; `strategy` to its
    `[strategy] name`. `params` set keys of `[strategy.NAME]`; `overrides` set any dotted key
    (`{"execution.queue_model": "log", "risk.max_position": "0.02"}`). Errors raise
    `ConfigError` (the key named) or `TradeloopError` (the CLI's message)."""
    name = strategy
    if params and name is None:
        name = check_config(config, overrides=overrides)
    native = _backtest(
        [str(Path(p)) for p in data],
        config=None if config is None else str(config),
        strategy=name,
        overrides=_overrides(name, params, overrides),
        from_ns=from_ns,
        to_ns=to_ns,
        allow_partial=allow_partial,
    )
    return Result(native)


def check_config(config: str | os.PathLike | None = None, *,
                 overrides: Mapping[str, Any] | None = None) -> str:
    """Validates a configuration as `tradeloop config check` does; returns the strategy name.
    Raises `ConfigError` naming the key and the reason."""
    return _check_config(None if config is None else str(config),
                         overrides=_overrides(None, None, overrides))


def convert(data: Iterable[str | os.PathLike], out: str | os.PathLike, *,
            config: str | os.PathLike | None = None, from_ns: int | None = None,
            to_ns: int | None = None, zstd_level: int | None = None,
            allow_partial: bool = False) -> int:
    """Converts recordings and/or Tardis CSV to one `.tle` file, as `tradeloop convert`;
    returns the events written."""
    return _convert([str(Path(p)) for p in data], str(out),
                    config=None if config is None else str(config), from_ns=from_ns,
                    to_ns=to_ns, zstd_level=zstd_level, allow_partial=allow_partial)


def load_tle(path: str | os.PathLike) -> pa.Table:
    """A `.tle` file's records as an Arrow table, one row per record in file order:
    `recv_ns`, `exch_ns`, `kind` (trade, quote, book_delta, mark_price, liquidation,
    book_lost, nothing), `symbol`, `side`, `price`, `qty`, `bid_price`, `bid_qty`,
    `ask_price`, `ask_qty`, `index_price`, `funding_rate` (decimal128(38, 8)), `id` (trade
    id, update id, or a mark's next funding time), `flags` (a book level's), `end_of_step`."""
    return pa.table(_Stream(lambda: _load_tle(str(path))))


def _run_row(config: str, data: list[str], env: list[tuple[str, str]], strategy: str | None,
             from_ns, to_ns, allow_partial):
    """One sweep combination (a Ray task or a thread-pool job)."""
    from tradeloop._tradeloop import sweep_run

    return sweep_run(config, data, env, strategy=strategy, from_ns=from_ns, to_ns=to_ns,
                     allow_partial=allow_partial)


class Sweep:
    """A sweep's rows, ranked as the CLI ranks them: `table` (pyarrow: rank, one string
    column per swept key, then net_pnl … orders; amounts decimal128(38, 16), ratios float64),
    and `write_csv(path)`, which writes exactly what `tradeloop backtest --sweep` writes to
    sweep.csv."""

    def __init__(self, keys: list[str], rows: list[tuple[list[tuple[str, str]], list[str]]],
                 seconds: float, tasks: int, mode: str):
        self.keys = keys
        self._rows = rows
        self.seconds = seconds
        self.tasks = tasks
        self.mode = mode
        columns = _sweep_columns()
        data: dict[str, list] = {"rank": list(range(1, len(rows) + 1))}
        for i, k in enumerate(keys):
            data[k] = [combo[i][1] for combo, _ in rows]
        for j, c in enumerate(columns):
            cells = [fields[j] for _, fields in rows]
            if c in ("fills", "orders"):
                data[c] = pa.array([int(x) for x in cells], pa.int64())
            elif c in ("sharpe", "sortino", "win_rate"):
                data[c] = pa.array([float(x) if x else None for x in cells], pa.float64())
            else:
                from decimal import Decimal
                data[c] = pa.array([Decimal(x) for x in cells], pa.decimal128(38, 16))
        self.table: pa.Table = pa.table(data)

    def write_csv(self, path: str | os.PathLike) -> Path:
        """sweep.csv, byte for byte as the CLI writes it."""
        path = Path(path)
        lines = [",".join(["rank", *self.keys, *_sweep_columns()])]
        for rank, (combo, fields) in enumerate(self._rows, 1):
            lines.append(",".join([str(rank), *(v for _, v in combo), *fields]))
        path.write_text("\n".join(lines) + "\n")
        return path


def _sort_key(by: str):
    from decimal import Decimal

    def key(item):
        fields, sharpe, sortino, win_rate = item[1]
        if by == "net-pnl":
            return (False, -Decimal(fields[0]), 0.0)
        if by == "max-drawdown":
            return (False, Decimal(fields[4]), 0.0)
        if by == "fills":
            return (False, -Decimal(int(fields[8])), 0.0)
        ratio = {"sharpe": sharpe, "sortino": sortino, "win-rate": win_rate}[by]
        return (ratio is None, Decimal(0), -(ratio or 0.0))

    return key


def sweep(grid: Mapping[str, Iterable[Any]], data: Iterable[str | os.PathLike], *,
          config: str | os.PathLike = "config.toml", strategy: str | None = None,
          sort_by: str = "net-pnl", ray_address: str | None = None,
          use_ray: bool | None = None, workdir: str | os.PathLike | None = None,
          from_ns: int | None = None, to_ns: int | None = None,
          allow_partial: bool = False) -> Sweep:
    """One backtest per combination of `grid` (`{"half_spread_ticks": [1, 2],
    "risk.max_position": ["0.01", "0.02"]}`; a key without a dot is the strategy's), ranked
    by `sort_by` as `tradeloop backtest --sweep` ranks them, row for row the CLI's result.

    Raw inputs are converted once to a `.tle` file in `workdir` (default: a temporary
    directory; on a cluster, storage every node sees), which every run replays, as the CLI
    does. With `ray_address` (or `use_ray=True`, which starts or joins a local Ray), each
    combination is a Ray task; otherwise a thread pool over the local cores runs them (the
    engine releases the GIL)."""
    import tempfile
    import time
    from concurrent.futures import ThreadPoolExecutor

    if sort_by not in SORT_BY:
        raise ValueError(f"sort_by={sort_by!r}: one of {', '.join(SORT_BY)}")
    # Absolute paths: a Ray worker does not run in this process's working directory.
    config = str(Path(config).resolve())
    params = []
    for k, values in grid.items():
        vals = [v if isinstance(v, str) else _toml(v) for v in values]
        if not vals or any("," in v for v in vals):
            raise ValueError(f"grid[{k!r}]: one or more values without commas")
        params.append(f"{k}={','.join(vals)}")
    plan = _sweep_plan(config, params, strategy=strategy)
    keys = [k for k, _ in plan[0][0]] if plan else []
    paths = [str(Path(p).resolve()) for p in data]
    started = time.perf_counter()
    tmp = None
    if len(paths) == 1 and paths[0].endswith(".tle"):
        tle = paths[0]
    else:
        if workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="tradeloop-sweep-")
            workdir = tmp.name
        tle = str(Path(workdir).resolve() / "sweep-input.tle")
        convert(paths, tle, config=config, from_ns=from_ns, to_ns=to_ns,
                allow_partial=allow_partial)
    args = [(config, [tle], env, strategy, None, None, False) for _, env in plan]
    try:
        if ray_address is not None or use_ray:
            import ray

            if not ray.is_initialized():
                ray.init(address=ray_address, ignore_reinit_error=True)
            task = ray.remote(_run_row)
            results = ray.get([task.remote(*a) for a in args])
            mode = "ray"
        else:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                results = list(pool.map(lambda a: _run_row(*a), args))
            mode = "threads"
    finally:
        if tmp is not None:
            tmp.cleanup()
    ranked = sorted(zip([c for c, _ in plan], results), key=_sort_key(sort_by))
    rows = [(combo, list(r[0])) for combo, r in ranked]
    return Sweep(keys, rows, time.perf_counter() - started, len(args), mode)
