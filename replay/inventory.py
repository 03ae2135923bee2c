"""What the archive holds: exchanges, data types, symbols, raw channels, date ranges.

Built from directory names (``archive.loaders.list_archive``), refreshed at
most every few seconds since a live capture keeps adding hours. Raw channel
names live inside the files (the ``channel`` column), so they are read once
per file (only that dictionary-encoded column) and cached by path and mtime.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC
from typing import Any

import pyarrow.compute as pc

from ticktape.archive.layout import FileKey, scan_files
from ticktape.archive.loaders import Series, list_archive
from ticktape.replay import storage

REFRESH_S = 5.0


class Inventory:
    def __init__(self, root: str, refresh_s: float = REFRESH_S) -> None:
        self.root = root if storage.is_s3(root) else os.path.abspath(root)
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
        if not storage.is_s3(self.root):
            return list_archive(self.root)
        acc: dict[tuple[str, str, str], list[Any]] = {}
        self._s3_paths: dict[tuple[str, str], list[str]] = {}
        for k, size, path in storage.s3_files(self.root):
            a = acc.setdefault((k.exchange, k.data_type, k.symbol), [k.hour, k.hour, 0, 0])
            a[0], a[1], a[2], a[3] = min(a[0], k.hour), max(a[1], k.hour), a[2] + 1, a[3] + size
            self._s3_paths.setdefault((k.exchange, k.data_type), []).append(path)
        return [Series(e, t, s, a[0], a[1], a[2], a[3]) for (e, t, s), a in sorted(acc.items())]

    def _raw_files(self, exchange: str) -> list[tuple[str, float]]:
        """(path, version) of every raw file of an exchange; version changes when the file does."""
        if storage.is_s3(self.root):
            self.series()
            return [(p, 0.0) for p in getattr(self, "_s3_paths", {}).get((exchange, "raw"), [])]
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

    def describe(self) -> list[dict[str, Any]]:
        """The /exchanges answer: one entry per exchange."""
        by_ex: dict[str, dict[str, Any]] = {}
        for s in self.series():
            e = by_ex.setdefault(s.exchange, {"id": s.exchange, "dataTypes": {}, "symbols": {}})
            first = s.first_hour.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00.000Z")
            last = FileKey(s.exchange, s.data_type, s.symbol, s.last_hour).hour_ns + 3_600_000_000_000
            last_text = time.strftime("%Y-%m-%dT%H:00:00.000Z", time.gmtime(last // 1_000_000_000))
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
                    "channels": self.raw_channels(ex) if "raw" in types else [],
                    "dataTypes": normalized,
                    "archiveTypes": {t: sorted(k for k in v if k != "_") for t, v in sorted(types.items())},
                    "symbols": [e["symbols"][k] for k in sorted(e["symbols"])],
                    "availableSince": min((v["availableSince"] for v in e["symbols"].values()), default=None),
                    "availableTo": max((v["availableTo"] for v in e["symbols"].values()), default=None),
                }
            )
        return out
