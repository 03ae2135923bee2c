"""Child-process bodies for the ipc tests (spawn needs importable functions)."""

from __future__ import annotations

import time
from multiprocessing.connection import Connection

import numpy as np

from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.schemas import raw_batch_to_arrow


def consumer_server(conn: Connection) -> None:
    """Serve consume jobs: ("fixed"|"raw", ring name, dtype descr, total, batch) -> what came out."""
    while True:
        job = conn.recv()
        if job is None:
            return
        kind, name, descr, total, batch = job
        if kind == "fixed":
            conn.send(_consume_fixed(name, np.dtype(descr), total, batch))
        else:
            conn.send(_consume_raw(name, total, batch))


def _consume_fixed(name: str, dtype: np.dtype, total: int, batch: int) -> bytes:
    ring = RecordRing.attach(name, dtype)
    out = bytearray()
    got = 0
    deadline = time.monotonic() + 60
    while got < total and time.monotonic() < deadline:
        start, views = ring.peek(batch)
        if start != got:
            raise AssertionError(f"peek started at {start}, expected {got}")
        n = 0
        for v in views:
            out += v.tobytes()
            n += len(v)
        views = v = None  # type: ignore[assignment]  # no view may outlive the mapping
        if n:
            ring.commit(start + n)
            got += n
        else:
            time.sleep(0.0002)
    ring.close()
    return bytes(out)


def _consume_raw(name: str, total: int, batch: int) -> list[tuple[int, int, int, int, bytes]]:
    ring = RawRing.attach(name)
    out: list[tuple[int, int, int, int, bytes]] = []
    deadline = time.monotonic() + 60
    while len(out) < total and time.monotonic() < deadline:
        start, chunks = ring.peek(batch)
        n = 0
        for index, arena, base in chunks:
            rb = raw_batch_to_arrow(index, arena, base, ("", "c1", "c2"))
            syms = index["symbol"].tolist()
            for ts, ch, conn_id, payload, sym in zip(
                rb.column("local_ts_ns").to_pylist(),
                rb.column(1).to_pylist(),
                rb.column(2).to_pylist(),
                rb.column(3).to_pylist(),
                syms,
                strict=True,
            ):
                out.append((ts, ("", "c1", "c2").index(ch), conn_id, sym, payload))
            n += len(index)
        del chunks
        if n:
            ring.commit(start + n)
        else:
            time.sleep(0.0002)
    ring.close()
    return out


def fill_producer(name: str, descr: list, count: int) -> int:
    """Push ``count`` records into a ring nobody reads; return how many went in."""
    ring = RecordRing.attach(name, np.dtype(descr))
    arr = np.zeros(count, np.dtype(descr))
    pushed = ring.push_array(arr)
    ring.close()
    return pushed
