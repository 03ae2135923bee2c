"""Raw replay lines built in one compiled pass after the merge (``batch_frames`` + ``combine_frames``)
equal pyarrow's join byte for byte: on sliced batches (non-zero offset), empty payloads (markers),
a frame with a raw newline (replaced before the line is built), both line formats, several sources
interleaved, and when the output passes the size limit (pyarrow's join takes over)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ticktape.ipc import fastpack
from ticktape.replay import fmt, raw

compiled = pytest.mark.skipif(fastpack.gather_framed is None, reason="the C packer was not built here")

_FRAMES = [b'{"e":"aggTrade","p":"1.5"}', b"", b'{"a":\n1}', b"x" * 300, b"", b'{"b":[]}']


def _batch(start: int, stop: int, t0: int = 0) -> pa.RecordBatch:
    n = len(_FRAMES) * 3
    ts = np.arange(n, dtype=np.int64) * 1_234_567 + 1_700_000_000_000_000_000 + t0
    whole = pa.record_batch([pa.array(ts), pa.array(["depth"] * n), pa.array(_FRAMES * 3, pa.binary())],
                            names=list(raw.RAW_COLUMNS))
    return whole.slice(start, stop - start)


def _lines(batches: list[pa.RecordBatch], cache: bool) -> pa.Array:
    parts = [raw.batch_frames(b, None, True, cache) for b in batches]
    c = raw.combine_frames(cache)([p for p in parts if p is not None], list(range(len(parts))))
    return c.lines


def _both(batches: list[pa.RecordBatch], cache: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[pa.Array, pa.Array]:
    fast = _lines(batches, cache)
    with monkeypatch.context() as m:
        m.setattr(fastpack, "gather_framed", None)
        slow = _lines(batches, cache)
    return fast, slow


@compiled
@pytest.mark.parametrize("cache", [False, True], ids=["replay", "cache"])
@pytest.mark.parametrize("start,stop", [(0, 18), (1, 18), (4, 11), (7, 8)])
def test_compiled_lines_equal_pyarrows_on_slices_empties_and_newlines(cache: bool, start: int, stop: int,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    batch = _batch(start, stop)
    fast, slow = _both([batch], cache, monkeypatch)
    fast.validate(full=True)
    assert fast.type == slow.type == pa.binary()
    assert fast.equals(slow)
    for line, frame in zip(fast.to_pylist(), batch.column("payload").to_pylist(), strict=True):
        assert line.count(b"\n") == 1 and line.endswith(b"\n")  # the newline inside a frame was replaced
        if frame:
            assert frame.replace(b"\n", b" ") in line
            assert line.startswith(b'{"localTimestamp":"' if not cache else b"20")
        else:
            assert line == b"\n"  # a marker


@compiled
def test_sources_interleave_in_time_order_and_the_size_limit_hands_over_to_pyarrow(
        monkeypatch: pytest.MonkeyPatch) -> None:
    batches = [_batch(0, 18), _batch(2, 15, t0=600_000)]  # interleaved in time
    fast, slow = _both(batches, False, monkeypatch)
    assert fast.equals(slow)
    ts = [raw.batch_frames(b, None, True).ts for b in batches]  # type: ignore[union-attr]
    assert len(fast) == sum(map(len, ts))
    calls = []
    real = fastpack.gather_framed
    monkeypatch.setattr(fastpack, "gather_framed", lambda *a: calls.append(real(*a)) or calls[-1])
    monkeypatch.setattr(fmt, "JOIN_MAX_BYTES", len(fmt.data_bytes(slow)) - 1)
    assert _lines(batches, False).equals(slow)
    assert calls == [None]  # the compiled pass refused (output over the limit); pyarrow built the lines
