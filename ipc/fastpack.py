"""The compiled packers, when they were built and match the record layouts.

``pip install`` builds ``ipc/_fastpack.c`` and ``ipc/_tradepack.c`` where a C compiler
exists (both extensions are optional); without them, or with ``TICKTAPE_PURE_PYTHON=1``,
``pack_levels`` and ``pack_level_text`` are None and ``Outbox`` packs level by level in
Python (the level text decoded by msgspec), ``TradeFrameWriter`` is None and
``Outbox.trade_frame_pusher`` packs with ``struct``, and ``RawFrameWriter`` is None and
``Outbox.raw_fast`` is the Python method. Both write the same bytes (tests/ipc checks).
``gather_values`` and ``gather_framed`` (replay's merges, raw, book_change and trade lines in one
pass) are None then too and replay uses pyarrow's join, concat and take.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from ticktape.ipc.schemas import BOOK_CHANGE_STRUCT, RAW_INDEX_STRUCT, TRADE_STRUCT


class LevelTextError(ValueError):
    """A level array that is not ``[[price, amount], ...]``: the frame is decoded the slow way
    (where msgspec reports it malformed, or accepts a spelling the compiled parser refuses)."""


_LEVELS = msgspec.json.Decoder(list[tuple[float, float]], strict=False)


def decode_levels(text: msgspec.Raw | bytes | memoryview) -> list[tuple[float, float]]:
    """Level text (``[["price","qty"],...]``) as (price, amount) pairs, decoded by msgspec.
    A copy: safe to keep after the frame's buffer is reused. Raises LevelTextError."""
    try:
        return _LEVELS.decode(text)
    except msgspec.DecodeError as e:
        raise LevelTextError(str(e)) from None


def _compiled(name: str, layouts_match: bool) -> Any:
    """The extension module ``ticktape.ipc.<name>``, or None: switched off, not built, or the
    record layouts are not the ones its C code writes (little-endian, these struct formats)."""
    if os.environ.get("TICKTAPE_PURE_PYTHON", "") not in ("", "0"):
        return None
    if sys.byteorder != "little" or not layouts_match:
        return None
    try:
        return importlib.import_module(f"ticktape.ipc.{name}")
    except ImportError:
        return None


def _load() -> Any:
    mod = _compiled("_fastpack", BOOK_CHANGE_STRUCT.format == "<qqddHBB4x")
    if mod is None or BOOK_CHANGE_STRUCT.size != mod.RECORD_BYTES:
        return None
    return mod


_MOD = _load()

#: ``pack_levels(buf, header, itemsize, capacity, seq, k, local_ts, exchange_ts, symbol,
#: side, is_snapshot, levels)``, or None when only the Python packer is available
pack_levels: Callable[..., None] | None = _MOD.pack_levels if _MOD is not None else None

#: ``pack_level_text(buf, header, itemsize, capacity, seq, free, local_ts, exchange_ts, symbol,
#: is_snapshot, bid_side, bids, ask_side, asks) -> int``: parses both level texts and writes the
#: first ``min(free, nb + na)`` records (bids, then asks); returns ``nb + na``, or -1 with nothing
#: written when it refuses a text (the caller decodes with msgspec). None: Python only.
pack_level_text: Callable[..., int] | None = getattr(_MOD, "pack_level_text", None) if _MOD is not None else None

#: ``gather_values(parts, part, row, bounds, limit) -> (offsets, data) | None``: parts are
#: (offsets, data, offset, length) of binary arrays; piece j is value ``row[j]`` (int64) of part
#: ``part[j]`` (int32); output value k joins pieces ``bounds[k]:bounds[k + 1]`` (int64; None: one
#: value per piece), as int32 offsets and data (bytes); None past ``limit`` bytes. None: pyarrow only.
gather_values: Callable[..., tuple[bytes, bytes] | None] | None = (
    getattr(_MOD, "gather_values", None) if _MOD is not None else None)

#: ``gather_framed(bodies, heads, part, row, end, marker, limit) -> (offsets, data) | None``: line j
#: is head + body + ``end`` of row ``row[j]`` of part ``part[j]`` (bodies and heads as gather_values'
#: parts, the same lengths), or ``marker`` when that body is empty. None: pyarrow only.
gather_framed: Callable[..., tuple[bytes, bytes] | None] | None = (
    getattr(_MOD, "gather_framed", None) if _MOD is not None else None)


def _load_tradepack() -> Any:
    mod = _compiled("_tradepack", TRADE_STRUCT.format == "<qqddHB5x40s" and RAW_INDEX_STRUCT.format == "<qQIIHH4x")
    if mod is None or (TRADE_STRUCT.size, RAW_INDEX_STRUCT.size) != (mod.TRADE_BYTES, mod.RAW_INDEX_BYTES):
        return None
    return mod


_TRADEPACK = _load_tradepack()


#: ``TradeFrameWriter(trade_ring, trade_buf, trade_cap, trade_size, raw_ring, index_ring, index_buf,
#: index_cap, index_size, arena_buf, arena_cap, header, write_word, slow)``, whose ``push`` writes
#: a trade row and its raw frame (``Outbox.trade_frame_pusher``); None: the Python path only
TradeFrameWriter: Any = _TRADEPACK.TradeFrameWriter if _TRADEPACK is not None else None

#: ``RawFrameWriter(raw_ring, index_ring, index_buf, index_cap, index_size, arena_buf, arena_cap, header,
#: write_word, slow)``, whose ``push(local_ts, payload, conn_id, symbol, channel)`` writes one raw frame
#: (``Outbox.raw_fast``; ``slow`` with the same arguments when it does not fit); None: Python only
RawFrameWriter: Any = getattr(_TRADEPACK, "RawFrameWriter", None) if _TRADEPACK is not None else None


_NO_RING = bytearray(64)


def check_level_text(bids: Any, asks: Any) -> None:
    """Raise LevelTextError unless both texts are level arrays msgspec accepts (the C parser
    checks, writing nothing; a spelling it leaves to msgspec is decoded by msgspec)."""
    if pack_level_text is not None and pack_level_text(_NO_RING, 0, 40, 1, 0, 0, 0, 0, 0, False, 0, bids, 1, asks) >= 0:
        return
    decode_levels(bids)
    decode_levels(asks)
