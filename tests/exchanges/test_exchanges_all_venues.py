"""Issue 13's acceptance run: every exchange id ticktape captures, 3 symbols x every channel its venue
has (the shipped configs/all-venues.toml), through one ``capture run`` against one simulator serving
all ten on one port: exit 0, nothing dropped, every (exchange, symbol, table) the config asks for on
disk, each id's trades one for one with what the simulator sent, and ``/exchanges`` of a replay server
on the archive lists all ten ids."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from pathlib import Path

import msgspec
import pyarrow.dataset as ds
import pytest
from feeds_run_helpers import CaptureRun, Metrics, metric
from replay_proc import replay_server

from ticktape.engine.config import load
from ticktape.engine.settings import ExchangeConfig
from ticktape.exchanges import registry
from ticktape.sim.thread import SimulatorThread

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "all-venues.toml"


def sent_trade_ids(sim: SimulatorThread, exchange: str, channel: str, symbol: str) -> list[str]:
    """The trade ids of every trade frame the simulator delivered, in order (a BitMEX frame's ids
    are its action, so its inserts' ``trdMatchID`` are read from the frame)."""
    frames = [f for f in sim.sent(exchange, channel, symbol) if not f.fault]
    if exchange == "bitmex":
        return [t["trdMatchID"] for f in frames if b'"action":"insert"' in f.data
                for t in msgspec.json.decode(f.data)["data"]]
    return [str(i) for f in frames for i in f.ids]


def channels_of(exchange: str, cfg: ExchangeConfig, table: str) -> tuple[str, ...]:
    """The raw channels ``exchange`` reads for one normalized table."""
    return registry.raw_channels(exchange, msgspec.structs.replace(cfg, channels=[table]))


def rows_per_feed(table: Path) -> Counter[tuple[str, str]]:
    """Rows on disk per (exchange, symbol) of one table, in one scan."""
    t = ds.dataset(table, format="parquet", partitioning="hive").to_table(columns=["exchange", "symbol"])
    return Counter(zip(*(c.to_pylist() for c in t.columns), strict=True))


@pytest.mark.slow
def test_all_ten_ids_capture_every_channel_with_zero_loss(tmp_path: Path) -> None:
    cfg = load(CONFIG)
    assert set(cfg.exchanges) == set(registry.KNOWN) - {"synthetic"}
    exchanges = {e: {k: v for k, v in msgspec.structs.asdict(x).items() if k in ("symbols", "channels", "depth")}
                 for e, x in cfg.exchanges.items()}
    trade_ch = {e: channels_of(e, x, "trades")[0] for e, x in cfg.exchanges.items()}
    # before the market stops: each feed's raw channels (its trades 5 times) and each id's every table
    # (liquidations come when the market jumps: per id, not per symbol)
    need = {(e, s, ch): 5 if ch == trade_ch[e] else 1 for e, x in cfg.exchanges.items() for s in x.symbols
            for t in x.channels if t != "liquidations" for ch in channels_of(e, x, t)}

    def missing(m: Metrics) -> list[tuple[str, ...]]:
        return [k for k, n in need.items() if metric(m, "ticktape_feed_channel_messages_total", exchange=k[0],
                                                      symbol=k[1], channel=k[2]) < n] + [
            (e, t) for e, x in cfg.exchanges.items() for t in registry.data_types(e, x, raw=True)
            if metric(m, "ticktape_ring_written_records_total", exchange=e, table=t) == 0]

    t0 = time.monotonic()
    with SimulatorThread({e: x.symbols for e, x in cfg.exchanges.items()}, rate=30, seed=7) as sim:
        run = CaptureRun(tmp_path, sim, exchanges, raw=True)
        try:
            try:
                run.until(lambda m: not missing(m), timeout=150, what="every channel of every feed flowing")
            except AssertionError:
                raise AssertionError(f"not flowing: {missing(run.metrics())}") from None
            print(f"flowing after {time.monotonic() - t0:.1f} s")
            sim.call(lambda s: s.rates.update(dict.fromkeys(s.rates, 0.0)))  # the market stops: trades are final
            want = {(e, s): sent_trade_ids(sim, e, trade_ch[e], s) for e, x in cfg.exchanges.items() for s in x.symbols}
            frames = {(e, s): len([f for f in sim.sent(e, trade_ch[e], s) if not f.fault]) for e, s in want}
            run.until(lambda m: all(metric(m, "ticktape_feed_channel_messages_total", exchange=e, channel=trade_ch[e],
                                           symbol=s) >= n for (e, s), n in frames.items()),
                      what="every trade frame sent read")
            m = run.metrics()
            assert run.stop() == 0, run.output()[-3000:]
        finally:
            run.kill()
    took = time.monotonic() - t0
    assert metric(m, "ticktape_ring_dropped_records_total") == 0
    out = run.output()
    summary = json.loads(next(line for line in out.splitlines() if '"capture stopped"' in line))["summary"]
    assert all(not any(v.values()) for v in summary["losses"].values()), summary["losses"]
    tables = {t for e, x in cfg.exchanges.items() for t in registry.data_types(e, x, raw=True)}
    rows = {t: rows_per_feed(run.root / t) for t in tables}
    for e, x in cfg.exchanges.items():
        for s in x.symbols:
            kinds = {r["kind"] for r in run.events(e, s)}
            assert not kinds & {"drop", "gap", "malformed"}, (e, s, kinds)
            for table in registry.data_types(e, x, raw=True):
                if table != "liquidations":  # liquidations come when the market jumps: some, not each symbol's
                    assert rows[table][(e, s)] > 0, (e, s, table)
            got = [str(i) for i in run.load(e, "trades", s).column("id").to_pylist()]
            assert len(got) >= 5 and got == want[(e, s)], (e, s, len(got), len(want[(e, s)]))
        if "liquidations" in x.channels:
            assert sum(n for (ex, _), n in rows["liquidations"].items() if ex == e) > 0, e
    print(f"all venues: {took:.1f} s")

    with replay_server(run.root, tmp_path / "replay.log", cwd=tmp_path) as srv, \
            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/exchanges", timeout=60) as r:
        listed = {x["id"] for x in json.load(r)}
    assert listed == set(cfg.exchanges)
