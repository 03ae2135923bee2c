"""Trade bars (``trade_bar_{n}{ticks|ms|s|m|vol}``) computed exactly as tardis-dev's ``computeTradeBars``.

Each trade updates the bar in progress in trade order (high/low, close and its time when the trade is not
older than the last, buy/sell volume, an incremental vwap, then volume), so the floating-point results are
the ones tardis-dev produces. A time bar closes when a trade's exchange-time bucket (milliseconds) is past
the bar's open bucket: it is stamped with the end of its interval and that trade's ``localTimestamp``;
tick and volume bars close right after the trade that makes ``trades >= n`` / ``volume >= n`` and carry that
trade's ``localTimestamp``. A bar comes right after its closing trade's ``trade`` message, before the next
trade of the same frame (tardis-dev passes each message through, then computes from it). The bar in progress at the end of the range is never emitted; a disconnect
starts afresh (``reset``). The per-trade recurrence is sequential by nature, so this is a plain loop over
Python floats; only bars are formatted, in one vector pass per batch.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from ticktape.replay import fmt
from ticktape.replay.merge import Chunk
from ticktape.replay.options import Bar
from ticktape.replay.sources import ts_ns

_DATE_MIN_MS = -8_640_000_000_000_000


class BarBuilder:
    def __init__(self, bar: Bar, symbol: str, exchange: str) -> None:
        self.bar = bar
        interval = bar.interval if bar.kind != "time" else int(bar.interval)
        self.interval = float(interval)
        head = (
            b'{"type":"trade_bar","symbol":' + json.dumps(symbol).encode() + b',"exchange":'
            + json.dumps(exchange).encode() + b',"name":' + json.dumps(bar.name).encode()
            + b',"interval":' + fmt.numbers(np.array([float(interval)])).to_pylist()[0]
            + f',"kind":"{bar.kind}","open":'.encode()
        )
        self.head = head
        self.closed_at = np.zeros(0, np.int64)  # of the bars the last ``feed`` returned
        self.reset()

    def reset(self) -> None:
        self.trades = 0
        self.open = self.close = 0.0
        self.high, self.low = float(-(2**53 - 1)), float(2**53 - 1)
        self.volume = self.buy = self.sell = self.vwap = 0.0
        self.open_ms = self.close_ms = self.stamp_ms = _DATE_MIN_MS
        self.out: list[tuple[float, ...]] = []
        self.out_ts: list[tuple[int, int, int, int]] = []
        self.at: list[int] = []  # per bar: the index (in its batch) of the trade that closed it

    def _emit(self, local: int, stamp_ms: int, at: int) -> None:
        self.out.append((self.open, self.high, self.low, self.close, self.volume, self.buy, self.sell,
                         self.trades, self.vwap))
        # times stay integers: a float64 holds ns since 1970 only to 256 ns, enough to move a µs digit
        self.out_ts.append((self.open_ms, self.close_ms, local, stamp_ms))
        self.at.append(at)
        out, out_ts, ats = self.out, self.out_ts, self.at
        self.reset()
        self.out, self.out_ts, self.at = out, out_ts, ats

    def feed(self, batch: pa.RecordBatch) -> Chunk | None:
        """The bars the batch's trades close (``closed_at``: the index of each one's closing trade)."""
        local = ts_ns(batch)
        ets = np.asarray(batch.column("exchange_ts").view(pa.int64()).to_numpy()).astype(np.int64)
        ms = np.where(ets == 0, local, ets) // 1_000_000
        side = batch.column("side")
        txt = side.dictionary_decode() if pa.types.is_dictionary(side.type) else side
        buy = np.asarray(pa.compute.equal(txt, "buy").to_numpy(zero_copy_only=False), np.bool_).tolist()
        sell = np.asarray(pa.compute.equal(txt, "sell").to_numpy(zero_copy_only=False), np.bool_).tolist()
        price = np.asarray(batch.column("price").to_numpy()).astype(np.float64).tolist()
        amount = np.asarray(batch.column("amount").to_numpy()).astype(np.float64).tolist()
        kind, iv = self.bar.kind, self.interval
        ivi = int(iv)
        for i, (t, loc, p, q) in enumerate(zip(ms.tolist(), local.tolist(), price, amount, strict=True)):
            if self.trades and kind == "time" and t // ivi > self.open_ms // ivi:
                self._emit(loc, (self.open_ms // ivi + 1) * ivi, i)
            if self.trades == 0:
                self.open, self.open_ms = p, t
            if self.high < p:
                self.high = p
            if self.low > p:
                self.low = p
            if t >= self.stamp_ms:
                self.close, self.close_ms, self.stamp_ms = p, t, t
            if buy[i]:
                self.buy += q
            if sell[i]:
                self.sell += q
            self.trades += 1
            self.vwap = (self.vwap * self.volume + p * q) / (self.volume + q) if self.volume + q else float("nan")
            self.volume += q
            if (kind == "volume" and self.volume >= iv) or (kind == "tick" and self.trades >= iv):
                self._emit(loc, self.stamp_ms, i)
        return self._lines()

    def finish(self, end_ns: int) -> Chunk | None:
        """The bar in progress at the end of the range is not emitted (tardis-dev never closes it)."""
        return None

    def _lines(self) -> Chunk | None:
        if not self.out:
            return None
        a = np.array(self.out, np.float64)
        i64 = np.array(self.out_ts, np.int64)
        self.closed_at = np.array(self.at, np.int64)
        self.out, self.out_ts, self.at = [], [], []
        local = i64[:, 2]
        lines = fmt.join(
            self.head,
            fmt.numbers(a[:, 0]),
            b',"high":',
            fmt.numbers(a[:, 1]),
            b',"low":',
            fmt.numbers(a[:, 2]),
            b',"close":',
            fmt.numbers(a[:, 3]),
            b',"volume":',
            fmt.numbers(a[:, 4]),
            b',"buyVolume":',
            fmt.numbers(a[:, 5]),
            b',"sellVolume":',
            fmt.numbers(a[:, 6]),
            b',"trades":',
            fmt.numbers(a[:, 7]),
            b',"vwap":',
            fmt.numbers(a[:, 8]),
            b',"openTimestamp":"',
            fmt.ts_strings(i64[:, 0] * 1_000_000, fmt.EXCHANGE_DIGITS),
            b'","closeTimestamp":"',
            fmt.ts_strings(i64[:, 1] * 1_000_000, fmt.EXCHANGE_DIGITS),
            b'","localTimestamp":"',
            fmt.ts_strings(local, fmt.LOCAL_DIGITS),
            b'","timestamp":"',
            fmt.ts_strings(i64[:, 3] * 1_000_000, fmt.EXCHANGE_DIGITS),
            b'"}\n',
        )
        return Chunk(np.ascontiguousarray(local, np.int64), lines)
