"""The compiled book_change packer, when it was built and matches the record layout.

``pip install`` builds ``ipc/_fastpack.c`` where a C compiler exists (the extension is
optional); without it, or with ``TICKTAPE_PURE_PYTHON=1``, ``pack_levels`` is None and
``Outbox`` packs level by level in Python. Both write the same bytes (tests/ipc checks).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from ticktape.ipc.schemas import BOOK_CHANGE_STRUCT


def _load() -> Callable[..., None] | None:
    if os.environ.get("TICKTAPE_PURE_PYTHON", "") not in ("", "0"):
        return None
    if sys.byteorder != "little" or BOOK_CHANGE_STRUCT.format != "<qqddHBB4x":
        return None  # the C code writes this layout only
    try:
        from ticktape.ipc import _fastpack  # type: ignore[attr-defined]
    except ImportError:
        return None
    mod: Any = _fastpack
    if BOOK_CHANGE_STRUCT.size != mod.RECORD_BYTES:
        return None
    fn: Callable[..., None] = mod.pack_levels
    return fn


#: ``pack_levels(buf, header, itemsize, capacity, seq, k, local_ts, exchange_ts, symbol,
#: side, is_snapshot, levels)``, or None when only the Python packer is available
pack_levels: Callable[..., None] | None = _load()
