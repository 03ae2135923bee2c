"""Child-process bodies and readers shared by the writer tests."""

from __future__ import annotations

import glob
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ticktape.ipc import ringset
from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.schemas import TRADE_DTYPE

STEP_NS = 1000  # local_ts step between consecutive trades


def make_trades(start: int, n: int, base_ns: int, n_symbols: int) -> np.ndarray:
    """Trades whose id is their sequence number; symbols cycle 1..n_symbols."""
    seq = np.arange(start, start + n, dtype=np.int64)
    arr = np.zeros(n, TRADE_DTYPE)
    arr["local_ts"] = base_ns + seq * STEP_NS
    arr["exchange_ts"] = arr["local_ts"] - 7
    arr["price"] = seq.astype(np.float64)
    arr["amount"] = 1.5
    arr["symbol"] = 1 + seq % n_symbols
    arr["side"] = 1 + seq % 2
    arr["id"] = np.char.encode(seq.astype(str))
    return arr


def raw_payload(seq: int) -> bytes:
    return b"" if seq % 50 == 0 else b'{"seq":%d}' % seq


def produce(spec: RingSetSpec, total: int, base_ns: int, batch: int = 100, raw_every: int = 4) -> None:
    """Push ``total`` trades (and every ``raw_every``-th one as a raw frame), waiting
    for room instead of dropping: the test checks every record arrives."""
    rings = ringset.attach(spec)
    trades = rings["trades"]
    raw = rings["raw"]
    assert isinstance(trades, RecordRing) and isinstance(raw, RawRing)
    n_symbols = len(spec.symbols) - 1
    i = 0
    while i < total:
        n = min(batch, total - i)
        arr = make_trades(i, n, base_ns, n_symbols)
        k = 0
        while k < n:
            if trades.free() <= 0:
                time.sleep(0.001)
                continue
            k += trades.push_array(arr[k : k + min(trades.free(), n - k)])
        for seq in range(i, i + n):
            if seq % raw_every:
                continue
            payload = raw_payload(seq)
            while not raw.room(len(payload)):
                time.sleep(0.001)
            assert raw.push(base_ns + seq * STEP_NS, payload, 7, int(1 + seq % n_symbols), 1)
        i += n
        time.sleep(0.0005)
    ringset.close(rings)


def read_type(root: str, data_type: str) -> pa.Table:
    files = sorted(glob.glob(os.path.join(root, data_type, "exchange=*/**/data.parquet"), recursive=True))
    tables = []
    for f in files:
        t = pq.read_table(f)
        sym = f.split("symbol=")[1].split("/")[0]
        tables.append(t.append_column("symbol", pa.array([sym] * t.num_rows, pa.string())))
    return pa.concat_tables(tables) if tables else pa.table({})


def journals_left(root: str) -> list[str]:
    return glob.glob(os.path.join(root, ".journal/**/*.arrows"), recursive=True)
