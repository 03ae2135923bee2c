"""Books rebuilt from book_change rows, as a user of the archive would (shared by the connector tests)."""

from __future__ import annotations

from typing import Any

from ticktape.ipc.schemas import BOOK_BID


def rebuild(rows: Any, sid: int) -> dict[str, dict[float, float]]:
    """Apply symbol ``sid``'s rows in order; a snapshot is the run of is_snapshot
    rows sharing (local_ts, exchange_ts) and replaces the book."""
    book: dict[str, dict[float, float]] = {"b": {}, "a": {}}
    prev = None
    for r in rows[rows["symbol"] == sid]:
        key = (bool(r["is_snapshot"]), int(r["local_ts"]), int(r["exchange_ts"]))
        if r["is_snapshot"] and key != prev:
            book = {"b": {}, "a": {}}
        prev = key
        side = book["b"] if r["side"] == BOOK_BID else book["a"]
        if r["amount"] == 0:
            side.pop(float(r["price"]), None)
        else:
            side[float(r["price"])] = float(r["amount"])
    return book
