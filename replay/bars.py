"""Trade bars (``trade_bar_{n}{ticks|ms|s|m|vol}``) aggregated from trades with numpy ``reduceat``.

Bar membership, on local timestamps and in trade order:
- time: trades with ``local_ts // interval`` equal; the bar is stamped (``timestamp``
  and ``localTimestamp``) with its end, and emitted once complete (a later trade
  or the end of the range reached that end);
- tick: every ``n`` consecutive trades; stamped with its last trade;
- volume: a trade belongs to bar ``k`` when the volume traded before it lies in
  ``[k*n, (k+1)*n)``; stamped with its last trade.
An incomplete bar at the end of the range is not emitted. Rows of the bar in
progress are carried to the next batch, so memory is one bar plus one batch.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from ticktape.replay import fmt
from ticktape.replay.merge import Chunk
from ticktape.replay.options import Bar
from ticktape.replay.sources import ts_ns

_FIELDS = ("local", "ets", "price", "amount", "buy")


class BarBuilder:
    def __init__(self, bar: Bar, symbol: str, exchange: str) -> None:
        self.bar = bar
        self.carry: dict[str, np.ndarray] | None = None
        self.base = 0  # trades before the carried rows (tick bars)
        self.vol_base = 0.0  # volume before the carried rows (volume bars)
        interval = int(bar.interval) if bar.kind != "volume" else bar.interval
        self.head = (
            b'{"type":"trade_bar","symbol":' + json.dumps(symbol).encode() + b',"exchange":'
            + json.dumps(exchange).encode() + b',"name":' + json.dumps(bar.name).encode()
            + f',"interval":{interval},"kind":"{bar.kind}","open":'.encode()
        )

    def _arrays(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        local = ts_ns(batch)
        ets = np.asarray(batch.column("exchange_ts").view(pa.int64()).to_numpy()).astype(np.int64)
        ets = np.where(ets == 0, local, ets)
        side = batch.column("side")
        txt = side.dictionary_decode() if pa.types.is_dictionary(side.type) else side
        buy = np.asarray(pa.compute.equal(txt, "buy").to_numpy(zero_copy_only=False), np.bool_)
        return {
            "local": local,
            "ets": ets,
            "price": np.asarray(batch.column("price").to_numpy()).astype(np.float64),
            "amount": np.asarray(batch.column("amount").to_numpy()).astype(np.float64),
            "buy": buy,
        }

    def _ids(self, a: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Bar id per row and whether each row's bar is complete."""
        n = len(a["local"])
        kind, iv = self.bar.kind, self.bar.interval
        if kind == "time":
            ids = a["local"] // int(iv * 1_000_000)
            return ids, ids < ids[-1]
        if kind == "tick":
            ids = (self.base + np.arange(n, dtype=np.int64)) // int(iv)
            return ids, (ids + 1) * int(iv) <= self.base + n
        cum = self.vol_base + np.cumsum(a["amount"])
        ids = np.floor((cum - a["amount"]) / iv).astype(np.int64)
        return ids, (ids + 1) * iv <= cum[-1] + 1e-12 * max(1.0, abs(cum[-1]))

    def feed(self, batch: pa.RecordBatch) -> Chunk | None:
        a = self._arrays(batch)
        if self.carry is not None:
            a = {k: np.concatenate((self.carry[k], a[k])) for k in _FIELDS}
            self.carry = None
        if len(a["local"]) == 0:
            return None
        ids, done = self._ids(a)
        k = int(done.sum())  # complete bars are a prefix
        if k < len(ids):
            self.carry = {f: a[f][k:] for f in _FIELDS}
        self.base += k
        self.vol_base += float(a["amount"][:k].sum())
        if k == 0:
            return None
        return self._lines({f: a[f][:k] for f in _FIELDS}, ids[:k])

    def finish(self, end_ns: int) -> Chunk | None:
        """At the end of the range: a time bar whose end was reached is complete."""
        c, self.carry = self.carry, None
        if c is None or self.bar.kind != "time" or len(c["local"]) == 0:
            return None
        iv = int(self.bar.interval * 1_000_000)
        if (int(c["local"][-1]) // iv + 1) * iv > end_ns:
            return None
        return self._lines(c, c["local"] // iv)

    def _lines(self, a: dict[str, np.ndarray], ids: np.ndarray) -> Chunk:
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        last = np.append(starts[1:], len(ids)) - 1
        p, q, buy = a["price"], a["amount"], a["buy"]
        vol = np.add.reduceat(q, starts)
        buyv = np.add.reduceat(np.where(buy, q, 0.0), starts)
        notional = np.add.reduceat(p * q, starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            vwap = np.where(vol > 0, notional / np.where(vol > 0, vol, 1.0), p[last])
        if self.bar.kind == "time":
            iv = int(self.bar.interval * 1_000_000)
            stamp = (ids[starts] + 1) * iv
            local = stamp
        else:
            stamp = a["ets"][last]
            local = a["local"][last]
        count = pa.array(np.diff(np.append(starts, len(ids)))).cast(pa.string()).cast(pa.binary())
        lines = fmt.join(
            self.head,
            fmt.numbers(p[starts]),
            b',"high":',
            fmt.numbers(np.maximum.reduceat(p, starts)),
            b',"low":',
            fmt.numbers(np.minimum.reduceat(p, starts)),
            b',"close":',
            fmt.numbers(p[last]),
            b',"volume":',
            fmt.numbers(vol),
            b',"buyVolume":',
            fmt.numbers(buyv),
            b',"sellVolume":',
            fmt.numbers(vol - buyv),
            b',"trades":',
            count,
            b',"vwap":',
            fmt.numbers(vwap),
            b',"openTimestamp":"',
            fmt.ts_strings(a["ets"][starts]),
            b'","closeTimestamp":"',
            fmt.ts_strings(a["ets"][last]),
            b'","timestamp":"',
            fmt.ts_strings(stamp),
            b'","localTimestamp":"',
            fmt.ts_strings(local),
            b'"}\n',
        )
        return Chunk(np.ascontiguousarray(local, np.int64), lines)
