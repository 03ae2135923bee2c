"""The README's demo path: ``capture run`` with ``[simulator]`` starts the
built-in simulator, captures three exchanges from it over real websockets and
leaves an archive DuckDB can read; and the shipped configs stay valid."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import pytest
from demo_run import DemoCapture

from ticktape.engine.config import load

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo.toml", "seed.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load(REPO / "configs" / name)
    assert set(cfg.exchanges) == {"binance-futures", "bybit", "hyperliquid"}


@pytest.mark.slow
def test_capture_run_with_builtin_simulator(demo_capture: DemoCapture) -> None:
    root = demo_capture.root  # `capture run configs/demo.toml --duration 8` (tests/conftest.py), exit 0
    rows = duckdb.sql(
        f"select exchange, symbol, count(*) from read_parquet('{root}/trades/**/*.parquet') group by all"
    ).fetchall()
    got = {(e, s) for e, s, n in rows if n > 0}
    want = {("binance-futures", s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DYDXUSDT")}
    want |= {("bybit", s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")}
    want |= {("hyperliquid", s) for s in ("BTC", "ETH", "SOL")}
    assert got == want
    for table in ("book_ticker", "derivative_ticker"):  # issue 12's tables, on every venue
        rows = duckdb.sql(f"select distinct exchange from read_parquet('{root}/{table}/**/*.parquet')").fetchall()
        assert {e for (e,) in rows} == {"binance-futures", "bybit", "hyperliquid"}, table
    kinds = duckdb.sql(
        f"select distinct exchange, kind from read_parquet('{root}/events/**/*.parquet')"
    ).fetchall()
    # every exchange connected, and the planned shutdown is marked as a disconnect
    for ex in ("binance-futures", "bybit", "hyperliquid"):
        assert (ex, "connect") in kinds and (ex, "disconnect") in kinds
    assert "WRITE " in demo_capture.stdout


def test_demo_config_comes_from_package_data_and_moves_taken_ports() -> None:
    import socket

    from ticktape.engine.demo import demo_config

    cfg, notes = demo_config()
    assert cfg.source == "ticktape.configs/demo.toml" and cfg.archive.root == "./archive-demo"
    shipped = load(REPO / "configs" / "demo.toml")
    assert set(cfg.exchanges) == set(shipped.exchanges)
    with socket.socket() as s:  # hold the simulator's port: the demo picks another and says so
        s.bind(("127.0.0.1", cfg.simulator.port if cfg.simulator else 0))
        s.listen()
        moved, notes = demo_config(root="/tmp/x")
    assert moved.simulator is not None and cfg.simulator is not None
    assert moved.simulator.port != cfg.simulator.port and any("simulator port" in n for n in notes)
    assert {ex.url for ex in moved.exchanges.values()} == {f"ws://127.0.0.1:{moved.simulator.port}"}
    assert moved.archive.root == "/tmp/x"


@pytest.mark.parametrize("argv", [["run"], ["run", "--demo", "x.toml"], ["run", "x.toml", "--root", "r"]])
def test_run_needs_exactly_one_of_config_or_demo(argv: list[str], capture_cmd: list[str], tmp_path: Path) -> None:
    proc = subprocess.run([*capture_cmd, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
