"""Fixtures for connector tests: real shared-memory rings, a real Outbox, a feed
instance fed with frames through the same entry the picows listener calls."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

# the recorded samples and their readers live in tests/fixtures/recorded_frames.py (importable from any test
# folder: ``from conftest import ...`` is ambiguous when several conftest modules are loaded)
from recorded_frames import SAMPLES, cryptofeed_frames, cryptofeed_http  # noqa: F401

from ticktape.engine.config import ExchangeConfig
from ticktape.exchanges import registry
from ticktape.exchanges.connection import Link, Listener
from ticktape.exchanges.feed import Feed
from ticktape.ipc import ringset
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import RecordRing


@dataclass
class Rig:
    feed: Feed
    spec: ringset.RingSetSpec
    rings: dict[str, Any]
    listener: Listener
    seen: dict[str, list[Any]] = field(default_factory=dict)

    def frame(self, payload: bytes, ts: int) -> None:
        self.feed.frame(self.listener, ts, memoryview(payload))

    def records(self, dt: str) -> np.ndarray:
        ring: RecordRing = self.rings[dt]
        _, views = ring.peek()
        out = np.concatenate([v.copy() for v in views]) if views else np.zeros(0, ring.dtype)
        ring.commit(ring.write_seq)
        self.seen.setdefault(dt, []).append(out)
        return np.concatenate(self.seen[dt])

    def raw(self) -> list[tuple[int, str, str, int, bytes]]:
        """(local_ts, channel, symbol, conn_id, payload) of every raw row so far."""
        ring: RawRing = self.rings["raw"]
        _start, chunks = ring.peek()
        rows = []
        for index, arena, base in chunks:
            for r in index:
                off = int(r["pos"]) - base
                rows.append(
                    (
                        int(r["local_ts"]),
                        self.spec.channels[int(r["channel"])],
                        self.spec.symbols[int(r["symbol"])],
                        int(r["conn_id"]),
                        bytes(arena[off : off + int(r["length"])]),
                    )
                )
        ring.commit(ring.index.write_seq)
        self.seen.setdefault("raw", []).extend(rows)
        return list(self.seen["raw"])

    def events(self) -> list[tuple[str, str, str]]:
        from ticktape.ipc.schemas import EVENT_KINDS

        self.feed.flush_duplicates(0, force=True)  # open duplicate bursts end here (as at a stop)
        ev = self.records("events")
        return [
            (EVENT_KINDS[int(e["kind"])], self.spec.symbols[int(e["symbol"])], e["detail"].decode())
            for e in ev
        ]


@pytest.fixture
def rig() -> Iterator[Any]:
    made: list[dict[str, Any]] = []

    def make(exchange: str, options: dict[str, Any] | None = None, raw: bool = True, capacity: int = 1 << 16,
             compiled: bool = True, **cfg_kw: Any) -> Rig:
        cfg = ExchangeConfig(**cfg_kw)
        registry.validate(exchange, cfg)
        spec = ringset.make_spec(
            exchange, cfg.symbols, registry.raw_channels(exchange, cfg), registry.data_types(exchange, cfg, raw),
            record_capacity=capacity, raw_index_capacity=capacity, raw_arena_bytes=64 << 20,
        )
        rings = ringset.create(spec)
        made.append(rings)
        mod = registry.module(exchange)
        feed_cls = getattr(mod, "FEED", None) or next(  # the class registry.ingest_main runs
            v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, Feed) and v is not Feed)
        # one process holds both ends here; the objects are the same rings
        # compiled=False: the pure-Python packers (as without a C compiler or with TICKTAPE_PURE_PYTHON=1)
        feed = feed_cls(spec, cfg, Outbox(spec, rings, compiled=compiled), None, {"manual_snapshots": True, **(options or {})})
        # the feed's first planned connection: its fast path and the fallback path both run
        link = Link(feed, feed.plans()[0], feed.timing)
        return Rig(feed, spec, rings, Listener(link, 1))

    yield make
    for rings in reversed(made):
        ringset.close(rings)


