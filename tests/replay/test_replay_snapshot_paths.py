"""The interval path of computed snapshots (book applied in bulk between the messages where a snapshot may be
due) gives exactly what walking every message with tardis-dev's rule gives (the reference path, which the
differential suite checks against tardis-dev itself): levels that change and change back inside one interval,
snapshot messages mid-batch, books thinner than the depth, several types at once, batches cut anywhere."""

from __future__ import annotations

import numpy as np
import pytest

from ticktape.replay.book_snapshot import Snapshots
from ticktape.replay.options import Snapshot
from ticktape.replay.rows import BookRows


def book_rows(seed: int, messages: int, width: int, revert_share: float) -> BookRows:
    """Diff messages on a narrow price grid (levels keep coming back to the same amounts), a snapshot message
    first and a few more later, exchange times that sometimes step back."""
    rng = np.random.default_rng(seed)
    local = np.cumsum(rng.integers(1, 40_000_000, messages)) + 1_700_000_000_000_000_000
    ets = local - rng.integers(0, 5_000_000, messages)
    parts = []
    snaps = {0, *rng.choice(np.arange(1, messages), 3, replace=False).tolist()}
    for m in range(messages):
        if m in snaps:
            k = int(rng.integers(1, width))
            price = np.r_[100 - np.arange(1, k + 1), 100 + np.arange(1, k + 1)].astype(np.float64)
            ask = np.r_[np.zeros(k, np.bool_), np.ones(k, np.bool_)]
            amount = rng.choice([1.0, 2.0, 3.0], 2 * k)
            is_snap = np.ones(2 * k, np.bool_)
        else:
            k = int(rng.integers(1, 4))
            ask = rng.random(k) < 0.5
            price = np.where(ask, 100 + rng.integers(1, width, k), 100 - rng.integers(1, width, k)).astype(np.float64)
            price, first = np.unique(price, return_index=True)
            ask = ask[first]
            amount = np.where(rng.random(len(price)) < revert_share, 0.0, rng.choice([1.0, 2.0, 3.0], len(price)))
            is_snap = np.zeros(len(price), np.bool_)
        parts.append((np.full(len(price), local[m]), np.full(len(price), ets[m]), is_snap, ask, price, amount))
    return BookRows(*(np.concatenate([p[i] for p in parts]) for i in range(6)))


def run(rows: BookRows, specs: list[Snapshot], interval_path: bool, batch: int) -> list[bytes]:
    snaps = Snapshots(specs, "X", "binance-futures", interval_path=interval_path)
    out: list[bytes] = []
    n = len(rows.local)
    i = 0
    while i < n:  # batches never cut a message
        j = min(n, i + batch)
        while j < n and rows.local[j] == rows.local[j - 1]:
            j += 1
        part = rows.take(np.arange(i, j))
        brk = np.ones(j - i, np.bool_)
        brk[1:] = (part.local[1:] != part.local[:-1]) | (part.is_snap[1:] != part.is_snap[:-1])
        got = [(t, k, line) for k, c in enumerate(snaps.feed(part, np.flatnonzero(brk), part.ets))
               for t, line in zip(c.ts.tolist(), c.lines.to_pylist(), strict=True)]
        out += [line for _, _, line in sorted(got, key=lambda x: (x[0], x[1]))]  # as the merge orders them
        i = j
    return out


SPECS = {
    "10_100ms": [Snapshot("book_snapshot_10_100ms", 10, 100)],
    "3_1s": [Snapshot("book_snapshot_3_1s", 3, 1000)],
    "quote_50ms": [Snapshot("quote_50ms", 1, 50)],
    "mixed": [Snapshot("book_snapshot_5_100ms", 5, 100), Snapshot("quote_1s", 1, 1000),
              Snapshot("book_snapshot_25_250ms", 25, 250)],
}


@pytest.mark.parametrize("spec", list(SPECS))
@pytest.mark.parametrize(("seed", "width", "revert"), [(1, 6, 0.3), (2, 12, 0.15), (3, 30, 0.5), (4, 4, 0.4)])
def test_interval_path_equals_every_message(spec: str, seed: int, width: int, revert: float) -> None:
    rows = book_rows(seed, 3000, width, revert)
    ref = run(rows, SPECS[spec], False, 1 << 30)
    assert len(ref) > 40
    for batch in (1 << 30, 997, 64):
        assert run(rows, SPECS[spec], True, batch) == ref, (spec, batch)


@pytest.mark.parametrize("seed", [5, 6])
def test_band_fallback_and_small_blocks(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deep book whose top levels are removed faster than they come back: with no spare levels in the band
    and tiny blocks, blocks are redone over every price, and the result is still the reference."""
    from ticktape.replay import book_snapshot

    rows = book_rows(seed, 3000, 60, 0.6)
    specs = [Snapshot("book_snapshot_3_100ms", 3, 100), Snapshot("book_snapshot_8_1s", 8, 1000)]
    ref = run(rows, specs, False, 1 << 30)
    redone = []
    block = book_snapshot._block

    def counted(*a: object) -> object:
        r = block(*a)  # type: ignore[arg-type]
        redone.append(r is None)
        return r

    monkeypatch.setattr(book_snapshot, "BAND_EXTRA", 0)
    monkeypatch.setattr(book_snapshot, "BLOCK_CELLS", 64)
    monkeypatch.setattr(book_snapshot, "_block", counted)
    assert run(rows, specs, True, 997) == ref
    assert any(redone) and not all(redone)


def test_snapshot_lines_formatted_once_per_distinct_value_equal_the_generic_assembly() -> None:
    """Snapshot lines (each distinct price, amount and level text formatted once, the grid gathered with one take)
    are byte for byte the generic per-level assembly, on values whose text is easy to get wrong."""
    from ticktape.replay.levels import assemble, constant, snapshot_lines, trailer

    rng = np.random.default_rng(3)
    header = b'{"type":"book_snapshot","bids":['
    for k, depth in [(1, 1), (7, 3), (500, 10), (3000, 25)]:
        price = rng.choice([100.0, 100.5, 99.25, 1e-7, 123456789.125, -0.0, 0.0, np.nan, 1e15, 5e21], (k, 2 * depth))
        amount = np.where(np.isnan(price), np.nan, rng.choice([0.0, 1.5, 2.0, 0.001, 3e21, -0.0, 1e12], (k, 2 * depth)))
        local = np.arange(k, dtype=np.int64) * 1_000_003 + 1_736_186_400_000_000_000
        tr = trailer(local // 1_000_000 * 1_000_000, local)
        msg = np.repeat(np.arange(k), 2 * depth)
        is_ask = np.tile(np.repeat(np.array([False, True]), depth), k)
        ref = assemble(constant(header, k), tr, msg, is_ask, price.reshape(-1), amount.reshape(-1))
        assert snapshot_lines(header, tr, price, amount).to_pylist() == ref.to_pylist()


def test_last_writes_by_hash_and_by_sort_are_each_keys_last_row() -> None:
    """``_last_writes`` (a hash pass for few keys, a sort for many) gives each (segment, price)'s last row."""
    from ticktape.replay.book_snapshot import _last_writes

    rng = np.random.default_rng(5)
    for n, nseg in [(1, 1), (50, 1), (5000, 1), (5000, 3), (5000, 2000)]:
        seg = np.sort(rng.integers(0, nseg, n))
        idx = rng.integers(0, 40, n)
        last: dict[tuple[int, int], int] = {}
        for r, key in enumerate(zip(seg.tolist(), idx.tolist(), strict=True)):
            last[key] = r
        assert _last_writes(seg, idx).tolist() == sorted(last.values())
