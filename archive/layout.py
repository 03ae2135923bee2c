"""Archive layout: where a file lives is a pure function of its four keys.

    <root>/exchange=<exchange>/type=<data type>/date=<YYYY-MM-DD>/symbol=<symbol>/<HH>.parquet

Hive-style folders let DuckDB, Polars, pyarrow.dataset and Spark prune by
exchange, data type, date and symbol; restore-by-range computes paths and
needs no listing. Open hours live in journals under ``<root>/.journal/`` (same
relative layout, ``.arrows`` suffix); temp files start with ``.`` so no reader,
glob or sync ever takes them for data.

Every name that reaches a path is validated here, so no exchange, symbol or
data type can step outside the root.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from ticktape.ipc.schemas import DATA_TYPES_HELP, NO_SYMBOL_NAME, is_data_type

JOURNAL_DIR = ".journal"
STATE_DIR = ".state"
PARQUET_SUFFIX = ".parquet"
JOURNAL_SUFFIX = ".arrows"
HOUR_NS = 3_600_000_000_000

_EXCHANGE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_SYMBOL_RE = re.compile(r"^[A-Za-z0-9@][A-Za-z0-9._@:-]{0,63}$")
_REL_RE = re.compile(
    r"^exchange=(?P<exchange>[^/]+)/type=(?P<type>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})"
    r"/symbol=(?P<symbol>[^/]+)/(?P<hour>\d{2})\.parquet$"
)


class LayoutError(ValueError):
    """A name or path that does not belong in the archive."""


def check_exchange(exchange: str) -> str:
    if not _EXCHANGE_RE.match(exchange):
        raise LayoutError(f"invalid exchange id {exchange!r} (lowercase letters, digits and '-')")
    return exchange


def check_symbol(symbol: str) -> str:
    if symbol == NO_SYMBOL_NAME:
        return symbol
    if not _SYMBOL_RE.match(symbol) or ".." in symbol:
        raise LayoutError(f"invalid symbol {symbol!r} (letters, digits and . _ @ : -, at most 64)")
    return symbol


def check_data_type(data_type: str) -> str:
    if not is_data_type(data_type):
        raise LayoutError(
            f"invalid data type {data_type!r} ({DATA_TYPES_HELP})"
        )
    return data_type


@dataclass(frozen=True, slots=True)
class FileKey:
    exchange: str
    data_type: str
    symbol: str
    hour: datetime  # UTC, truncated to the hour

    def __post_init__(self) -> None:
        check_exchange(self.exchange)
        check_data_type(self.data_type)
        check_symbol(self.symbol)
        if self.hour.tzinfo is None or self.hour.utcoffset() != timedelta(0):
            raise LayoutError("hour must be timezone-aware UTC")
        if self.hour != floor_hour(self.hour):
            raise LayoutError(f"hour {self.hour.isoformat()} is not on the hour")

    @property
    def hour_ns(self) -> int:
        return int(self.hour.timestamp()) * 1_000_000_000

    def relpath(self) -> str:
        """POSIX path relative to the archive root (also the S3 key suffix)."""
        return (
            f"exchange={self.exchange}/type={self.data_type}/date={self.hour:%Y-%m-%d}"
            f"/symbol={self.symbol}/{self.hour:%H}{PARQUET_SUFFIX}"
        )

    def journal_relpath(self) -> str:
        return f"{JOURNAL_DIR}/{self.relpath()[: -len(PARQUET_SUFFIX)]}{JOURNAL_SUFFIX}"

    @classmethod
    def from_relpath(cls, rel: str) -> FileKey:
        """Inverse of ``relpath``; raises LayoutError for anything else (incl. traversal)."""
        m = _REL_RE.match(rel)
        if not m:
            raise LayoutError(f"not an archive file path: {rel!r}")
        hour = datetime.strptime(f"{m['date']} {m['hour']}", "%Y-%m-%d %H").replace(tzinfo=UTC)
        return cls(m["exchange"], m["type"], m["symbol"], hour)

    @classmethod
    def from_ns(cls, exchange: str, data_type: str, symbol: str, ts_ns: int) -> FileKey:
        return cls(exchange, data_type, symbol, hour_of_ns(ts_ns))


def floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def hour_of_ns(ts_ns: int) -> datetime:
    return datetime.fromtimestamp((ts_ns // HOUR_NS) * 3600, tz=UTC)


def safe_join(root: str, rel: str) -> str:
    """Join a relative archive path to ``root``, refusing absolute paths and '..'."""
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("..", "") for part in p.parts) or "\\" in rel:
        raise LayoutError(f"path {rel!r} would leave the archive root")
    return f"{root.rstrip('/')}/{p.as_posix()}"


# --- time ranges ---------------------------------------------------------------


def parse_time(text: str, *, end: bool = False) -> datetime:
    """Parse a range bound to an aware UTC datetime.

    ``YYYY-MM-DD:HH`` (the seed's form) names a whole hour: as an end bound it
    includes that hour. ISO forms (``2025-01-06``, ``2025-01-06T18:42``,
    ``…Z``/offsets) are instants; as an end bound they are exclusive, as in
    Tardis's ``to``.
    """
    s = text.strip()
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}):(\d{1,2})", s)
    if m:
        try:
            t = datetime.strptime(f"{m[1]} {int(m[2]):02d}", "%Y-%m-%d %H").replace(tzinfo=UTC)
        except ValueError as e:
            raise ValueError(f"bad time {text!r}: {e}") from None
        return t + timedelta(hours=1) if end else t
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad time {text!r}: use YYYY-MM-DD:HH or ISO 8601 (e.g. 2025-01-06T18:00Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC)


def hours_between(start: datetime, end: datetime) -> Iterator[datetime]:
    """Every UTC hour that overlaps [start, end)."""
    if start >= end:
        return
    h = floor_hour(start.astimezone(UTC))
    while h < end:
        yield h
        h += timedelta(hours=1)


def paths_for_range(
    exchange: str, data_type: str, symbols: list[str], start: datetime, end: datetime
) -> list[FileKey]:
    """The files that should exist for a range (the seed's ``only_paths``)."""
    hours = list(hours_between(start, end))
    return [FileKey(exchange, data_type, s, h) for s in symbols for h in hours]


# --- file metadata -----------------------------------------------------------

META_PREFIX = "ticktape."


def file_metadata(key: FileKey, host: str, extra: dict[str, str] | None = None) -> dict[bytes, bytes]:
    """Key-value metadata every finalized Parquet file carries."""
    from ticktape.ipc.schemas import SCHEMA_VERSION

    meta = {
        "schema_version": str(SCHEMA_VERSION),
        "exchange": key.exchange,
        "data_type": key.data_type,
        "symbol": key.symbol,
        "hour": key.hour.strftime("%Y-%m-%dT%H:00:00Z"),
        "host": host,
        **(extra or {}),
    }
    return {f"{META_PREFIX}{k}".encode(): v.encode() for k, v in meta.items()}
