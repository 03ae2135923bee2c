"""OKX v5 ``books`` state, free of I/O so it is unit-testable on recorded frames.

A book keeps each level's price and size *as the venue's strings* (the
checksum is computed over them, and "30238.8" is not "30238.80"), keyed by
the price as a float. ``checksum`` is OKX's documented CRC32: the top 25 bids
and asks interleaved ``bid1:ask1:bid2:ask2:…`` (when one side is shorter, the
other side's remaining levels follow alone), each level ``price:size``, joined
with ``:``, CRC32 as a signed 32-bit integer.

Sequence (since 2022): ``seqId``/``prevSeqId``; a snapshot has ``prevSeqId``
-1; each update's ``prevSeqId`` is the previous message's ``seqId`` (an update
with no change repeats it; after a venue maintenance ``seqId`` may restart
lower, still chained by ``prevSeqId``). Recordings from before 2022 have no
seqId: there the checksum is the only continuity check.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Iterable, Sequence

CHECKSUM_LEVELS = 25
#: what ``Chain.step`` says about an update
APPLY, DUPLICATE, GAP = 0, 1, 2


class Levels:
    """One OKX book: price (float) -> (price string, size string) per side."""

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids: dict[float, tuple[str, str]] = {}
        self.asks: dict[float, tuple[str, str]] = {}

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def apply(self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Apply one message's levels (size "0" removes); returns them as (price, size) floats for the rows."""
        out: tuple[list[tuple[float, float]], list[tuple[float, float]]] = ([], [])
        for side, levels, rows in ((self.bids, bids, out[0]), (self.asks, asks, out[1])):
            for lv in levels:
                p, s = lv[0], lv[1]
                fp, fs = float(p), float(s)
                if fs == 0.0:
                    side.pop(fp, None)
                else:
                    side[fp] = (p, s)
                rows.append((fp, fs))
        return out

    def top(self, n: int = CHECKSUM_LEVELS) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        b, a = self.bids, self.asks
        return [b[p] for p in heapq.nlargest(n, b)], [a[p] for p in heapq.nsmallest(n, a)]

    def checksum(self) -> int:
        return checksum(*self.top())


def checksum(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> int:
    """OKX's CRC32 over the top 25 levels (strings exactly as received), signed."""
    parts: list[str] = []
    nb, na = min(len(bids), CHECKSUM_LEVELS), min(len(asks), CHECKSUM_LEVELS)
    for i in range(max(nb, na)):
        if i < nb:
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < na:
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


class Chain:
    """Per-book sync state: ``synced`` after a snapshot; ``last`` = the last applied ``seqId`` (None: the
    venue sends none)."""

    __slots__ = ("last", "resync_deadline", "synced", "synced_once")

    def __init__(self) -> None:
        self.last: int | None = None
        self.synced = False
        self.synced_once = False
        self.resync_deadline = 0.0

    def reset(self) -> None:
        self.synced = False

    def step(self, prev: int | None, seq: int | None) -> int:
        """APPLY, DUPLICATE or GAP for an update carrying ``prevSeqId`` / ``seqId``."""
        last = self.last
        if prev is None or seq is None or last is None:
            return APPLY  # no sequence numbers (pre-2022 feed): the checksum alone decides
        if prev == last:
            return APPLY
        if prev <= seq <= last:  # the venue sent it again (a reset restarts lower, but chains by prevSeqId)
            return DUPLICATE
        return GAP
