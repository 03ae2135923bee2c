"""Exchange-native replay: the ``raw`` data type as Tardis Machine /replay NDJSON lines.

One line per frame, ``{"localTimestamp":"<28 chars>","message":<frame bytes>}``: each
source gives a batch's frames and their fixed-width heads (``batch_frames``), and the
merge's ``combine_frames`` writes the lines in merge order in one compiled pass
(``fmt.gather_framed``; pyarrow's join where the packer is not built). An empty payload is a disconnect marker: an empty line when asked for,
dropped otherwise. A connection's marker is written once per stream, so
markers repeated at the same instant are collapsed to one line.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.ipc.schemas import NO_SYMBOL_NAME
from ticktape.replay import fmt
from ticktape.replay.merge import Chunk, merge, merge_order
from ticktape.replay.options import RawRequest
from ticktape.replay.sources import read_range, ts_ns

_PRE = b'{"localTimestamp":"'
_MID = b'","message":'
_PREFIX_W = len(_PRE) + fmt.TS_WIDTH + len(_MID)
RAW_COLUMNS = ("local_ts", "channel", "payload")


def prefix_matrix(ts: np.ndarray) -> np.ndarray:
    """Each line's fixed-width head up to the frame, one row per line."""
    m = np.empty((len(ts), _PREFIX_W), np.uint8)
    a = len(_PRE)
    m[:, :a] = np.frombuffer(_PRE, np.uint8)
    m[:, a : a + fmt.TS_WIDTH] = fmt.ts_matrix(ts)
    m[:, a + fmt.TS_WIDTH :] = np.frombuffer(_MID, np.uint8)
    return m


_libc = ctypes.CDLL(None)
_memchr = _libc.memchr
_memchr.restype = ctypes.c_void_p
_memchr.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)


def has_newline(buf: pa.Buffer) -> bool:
    """memchr over the Arrow buffer in place (no copy)."""
    return bool(buf.size) and _memchr(buf.address, 10, buf.size) is not None


def _channel_mask(col: pa.Array, channels: pa.Array) -> pa.Array:
    """Rows whose channel is wanted; on a dictionary column the test runs once per distinct name."""
    if pa.types.is_dictionary(col.type):
        wanted = np.asarray(pc.is_in(col.dictionary, channels).to_numpy(zero_copy_only=False), np.bool_)
        if wanted.all():
            return pa.array(np.ones(len(col), np.bool_))
        return pa.array(wanted[np.asarray(col.indices.to_numpy(zero_copy_only=False))])
    return pc.is_in(col, channels)


def batch_frames(batch: pa.RecordBatch, channels: pa.Array | None, markers: bool, cache: bool = False) -> Chunk | None:
    """One raw batch's wanted rows as the parts of their lines, joined later by ``combine_frames``
    (after the merge has ordered them: each byte is copied once): the frames (an empty one is a
    marker, kept if asked) and each row's fixed-width head (the ``localTimestamp`` envelope, or
    the cache format's time and space)."""
    ts = ts_ns(batch)
    payload = batch.column("payload")
    empty = pc.equal(pc.binary_length(payload), 0)
    keep = pc.invert(empty) if channels is None else pc.and_(_channel_mask(batch.column("channel"), channels),
                                                             pc.invert(empty))
    if markers:
        keep = pc.or_(keep, empty)
    keep_np = np.asarray(keep.to_numpy(zero_copy_only=False), dtype=np.bool_)
    if not keep_np.any():
        return None
    if not keep_np.all():
        idx = np.flatnonzero(keep_np)
        ts = ts[idx]
        payload = payload.take(pa.array(idx))
    if payload.type != pa.binary():
        payload = payload.cast(pa.binary())
    data = payload.buffers()[2]
    if data is not None and has_newline(data):
        # a frame with a raw newline would split the NDJSON line; outside strings it is JSON whitespace
        payload = pc.replace_substring(payload, "\n", " ")
    return Chunk(ts, payload, head=fmt.fixed_width(cache_heads(ts) if cache else prefix_matrix(ts)))


def cache_heads(ts: np.ndarray) -> np.ndarray:
    m = np.empty((len(ts), fmt.TS_WIDTH + 1), np.uint8)
    m[:, : fmt.TS_WIDTH] = fmt.ts_matrix(ts)
    m[:, fmt.TS_WIDTH] = ord(" ")
    return m


#: (a frame line's end, a marker's whole line) per format (``cache``)
_ENDS = {False: (b"}\n", b"\n"), True: (b"\n", b"\n")}


def combine_frames(cache: bool) -> Callable[[list[Chunk], list[int]], Chunk]:
    """``merge``'s combine for ``batch_frames`` parts: lines ordered by ts (stable by part), each
    line head + frame + end, a marker (empty frame) a bare newline, built in one compiled copy."""
    end, marker = _ENDS[cache]

    def combine(parts: list[Chunk], src: list[int]) -> Chunk:
        if len(parts) == 1:
            c = parts[0]
            n = len(c)
            ts, part, row = c.ts, np.zeros(n, np.int32), np.arange(n, dtype=np.int64)
        else:
            ts, part, row, _order = merge_order([p.ts for p in parts])
        heads = [p.head for p in parts]
        if any(h is None for h in heads):
            raise ValueError("combine_frames: a part without its line heads (not from batch_frames)")
        lines = fmt.gather_framed([p.lines for p in parts], heads, part, row, end, marker)  # type: ignore[arg-type]
        return Chunk(ts, lines, np.asarray(src, np.int32)[part])

    return combine


def _symbol_source(root: str, req: RawRequest, symbol: str, channels: list[str] | None,
                   cache: bool = False) -> Iterator[Chunk]:
    chans = None if channels is None else pa.array(channels, pa.string())
    for batch in read_range(root, req.exchange, "raw", symbol, req.range.start_ns, req.range.end_ns, RAW_COLUMNS,
                            batch_rows=req.batch_rows or None, read_dictionary=["channel"]):
        c = batch_frames(batch, chans, req.with_disconnects, cache)
        if c is not None and len(c):
            yield c


def _by_symbol(req: RawRequest) -> dict[str, list[str]]:
    by_symbol: dict[str, list[str]] = {}
    for ch, syms in req.channels.items():
        for s in syms:
            by_symbol.setdefault(s, []).append(ch)
    return by_symbol


def series(req: RawRequest) -> list[tuple[str, str, str]]:
    """(exchange, table, symbol) of every series the stream reads (for the memory plan)."""
    return [(req.exchange, "raw", s) for s in sorted(_by_symbol(req))]


def sources(root: str, req: RawRequest, cache: bool = False) -> list[Iterator[Chunk]]:
    by_symbol = _by_symbol(req)
    out = [_symbol_source(root, req, s, chans, cache) for s, chans in sorted(by_symbol.items())]
    if req.with_disconnects:
        out.append(_symbol_source(root, req, NO_SYMBOL_NAME, [], cache))  # connection-level markers only
    return out


def dedupe_markers(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """Collapse marker lines repeated at the same instant (one per stream of a connection) to one."""
    last_marker_ts = None
    for c in chunks:
        lens = pc.binary_length(c.lines).to_numpy()
        is_m = lens == 1
        if not is_m.any():
            last_marker_ts = None if len(c) else last_marker_ts
            yield c
            continue
        prev_m = np.concatenate(([last_marker_ts is not None], is_m[:-1]))
        prev_ts = np.concatenate(([last_marker_ts if last_marker_ts is not None else -1], c.ts[:-1]))
        dup = is_m & prev_m & (c.ts == prev_ts)
        last_marker_ts = int(c.ts[-1]) if is_m[-1] else None
        if dup.any():
            idx = np.flatnonzero(~dup)
            c = Chunk(c.ts[idx], c.lines.take(pa.array(idx)), None if c.src is None else c.src[idx])
        yield c


def stream(root: str, req: RawRequest, cache: bool = False) -> Iterator[Chunk]:
    """/replay lines, or (``cache``) tardis-dev's data-feeds slice lines."""
    chunks = merge(sources(root, req, cache), combine=combine_frames(cache))
    return dedupe_markers(chunks) if req.with_disconnects else chunks


def frame_source(
    root: str, exchange: str, symbol: str, channels: list[str], start_ns: int, end_ns: int, batch_rows: int = 0
) -> Iterator[Chunk]:
    """The frames themselves (no envelope, no markers), for /ws-replay."""
    chans = pa.array(channels, pa.string())
    for batch in read_range(root, exchange, "raw", symbol, start_ns, end_ns, RAW_COLUMNS, batch_rows=batch_rows or None,
                            read_dictionary=["channel"]):
        payload = batch.column("payload")
        keep = pc.and_(_channel_mask(batch.column("channel"), chans), pc.greater(pc.binary_length(payload), 0))
        idx = np.flatnonzero(np.asarray(keep.to_numpy(zero_copy_only=False), np.bool_))
        if len(idx):
            yield Chunk(ts_ns(batch)[idx], payload.take(pa.array(idx)))
