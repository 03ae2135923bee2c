"""Archive layout: one table per data type; where a file lives is a pure function of its four keys.

    <root>/<table>/exchange=<exchange>/symbol=<symbol>/date=<YYYY-MM-DD>/hour=<HH>/data.parquet

A table is a data type (``trades``, ``book_change``, ``book_snapshot_N`` (one
table per N), ``raw``, ``events``): one schema per table, so DuckDB, Polars,
pyarrow.dataset, pandas and Spark read a table directory whole with their
defaults, and the Hive folders give them exchange, symbol, date and hour as
partition columns to prune by. Restore-by-range computes paths and needs no
listing. Nothing but data files lives inside a table directory: open hours are
journals under ``<root>/.journal/`` (same relative layout, ``.arrows``
suffix), writer state under ``<root>/.state/``, temp files under
``<root>/.tmp/`` (same filesystem, renamed into place).

A capture that shares its S3 prefix with others (``capture run --shard K/N``, or any
capture with ``archive.file_tag``) tags every file it writes: ``data-<tag>.parquet``
beside the others in the same hour directory, so no two captures ever write the
same key and every reader takes the union of an hour directory's data files
(``data_file_tag`` says which names are data files).

``FileKey.relpath`` is the one place that computes a path. Every name that
reaches a path is validated here, so no exchange, symbol or data type can step
outside the root.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from ticktape.ipc.schemas import DATA_TYPES_HELP, NO_SYMBOL_NAME, is_data_type

JOURNAL_DIR = ".journal"
STATE_DIR = ".state"
TMP_DIR = ".tmp"
#: every directory of the root that is not a table (never read as data, never uploaded)
PRIVATE_DIRS = (JOURNAL_DIR, STATE_DIR, TMP_DIR)
DATA_FILE = "data.parquet"
PARQUET_SUFFIX = ".parquet"
JOURNAL_SUFFIX = ".arrows"
#: Hive partition keys inside a table directory, outermost first
PARTITION_KEYS = ("exchange", "symbol", "date", "hour")
HOUR_NS = 3_600_000_000_000

_EXCHANGE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_SYMBOL_RE = re.compile(r"^[A-Za-z0-9@][A-Za-z0-9._@:-]{0,63}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FILE_RE = re.compile(r"^data(?:-(?P<tag>[A-Za-z0-9][A-Za-z0-9._-]{0,63}))?\.parquet$")
_REL_RE = re.compile(
    r"^(?P<type>[a-z0-9_]+)/exchange=(?P<exchange>[^/]+)/symbol=(?P<symbol>[^/]+)"
    r"/date=(?P<date>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})/(?P<file>[^/]+)$"
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


def check_tag(tag: str) -> str:
    """A file tag: '' (an untagged ``data.parquet``) or letters, digits and . _ - (at most 64, no '..')."""
    if tag and (not _TAG_RE.match(tag) or ".." in tag):
        raise LayoutError(f"invalid file tag {tag!r} (letters, digits and . _ -, at most 64, no '..')")
    return tag


def data_file_name(tag: str = "") -> str:
    """The file name of an hour's data written under ``tag`` (``data.parquet`` untagged)."""
    return f"data-{tag}{PARQUET_SUFFIX}" if tag else DATA_FILE


def data_file_tag(name: str) -> str | None:
    """The tag of a data file name (``''`` for ``data.parquet``), None for any other name."""
    m = _FILE_RE.match(name)
    if m is None or ".." in name:
        return None
    return m["tag"] or ""


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
    #: the writing capture's tag ('' = ``data.parquet``): captures sharing a prefix never share a key
    tag: str = ""

    def __post_init__(self) -> None:
        check_exchange(self.exchange)
        check_tag(self.tag)
        check_data_type(self.data_type)
        check_symbol(self.symbol)
        if self.hour.tzinfo is None or self.hour.utcoffset() != timedelta(0):
            raise LayoutError("hour must be timezone-aware UTC")
        if self.hour != floor_hour(self.hour):
            raise LayoutError(f"hour {self.hour.isoformat()} is not on the hour")

    @property
    def hour_ns(self) -> int:
        return int(self.hour.timestamp()) * 1_000_000_000

    def dir_relpath(self) -> str:
        """The hour's directory relative to the root: every tag's file of the hour lives in it."""
        return (
            f"{self.data_type}/exchange={self.exchange}/symbol={self.symbol}"
            f"/date={self.hour:%Y-%m-%d}/hour={self.hour:%H}"
        )

    def relpath(self) -> str:
        """POSIX path relative to the archive root (also the S3 key suffix)."""
        return f"{self.dir_relpath()}/{data_file_name(self.tag)}"

    def with_tag(self, tag: str) -> FileKey:
        return FileKey(self.exchange, self.data_type, self.symbol, self.hour, tag)

    @property
    def slot(self) -> tuple[str, str, str, datetime]:
        """(exchange, data type, symbol, hour): what a file holds, whoever wrote it."""
        return (self.exchange, self.data_type, self.symbol, self.hour)

    def journal_relpath(self) -> str:
        return f"{JOURNAL_DIR}/{self.relpath()[: -len(PARQUET_SUFFIX)]}{JOURNAL_SUFFIX}"

    def tmp_relpath(self, tag: str) -> str:
        """A temp file for this key under ``.tmp/`` (outside every table; renamed into place).

        ``tag`` tells concurrent producers apart (writer id, restore token)."""
        flat = self.relpath()[: -len(PARQUET_SUFFIX)].replace("/", ",")
        return f"{TMP_DIR}/{flat}.{tag}.tmp"

    @classmethod
    def from_relpath(cls, rel: str) -> FileKey:
        """Inverse of ``relpath``; raises LayoutError for anything else (incl. traversal)."""
        m = _REL_RE.match(rel)
        tag = data_file_tag(m["file"]) if m else None
        if not m or tag is None:
            raise LayoutError(f"not an archive file path: {rel!r}")
        try:
            hour = datetime.strptime(f"{m['date']} {m['hour']}", "%Y-%m-%d %H").replace(tzinfo=UTC)
        except ValueError:
            raise LayoutError(f"not an archive file path (bad date/hour): {rel!r}") from None
        return cls(m["exchange"], m["type"], m["symbol"], hour, tag)

    @classmethod
    def from_ns(cls, exchange: str, data_type: str, symbol: str, ts_ns: int, tag: str = "") -> FileKey:
        return cls(exchange, data_type, symbol, hour_of_ns(ts_ns), tag)


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


def table_dirs(parent: str, data_type: str | None = None, exchange: str | None = None) -> list[str]:
    """The table directories under ``parent`` (the root, or the journal dir that mirrors it):
    one table's or every data type's, narrowed to one exchange's partition when given."""
    if data_type is not None:
        tables = [data_type]
    else:
        try:
            tables = sorted(n for n in os.listdir(parent) if is_data_type(n))
        except FileNotFoundError:
            return []
    suffix = () if exchange is None else (f"exchange={exchange}",)
    return [os.path.join(parent, table, *suffix) for table in tables]


def scan_files(root: str, data_type: str | None = None, exchange: str | None = None) -> Iterator[tuple[FileKey, str]]:
    """(key, local path) of every finalized file under a local root (optionally one table / exchange).

    Walks only table directories; private dirs (``.journal``, ``.state``, ``.tmp``) and
    anything that is not an archive path are skipped."""

    root = os.path.abspath(root)
    if data_type is not None:
        check_data_type(data_type)
    if exchange is not None:
        check_exchange(exchange)
    for base in table_dirs(root, data_type, exchange):
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if data_file_tag(name) is None:
                    continue
                path = os.path.join(dirpath, name)
                try:
                    key = FileKey.from_relpath(os.path.relpath(path, root).replace(os.sep, "/"))
                except LayoutError:
                    continue
                yield key, path


def local_hour_files(root: str, key: FileKey) -> list[FileKey]:
    """Every tag's file of ``key``'s hour under a local root, untagged first then by tag."""
    try:
        names = os.listdir(safe_join(root, key.dir_relpath()))
    except (FileNotFoundError, NotADirectoryError):
        return []
    tags = sorted(t for n in names if (t := data_file_tag(n)) is not None)
    return [key.with_tag(t) for t in tags]


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
        **({"tag": key.tag} if key.tag else {}),
        **(extra or {}),
    }
    return {f"{META_PREFIX}{k}".encode(): v.encode() for k, v in meta.items()}
