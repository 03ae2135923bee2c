"""What the archive holds: exchanges, data types, symbols, raw channels, date ranges.

Listed from directory names only (``<table>/exchange=/symbol=/date=/hour=``;
no Parquet file is opened, and for each series only its first and last date
directories are looked into), refreshed at most every few seconds since a
live capture keeps adding hours. This path imports neither pyarrow nor pandas,
so ``/exchanges`` answers within a second of start on any archive size.

Raw channel names live inside the files (the ``channel`` column): the exact
set, which ``/replay`` validates its filters against, is read once per file
(only that column), cached by path and mtime, and warmed in the background.
``/exchanges`` does not wait for it: it lists the channels the exchange's
connector can record (``exchanges.registry.CHANNELS``), falling back to the
scanned set only for an exchange the registry does not know.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

REFRESH_S = 5.0
# a data file: data.parquet, or data-<tag>.parquet of one capture of several writing the hour (shards)
_FILE_RE = re.compile(r"^data(-[A-Za-z0-9][A-Za-z0-9._-]{0,63})?\.parquet$")
# the archive's names (archive.layout checks the same; that module loads pyarrow, which this path must not)
_TABLE_RE = re.compile(r"^(trades|book_change|events|raw|book_ticker|derivative_ticker|liquidations"
                       r"|book_snapshot_[1-9][0-9]{0,4})$")
_EXCHANGE_RE = re.compile(r"^exchange=([a-z0-9][a-z0-9-]{0,39})$")
_EXCHANGE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_SYMBOL_RE = re.compile(r"^symbol=(_|[A-Za-z0-9@][A-Za-z0-9._@:-]{0,63})$")
_DATE_RE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_HOUR_RE = re.compile(r"^hour=(\d{2})$")


def is_s3(root: str) -> bool:
    return root.startswith("s3://")


@dataclass(frozen=True, slots=True)
class Series:
    """One (exchange, data type, symbol) of the archive and the first and last hour it has a file for."""

    exchange: str
    data_type: str
    symbol: str
    first_hour: datetime
    last_hour: datetime


def _dirs(path: str, pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """(captured name, path) of the sub-directories whose name matches, sorted."""
    try:
        with os.scandir(path) as it:
            out = [(m[1], e.path) for e in it if (m := pattern.match(e.name)) and e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    return sorted(out)


def _hour(date: str, hour: str) -> datetime | None:
    try:
        return datetime.strptime(f"{date} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    except ValueError:
        return None


def _has_data(hour_dir: str) -> bool:
    try:
        with os.scandir(hour_dir) as it:
            return any(_FILE_RE.match(e.name) and ".." not in e.name and e.is_file() for e in it)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False


def _edge_hour(dates: list[tuple[str, str]], last: bool) -> datetime | None:
    """First (or last) hour with a finalized file, looking into as few date directories as it takes."""
    for date, dpath in reversed(dates) if last else dates:
        hours = [h for hn, hpath in _dirs(dpath, _HOUR_RE) if _has_data(hpath) and (h := _hour(date, hn)) is not None]
        if hours:
            return max(hours) if last else min(hours)
    return None


def list_local(root: str) -> list[Series]:
    """Every series of a local archive, from directory names (equal to ``archive.loaders.list_archive``'s
    exchange, data type, symbol, first and last hour)."""
    try:
        with os.scandir(root) as it:
            tables = sorted(e.name for e in it if _TABLE_RE.match(e.name) and e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []
    out: list[Series] = []
    for table in tables:
        for ex, epath in _dirs(os.path.join(root, table), _EXCHANGE_RE):
            for sym, spath in _dirs(epath, _SYMBOL_RE):
                if ".." in sym:
                    continue
                dates = _dirs(spath, _DATE_RE)
                first = _edge_hour(dates, last=False)
                last = _edge_hour(dates, last=True) if first is not None else None
                if first is not None and last is not None:
                    out.append(Series(ex, table, sym, first, last))
    return sorted(out, key=lambda s: (s.exchange, s.data_type, s.symbol))


class Inventory:
    def __init__(self, root: str, refresh_s: float = REFRESH_S) -> None:
        self.root = root if is_s3(root) else os.path.abspath(root)
        self.refresh_s = refresh_s
        self._at = -1e18
        self._series: list[Series] = []
        self._chan_cache: dict[tuple[str, float], list[str]] = {}
        self._lock = threading.Lock()

    def series(self) -> list[Series]:
        with self._lock:
            now = time.monotonic()
            if now - self._at > self.refresh_s:
                self._series = self._list()
                self._at = now
            return self._series

    def _list(self) -> list[Series]:
        if not is_s3(self.root):
            return list_local(self.root)
        from ticktape.replay import storage

        acc: dict[tuple[str, str, str], list[Any]] = {}
        self._s3_paths: dict[tuple[str, str], list[str]] = {}
        for k, _size, path in storage.s3_files(self.root):
            a = acc.setdefault((k.exchange, k.data_type, k.symbol), [k.hour, k.hour])
            a[0], a[1] = min(a[0], k.hour), max(a[1], k.hour)
            self._s3_paths.setdefault((k.exchange, k.data_type), []).append(path)
        return [Series(e, t, s, a[0], a[1]) for (e, t, s), a in sorted(acc.items())]

    def _raw_files(self, exchange: str) -> list[tuple[str, float]]:
        """(path, version) of every raw file of an exchange; version changes when the file does."""
        if is_s3(self.root):
            self.series()
            return [(p, 0.0) for p in getattr(self, "_s3_paths", {}).get((exchange, "raw"), [])]
        from ticktape.archive.layout import scan_files

        out: list[tuple[str, float]] = []
        for _key, p in scan_files(self.root, "raw", exchange):
            try:
                out.append((p, os.stat(p).st_mtime))
            except FileNotFoundError:
                continue
        return out

    def invalidate(self) -> None:
        with self._lock:
            self._at = -1e18

    def exchanges(self) -> list[str]:
        return sorted({s.exchange for s in self.series()})

    def data_types(self, exchange: str) -> list[str]:
        return sorted({s.data_type for s in self.series() if s.exchange == exchange})

    def symbols(self, exchange: str, data_type: str) -> list[str]:
        """Symbols of one data type, without the no-symbol bucket ``_``."""
        return sorted(
            {s.symbol for s in self.series() if s.exchange == exchange and s.data_type == data_type and s.symbol != "_"}
        )

    def hours(self, exchange: str, data_type: str, symbol: str) -> tuple[int, int] | None:
        for s in self.series():
            if (s.exchange, s.data_type, s.symbol) == (exchange, data_type, symbol):
                return int(s.first_hour.timestamp()), int(s.last_hour.timestamp())
        return None

    def raw_channels(self, exchange: str) -> list[str]:
        """Every channel name found in the exchange's raw files (read once per file, cached)."""
        import pyarrow.compute as pc

        from ticktape.replay import storage

        out: set[str] = set()
        for key in self._raw_files(exchange):
            chans = self._chan_cache.get(key)
            if chans is None:
                try:
                    col = storage.open_parquet(key[0]).read(columns=["channel"]).column("channel")
                    chans = [c for c in pc.unique(col).to_pylist() if c]
                except Exception:
                    chans = []
                self._chan_cache[key] = chans
            out.update(chans)
        return sorted(out)

    def channels(self, exchange: str) -> list[str]:
        """The raw channels ``/exchanges`` lists: what the exchange's connector records (no file opened);
        the scanned set for an exchange no connector speaks for."""
        from ticktape.exchanges.registry import CHANNELS

        known = CHANNELS.get(exchange)
        return sorted(known) if known is not None else self.raw_channels(exchange)

    def warm(self) -> None:
        """Read every exchange's raw channel names now (run in the background at start)."""
        for ex in self.exchanges():
            if "raw" in self.data_types(ex):
                self.raw_channels(ex)

    def answer(self, exchange: str | None) -> tuple[int, Any]:
        """(HTTP status, JSON body) of ``/exchanges`` (``exchange`` None) or ``/exchanges/{exchange}``; a
        malformed id is a 400 saying what an id looks like."""
        if exchange is not None and not _EXCHANGE_ID.match(exchange):
            return 400, {"code": 400, "message": f"invalid exchange id {exchange[:80]!r} "
                                                 "(lowercase letters, digits and '-', at most 40)"}
        desc = self.describe()
        if exchange is None:
            return 200, desc
        for d in desc:
            if d["id"] == exchange:
                return 200, d
        return 404, {"code": 404, "message": f"unknown exchange {exchange!r}"}

    def describe(self) -> list[dict[str, Any]]:
        """The /exchanges answer: one entry per exchange."""
        by_ex: dict[str, dict[str, Any]] = {}
        for s in self.series():
            e = by_ex.setdefault(s.exchange, {"id": s.exchange, "dataTypes": {}, "symbols": {}})
            first = s.first_hour.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00.000Z")
            last_text = time.strftime("%Y-%m-%dT%H:00:00.000Z", time.gmtime(int(s.last_hour.timestamp()) + 3600))
            e["dataTypes"].setdefault(s.data_type, {})[s.symbol] = {"availableSince": first, "availableTo": last_text}
            if s.symbol != "_":
                sym = e["symbols"].setdefault(s.symbol, {"id": s.symbol, "availableSince": first, "availableTo": last_text})
                sym["availableSince"] = min(sym["availableSince"], first)
                sym["availableTo"] = max(sym["availableTo"], last_text)
        out = []
        for ex, e in sorted(by_ex.items()):
            types = e["dataTypes"]
            normalized = []
            if "trades" in types:
                normalized += ["trade", "trade_bar_{n}{ticks|ms|s|m|vol}"]
            if "book_change" in types:
                normalized += ["book_change", "book_snapshot_{levels}_{interval}{ms|s|m}", "quote"]
            elif any(t.startswith("book_snapshot_") for t in types):  # partial-depth capture (l2Book, depth20)
                normalized += ["book_snapshot_{levels}_{interval}{ms|s|m}", "quote"]
            normalized += [n for n, t in (("book_ticker", "book_ticker"), ("derivative_ticker", "derivative_ticker"),
                                          ("liquidation", "liquidations")) if t in types]
            normalized.append("disconnect")
            out.append(
                {
                    "id": ex,
                    "channels": self.channels(ex) if "raw" in types else [],
                    "dataTypes": normalized,
                    "archiveTypes": {t: sorted(k for k in v if k != "_") for t, v in sorted(types.items())},
                    "symbols": [e["symbols"][k] for k in sorted(e["symbols"])],
                    "availableSince": min((v["availableSince"] for v in e["symbols"].values()), default=None),
                    "availableTo": max((v["availableTo"] for v in e["symbols"].values()), default=None),
                }
            )
        return out
