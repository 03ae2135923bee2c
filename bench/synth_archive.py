"""Synthetic archives for ``capture bench replay`` and tests: vectorized, no sample files needed.

Files are written as the writer writes them (``ipc.schemas`` Arrow schemas,
zstd Parquet, ``layout.file_metadata``, temp name + rename), one per
(exchange, data type, symbol, hour), sorted by ``local_ts``.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ticktape.archive.layout import HOUR_NS, FileKey, file_metadata, hour_of_ns, safe_join
from ticktape.ipc import schemas as S
from ticktape.replay import fmt


def write_table(root: str, key: FileKey, table: pa.Table, row_group_size: int = 256_000) -> str:
    path = safe_join(root, key.relpath())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = safe_join(root, key.tmp_relpath("fixture"))
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    table = table.replace_schema_metadata(file_metadata(key, "replay-fixture"))
    pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)
    os.replace(tmp, path)
    return path


def write_by_hour(root: str, exchange: str, data_type: str, symbol: str, table: pa.Table) -> list[str]:
    """Split a local_ts-sorted table into hourly files."""
    ts = S.local_ns(table)
    if len(ts) == 0:
        return []
    hours = ts // HOUR_NS
    cuts = np.flatnonzero(np.diff(hours)) + 1
    out = []
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(ts)], strict=True):
        key = FileKey(exchange, data_type, symbol, hour_of_ns(int(ts[lo])))
        out.append(write_table(root, key, table.slice(int(lo), int(hi - lo))))
    return out


def raw_table(local_ts: np.ndarray, channels: list[str] | np.ndarray, payloads: list[bytes] | pa.Array,
              conn_id: int = 1) -> pa.Table:
    n = len(local_ts)
    pay = payloads if isinstance(payloads, pa.Array) else pa.array(payloads, pa.binary())
    chans = pa.array(list(channels), pa.string()) if not isinstance(channels, pa.Array) else channels
    return S.table_from_ns("raw", local_ts, None, [chans, pa.array(np.full(n, conn_id, np.uint32)), pay])


# --- synthetic, vectorized (scale) -----------------------------------------------------------


def _num(a: np.ndarray, decimals: int) -> pa.Array:
    """Fixed-decimal text of floats, as exchanges send prices ("42000.10")."""
    return pa.array(np.char.mod(f"%.{decimals}f", a) if len(a) < 10_000 else _fast_fixed(a, decimals))


def _fast_fixed(a: np.ndarray, decimals: int) -> pa.Array:
    scaled = np.round(a * 10**decimals).astype(np.int64)
    ip = pa.array(scaled // 10**decimals).cast(pa.string())
    fp = pa.array(scaled % 10**decimals + 10**decimals).cast(pa.string())  # leading '1' keeps the zeros
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(ip, pc.utf8_slice_codeunits(fp, 1), ".")


def synth_raw(symbol: str, local: np.ndarray, rng: np.random.Generator, base: float) -> pa.Table:
    """Binance-futures-like combined-stream frames: aggTrade and depth updates alternating at random."""
    n = len(local)
    is_depth = rng.random(n) < 0.5
    ms = pa.array(local // 1_000_000).cast(pa.string()).cast(pa.binary())
    price = base + np.cumsum(rng.normal(0, 0.05, n))
    s = symbol.lower().encode()
    trade = fmt.join(
        b'{"stream":"' + s + b'@aggTrade","data":{"e":"aggTrade","E":', ms,
        b',"a":', pa.array(np.arange(n)).cast(pa.string()).cast(pa.binary()),
        b',"s":"' + symbol.encode() + b'","p":"', _num(price, 2).cast(pa.binary()),
        b'","q":"', _num(rng.exponential(0.5, n), 3).cast(pa.binary()),
        b'","T":', ms, b',"m":true}}',
    )
    depth = fmt.join(
        b'{"stream":"' + s + b'@depth@100ms","data":{"e":"depthUpdate","E":', ms, b',"T":', ms,
        b',"s":"' + symbol.encode() + b'","U":1,"u":2,"pu":0,"b":[["', _num(price - 0.1, 2).cast(pa.binary()),
        b'","', _num(rng.exponential(2, n), 3).cast(pa.binary()), b'"]],"a":[["',
        _num(price + 0.1, 2).cast(pa.binary()), b'","0.000"]]}}',
    )
    import pyarrow.compute as pc

    payload = pc.if_else(pa.array(is_depth), depth, trade)
    chans = pc.if_else(pa.array(is_depth), pa.scalar("depth"), pa.scalar("aggTrade"))
    return raw_table(local, chans, payload)


def synth_trades(local: np.ndarray, rng: np.random.Generator, base: float) -> pa.Table:
    n = len(local)
    side = pa.DictionaryArray.from_arrays(pa.array(rng.integers(1, 3, n).astype(np.int8)), pa.array(S.TRADE_SIDES))
    ids = pa.array(np.arange(n, dtype=np.int64) + int(local[0]) // 1_000_000 if n else np.zeros(0, np.int64))
    return S.table_from_ns(
        "trades", local, local - 3_000_000,
        [ids.cast(pa.string()), pa.array(np.round(base + np.cumsum(rng.normal(0, 0.05, n)), 2)),
         pa.array(np.round(rng.exponential(0.5, n), 3) + 0.001), side],
    )


def synth_book(msg_local: np.ndarray, rng: np.random.Generator, base: float, levels: int = 200,
               rows_per_msg: int = 4) -> pa.Table:
    """Book changes: one snapshot message (``levels`` a side) then diff messages of 1..2*rows_per_msg-1 rows
    near the top, about 15 % of them removing a level."""
    m = len(msg_local)
    if m == 0:
        return S.BOOK_CHANGE_SCHEMA.empty_table()
    tick = 0.1
    mid = np.round(base / tick)
    # snapshot
    snap_bid = (mid - 1 - np.arange(levels)) * tick
    snap_ask = (mid + 1 + np.arange(levels)) * tick
    sizes = rng.integers(1, 2 * rows_per_msg, m - 1)
    n = int(sizes.sum())
    msg_of_row = np.repeat(np.arange(1, m), sizes)
    side = rng.integers(0, 2, n).astype(np.int8)
    off = np.minimum(rng.geometric(0.15, n), levels + 20)
    # the mid wanders a few ticks around its start (a random walk would leave the snapshot's levels behind)
    drift = np.round(4 * np.sin(np.arange(m) / 300.0) + rng.normal(0, 0.5, m)).astype(np.int64)
    p = np.where(side == 0, mid - off + drift[msg_of_row], mid + off + drift[msg_of_row]) * tick
    amt = np.where(rng.random(n) < 0.15, 0.0, np.round(rng.exponential(2.0, n), 3) + 0.001)
    local = np.concatenate([np.full(2 * levels, msg_local[0]), msg_local[msg_of_row]])
    all_side = np.concatenate([np.zeros(levels, np.int8), np.ones(levels, np.int8), side])
    price = np.round(np.concatenate([snap_bid, snap_ask, p]), 1)
    amount = np.concatenate([np.round(rng.exponential(2.0, 2 * levels), 3) + 0.001, amt])
    is_snap = np.concatenate([np.ones(2 * levels, np.bool_), np.zeros(n, np.bool_)])
    return S.table_from_ns(
        "book_change", local, local - 2_000_000,
        [pa.array(is_snap), pa.DictionaryArray.from_arrays(pa.array(all_side), pa.array(S.BOOK_SIDES)),
         pa.array(price), pa.array(amount)],
    )


def synth_archive(
    root: str,
    *,
    exchange: str = "binance-futures",
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DYDXUSDT"),
    start_ns: int = 1_736_186_400_000_000_000,  # 2025-01-06T18:00Z
    hours: int = 1,
    raw_per_hour: int = 100_000,
    trades_per_hour: int = 50_000,
    book_msgs_per_hour: int = 50_000,
    levels: int = 200,
    disconnects: int = 2,
    seed: int = 1,
    row_group_size: int = 256_000,
) -> dict[str, int]:
    """Write raw, trades, book_change and events for every (symbol, hour); returns totals."""
    rng = np.random.default_rng(seed)
    tot = {"raw": 0, "trades": 0, "book_change_rows": 0, "book_change_msgs": 0, "disconnects": 0}
    for hi in range(hours):
        h0 = start_ns + hi * HOUR_NS
        for si, sym in enumerate(symbols):
            base = 100.0 * (si + 1) ** 3
            local = np.sort(rng.integers(h0, h0 + HOUR_NS, raw_per_hour))
            t = synth_raw(sym, local, rng, base)
            if disconnects:
                cut = np.sort(rng.integers(h0, h0 + HOUR_NS, disconnects))
                marks = raw_table(cut, ["depth"] * disconnects, [b""] * disconnects)
                t = pa.concat_tables([t, marks])
                order = np.argsort(S.local_ns(t), kind="stable")
                t = t.take(pa.array(order))
                ev = S.table_from_ns(
                    "events", cut, np.zeros(disconnects, np.int64),
                    [pa.DictionaryArray.from_arrays(pa.array(np.zeros(disconnects, np.int8)), pa.array(S.EVENT_KINDS)),
                     pa.array(["depth"] * disconnects), pa.array(np.ones(disconnects, np.uint32)),
                     pa.array(["connection lost"] * disconnects)],
                )
                write_table(root, FileKey(exchange, "events", sym, hour_of_ns(h0)), ev)
                tot["disconnects"] += disconnects
            write_table(root, FileKey(exchange, "raw", sym, hour_of_ns(h0)), t, row_group_size)
            tot["raw"] += len(t)
            tl = np.sort(rng.integers(h0, h0 + HOUR_NS, trades_per_hour))
            write_table(root, FileKey(exchange, "trades", sym, hour_of_ns(h0)), synth_trades(tl, rng, base))
            tot["trades"] += trades_per_hour
            bl = np.unique(rng.integers(h0, h0 + HOUR_NS, book_msgs_per_hour))
            bt = synth_book(bl, rng, base, levels)
            write_table(root, FileKey(exchange, "book_change", sym, hour_of_ns(h0)), bt)
            tot["book_change_rows"] += len(bt)
            tot["book_change_msgs"] += len(bl)
    return tot
