"""What venues and connections need from the simulator that hosts them.

A ``Protocol`` instead of the ``Simulator`` class, so the protocol modules
(``venue``, ``conn`` and the per-exchange venues) do not import ``server``,
which imports them: the dependency runs one way, server -> venues -> host.
"""

from __future__ import annotations

from typing import Any, Protocol


class SimHost(Protocol):
    seed: int
    #: first trade id / sequence number (from the wall clock, so runs never repeat ids)
    id_base: int
    trade_share: float
    history_limit: int
    recording: bool
    max_buffer: int
    slow_conns: int
    #: exchange id -> its venue (OKX's two ids share one path and hand connections over; Bybit's two
    #: answer the instrument list of their own category)
    venues: dict[str, Any]

    def log_fault(self, exchange: str, kind: str, conn: int, detail: str) -> None: ...

    def take_fault(self, exchange: str, kind: str, conn: int | None = None) -> bool: ...

    def take(self, exchange: str, kind: str, conn: int | None = None) -> Any:
        """The pending subscribe/REST ``sim.faults.Fault`` consumed now, or None."""

    def hold_answer(self, exchange: str, status: int, body: bytes, seconds: float, frames: int = 0) -> str:
        """A REST answer sent ``seconds`` from now (and after ``frames`` more data frames); its URL."""

    def dirty(self, conn: Any) -> None:
        """``conn`` (a ``sim.conn.Conn``) has frames queued: write them this loop turn."""
