"""Record schemas, defined once: numpy dtypes for the rings, Arrow schemas for disk.

The ring carries fixed-size records so a batch is a numpy structured view; the
writer turns each column into an Arrow array with one vectorized call. Columns
that identify the file (exchange, symbol, data type, hour) are not stored in
the rows: they are Hive partition keys in the path (see ``archive.layout``) and
repeated in the file's key-value metadata.
"""

from __future__ import annotations

import struct
from functools import cache

import numpy as np
import pyarrow as pa

#: 2: tables layout, ``timestamp[us, UTC]`` + ``local_ts_ns`` (1: ``timestamp[ns]`` naive)
SCHEMA_VERSION = 2

# --- enums (small ints in the ring, dictionary strings on disk) -------------

SIDE_UNKNOWN, SIDE_BUY, SIDE_SELL = 0, 1, 2
TRADE_SIDES = ("unknown", "buy", "sell")

BOOK_BID, BOOK_ASK = 0, 1
BOOK_SIDES = ("bid", "ask")

# Event kinds. Index = code stored in the ring.
EVENT_KINDS = (
    "disconnect",  # connection lost (also an empty raw row)
    "connect",  # connection (re)established
    "gap",  # sequence gap detected (book will resync)
    "resync",  # book resynchronised from a fresh snapshot
    "subscribe_error",  # exchange refused a subscription
    "malformed",  # frame could not be decoded; kept in raw
    "drop",  # records dropped because a ring was full
    "stall",  # no frames within the exchange's timeout: treated as disconnect
    "duplicate",  # duplicate/out-of-order update ignored
    "checksum",  # book checksum mismatch
    "info",  # anything else worth a row
    "stream_silent",  # a subscribed stream sent nothing for a while, its symbol still listed (a quiet market)
)
EVENT_CODE = {k: i for i, k in enumerate(EVENT_KINDS)}

#: symbol id reserved for rows that belong to no symbol (acks, pongs, disconnects)
NO_SYMBOL = 0
NO_SYMBOL_NAME = "_"

TRADE_ID_BYTES = 40
EVENT_DETAIL_BYTES = 96

# --- numpy dtypes (ring layout) ---------------------------------------------

TRADE_DTYPE = np.dtype(
    [
        ("local_ts", "<i8"),
        ("exchange_ts", "<i8"),
        ("price", "<f8"),
        ("amount", "<f8"),
        ("symbol", "<u2"),
        ("side", "u1"),
        ("_pad", "u1", (5,)),
        ("id", f"S{TRADE_ID_BYTES}"),
    ]
)

BOOK_CHANGE_DTYPE = np.dtype(
    [
        ("local_ts", "<i8"),
        ("exchange_ts", "<i8"),
        ("price", "<f8"),
        ("amount", "<f8"),
        ("symbol", "<u2"),
        ("side", "u1"),
        ("is_snapshot", "u1"),
        ("_pad", "u1", (4,)),
    ]
)

EVENT_DTYPE = np.dtype(
    [
        ("local_ts", "<i8"),
        ("exchange_ts", "<i8"),
        ("conn_id", "<u4"),
        ("symbol", "<u2"),
        ("channel", "<u2"),
        ("kind", "u1"),
        ("_pad", "u1", (7,)),
        ("detail", f"S{EVENT_DETAIL_BYTES}"),
    ]
)

#: Index record of a raw frame; the payload lives in the raw ring's byte arena
#: at absolute byte position ``pos`` (see ``ipc.raw_ring``).
RAW_INDEX_DTYPE = np.dtype(
    [
        ("local_ts", "<i8"),
        ("pos", "<u8"),
        ("length", "<u4"),
        ("conn_id", "<u4"),
        ("symbol", "<u2"),
        ("channel", "<u2"),
        ("_pad", "u1", (4,)),
    ]
)


#: ``book_ticker``: the venue's own best bid/offer stream; NaN = that side absent.
BOOK_TICKER_DTYPE = np.dtype(
    [
        ("local_ts", "<i8"),
        ("exchange_ts", "<i8"),
        ("bid_price", "<f8"),
        ("bid_amount", "<f8"),
        ("ask_price", "<f8"),
        ("ask_amount", "<f8"),
        ("symbol", "<u2"),
        ("_pad", "u1", (6,)),
    ]
)

#: ``derivative_ticker``: the venue's full ticker state after each update (deltas
#: merged by the connector); NaN = the venue gives no such value (null on disk),
#: ``funding_timestamp`` 0 = none (null on disk).
DERIVATIVE_TICKER_DTYPE = np.dtype(
    [
        ("local_ts", "<i8"),
        ("exchange_ts", "<i8"),
        ("funding_timestamp", "<i8"),
        ("last_price", "<f8"),
        ("mark_price", "<f8"),
        ("index_price", "<f8"),
        ("funding_rate", "<f8"),
        ("predicted_funding_rate", "<f8"),
        ("open_interest", "<f8"),
        ("symbol", "<u2"),
        ("_pad", "u1", (6,)),
    ]
)

#: ``liquidations``: one forced order each; ``side`` is the liquidation order's side
#: (sell = a long was liquidated, as Tardis); empty ``id`` = the venue gives none.
#: Same layout as a trade, so producers pack it with ``LIQUIDATION_STRUCT``.
LIQUIDATION_DTYPE = TRADE_DTYPE


@cache
def book_snapshot_dtype(levels: int) -> np.dtype:
    if not 1 <= levels <= 1000:
        raise ValueError(f"book snapshot levels must be 1..1000, got {levels}")
    return np.dtype(
        [
            ("local_ts", "<i8"),
            ("exchange_ts", "<i8"),
            ("symbol", "<u2"),
            ("_pad", "u1", (6,)),
            ("bid_price", "<f8", (levels,)),
            ("bid_amount", "<f8", (levels,)),
            ("ask_price", "<f8", (levels,)),
            ("ask_amount", "<f8", (levels,)),
        ]
    )


# --- struct packers for the producer side (one C call per record) ------------
# Field order of each packer matches its dtype exactly (pads are 'x').

TRADE_STRUCT = struct.Struct(f"<qqddHB5x{TRADE_ID_BYTES}s")
BOOK_CHANGE_STRUCT = struct.Struct("<qqddHBB4x")
EVENT_STRUCT = struct.Struct(f"<qqIHHB7x{EVENT_DETAIL_BYTES}s")
RAW_INDEX_STRUCT = struct.Struct("<qQIIHH4x")
BOOK_TICKER_STRUCT = struct.Struct("<qqddddH6x")
DERIVATIVE_TICKER_STRUCT = struct.Struct("<qqqddddddH6x")
LIQUIDATION_STRUCT = TRADE_STRUCT


@cache
def book_snapshot_struct(levels: int) -> struct.Struct:
    return struct.Struct(f"<qqH6x{4 * levels}d")


assert TRADE_STRUCT.size == TRADE_DTYPE.itemsize
assert BOOK_CHANGE_STRUCT.size == BOOK_CHANGE_DTYPE.itemsize
assert EVENT_STRUCT.size == EVENT_DTYPE.itemsize
assert RAW_INDEX_STRUCT.size == RAW_INDEX_DTYPE.itemsize
assert BOOK_TICKER_STRUCT.size == BOOK_TICKER_DTYPE.itemsize
assert DERIVATIVE_TICKER_STRUCT.size == DERIVATIVE_TICKER_DTYPE.itemsize

# --- Arrow schemas (disk layout) ---------------------------------------------

#: Timestamps on disk: microseconds, UTC-annotated (Parquet TIMESTAMP(MICROS,
#: isAdjustedToUTC=true)), the one timestamp every engine reads natively with its
#: defaults (Spark 3.5/4, Trino, DuckDB, Polars, pandas, pyarrow). Spark refuses
#: nanosecond Parquet timestamps, so the exact arrival time in ns is kept beside
#: it as a plain int64 column, ``local_ts_ns`` (replay and loaders order by it).
TS = pa.timestamp("us", tz="UTC")
#: exact arrival time, ns since the epoch
LOCAL_TS_NS = "local_ts_ns"
DICT_STR = pa.dictionary(pa.int8(), pa.string())

TRADES_SCHEMA = pa.schema(
    [
        ("local_ts", TS),
        ("exchange_ts", TS),
        ("id", pa.string()),
        ("price", pa.float64()),
        ("amount", pa.float64()),
        ("side", DICT_STR),
        (LOCAL_TS_NS, pa.int64()),
    ]
)

BOOK_CHANGE_SCHEMA = pa.schema(
    [
        ("local_ts", TS),
        ("exchange_ts", TS),
        ("is_snapshot", pa.bool_()),
        ("side", DICT_STR),
        ("price", pa.float64()),
        ("amount", pa.float64()),
        (LOCAL_TS_NS, pa.int64()),
    ]
)

EVENTS_SCHEMA = pa.schema(
    [
        ("local_ts", TS),
        ("exchange_ts", TS),
        ("kind", DICT_STR),
        ("channel", pa.string()),
        ("conn_id", pa.uint32()),
        ("detail", pa.string()),
        (LOCAL_TS_NS, pa.int64()),
    ]
)

RAW_SCHEMA = pa.schema(
    [
        ("local_ts", TS),
        ("channel", pa.string()),
        ("conn_id", pa.uint32()),
        ("payload", pa.binary()),
        (LOCAL_TS_NS, pa.int64()),
    ]
)


BOOK_TICKER_SCHEMA = pa.schema(
    [
        ("local_ts", TS),
        ("exchange_ts", TS),
        ("bid_price", pa.float64()),
        ("bid_amount", pa.float64()),
        ("ask_price", pa.float64()),
        ("ask_amount", pa.float64()),
        (LOCAL_TS_NS, pa.int64()),
    ]
)

DERIVATIVE_TICKER_SCHEMA = pa.schema(
    [
        ("local_ts", TS),
        ("exchange_ts", TS),
        ("last_price", pa.float64()),
        ("mark_price", pa.float64()),
        ("index_price", pa.float64()),
        ("funding_rate", pa.float64()),
        ("funding_timestamp", TS),
        ("predicted_funding_rate", pa.float64()),
        ("open_interest", pa.float64()),
        (LOCAL_TS_NS, pa.int64()),
    ]
)

LIQUIDATIONS_SCHEMA = pa.schema(
    [
        ("local_ts", TS),
        ("exchange_ts", TS),
        ("id", pa.string()),
        ("side", DICT_STR),
        ("price", pa.float64()),
        ("amount", pa.float64()),
        (LOCAL_TS_NS, pa.int64()),
    ]
)

#: fixed-schema tables added by issue 12 (data type -> (ring dtype, Arrow schema))
TICKER_TYPES = ("book_ticker", "derivative_ticker", "liquidations")


@cache
def book_snapshot_schema(levels: int) -> pa.Schema:
    lst = pa.list_(pa.float64(), levels)
    return pa.schema(
        [
            ("local_ts", TS),
            ("exchange_ts", TS),
            ("bid_price", lst),
            ("bid_amount", lst),
            ("ask_price", lst),
            ("ask_amount", lst),
            (LOCAL_TS_NS, pa.int64()),
        ]
    )


def snapshot_levels(data_type: str) -> int:
    """``book_snapshot_20`` -> 20; raises ValueError for anything else."""
    prefix = "book_snapshot_"
    if not data_type.startswith(prefix) or not data_type[len(prefix) :].isdigit():
        raise ValueError(f"not a book snapshot data type: {data_type!r}")
    levels = int(data_type[len(prefix) :])
    book_snapshot_dtype(levels)  # validates range
    return levels


FIXED_TYPES = ("trades", "book_change", "events", *TICKER_TYPES)
DATA_TYPES_HELP = "trades, book_change, book_snapshot_{N}, book_ticker, derivative_ticker, liquidations, raw, events"


def is_data_type(data_type: str) -> bool:
    if data_type in ("trades", "book_change", "events", "raw", *TICKER_TYPES):
        return True
    try:
        snapshot_levels(data_type)
    except ValueError:
        return False
    return True


def dtype_for(data_type: str) -> np.dtype:
    if data_type == "trades":
        return TRADE_DTYPE
    if data_type == "book_change":
        return BOOK_CHANGE_DTYPE
    if data_type == "events":
        return EVENT_DTYPE
    if data_type == "raw":
        return RAW_INDEX_DTYPE
    if data_type == "book_ticker":
        return BOOK_TICKER_DTYPE
    if data_type == "derivative_ticker":
        return DERIVATIVE_TICKER_DTYPE
    if data_type == "liquidations":
        return LIQUIDATION_DTYPE
    return book_snapshot_dtype(snapshot_levels(data_type))


def arrow_schema_for(data_type: str) -> pa.Schema:
    if data_type == "trades":
        return TRADES_SCHEMA
    if data_type == "book_change":
        return BOOK_CHANGE_SCHEMA
    if data_type == "events":
        return EVENTS_SCHEMA
    if data_type == "raw":
        return RAW_SCHEMA
    if data_type == "book_ticker":
        return BOOK_TICKER_SCHEMA
    if data_type == "derivative_ticker":
        return DERIVATIVE_TICKER_SCHEMA
    if data_type == "liquidations":
        return LIQUIDATIONS_SCHEMA
    return book_snapshot_schema(snapshot_levels(data_type))


# --- numpy batch -> Arrow (no per-record Python loop) -------------------------


def _ns(col: np.ndarray) -> pa.Array:
    return pa.array(np.ascontiguousarray(col), type=pa.int64())


def ts_from_ns(ns: np.ndarray, zero_is_null: bool = False) -> pa.Array:
    """int64 ns -> ``timestamp[us, UTC]`` (floored to the µs); 0 = "none" -> null when asked."""
    us = np.floor_divide(np.ascontiguousarray(ns, dtype=np.int64), 1000)
    mask = (us == 0) if zero_is_null else None
    if mask is not None and not mask.any():
        mask = None
    return pa.array(us, type=pa.int64(), mask=mask).view(TS) if mask is not None else pa.array(us).view(TS)


def _ts(col: np.ndarray) -> pa.Array:
    return ts_from_ns(col)


def _ets(col: np.ndarray) -> pa.Array:
    return ts_from_ns(col, zero_is_null=True)


def _dict(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.ascontiguousarray(codes).astype(np.int8, copy=False)), pa.array(names, pa.string())
    )


def _fixed_str(col: np.ndarray) -> pa.Array:
    """numpy 'S' column (NUL padded) -> Arrow string, converted in C."""
    return pa.array(col, type=pa.binary()).cast(pa.string())


def _f64_nullable(col: np.ndarray) -> pa.Array:
    """float column with NaN = "the venue gives none" -> Arrow doubles with nulls (vectorized)."""
    arr = np.ascontiguousarray(col)
    return pa.array(arr, type=pa.float64(), mask=np.isnan(arr))


def _ts_nullable(col: np.ndarray) -> pa.Array:
    """ns timestamp column with 0 = none -> Arrow timestamps (µs, UTC) with nulls."""
    return ts_from_ns(col, zero_is_null=True)


def _str_nullable(col: np.ndarray) -> pa.Array:
    """NUL-padded 'S' column; empty = none -> null."""
    return pa.array(col, type=pa.binary(), mask=np.asarray(col) == b"").cast(pa.string())


def _ticker_batch_to_arrow(data_type: str, batch: np.ndarray) -> pa.RecordBatch:
    if data_type == "book_ticker":
        return pa.RecordBatch.from_arrays(
            [
                _ts(batch["local_ts"]),
                _ets(batch["exchange_ts"]),
                *(_f64_nullable(batch[c]) for c in ("bid_price", "bid_amount", "ask_price", "ask_amount")),
                _ns(batch["local_ts"]),
            ],
            schema=BOOK_TICKER_SCHEMA,
        )
    if data_type == "derivative_ticker":
        return pa.RecordBatch.from_arrays(
            [
                _ts(batch["local_ts"]),
                _ets(batch["exchange_ts"]),
                _f64_nullable(batch["last_price"]),
                _f64_nullable(batch["mark_price"]),
                _f64_nullable(batch["index_price"]),
                _f64_nullable(batch["funding_rate"]),
                _ts_nullable(batch["funding_timestamp"]),
                _f64_nullable(batch["predicted_funding_rate"]),
                _f64_nullable(batch["open_interest"]),
                _ns(batch["local_ts"]),
            ],
            schema=DERIVATIVE_TICKER_SCHEMA,
        )
    return pa.RecordBatch.from_arrays(
        [
            _ts(batch["local_ts"]),
            _ets(batch["exchange_ts"]),
            _str_nullable(batch["id"]),
            _dict(batch["side"], TRADE_SIDES),
            pa.array(np.ascontiguousarray(batch["price"])),
            pa.array(np.ascontiguousarray(batch["amount"])),
            _ns(batch["local_ts"]),
        ],
        schema=LIQUIDATIONS_SCHEMA,
    )


def _levels(col: np.ndarray, levels: int) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(col).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, levels)


def fixed_batch_to_arrow(
    data_type: str, batch: np.ndarray, channel_names: tuple[str, ...] = ()
) -> pa.RecordBatch:
    """Convert a structured numpy batch of ``data_type`` records into a RecordBatch.

    ``channel_names`` maps channel ids to names (events only).
    """
    if data_type == "trades":
        return pa.RecordBatch.from_arrays(
            [
                _ts(batch["local_ts"]),
                _ets(batch["exchange_ts"]),
                _fixed_str(batch["id"]),
                pa.array(np.ascontiguousarray(batch["price"])),
                pa.array(np.ascontiguousarray(batch["amount"])),
                _dict(batch["side"], TRADE_SIDES),
                _ns(batch["local_ts"]),
            ],
            schema=TRADES_SCHEMA,
        )
    if data_type == "book_change":
        return pa.RecordBatch.from_arrays(
            [
                _ts(batch["local_ts"]),
                _ets(batch["exchange_ts"]),
                pa.array(np.ascontiguousarray(batch["is_snapshot"]).astype(np.bool_)),
                _dict(batch["side"], BOOK_SIDES),
                pa.array(np.ascontiguousarray(batch["price"])),
                pa.array(np.ascontiguousarray(batch["amount"])),
                _ns(batch["local_ts"]),
            ],
            schema=BOOK_CHANGE_SCHEMA,
        )
    if data_type == "events":
        names = channel_names or ("",)
        chan = pa.DictionaryArray.from_arrays(
            pa.array(np.ascontiguousarray(batch["channel"]).astype(np.int32)), pa.array(names, pa.string())
        ).cast(pa.string())
        return pa.RecordBatch.from_arrays(
            [
                _ts(batch["local_ts"]),
                _ets(batch["exchange_ts"]),
                _dict(batch["kind"], EVENT_KINDS),
                chan,
                pa.array(np.ascontiguousarray(batch["conn_id"])),
                _fixed_str(batch["detail"]),
                _ns(batch["local_ts"]),
            ],
            schema=EVENTS_SCHEMA,
        )
    if data_type in TICKER_TYPES:
        return _ticker_batch_to_arrow(data_type, batch)
    levels = snapshot_levels(data_type)
    return pa.RecordBatch.from_arrays(
        [
            _ts(batch["local_ts"]),
            _ets(batch["exchange_ts"]),
            _levels(batch["bid_price"], levels),
            _levels(batch["bid_amount"], levels),
            _levels(batch["ask_price"], levels),
            _levels(batch["ask_amount"], levels),
            _ns(batch["local_ts"]),
        ],
        schema=book_snapshot_schema(levels),
    )


def raw_batch_to_arrow(
    index: np.ndarray, payload: memoryview | bytes, base_pos: int, channel_names: tuple[str, ...],
    copy: bool = True,
) -> pa.RecordBatch:
    """Raw index records + the contiguous arena bytes they point into -> RecordBatch.

    ``payload`` holds the bytes from absolute position ``base_pos`` on; every
    record's payload must lie inside it (the raw ring guarantees payloads never
    straddle the wrap). Offsets are built with numpy, the binary column from
    buffers: no per-record Python work. ``copy=False``: when the payloads are
    back to back (the raw ring packs them), the batch's payload buffer *is*
    ``payload`` (the ring's arena): valid only until those records are committed,
    so only for a batch written out at once (the writer's journal append).
    """
    n = len(index)
    pos = np.ascontiguousarray(index["pos"]).astype(np.int64) - base_pos
    length = np.ascontiguousarray(index["length"]).astype(np.int64)
    # Payloads are contiguous in arena order except for alignment padding; gather
    # them into one buffer with numpy fancy indexing only when there are gaps.
    src = np.frombuffer(payload, dtype=np.uint8)
    ends = pos + length
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(length, out=offsets[1:])
    zero_copy = False
    if n and np.array_equal(pos[1:], ends[:-1]) and pos[0] == 0:
        data = src[: int(ends[-1])]
        zero_copy = not copy
    elif n and bool(np.all(pos[1:] >= ends[:-1])) and pos[0] >= 0:
        # arena order with alignment gaps (the ring's own layout): keep-mask built
        # with an int8 running sum, 1 byte of scratch per payload byte
        lo, hi = int(pos[0]), int(ends[-1])
        delta = np.zeros(hi - lo + 1, dtype=np.int8)
        np.add.at(delta, pos - lo, 1)
        np.add.at(delta, ends - lo, -1)
        keep = np.cumsum(delta[:-1], dtype=np.int8).view(np.bool_)
        data = src[lo:hi][keep]
    else:
        total = int(offsets[-1])
        gather = np.repeat(pos - offsets[:-1], length) + np.arange(total, dtype=np.int64)
        data = src[gather]
    if offsets[-1] < 2**31:
        payload_arr = pa.BinaryArray.from_buffers(
            pa.binary(), n,
            [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data if zero_copy else data.copy())],
        )
    else:  # pragma: no cover - a >2 GiB batch
        payload_arr = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data.copy())]
        ).cast(pa.binary())
    chan = pa.DictionaryArray.from_arrays(
        pa.array(np.ascontiguousarray(index["channel"]).astype(np.int32)),
        pa.array(channel_names or ("",), pa.string()),
    ).cast(pa.string())
    return pa.RecordBatch.from_arrays(
        [
            _ts(index["local_ts"]),
            chan,
            pa.array(np.ascontiguousarray(index["conn_id"])),
            payload_arr,
            _ns(index["local_ts"]),
        ],
        schema=RAW_SCHEMA,
    )


def table_from_ns(
    data_type: str, local_ns: np.ndarray, exchange_ns: np.ndarray | None, columns: list[pa.Array]
) -> pa.Table:
    """A disk table of ``data_type`` from ns times and its other columns in schema order.

    ``exchange_ns`` is None for ``raw`` (no exchange time); 0 in it means "none" (null).
    For fixtures, tools and importers that build tables outside the ring path.
    """
    local = np.ascontiguousarray(local_ns, dtype=np.int64)
    head = [ts_from_ns(local)]
    if exchange_ns is not None:
        head.append(ts_from_ns(np.asarray(exchange_ns, dtype=np.int64), zero_is_null=True))
    return pa.Table.from_arrays([*head, *columns, _ns(local)], schema=arrow_schema_for(data_type))


def local_ns(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """The exact arrival times (``local_ts_ns``) of a disk table/batch as one int64 numpy array."""
    col = table.column(LOCAL_TS_NS)
    if isinstance(col, pa.ChunkedArray):
        parts = [c.to_numpy(zero_copy_only=False) for c in col.chunks]
        return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, np.int64)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)
