"""Vectorized text building: timestamps, numbers and lines for whole batches at once.

Every line the server sends is assembled from Arrow binary arrays with
``binary_join_element_wise`` (one C loop per batch), never a Python loop per
message. Timestamps use Tardis's forms, UTC with ``Z``: raw replay's 7 fractional digits
(``2025-01-06T18:42:16.2225220Z``, as Tardis stores them), and in normalized messages
6 digits for ``localTimestamp`` and 3 for exchange-derived times (as Tardis Machine
serializes them). Each is a fixed-width field built from a numpy uint8 matrix, the date
part formatted once per distinct second; digits beyond the width are truncated, as
Tardis's Date/μs parsing does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.ipc import fastpack

TS_WIDTH = 28  # "YYYY-MM-DDTHH:MM:SS.fffffffZ"
LOCAL_DIGITS = 6  # normalized localTimestamp: microseconds
EXCHANGE_DIGITS = 3  # normalized timestamp (exchange time), interval and bar stamps: milliseconds


def ts_width(digits: int = 7) -> int:
    return 21 + digits


def ts_matrix(ts_ns: np.ndarray, digits: int = 7) -> np.ndarray:
    """(n, 21 + digits) uint8 matrix of Tardis timestamps for int64 ns epoch times."""
    ts = np.asarray(ts_ns, dtype=np.int64)
    n = len(ts)
    width = ts_width(digits)
    out = np.empty((n, width), dtype=np.uint8)
    if n == 0:
        return out
    secs = np.floor_divide(ts, 1_000_000_000)
    frac = (ts - secs * 1_000_000_000) // 10 ** (9 - digits)
    # distinct seconds: files are time-sorted, so runs are long; np.unique covers unsorted input too
    if bool(np.all(secs[1:] >= secs[:-1])):
        starts = np.flatnonzero(np.diff(secs, prepend=secs[0] - 1))
        uniq = secs[starts]
        inv = np.repeat(np.arange(len(starts), dtype=np.int64), np.diff(np.append(starts, n)))
    else:
        uniq, inv = np.unique(secs, return_inverse=True)
    text = np.datetime_as_string(uniq.astype("datetime64[s]"), unit="s").astype("S19")
    out[:, :19] = text.view(np.uint8).reshape(len(uniq), 19)[inv]
    out[:, 19] = ord(".")
    f = frac.astype(np.int32)
    for j in range(digits - 1, -1, -1):  # column passes beat one (n, digits) int64 broadcast
        q = f // 10
        out[:, 20 + j] = f - q * 10 + 48
        f = q
    out[:, width - 1] = ord("Z")
    return out


def fixed_width(matrix: np.ndarray) -> pa.Array:
    """A (n, w) uint8 matrix as a binary array of n values of w bytes each (no copy of rows)."""
    n, w = matrix.shape
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int32)
    data = np.ascontiguousarray(matrix)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def ts_strings(ts_ns: np.ndarray, digits: int = 7) -> pa.Array:
    return fixed_width(ts_matrix(ts_ns, digits))


def ts_text(ts_ns: int, digits: int = 7) -> str:
    """One timestamp in the same form (for JSON built in Python, e.g. errors and disconnects)."""
    return bytes(ts_matrix(np.array([ts_ns], dtype=np.int64), digits)[0]).decode()


def numbers(values: pa.Array | np.ndarray) -> pa.Array:
    """float64 -> shortest round-trip text, as JavaScript's Number#toString writes it (JSON.stringify).

    Arrow's formatter agrees with JavaScript except that it switches to exponents from 1e11 on, where
    JavaScript writes positional digits up to 1e21: those (rare) values are rewritten here.
    NaN/inf have no JSON form: they become ``null``.
    """
    arr = values if isinstance(values, pa.Array) else pa.array(values, pa.float64())
    text = pc.cast(arr, pa.string())
    big = pc.and_(pc.greater_equal(pc.abs(arr), 1e11), pc.less(pc.abs(arr), 1e21))
    if pc.any(big).as_py():
        idx = np.flatnonzero(np.asarray(big.to_numpy(zero_copy_only=False), np.bool_))
        vals = np.asarray(arr.to_numpy(zero_copy_only=False), np.float64)[idx]
        fixed = [np.format_float_positional(v, trim="-") for v in vals.tolist()]
        mask = np.zeros(len(arr), np.bool_)
        mask[idx] = True
        text = pc.replace_with_mask(text, pa.array(mask), pa.array(fixed, pa.string()))
    finite = pc.is_finite(arr)
    if not pc.all(finite).as_py():
        text = pc.if_else(finite, text, pa.scalar("null"))
    return text.cast(pa.binary())


def needs_escape(s: pa.Array) -> bool:
    """Any quote, backslash or control byte in the values (one vector pass over the data buffer)."""
    buf = s.buffers()[2]
    if buf is None or buf.size == 0:
        return False
    b = np.frombuffer(buf, np.uint8)
    return bool((b < 0x20).any() or (b == 0x22).any() or (b == 0x5C).any())


def json_strings(values: pa.Array) -> pa.Array:
    """Strings -> JSON string literals (with quotes); escaping in C, Python only for odd batches."""
    s = values.cast(pa.string())
    if len(s) and needs_escape(s):
        import json

        return pa.array([json.dumps(v) for v in s.to_pylist()], pa.binary())
    return pc.binary_join_element_wise(b'"', s.cast(pa.binary()), b'"', b"")


def join(*parts: pa.Array | bytes) -> pa.Array:
    """Concatenate element-wise (bytes = the same constant on every row)."""
    return pc.binary_join_element_wise(*parts, b"")


def gather(parts: list[pa.Array], part: np.ndarray, row: np.ndarray, bounds: np.ndarray | None = None) -> pa.Array:
    """Value ``row[j]`` of ``parts[part[j]]`` for each j, with the values of ``bounds[k]:bounds[k + 1]`` joined
    into value k (None: one value per j). One compiled copy pass; pyarrow's concat + take (+ ``regroup``)
    where the packer is not built, a part is not plain binary without nulls, or past int32 offsets."""
    if fastpack.gather_values is not None and all(p.type == pa.binary() and p.null_count == 0 for p in parts):
        out = fastpack.gather_values(_specs(parts), np.ascontiguousarray(part, np.int32), np.ascontiguousarray(row, np.int64),
                            None if bounds is None else np.ascontiguousarray(bounds, np.int64), JOIN_MAX_BYTES)
        if out is not None:
            n = len(row) if bounds is None else len(bounds) - 1
            return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(out[0]), pa.py_buffer(out[1])])
    starts = np.zeros(len(parts), np.int64)
    if len(parts) > 1:
        np.cumsum([len(p) for p in parts[:-1]], out=starts[1:])
    whole = parts[0].cast(pa.binary()) if len(parts) == 1 else pa.concat_arrays([p.cast(pa.binary()) for p in parts])
    taken = whole.take(pa.array(starts[np.asarray(part, np.int64)] + np.asarray(row, np.int64)))
    return taken if bounds is None else regroup(taken, np.asarray(bounds[:-1], np.int64))


def gather_framed(bodies: list[pa.Array], heads: list[pa.Array], part: np.ndarray, row: np.ndarray, end: bytes,
                  marker: bytes) -> pa.Array:
    """Line j: ``heads[part[j]][row[j]]`` + ``bodies[part[j]][row[j]]`` + ``end``, or ``marker`` alone where
    that body is empty: raw replay's lines in merge order, each byte copied once by the compiled
    pass; pyarrow's join + if_else + concat + take where it is not built, a part is not plain
    binary without nulls, or past int32 offsets."""
    if fastpack.gather_framed is not None and all(
            p.type == pa.binary() and p.null_count == 0 for p in (*bodies, *heads)):
        out = fastpack.gather_framed(_specs(bodies), _specs(heads), np.ascontiguousarray(part, np.int32),
                                     np.ascontiguousarray(row, np.int64), end, marker, JOIN_MAX_BYTES)
        if out is not None:
            return pa.Array.from_buffers(pa.binary(), len(row), [None, pa.py_buffer(out[0]), pa.py_buffer(out[1])])
    lines = []
    for b, h in zip(bodies, heads, strict=True):
        joined = join(h, b, end)
        lines.append(pc.if_else(pc.equal(pc.binary_length(b), 0), pa.scalar(marker, pa.binary()), joined))
    return gather(lines, part, row)


def _specs(parts: list[pa.Array]) -> tuple[tuple[Any, Any, int, int], ...]:
    return tuple((b[1] if b[1] is not None else _NO_OFFSETS, b[2] if b[2] is not None else b"", p.offset, len(p))
                 for p in parts for b in (p.buffers(),))


_NO_OFFSETS = bytes(4)
JOIN_MAX_BYTES = 2**31 - 1  # a batch's lines past int32 offsets go to pyarrow's join (which raises as before)


def data_bytes(arr: pa.Array) -> memoryview:
    """The concatenated values of a binary array, as one buffer (no copy)."""
    if len(arr) == 0:
        return memoryview(b"")
    if arr.type != pa.binary():
        arr = arr.cast(pa.binary())
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    buf = arr.buffers()[2]
    if buf is None:
        return memoryview(b"")
    return memoryview(buf)[int(offs[0]) : int(offs[-1])]


def regroup(arr: pa.Array, starts: np.ndarray) -> pa.Array:
    """Merge runs of consecutive values into single values: value k spans rows starts[k]..starts[k+1].

    Zero copy: the data buffer is shared, only the offsets are subset.
    """
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    idx = np.append(starts, len(arr))
    new = np.ascontiguousarray(offs[idx])
    return pa.Array.from_buffers(pa.binary(), len(starts), [None, pa.py_buffer(new), arr.buffers()[2]])
