"""Which files a range needs, computed from the layout alone (the seed's ``only_paths``).

No listing: restore fetches exactly these keys, loaders open exactly these
files. A root is a local directory or ``s3://bucket/prefix``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from ticktape.archive.layout import FileKey, check_data_type, hours_between, parse_time, safe_join

TimeLike = str | datetime


def as_time(t: TimeLike, *, end: bool = False) -> datetime:
    """``YYYY-MM-DD:HH`` / ISO text (``layout.parse_time`` rules) or an aware datetime -> UTC datetime."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError(f"naive datetime {t!r}: pass a timezone-aware (UTC) time")
        return t
    return parse_time(t, end=end)


def time_range(start: TimeLike, end: TimeLike) -> tuple[datetime, datetime]:
    s, e = as_time(start), as_time(end, end=True)
    if e < s:
        raise ValueError(f"range end {e.isoformat()} is before its start {s.isoformat()}")
    return s, e


def resolve_data_type(data_type: str, depth: int | None = None) -> str:
    """``book_snapshot`` + depth 20 -> ``book_snapshot_20``; every other name is checked as is."""
    if data_type == "book_snapshot":
        if depth is None:
            raise ValueError("book_snapshot needs a depth (e.g. depth=20 -> book_snapshot_20)")
        if not 1 <= depth <= 1000:
            raise ValueError(f"depth {depth}: must be 1..1000 (book snapshot levels)")
        data_type = f"book_snapshot_{depth}"
    return check_data_type(data_type)


def _as_list(x: str | Iterable[str]) -> list[str]:
    if isinstance(x, str):
        return [p.strip() for p in x.split(",") if p.strip()]
    return list(x)


def keys_for_range(
    exchange: str,
    data_types: str | Sequence[str],
    symbols: str | Sequence[str],
    start: TimeLike,
    end: TimeLike,
    depth: int | None = None,
) -> list[FileKey]:
    """Every (type, symbol, hour) file overlapping [start, end), ordered by type, symbol, hour.

    ``data_types`` and ``symbols`` take a list or comma-separated text.
    """
    s, e = time_range(start, end)
    # an empty range overlaps no hour (layout.hours_between yields start's hour even then)
    hours = list(hours_between(s, e)) if s < e else []
    types = [resolve_data_type(t, depth) for t in _as_list(data_types)]
    syms = _as_list(symbols)
    if not types:
        raise ValueError("no data type given")
    if not syms:
        raise ValueError("no symbol given")
    return [FileKey(exchange, t, sym, h) for t in types for sym in syms for h in hours]


def path_for(root: str, key: FileKey) -> str:
    """Local path or ``s3://bucket/prefix/...`` URL of a file (validated: never outside ``root``)."""
    return safe_join(root, key.relpath())


def paths_for_range(
    root: str,
    exchange: str,
    data_types: str | Sequence[str],
    symbols: str | Sequence[str],
    start: TimeLike,
    end: TimeLike,
    depth: int | None = None,
) -> list[str]:
    """The seed's ``only_paths=True``: the files that should exist for the range under ``root``."""
    return [path_for(root, k) for k in keys_for_range(exchange, data_types, symbols, start, end, depth)]
