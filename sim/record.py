"""What the simulator sent: one tuple per data frame per connection.

Appending a NamedTuple to a list is the whole cost, so recording stays on in
tests; benchmarks turn it off (``Simulator(record=False)``).
"""

from __future__ import annotations

from typing import NamedTuple


class Sent(NamedTuple):
    """A data frame as it left the simulator.

    ``channel`` is the exchange's own channel name (Tardis's raw channel names:
    ``aggTrade``, ``trade``, ``depth``, ``depth20``, ``bookTicker``,
    ``publicTrade``, ``orderbook.50``, ``trades``, ``l2Book``). ``ids`` are the
    exchange's ids the frame carries: aggTrade ``(a,)``, trade ``(t,)``, depth
    ``(U, u, pu)``, bookTicker ``(u,)``, bybit orderbook ``(u, seq)``, bybit
    trades / hyperliquid trades the trade ids ``i`` / ``tid``, l2Book ``(time,)``.
    ``event`` is the market event number (``Simulator.book(..., event=)``).
    ``fault`` names the fault that produced or altered the frame ("" if none).
    """

    ts_ns: int
    conn: int
    channel: str
    symbol: str
    data: bytes
    ids: tuple[object, ...]
    event: int
    fault: str = ""
