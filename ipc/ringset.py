"""The rings of one producer (one ingest process = one exchange), described by a
plain spec that crosses process boundaries.

The supervisor creates the segments (``create``) and keeps them for the whole
run, so a restarted ingest or writer attaches (``attach``) to the same rings
and their committed cursors.
"""

from __future__ import annotations

import msgspec

from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import RecordRing, new_ring_name
from ticktape.ipc.schemas import NO_SYMBOL_NAME, dtype_for

Ring = RecordRing | RawRing


class RingSetSpec(msgspec.Struct, frozen=True):
    """Everything a producer or consumer needs to find and interpret the rings."""

    exchange: str
    #: symbol id -> name; id 0 is ``_`` (rows that belong to no symbol)
    symbols: tuple[str, ...]
    #: channel id -> exchange-native channel name (raw and events rows)
    channels: tuple[str, ...]
    #: data type -> shared-memory name (raw: base name of index + arena)
    rings: dict[str, str]
    record_capacity: int
    raw_index_capacity: int
    raw_arena_bytes: int

    def symbol_id(self, symbol: str) -> int:
        return self.symbols.index(symbol)

    def channel_id(self, channel: str) -> int:
        return self.channels.index(channel)


def make_spec(
    exchange: str,
    symbols: list[str] | tuple[str, ...],
    channels: list[str] | tuple[str, ...],
    data_types: list[str] | tuple[str, ...],
    record_capacity: int = 1 << 20,
    raw_index_capacity: int = 1 << 18,
    raw_arena_bytes: int = 64 << 20,
) -> RingSetSpec:
    types = list(dict.fromkeys([*data_types, "events"]))
    rings = {dt: new_ring_name(f"{exchange}-{dt}") for dt in types}
    return RingSetSpec(
        exchange=exchange,
        symbols=(NO_SYMBOL_NAME, *symbols),
        channels=("", *[c for c in channels if c]),
        rings=rings,
        record_capacity=record_capacity,
        raw_index_capacity=raw_index_capacity,
        raw_arena_bytes=raw_arena_bytes,
    )


def create(spec: RingSetSpec) -> dict[str, Ring]:
    out: dict[str, Ring] = {}
    try:
        for dt, name in spec.rings.items():
            if dt == "raw":
                out[dt] = RawRing.create(name, spec.raw_index_capacity, spec.raw_arena_bytes)
            else:
                cap = spec.record_capacity if dt != "events" else max(4096, spec.record_capacity // 16)
                out[dt] = RecordRing.create(name, dtype_for(dt), cap)
    except Exception:
        close(out)
        raise
    return out


def attach(spec: RingSetSpec) -> dict[str, Ring]:
    out: dict[str, Ring] = {}
    for dt, name in spec.rings.items():
        out[dt] = RawRing.attach(name) if dt == "raw" else RecordRing.attach(name, dtype_for(dt))
    return out


def close(rings: dict[str, Ring]) -> None:
    for r in rings.values():
        r.close()
