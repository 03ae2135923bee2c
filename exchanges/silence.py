"""Streams that stay silent after their subscribe was acknowledged.

Binance accepts a stream of a symbol it no longer lists (delisted mid-run, then
subscribed again after a reconnect) with ``{"result":null}`` or a plain
upgrade and then sends nothing for it: no refusal to record. A connector keeps
a ``SilenceWatch``: every stream is watched from its acknowledgement until its
first frame; one that stays silent for ``window`` seconds is handed back
(once) so the connector can ask the venue's own instrument list why
(``verdict``): gone or not trading is a ``subscribe_error``, still trading is
only a quiet stream (``stream_silent``).

The watch reads the per-(symbol, channel) frame counters the hot path already
keeps; nothing is added per frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: seconds a stream may stay silent after its subscribe before the instrument list is asked (config default)
SILENT_AFTER = 60.0


class SilenceWatch:
    """(symbol, channel) streams watched from their acknowledgement until their first frame."""

    def __init__(self, window: float, nchan: int) -> None:
        self.window = window
        self.nchan = nchan
        #: (symbol, channel) -> (acknowledged at, monotonic s; the stream's frame count then)
        self.since: dict[tuple[int, int], tuple[float, int]] = {}
        #: symbols the venue no longer lists: never watched (nor subscribed) again
        self.gone: set[int] = set()

    def acked(self, streams: Iterable[tuple[int, int]], now: float, counts: Sequence[int]) -> None:
        """``streams`` ((channel, symbol), as ``Plan.streams``) were acknowledged at ``now``."""
        if self.window <= 0:
            return
        for chan, sym in streams:
            if sym not in self.gone:
                self.since[(sym, chan)] = (now, counts[sym * self.nchan + chan])

    def forget(self, streams: Iterable[tuple[int, int]]) -> None:
        """The connection carrying ``streams`` is gone: nothing to wait for until the next ack."""
        for chan, sym in streams:
            self.since.pop((sym, chan), None)

    def due(self, now: float, counts: Sequence[int]) -> list[tuple[int, int]]:
        """(symbol, channel) of the streams silent for ``window`` s since their ack; each is
        returned once (taken off the watch, as is every stream that delivered a frame)."""
        if not self.since:
            return []
        out = []
        n = self.nchan
        for key, (t0, n0) in list(self.since.items()):
            sym, chan = key
            if counts[sym * n + chan] != n0:
                del self.since[key]
            elif now - t0 >= self.window:
                del self.since[key]
                out.append(key)
        return out


def statuses(info: Any) -> dict[str, str]:
    """symbol -> status of a Binance ``exchangeInfo`` answer (COIN-M calls it ``contractStatus``)."""
    return {s["symbol"]: str(s.get("status") or s.get("contractStatus") or "") for s in info["symbols"]}


def verdict(symbol: str, status: dict[str, str]) -> str | None:
    """Why ``symbol`` cannot stream according to the instrument list, or None if it trades."""
    st = status.get(symbol)
    if st is None:
        return "not in exchangeInfo"
    if st != "TRADING":
        return f"status {st or '(none)'} in exchangeInfo"
    return None
