"""The writer's durable state: which ring records are in which journal bytes.

Written atomically after the touched journals are fsynced and before the ring
cursors are committed. On restart with the same ring generation, journals are
cut back to their recorded lengths and each ring is committed up to its
recorded sequence, so records that reached a journal are never written twice
and records that did not are read again from the ring.
"""

from __future__ import annotations

import os

import msgspec

from ticktape.archive.layout import STATE_DIR
from ticktape.writers.fsutil import atomic_write, makedirs_durable

STATE_VERSION = 1


class RingState(msgspec.Struct):
    generation: int
    #: every record < seq is in a journal (or a finalized file)
    seq: int


class JournalState(msgspec.Struct):
    #: ring key (``exchange/data_type``) feeding this journal
    ring: str
    #: random id, also in the journal's schema metadata and, once merged, in the Parquet file's
    journal_id: str
    #: durable byte length (complete IPC messages only)
    length: int
    records: int


class WriterState(msgspec.Struct):
    version: int = STATE_VERSION
    rings: dict[str, RingState] = msgspec.field(default_factory=dict)
    #: journal relpath (under the archive root) -> state
    journals: dict[str, JournalState] = msgspec.field(default_factory=dict)


def state_path(root: str, writer_id: int) -> str:
    return os.path.join(root, STATE_DIR, f"writer-{writer_id}.json")


def load(root: str, writer_id: int) -> WriterState:
    path = state_path(root, writer_id)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return WriterState()
    try:
        st = msgspec.json.decode(data, type=WriterState)
    except msgspec.DecodeError as e:  # written atomically, so this is outside damage
        raise RuntimeError(f"writer state {path} is unreadable ({e}); move it away to recover journals as-is") from None
    if st.version != STATE_VERSION:
        raise RuntimeError(f"writer state {path} has version {st.version}, expected {STATE_VERSION}")
    return st


def save(root: str, writer_id: int, st: WriterState) -> None:
    path = state_path(root, writer_id)
    makedirs_durable(os.path.dirname(path))
    atomic_write(path, msgspec.json.encode(st))
