"""Raw replay lines from the compiled one-pass join equal pyarrow's join byte for byte: on sliced
arrays (non-zero offset), empty payloads (markers), a frame with a raw newline (replaced by the
caller), and when the output passes the size limit (pyarrow's join takes over)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ticktape.ipc import fastpack
from ticktape.replay import fmt, raw

compiled = pytest.mark.skipif(fastpack.join_lines is None, reason="the C packer was not built here")

_FRAMES = [b'{"e":"aggTrade","p":"1.5"}', b"", b'{"a":\n1}', b"x" * 300, b"", b'{"b":[]}']


def _payload() -> pa.Array:
    return pa.array(_FRAMES * 3, pa.binary())


def _ts(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) * 1_234_567 + 1_700_000_000_000_000_000


def _both(lines_of, ts: np.ndarray, payload: pa.Array, monkeypatch: pytest.MonkeyPatch) -> tuple[pa.Array, pa.Array]:
    fast = lines_of(ts, payload)
    with monkeypatch.context() as m:
        m.setattr(fastpack, "join_lines", None)
        slow = lines_of(ts, payload)
    return fast, slow


@compiled
@pytest.mark.parametrize("lines_of", [raw.frame_lines, raw.cache_lines])
@pytest.mark.parametrize("start,stop", [(0, 18), (1, 18), (4, 11), (7, 8), (5, 5)])
def test_compiled_join_equals_pyarrows_on_slices_empties_and_newlines(lines_of, start: int, stop: int,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    payload = _payload().slice(start, stop - start)
    ts = _ts(stop - start)
    fast, slow = _both(lines_of, ts, payload, monkeypatch)
    fast.validate(full=True)
    assert fast.type == slow.type == pa.binary()
    assert fast.to_pylist() == slow.to_pylist()
    assert fast.equals(slow)
    for line, frame in zip(fast.to_pylist(), payload.to_pylist(), strict=True):
        assert line.count(b"\n") == 1 and line.endswith(b"\n")  # the newline inside a frame was replaced
        assert frame.replace(b"\n", b" ") in line


@compiled
def test_join_fixed_reads_the_payloads_own_slice_and_falls_back_past_the_size_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    payload = _payload().slice(2, 9)
    matrix = np.arange(9 * 3, dtype=np.uint8).reshape(9, 3) + ord("A")
    want = fmt.join(fmt.fixed_width(matrix), payload, b"}\n")
    assert fmt.join_fixed(matrix, payload, b"}\n").equals(want)
    calls = []
    real = fastpack.join_lines
    monkeypatch.setattr(fastpack, "join_lines", lambda *a: calls.append(real(*a)) or calls[-1])
    monkeypatch.setattr(fmt, "JOIN_MAX_BYTES", len(fmt.data_bytes(want)) - 1)
    assert fmt.join_fixed(matrix, payload, b"}\n").equals(want)
    assert calls == [None]  # the C join refused (output over the limit); pyarrow's join built the lines
