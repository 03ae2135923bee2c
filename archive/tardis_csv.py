"""Tardis.dev downloadable CSV datasets: names, columns, file naming, read and write.

The format (docs.tardis.dev "Downloadable CSV files"): one gzip CSV per
(exchange, data type, UTC day, symbol), named
``<exchange>_<data_type>_<YYYY-MM-DD>_<SYMBOL>.csv.gz``; comma separated, LF,
a header line, timestamps in microseconds since the epoch (UTC), empty field
= no value. Rows are written and read as whole Arrow columns (pyarrow.csv),
never one Python call per row.

Which ticktape table each dataset maps to (both directions):

| Tardis dataset | ticktape table |
|---|---|
| trades | trades |
| incremental_book_L2 | book_change |
| book_snapshot_25 / book_snapshot_5 | book_snapshot_25 / book_snapshot_5 |
| quotes | book_snapshot_1 (one level a side) |
| book_ticker | book_ticker |
| derivative_ticker | derivative_ticker |
| liquidations | liquidations |
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

GZIP_LEVEL = 6

#: the four columns every dataset starts with
HEAD = ("exchange", "symbol", "timestamp", "local_timestamp")


def snapshot_columns(levels: int) -> tuple[str, ...]:
    """``asks[0].price, asks[0].amount, bids[0].price, bids[0].amount, asks[1].price, ...`` (best first)."""
    out: list[str] = []
    for i in range(levels):
        out += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    return tuple(out)


_QUOTE = ("ask_amount", "ask_price", "bid_price", "bid_amount")

#: dataset -> its columns after ``HEAD``, exactly as Tardis documents them
COLUMNS: dict[str, tuple[str, ...]] = {
    "trades": ("id", "side", "price", "amount"),
    "incremental_book_L2": ("is_snapshot", "side", "price", "amount"),
    "book_snapshot_25": snapshot_columns(25),
    "book_snapshot_5": snapshot_columns(5),
    "quotes": _QUOTE,
    "book_ticker": _QUOTE,
    "derivative_ticker": (
        "funding_timestamp",
        "funding_rate",
        "predicted_funding_rate",
        "open_interest",
        "last_price",
        "index_price",
        "mark_price",
    ),
    "liquidations": ("id", "side", "price", "amount"),
}

DATASETS = tuple(COLUMNS)

#: dataset -> the ticktape table it is stored as
TABLE_OF: dict[str, str] = {
    "trades": "trades",
    "incremental_book_L2": "book_change",
    "book_snapshot_25": "book_snapshot_25",
    "book_snapshot_5": "book_snapshot_5",
    "quotes": "book_snapshot_1",
    "book_ticker": "book_ticker",
    "derivative_ticker": "derivative_ticker",
    "liquidations": "liquidations",
}

#: levels of the snapshot-shaped datasets
LEVELS = {"book_snapshot_25": 25, "book_snapshot_5": 5, "quotes": 1}


def columns(dataset: str) -> tuple[str, ...]:
    return HEAD + COLUMNS[dataset]


def filename_symbol(symbol: str) -> str:
    """Tardis names files by the symbol with ``/`` and ``:`` replaced by ``-``."""
    return re.sub(r"[/:]", "-", symbol)


def filename(exchange: str, dataset: str, day: date, symbol: str) -> str:
    return f"{exchange}_{dataset}_{day:%Y-%m-%d}_{filename_symbol(symbol)}.csv.gz"


_NAME_RE = re.compile(
    r"^(?P<exchange>[a-z0-9-]+)_(?P<dataset>" + "|".join(sorted(DATASETS, key=len, reverse=True))
    + r")_(?P<day>\d{4}-\d{2}-\d{2})_(?P<symbol>.+?)\.csv(?:\.gz)?$"
)


@dataclass(frozen=True)
class DatasetFile:
    exchange: str
    dataset: str
    day: date
    symbol: str  # as in the file name (the rows carry the exact symbol)


def parse_filename(name: str) -> DatasetFile | None:
    m = _NAME_RE.match(name)
    if not m:
        return None
    return DatasetFile(m["exchange"], m["dataset"], date.fromisoformat(m["day"]), m["symbol"])


# --- writing -------------------------------------------------------------------------------


def header_bytes(dataset: str) -> bytes:
    """The header line (unquoted, as Tardis writes it)."""
    return (",".join(columns(dataset)) + "\n").encode()


def csv_bytes(dataset: str, table: pa.Table) -> bytes:
    """Rows of ``table`` (``columns(dataset)`` in order: strings, int64 µs, doubles with nulls for
    "no value", booleans) as CSV lines without a header: the bytes a dataset file holds after its header."""
    if tuple(table.column_names) != columns(dataset):
        raise ValueError(f"{dataset}: columns {table.column_names} are not {list(columns(dataset))}")
    if not table.num_rows:
        return b""
    out = pa.BufferOutputStream()
    # no quotes (as Tardis writes them); Arrow refuses a value with a comma, quote or newline
    pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return out.getvalue().to_pybytes()


class DatasetWriter:
    """One gzip dataset file written in chunks: Tardis's unquoted header, then rows as they come."""

    def __init__(self, path: str, dataset: str) -> None:
        self.dataset = dataset
        self.names = columns(dataset)
        self.rows = 0
        # gzip level 6 (gzip's own default): Arrow's 9 spends ~4x the CPU for ~3 % less size
        self._out = gzip.GzipFile(path, "wb", compresslevel=GZIP_LEVEL)
        self._out.write(header_bytes(dataset))

    def write(self, table: pa.Table) -> None:
        """``table`` as ``csv_bytes`` takes it."""
        data = csv_bytes(self.dataset, table)
        if data:
            self._out.write(data)
            self.rows += table.num_rows

    def close(self) -> None:
        self._out.close()


def write(path: str, dataset: str, table: pa.Table) -> None:
    """A whole dataset file at once."""
    w = DatasetWriter(path, dataset)
    try:
        w.write(table)
    finally:
        w.close()


# --- reading -------------------------------------------------------------------------------


class FormatError(ValueError):
    """A file that is not the Tardis dataset it claims to be (message names the file)."""


def _types(dataset: str) -> dict[str, pa.DataType]:
    t: dict[str, pa.DataType] = {"exchange": pa.string(), "symbol": pa.string(), "timestamp": pa.int64(),
                                 "local_timestamp": pa.int64()}
    for c in COLUMNS[dataset]:
        if c in ("id", "side"):
            t[c] = pa.string()
        elif c == "is_snapshot":
            t[c] = pa.bool_()
        elif c == "funding_timestamp":
            t[c] = pa.int64()
        else:
            t[c] = pa.float64()
    return t


def read(path: str, dataset: str) -> pa.Table:
    """The file's rows with typed columns; FormatError (naming the file and what is wrong) otherwise."""
    want = columns(dataset)
    try:
        with pa.input_stream(path, compression="gzip" if path.endswith(".gz") else None) as f:
            data = f.read()
        nl = data.find(b"\n")
        header = (data if nl < 0 else data[:nl]).decode("utf-8", "replace").rstrip("\r")
        if tuple(header.split(",")) != want:
            raise FormatError(f"{path}: header is not Tardis {dataset}'s ({','.join(want[:8])}...): {header[:120]!r}")
        body = b"" if nl < 0 else data[nl + 1 :]
        if not body.strip():
            return pa.schema([(c, t) for c, t in _types(dataset).items()]).empty_table()
        return pacsv.read_csv(
            pa.BufferReader(body),
            read_options=pacsv.ReadOptions(column_names=list(want)),
            convert_options=pacsv.ConvertOptions(
                column_types=_types(dataset), strings_can_be_null=False, quoted_strings_can_be_null=False,
                null_values=[""],
            ),
        )
    except (pa.ArrowInvalid, OSError, EOFError) as e:
        raise FormatError(f"{path}: not a readable Tardis {dataset} CSV ({e})") from None


def read_batches(path: str, dataset: str, block_size: int = 16 << 20) -> Iterator[pa.RecordBatch]:
    """The file's rows in record batches of about ``block_size`` bytes of CSV (a day of
    incremental_book_L2 is gigabytes: never all in memory); FormatError as ``read``."""
    want = columns(dataset)
    comp = "gzip" if path.endswith(".gz") else None
    try:
        with pa.input_stream(path, compression=comp) as f:
            header = f.read(1 << 16).split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
        if tuple(header.split(",")) != want:
            raise FormatError(f"{path}: header is not Tardis {dataset}'s ({','.join(want[:8])}...): {header[:120]!r}")
        stream = pa.input_stream(path, compression=comp)
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=list(want), skip_rows=1, block_size=block_size),
            convert_options=pacsv.ConvertOptions(
                column_types=_types(dataset), strings_can_be_null=False, quoted_strings_can_be_null=False,
                null_values=[""],
            ),
        )
    except (pa.ArrowInvalid, OSError, EOFError) as e:
        if "Empty CSV file" in str(e):
            return
        raise FormatError(f"{path}: not a readable Tardis {dataset} CSV ({e})") from None
    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, OSError, EOFError) as e:
                raise FormatError(f"{path}: not a readable Tardis {dataset} CSV ({e})") from None
            yield batch
    finally:
        stream.close()


def int_col(table: pa.Table, name: str) -> np.ndarray:
    """An int64 column as numpy (nulls are an error: Tardis timestamps are always present)."""
    col = table.column(name)
    if col.null_count:
        raise FormatError(f"column {name}: {col.null_count} empty values")
    return np.asarray(col.to_numpy(), dtype=np.int64)


def float_col(table: pa.Table, name: str) -> np.ndarray:
    """A double column as numpy with NaN for empty fields."""
    return np.asarray(table.column(name).fill_null(np.nan).to_numpy(), dtype=np.float64)
