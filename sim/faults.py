"""Scripted faults. A ``Fault`` says what goes wrong; a script is a list of
``(at, Fault)`` where ``at`` is seconds since start (float) or, as an int, the
number of data frames the fault's exchange has sent so far.

Kinds:

- ``drop``: close the TCP socket at once (no close frame).
- ``stall``: for ``seconds`` send nothing (no data frames, no pongs, no acks);
  frames due meanwhile are withheld (recorded with fault ``stall``).
- ``malformed``: the next ``count`` data frames become invalid JSON.
- ``truncated``: the next ``count`` data frames are cut in half.
- ``gap``: the next ``count`` frames of a book channel are withheld, so the
  client sees a sequence gap (Binance ``pu`` != previous ``u``, Bybit ``u`` jump;
  BitMEX: the next frame inserting a level at the touch, so a later update or
  delete of that level id is one the client does not know).
- ``duplicate``: the next ``count`` data frames are sent twice.
- ``reorder``: the next data frame is held back and sent after the one that
  follows it (out-of-order updates).
- ``subscribe_error``: the next ``count`` subscriptions are refused with the
  exchange's real error shape (Binance URL streams: HTTP 400 on the upgrade).
- ``slow``: for ``seconds`` the exchange's rate is multiplied by ``factor``
  and a connection whose unsent buffer exceeds the simulator's
  ``max_buffer`` is dropped, as the exchanges drop slow consumers.
- ``rest_error``: the next ``count`` Binance REST requests (depth snapshots, open
  interest polls) answer HTTP 503 (shape ``{"code":-1001,...}``).
- ``rest_delay``: the next ``count`` Binance depth snapshots are taken when
  requested but answered ``seconds`` later (a ``307`` to a side server that
  holds them), and not before the exchange sent ``frames`` more data frames
  (a backlog of a known size however busy the machine), so a client's diff
  buffer grows meanwhile.
- ``rest_stale``: the next Binance depth snapshot is an old one (up to 1000
  diffs back, as a lagging replica serves): it cannot bridge into the
  diffs a client buffered since, so the client must fetch again.
- ``checksum``: the next ``count`` OKX ``books`` frames carry a wrong CRC32
  ``checksum`` (their levels are right: the client's book is fine but must
  not trust it, and resyncs).
- ``delist``: ``symbol`` leaves the venue mid-run: it is gone from the
  instrument list (Binance ``exchangeInfo``, ...), its streams stop, and a
  later subscribe of it gets what an unknown symbol gets (Binance: the
  upgrade or ``{"result":null}`` accepted, then nothing; REST depth: 400).
- ``restart``: Bybit's service restart: every subscribed orderbook topic gets a
  snapshot with ``u`` = 1 and its deltas continue from there.

``channel``/``symbol``/``conn`` narrow a fault (None = any). Frames altered or
withheld by a fault carry ``Sent.fault`` = the kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = (
    "drop", "stall", "malformed", "truncated", "gap", "duplicate", "reorder",
    "subscribe_error", "slow", "rest_error", "rest_stale", "rest_delay", "restart", "checksum", "delist",
)
#: faults applied to individual data frames of a connection
FRAME_KINDS = ("malformed", "truncated", "gap", "duplicate", "reorder", "checksum")
BOOK_CHANNELS = ("depth", "orderbook.1", "orderbook.50", "orderbook.200", "orderbook.1000", "l2Book", "book",
                 "orderBookL2", "books")
_CHECKSUM = re.compile(rb'"checksum":(-?[0-9]+)')


@dataclass
class Fault:
    kind: str
    exchange: str | None = None
    channel: str | None = None
    symbol: str | None = None
    conn: int | None = None
    count: int = 1
    seconds: float = 0.0
    factor: float = 10.0
    #: rest_delay: also hold the answer until the exchange sent this many more data frames
    frames: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r} (kinds: {', '.join(KINDS)})")
        if self.count < 1:
            raise ValueError("fault count must be >= 1")
        if self.kind == "gap" and self.channel is None:
            self.channel = "*book"
        if self.kind == "delist" and not self.symbol:
            raise ValueError("fault delist needs the symbol to delist")
        if self.kind == "checksum" and self.channel is None:
            self.channel = "books"

    def matches(self, channel: str, symbol: str) -> bool:
        ch = self.channel
        if ch is not None and ch != channel and not (ch == "*book" and channel in BOOK_CHANNELS):
            return False
        return self.symbol is None or self.symbol == symbol


ScriptEntry = tuple[float | int, Fault]


def parse_script(entries: list[ScriptEntry] | None) -> list[ScriptEntry]:
    out = list(entries or [])
    for at, f in out:
        if not isinstance(f, Fault):
            raise TypeError(f"script entry {at!r}: {f!r} is not a Fault")
        if isinstance(at, bool) or not isinstance(at, (int, float)) or at < 0:
            raise ValueError(f"script time {at!r}: seconds (float) or a frame count (int) >= 0")
    return out


def bad_checksum(frame: bytes) -> bytes:
    """``frame`` with its OKX ``checksum`` changed (off by one; 0 would read as "not sent")."""
    m = _CHECKSUM.search(frame)
    if m is None:
        return frame
    wrong = int(m[1]) + 1 if int(m[1]) != -1 else 1
    return frame[: m.start(1)] + str(wrong).encode() + frame[m.end(1):]
