"""The Python package against the CLI on the shared USD-M capture: the same files byte for
byte, the documented Arrow schema, tables that agree with the summary, and the CLI's errors
as exceptions."""

import csv
import os
import subprocess
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pytest

import tradeloop

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT.parent / "shared" / "data" / "binance_usdm_btcusdt_20240808.gz"
MM = ROOT / "examples" / "configs" / "market_maker.toml"
CLI = Path(os.environ.get("TRADELOOP_BIN", ROOT / "target" / "release" / "tradeloop"))

needs_capture = pytest.mark.skipif(not CAPTURE.exists(), reason=f"no {CAPTURE} (../shared)")

FILLS_SCHEMA = pa.schema([
    pa.field("ts_ns", pa.int64(), nullable=False),
    pa.field("client_order_id", pa.uint64(), nullable=False),
    pa.field("symbol", pa.string(), nullable=False),
    pa.field("side", pa.string(), nullable=False),
    pa.field("price", pa.decimal128(38, 8), nullable=False),
    pa.field("qty", pa.decimal128(38, 8), nullable=False),
    pa.field("fee", pa.decimal128(38, 8), nullable=False),
    pa.field("maker", pa.bool_(), nullable=False),
])


def cli_backtest(out: Path, *args: str, env: dict | None = None) -> None:
    subprocess.run([str(CLI), "-c", str(MM), "backtest", "--data", str(CAPTURE), "--out",
                    str(out), *args], check=True, capture_output=True, cwd=ROOT,
                   env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def mm():
    return tradeloop.backtest([CAPTURE], config=MM)


@needs_capture
def test_files_equal_the_clis_byte_for_byte(mm, tmp_path):
    cli_backtest(tmp_path / "cli")
    mm.write(tmp_path / "py")
    for name in ("fills.csv", "orders.csv", "equity.csv"):
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name


@needs_capture
def test_arrow_tables_have_the_documented_schema_and_agree_with_the_csv(mm, tmp_path):
    assert mm.fills.schema == FILLS_SCHEMA
    assert mm.equity.schema.names == ["ts_ns", "equity", "mark_BTCUSDT", "mark_ETHUSDT"]
    assert all(t == pa.decimal128(38, 8) for t in mm.equity.schema.types[1:])
    mm.write(tmp_path)
    with open(tmp_path / "fills.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == mm.fills.num_rows == mm.summary["fills"] > 100
    table = mm.fills.to_pylist()
    for row, arrow in zip(rows, table):
        assert int(row["ts_ns"]) == arrow["ts_ns"]
        assert row["side"] == arrow["side"]
        assert Decimal(row["price"]) == arrow["price"]
        assert Decimal(row["qty"]) == arrow["qty"]
        assert Decimal(row["fee"]) == arrow["fee"]
        assert (row["maker"] == "true") == arrow["maker"]


@needs_capture
def test_the_orders_table_holds_every_order_once_in_its_last_state(mm):
    o = mm.orders
    assert o.num_rows == mm.summary["orders"] > 100
    assert len(set(o.column("client_order_id").to_pylist())) == o.num_rows
    assert o.schema.field("filled").type == pa.decimal128(38, 8)
    assert set(o.column("status").to_pylist()) <= {"filled", "canceled", "rejected", "open",
                                                   "partially_filled"}
    assert all(o.column("post_only").to_pylist()), "the market maker only posts"
    filled = sum(o.column("filled").to_pylist())
    assert filled == sum(mm.fills.column("qty").to_pylist())


@needs_capture
def test_tables_add_up_to_the_summary(mm):
    signed = sum((r["qty"] if r["side"] == "buy" else -r["qty"]) for r in mm.fills.to_pylist())
    assert signed == Decimal(mm.summary["positions"][0]["qty"])
    last = mm.equity.column("equity")[-1].as_py()
    assert last == Decimal(mm.summary["stats"]["net_pnl"]).quantize(Decimal("1e-8"))
    assert mm.summary["stats"]["pnl_check"] is True


@needs_capture
def test_params_and_overrides_equal_the_clis_environment_overrides(tmp_path):
    r = tradeloop.backtest([CAPTURE], config=MM, strategy="market_maker",
                           params={"half_spread_ticks": 2},
                           overrides={"execution.queue_model": "log"})
    cli_backtest(tmp_path / "cli", env={"TRADELOOP__STRATEGY__MARKET_MAKER__HALF_SPREAD_TICKS": "2",
                                        "TRADELOOP__EXECUTION__QUEUE_MODEL": '"log"'})
    r.write(tmp_path / "py")
    assert (tmp_path / "py" / "fills.csv").read_bytes() == (tmp_path / "cli" / "fills.csv").read_bytes()
    default = tradeloop.backtest([CAPTURE], config=MM)
    assert r.summary["fills"] != default.summary["fills"], "the overrides changed the run"


@needs_capture
def test_parquet_round_trips(mm, tmp_path):
    import pyarrow.parquet as pq

    mm.write_parquet(tmp_path)
    assert pq.read_table(tmp_path / "fills.parquet").equals(mm.fills)
    assert pq.read_table(tmp_path / "equity.parquet").equals(mm.equity)
    assert pq.read_table(tmp_path / "orders.parquet").equals(mm.orders)


def test_a_bad_parameter_names_the_key():
    with pytest.raises(tradeloop.ConfigError, match=r"strategy\.market_maker\.qty.*lot size"):
        tradeloop.backtest([CAPTURE], config=MM, params={"qty": "0.0015"})


def test_a_misspelt_override_names_the_key():
    with pytest.raises(tradeloop.ConfigError, match="queue_modle"):
        tradeloop.check_config(MM, overrides={"execution.queue_modle": "log"})


def test_an_unknown_strategy_is_named():
    with pytest.raises(tradeloop.TradeloopError, match="no_such_strategy"):
        tradeloop.backtest([CAPTURE], config=MM, strategy="no_such_strategy")


def test_unreadable_input_is_named(tmp_path):
    missing = tmp_path / "missing.gz"
    with pytest.raises(tradeloop.TradeloopError, match="missing.gz"):
        tradeloop.backtest([missing], config=MM)
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"\x00\x01 not a recording\n")
    with pytest.raises(tradeloop.TradeloopError, match="junk.txt"):
        tradeloop.backtest([junk], config=MM)


def test_check_config_returns_the_strategy():
    assert tradeloop.check_config(MM) == "market_maker"


def cli_sweep(out: Path, *args: str) -> Path:
    subprocess.run([str(CLI), "-c", str(MM), "backtest", "--data", str(CAPTURE), "--out",
                    str(out), *args], check=True, capture_output=True, cwd=ROOT)
    return out / "sweep.csv"


GRID = {"half_spread_ticks": [1, 2, 3], "skew_ticks": [0, 1]}
CLI_GRID = ["--sweep", "half_spread_ticks=1,2,3", "--sweep", "skew_ticks=0,1"]


@needs_capture
@pytest.mark.parametrize("sort_by", ["net-pnl", "fills"])
def test_a_local_sweep_equals_the_clis_row_for_row(tmp_path, sort_by):
    s = tradeloop.sweep(GRID, [CAPTURE], config=MM, sort_by=sort_by)
    assert s.mode == "threads" and s.tasks == 6
    want = cli_sweep(tmp_path / "cli", *CLI_GRID, "--sort-by", sort_by)
    assert s.write_csv(tmp_path / "py.csv").read_bytes() == want.read_bytes()
    t = s.table
    assert t.column_names[:3] == ["rank", "strategy.market_maker.half_spread_ticks",
                                  "strategy.market_maker.skew_ticks"]
    assert t.schema.field("net_pnl").type == pa.decimal128(38, 16)
    assert t.column("rank").to_pylist() == list(range(1, 7))


@needs_capture
def test_a_sweep_on_a_local_ray_cluster_equals_the_clis(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
             ignore_reinit_error=True)
    try:
        s = tradeloop.sweep(GRID, [CAPTURE], config=MM, use_ray=True)
    finally:
        ray.shutdown()
    assert s.mode == "ray" and s.tasks == 6
    want = cli_sweep(tmp_path / "cli", *CLI_GRID)
    assert s.write_csv(tmp_path / "ray.csv").read_bytes() == want.read_bytes()


def test_a_bad_sweep_value_names_the_combination():
    with pytest.raises(tradeloop.ConfigError, match="half_spread_ticks"):
        tradeloop.sweep({"half_spread_ticks": ["x"]}, [CAPTURE], config=MM)
    with pytest.raises(ValueError, match="sort_by"):
        tradeloop.sweep(GRID, [CAPTURE], config=MM, sort_by="profit")


@needs_capture
def test_load_tle_gives_every_event_the_backtest_replays(tmp_path):
    tle = tmp_path / "usdm.tle"
    written = tradeloop.convert([CAPTURE], tle, config=MM)
    t = tradeloop.load_tle(tle)
    assert t.num_rows == written > 0
    kinds = set(t.column("kind").to_pylist())
    assert {"trade", "quote", "book_delta"} <= kinds
    events = sum(1 for k in t.column("kind").to_pylist() if k not in ("nothing", "book_lost"))
    r = tradeloop.backtest([tle], config=MM)
    assert events == r.summary["market_events"]
    trades = t.filter(pa.compute.equal(t.column("kind"), "trade"))
    assert trades.column("price").null_count == 0
    assert all(s == "BTCUSDT" for s in trades.column("symbol").to_pylist())
    assert trades.schema.field("price").type == pa.decimal128(38, 8)
    assert t.column("end_of_step")[-1].as_py() is True, "the file ends on a whole step"


def test_load_tle_refuses_a_file_that_is_not_one(tmp_path):
    junk = tmp_path / "junk.tle"
    junk.write_bytes(b"not a tle file at all")
    with pytest.raises(tradeloop.TradeloopError, match="junk.tle"):
        tradeloop.load_tle(junk)
