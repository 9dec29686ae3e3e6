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

__all__ = ["backtest", "check_config", "Result", "TradeloopError", "ConfigError"]


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
    """One backtest: `summary` (summary.json as a dict), `fills` and `equity` (Arrow tables,
    prices and amounts as exact decimal128(38, 8)), and the CLI's files on request."""

    def __init__(self, native):
        self._native = native
        self.summary: dict = json.loads(native.summary_json)
        self.fills: pa.Table = pa.table(_Stream(native.fills_stream))
        self.equity: pa.Table = pa.table(_Stream(native.equity_stream))

    @property
    def wall_seconds(self) -> float:
        """How long the replay took."""
        return self._native.wall_seconds

    def write(self, directory: str | os.PathLike) -> Path:
        """Writes summary.json, fills.csv, equity.csv and report.html, as `tradeloop
        backtest --out` does."""
        path = Path(directory)
        self._native.write(str(path))
        return path

    def write_parquet(self, directory: str | os.PathLike) -> Path:
        """Writes fills.parquet and equity.parquet."""
        import pyarrow.parquet as pq

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.fills, path / "fills.parquet")
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
