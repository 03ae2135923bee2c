"""K-way merge of time-sorted line streams, a batch at a time.

Each source yields ``Chunk``s: local timestamps (sorted) and the finished
lines for them. The merge keeps one pending chunk per source, takes from all
of them every row up to the smallest "last timestamp" among the sources
still running (the watermark: no source can later produce anything earlier),
and orders those rows with one stable argsort. Memory is bounded by one
chunk per source; ties keep source order.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ticktape.replay import fmt


@dataclass(slots=True)
class Chunk:
    ts: np.ndarray  # int64 ns, sorted
    lines: pa.Array  # binary, one finished line (with its '\n') per ts; or what ``merge``'s ``combine`` finishes
    src: np.ndarray | None = None  # source index per row (set by merge)
    head: pa.Array | None = None  # binary, per row: a part of the line ``combine`` joins in (raw replay's envelope)

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, lo: int, hi: int) -> Chunk:
        return Chunk(self.ts[lo:hi], self.lines.slice(lo, hi - lo), None if self.src is None else self.src[lo:hi],
                     None if self.head is None else self.head.slice(lo, hi - lo))


#: ``combine(parts, src)``: the rows of ``parts`` (each one source's, in ts order; ``src[i]`` is
#: part i's source index) as one chunk ordered by ts, stable by part, with ``src`` per row
Combine = Callable[[list[Chunk], list[int]], Chunk]


def combine_lines(parts: list[Chunk], src: list[int]) -> Chunk:
    """The default ``combine``: finished lines, reordered (copied once) when there are several parts."""
    if len(parts) == 1:
        return Chunk(parts[0].ts, parts[0].lines, np.full(len(parts[0]), src[0], np.int32))
    ts, lines, order = sort_lines([p.ts for p in parts], [p.lines for p in parts])
    return Chunk(ts, lines, np.repeat(np.asarray(src, np.int32), [len(p) for p in parts])[order])


# Sources read Parquet and build lines in these threads (Arrow/numpy release the GIL), one chunk
# ahead each, so several files are decoded at once while the merge thread orders the previous ones.
_POOL = ThreadPoolExecutor(
    max_workers=int(os.environ.get("TICKTAPE_REPLAY_SOURCE_THREADS", 0)) or max(2, os.cpu_count() or 2),
    thread_name_prefix="replay-src",
)
atexit.register(_POOL.shutdown, wait=False, cancel_futures=True)


class Ahead(Iterator[Chunk]):
    """A source advanced one chunk ahead in a worker thread."""

    def __init__(self, it: Iterator[Chunk]) -> None:
        self.it = it
        self.fut: Future[Chunk | None] | None = _POOL.submit(next, it, None)

    def __next__(self) -> Chunk:
        if self.fut is None:
            raise StopIteration
        item = self.fut.result()
        if item is None:
            self.fut = None
            raise StopIteration
        self.fut = _POOL.submit(next, self.it, None)
        return item

    def close(self) -> None:
        if self.fut is not None:
            try:
                self.fut.result()
            except Exception:
                pass
            self.fut = None
        close = getattr(self.it, "close", None)
        if close is not None:
            close()


def merge(sources: list[Iterator[Chunk]], ahead: bool = True, combine: Combine = combine_lines) -> Iterator[Chunk]:
    """Yield chunks whose concatenation is every source's rows ordered by ts (stable by source);
    each yielded chunk is what ``combine`` makes of the rows it takes from the sources."""
    if ahead:
        wrapped = [Ahead(s) for s in sources]
        try:
            yield from _merge(list(wrapped), combine)
        finally:
            for w in wrapped:
                w.close()
        return
    yield from _merge(sources, combine)


def _merge(sources: list[Iterator[Chunk]], combine: Combine) -> Iterator[Chunk]:
    if len(sources) == 1:
        for c in sources[0]:
            if len(c):
                yield combine([c], [0])
        return
    pending: list[Chunk | None] = [None] * len(sources)
    live = list(range(len(sources)))
    while live:
        for i in list(live):
            while pending[i] is None or len(pending[i]) == 0:  # type: ignore[arg-type]
                nxt = next(sources[i], None)
                if nxt is None:
                    pending[i] = None
                    live.remove(i)
                    break
                pending[i] = nxt
        if not live and not any(p is not None and len(p) for p in pending):
            return
        watermark = min((int(pending[i].ts[-1]) for i in live), default=None)  # type: ignore[union-attr]
        parts: list[Chunk] = []
        src: list[int] = []
        for i, p in enumerate(pending):
            if p is None or len(p) == 0:
                continue
            cut = len(p) if watermark is None else int(np.searchsorted(p.ts, watermark, "right"))
            if cut == 0:
                continue
            parts.append(p.slice(0, cut) if cut < len(p) else p)
            src.append(i)
            pending[i] = p.slice(cut, len(p)) if cut < len(p) else None
        if parts:
            yield combine(parts, src)


def merge_order(ts_parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The parts' rows ordered by ts (stable: earlier parts first on ties): the times, each row's part
    and row within it, and the order (row indices into the parts concatenated)."""
    ts = np.concatenate(ts_parts)
    order = np.argsort(ts, kind="stable")
    sizes = np.array([len(t) for t in ts_parts], np.int64)
    starts = np.zeros(len(sizes), np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    part = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)[order]
    return ts[order], part, order - starts[part], order


def sort_lines(ts_parts: list[np.ndarray], line_parts: list[pa.Array]) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """The parts' rows ordered by ts (stable: earlier parts first on ties): the times, the lines (copied
    once, in order, by ``fmt.gather``) and the order (row indices into the parts concatenated)."""
    ts, part, row, order = merge_order(ts_parts)
    return ts, fmt.gather(line_parts, part, row), order
