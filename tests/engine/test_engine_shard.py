"""``capture run CONFIG --shard K/N``: the fleet's feeds dealt over N shards by expected load,
the same on every host whatever the order of the config, each feed on exactly one shard; a bad
``--shard`` is one line, exit 2."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from ticktape.engine import shard
from ticktape.engine.cli import main
from ticktape.engine.config import from_dict

FLEET = {
    "binance-futures": {"symbols": [f"S{i}USDT" for i in range(9)], "channels": ["trades", "book_change"]},
    "bybit": {"symbols": ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"], "channels": ["trades"], "depth": 50},
    "hyperliquid": {"symbols": ["BTC", "ETH", "SOL"], "channels": ["trades", "book_snapshot", "derivative_ticker"]},
}


def _cfg(exchanges: dict[str, dict[str, object]]):
    return from_dict({"exchanges": exchanges}, "fleet.toml")


def _deal(exchanges: dict[str, dict[str, object]], n: int) -> list[set[tuple[str, str]]]:
    cfg = _cfg(exchanges)
    return [{(f.exchange, f.symbol) for f in shard.assign(cfg, k, n).feeds} for k in range(1, n + 1)]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16])
def test_every_feed_on_one_shard_evenly_and_the_same_whatever_the_order(n: int) -> None:
    shards = _deal(FLEET, n)
    every = {(ex, s) for ex, c in FLEET.items() for s in c["symbols"]}  # type: ignore[attr-defined]
    assert set().union(*shards) == every and sum(map(len, shards)) == len(every)
    loads = shard.assign(_cfg(FLEET), 1, n).loads
    heaviest = max(shard.feed_weight(c["channels"]) for c in FLEET.values())  # type: ignore[arg-type]
    assert max(loads) - min(loads) <= heaviest  # greedy largest-first: within one feed of even
    rng = random.Random(n)
    for _ in range(5):  # tables, symbols and channels in another order: the same assignment
        items = list(FLEET.items())
        rng.shuffle(items)
        shuffled = {ex: {**c, "symbols": rng.sample(c["symbols"], len(c["symbols"])),  # type: ignore[arg-type]
                         "channels": list(reversed(c["channels"]))} for ex, c in items}  # type: ignore[call-overload]
        assert _deal(shuffled, n) == shards


def test_heavier_channels_weigh_more() -> None:
    assert shard.feed_weight(["book_change"]) > shard.feed_weight(["book_snapshot"]) > shard.feed_weight(["trades"])
    # 9 diff-book feeds (12 each) and 7 lighter ones over 2 shards: the diff books are split, not stacked
    a, b = _deal(FLEET, 2)
    assert abs(sum(ex == "binance-futures" for ex, _ in a) - sum(ex == "binance-futures" for ex, _ in b)) <= 1


def test_the_shards_config_tags_files_and_its_log() -> None:
    cfg = _cfg(FLEET)
    a = shard.assign(cfg, 2, 3)
    sc = shard.shard_config(cfg, a)
    assert sc.archive.file_tag == "shard-2-of-3" and sc.log.file == "capture-shard-2-of-3.log"
    assert {(ex, s) for ex, c in sc.exchanges.items() for s in c.symbols} == {(f.exchange, f.symbol) for f in a.feeds}
    assert all(c.symbols for c in sc.exchanges.values())  # an exchange with no feed here is not started
    line = a.describe()
    assert line.startswith(f"shard 2/3: {len(a.feeds)} of 16 feeds, load {a.load} of {sum(a.loads)}")
    # the console prints it among the run lines (capture started, ready, ...)
    from ticktape.engine.console import ConsoleView

    shown = ConsoleView().line(logging.LogRecord("ticktape.supervisor", logging.INFO, __file__, 1, line, None, None))
    assert shown is not None and "run" in shown.plain and line in shown.plain


@pytest.mark.parametrize(("spec", "says"), [
    ("3/2", "--shard 3/2: K=3 is out of range (allowed 1..2)"),
    ("0/2", "--shard 0/2: K=0 is out of range (allowed 1..2)"),
    ("1/0", "--shard 1/0: N=0 is out of range (allowed 1..4096)"),
    ("half", "--shard 'half': give K/N with whole numbers, e.g. --shard 1/2"),
    ("1/17", "has 16 feeds (exchange, symbol), so N must be at most 16 (allowed 1..16)"),
])
def test_a_bad_shard_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str,
                                        says: str) -> None:
    cfg = tmp_path / "fleet.toml"
    cfg.write_text("\n".join(
        f'[exchanges.{ex}]\nsymbols = {c["symbols"]!r}\nchannels = {c["channels"]!r}\n'.replace("'", '"')
        for ex, c in FLEET.items()))
    assert main(["run", str(cfg), "--shard", spec]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err
