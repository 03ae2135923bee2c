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

import zlib
from bisect import bisect_left
from collections.abc import Iterable, Sequence

CHECKSUM_LEVELS = 25
#: what ``Chain.step`` says about an update
APPLY, DUPLICATE, GAP = 0, 1, 2


class Levels:
    """One OKX book: each side's prices kept sorted (bids negated, so best first on both sides)
    beside the level's ``"price:size"`` text (the venue's own strings, as the checksum takes them):
    the top 25 of a 400-level book is a slice, not a sort or 50 lookups per message."""

    __slots__ = ("ask_px", "ask_txt", "bid_px", "bid_txt")

    def __init__(self) -> None:
        self.bid_px: list[float] = []  # -price, ascending: best bid first
        self.bid_txt: list[str] = []
        self.ask_px: list[float] = []  # price, ascending: best ask first
        self.ask_txt: list[str] = []

    def clear(self) -> None:
        for x in (self.bid_px, self.bid_txt, self.ask_px, self.ask_txt):
            x.clear()

    def __len__(self) -> int:
        return len(self.bid_px) + len(self.ask_px)

    def apply(self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Apply one message's levels (size "0" removes); returns them as (price, size) floats for the rows."""
        out: tuple[list[tuple[float, float]], list[tuple[float, float]]] = ([], [])
        for order, txt, sign, levels, rows in ((self.bid_px, self.bid_txt, -1.0, bids, out[0]),
                                               (self.ask_px, self.ask_txt, 1.0, asks, out[1])):
            for lv in levels:
                p, s = lv[0], lv[1]
                fp, fs = float(p), float(s)
                k = sign * fp
                i = bisect_left(order, k)
                here = i < len(order) and order[i] == k
                if fs == 0.0:
                    if here:
                        del order[i]
                        del txt[i]
                elif here:
                    txt[i] = f"{p}:{s}"
                else:
                    order.insert(i, k)
                    txt.insert(i, f"{p}:{s}")
                rows.append((fp, fs))
        return out

    def top(self, n: int = CHECKSUM_LEVELS) -> tuple[list[str], list[str]]:
        """The best ``n`` levels a side as ``"price:size"``, best first."""
        return self.bid_txt[:n], self.ask_txt[:n]

    def checksum(self) -> int:
        """OKX's CRC32: the top 25 bids and asks interleaved (the longer side's rest after), ``:``-joined, signed."""
        b, a = self.top()
        n = min(len(b), len(a))
        parts: list[str] = [""] * (2 * n)
        parts[::2] = b[:n]
        parts[1::2] = a[:n]
        parts += b[n:] or a[n:]
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
