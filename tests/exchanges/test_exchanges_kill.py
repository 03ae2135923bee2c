"""kill -9 of a real ingest process, then a restart on the same rings (what the
supervisor does): markers for the cut, books resynced and right, no trade twice."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest

from ticktape.engine.config import ExchangeConfig, LogConfig
from ticktape.exchanges import registry
from ticktape.ipc import ringset
from ticktape.ipc.ring import new_ring_name
from ticktape.ipc.schemas import BOOK_BID, EVENT_KINDS
from ticktape.ipc.stats import FeedStats
from ticktape.sim.thread import SimulatorThread

OPTS = {"backoff_base": 0.05, "backoff_max": 0.2, "rest_interval": 0.02}


def drain(ring):
    _, views = ring.peek()
    out = np.concatenate(views) if views else np.zeros(0, ring.dtype)
    ring.commit(ring.write_seq)
    return out


def peek_all(ring):
    """Every record in the ring, left there (nothing committed)."""
    _, views = ring.peek()
    return np.concatenate(views) if views else np.zeros(0, ring.dtype)


def snapshot_groups(rows, sid):
    sub = rows[rows["symbol"] == sid]
    return len(np.flatnonzero(np.diff(np.r_[0, sub["is_snapshot"]]) == 1))


def wait_for(cond, what, timeout=90.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def raw_rows(spec, ring):
    _, chunks = ring.peek()
    rows = []
    for index, arena, base in chunks:
        for r in index:
            off = int(r["pos"]) - base
            rows.append((spec.channels[int(r["channel"])], spec.symbols[int(r["symbol"])], bytes(arena[off: off + int(r["length"])])))
    ring.commit(ring.index.write_seq)
    return rows


@pytest.mark.slow
def test_kill_9_ingest_then_restart(tmp_path):
    ctx = mp.get_context("spawn")
    with SimulatorThread(["binance-futures", "hyperliquid"], rate=120, seed=5) as sim:
        setups = {
            "binance-futures": ExchangeConfig(symbols=["BTCUSDT", "ETHUSDT"], channels=["trades", "book_change"], url=sim.ws_url()),
            "hyperliquid": ExchangeConfig(symbols=["BTC", "ETH"], channels=["trades"], url=sim.ws_url()),
        }
        state = {}
        try:
            for ex, cfg in setups.items():
                registry.validate(ex, cfg)
                spec = ringset.make_spec(ex, cfg.symbols, registry.raw_channels(ex, cfg), registry.data_types(ex, cfg, True),
                                         record_capacity=1 << 16, raw_index_capacity=1 << 15, raw_arena_bytes=16 << 20)
                state[ex] = (spec, ringset.create(spec), FeedStats(new_ring_name(f"{ex}-st"), len(spec.symbols), len(spec.channels), create=True))

            def start(ex):
                spec, _, stats = state[ex]
                stop = ctx.Event()
                p = ctx.Process(target=registry.ingest_main,
                                args=(spec, setups[ex], stats.name, stop, LogConfig(dir=str(tmp_path)), OPTS))
                p.start()
                return p, stop

            bspec, brings, _ = state["binance-futures"]
            hspec, hrings, _ = state["hyperliquid"]

            def streaming(groups):
                """Every binance book has ``groups`` snapshots, every symbol 30 more trades than at ``base``."""
                books = peek_all(brings["book_change"])
                bt, ht = peek_all(brings["trades"]), peek_all(hrings["trades"])
                return (all(snapshot_groups(books, bspec.symbol_id(s)) >= groups for s in ("BTCUSDT", "ETHUSDT"))
                        and all((bt["symbol"] == bspec.symbol_id(s)).sum() >= 30 * groups for s in ("BTCUSDT", "ETHUSDT"))
                        and all((ht["symbol"] == hspec.symbol_id(s)).sum() >= 30 * groups for s in ("BTC", "ETH")))

            procs = {ex: start(ex) for ex in setups}
            wait_for(lambda: streaming(1), "books synced and trades flowing")
            for p, _ in procs.values():
                os.kill(p.pid, signal.SIGKILL)
                p.join(5)
            procs = {ex: start(ex) for ex in setups}  # the supervisor's restart
            wait_for(lambda: streaming(2), "books resynced and trades flowing after the restart")
            for _p, stop in procs.values():
                stop.set()
            for p, _ in procs.values():
                p.join(10)
                assert p.exitcode == 0

            # hyperliquid: the recent trades re-sent after the restart are not written twice
            spec, rings, _ = state["hyperliquid"]
            trades = drain(rings["trades"])
            for coin in ("BTC", "ETH"):
                ids = [int(t["id"]) for t in trades[trades["symbol"] == spec.symbol_id(coin)]]
                assert len(ids) > 50 and len(ids) == len(set(ids)), coin
            ev = drain(rings["events"])
            cut = [e for e in ev if EVENT_KINDS[e["kind"]] == "disconnect" and e["detail"].startswith(b"ingest process restarted")]
            assert {spec.symbols[e["symbol"]] for e in cut} == {"BTC", "ETH"}
            assert sum(1 for r in raw_rows(spec, rings["raw"]) if r[2] == b"") == len(cut) + 2  # + the shutdown markers

            # binance: the book resynced from a new snapshot after the restart and equals the simulator's
            spec, rings, _ = state["binance-futures"]
            rows = drain(rings["book_change"])
            raws = raw_rows(spec, rings["raw"])
            tr = drain(rings["trades"])
            for sym in ("BTCUSDT", "ETHUSDT"):
                sid = spec.symbol_id(sym)
                sub = rows[rows["symbol"] == sid]
                groups = np.flatnonzero(np.diff(np.r_[0, sub["is_snapshot"]]) == 1)
                assert len(groups) == 2, sym  # one snapshot per process
                book = {"b": {}, "a": {}}
                for r in sub[groups[-1]:]:
                    side = book["b"] if r["side"] == BOOK_BID else book["a"]
                    if r["amount"] == 0:
                        side.pop(float(r["price"]), None)
                    else:
                        side[float(r["price"])] = float(r["amount"])
                last_u = max(json.loads(p)["data"]["u"] for ch, s, p in raws if ch == "depth" and s == sym and p)
                event = sim.event_at("binance-futures", "depth", sym, update_id=last_u)
                bids, asks = sim.book("binance-futures", sym, event=event)
                assert book == {"b": {float(p): float(q) for p, q in bids}, "a": {float(p): float(q) for p, q in asks}}, sym
                ids = [int(t["id"]) for t in tr[tr["symbol"] == sid]]
                assert len(ids) > 50 and ids == sorted(set(ids))
        finally:
            for _spec, rings, stats in state.values():
                stats.close()
                ringset.close(rings)
