"""Producer side of an ingest process: typed pushes into its rings plus the
full-ring policy.

Policy (never block the event loop, never drop silently): a record that does
not fit is counted in the ring header (visible in /metrics), remembered per
(data type, symbol), logged, and turned into a ``drop`` event as soon as the
events ring has room; a dropped book record also calls ``on_book_drop`` so the
connector resyncs that book from a fresh snapshot.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

from ticktape.ipc import fastpack
from ticktape.ipc.raw_ring import _A_WRITE, RawRing
from ticktape.ipc.ring import _DROPPED, _READ, _WRITE, HEADER_BYTES, RecordRing
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.schemas import (
    BOOK_ASK,
    BOOK_BID,
    BOOK_CHANGE_STRUCT,
    BOOK_TICKER_STRUCT,
    DERIVATIVE_TICKER_STRUCT,
    EVENT_CODE,
    EVENT_DETAIL_BYTES,
    EVENT_STRUCT,
    LIQUIDATION_STRUCT,
    NO_SYMBOL,
    RAW_INDEX_STRUCT,
    TRADE_STRUCT,
    book_snapshot_struct,
    snapshot_levels,
)

log = logging.getLogger("ticktape.outbox")


class Outbox:
    def __init__(
        self,
        spec: RingSetSpec,
        rings: dict[str, RecordRing | RawRing],
        on_book_drop: Callable[[int], None] | None = None,
        compiled: bool = True,
    ) -> None:
        self.spec = spec
        #: the C level packer (None: pack level by level in Python; same bytes)
        self._pack_levels = fastpack.pack_levels if compiled else None
        #: the C level-text parser and packer (None: msgspec decodes the text, then the above)
        self._pack_text = fastpack.pack_level_text if compiled else None
        #: the C trade-frame writer (None: ``struct`` in a closure; same bytes)
        self._trade_frame_writer = fastpack.TradeFrameWriter if compiled else None
        self.rings = rings
        self.on_book_drop = on_book_drop
        self._lost: dict[tuple[str, int], int] = {}
        self._trades = rings.get("trades")
        self._book = rings.get("book_change")
        self._events = rings["events"]
        raw = rings.get("raw")
        self._raw = raw if isinstance(raw, RawRing) else None
        self._snap_type = next((dt for dt in rings if dt.startswith("book_snapshot_")), None)
        self._snap = rings.get(self._snap_type) if self._snap_type else None
        self.snapshot_levels = snapshot_levels(self._snap_type) if self._snap_type else 0
        self._snap_struct: struct.Struct | None = (
            book_snapshot_struct(self.snapshot_levels) if self._snap_type else None
        )
        self._book_ticker = rings.get("book_ticker")
        self._deriv = rings.get("derivative_ticker")
        self._liq = rings.get("liquidations")
        self._last_warn = 0.0
        # typed views of the same rings for the fast entry points
        self._tr = self._trades if isinstance(self._trades, RecordRing) else None
        self._bk = self._book if isinstance(self._book, RecordRing) else None
        self._sn = self._snap if isinstance(self._snap, RecordRing) else None
        self._field_packers: dict[tuple[str, str], Callable[..., None]] = {}
        self._snap_packer: Callable[..., None] | None = (
            _levels_packer(self._snap_struct, self.snapshot_levels) if self._snap_struct is not None else None
        )
        #: ``raw_fast(local_ts, payload, conn_id, symbol, channel)``: ``raw`` for the per-frame paths,
        #: the compiled ``RawFrameWriter.push`` when built (a full ring or an arena wrap goes through
        #: ``raw``), else the same steps in Python (``_raw_fast_py``); same bytes either way
        self.raw_fast: Callable[[int, Any, int, int, int], None] = self._raw_fast_py
        raw_writer = fastpack.RawFrameWriter if compiled else None
        if raw_writer is not None and self._raw is not None:
            idx = self._raw.index
            self.raw_fast = raw_writer(
                self._raw, idx, idx._mv, idx.capacity, idx.itemsize, self._raw.arena_shm.buf,
                self._raw.arena_bytes, HEADER_BYTES, _WRITE, self.raw,
            ).push

    @property
    def raw_enabled(self) -> bool:
        return self._raw is not None

    @property
    def wake_armed(self) -> bool:
        """The ring set's armed word (``ipc.wake``), in the events ring's header."""
        return isinstance(self._events, RecordRing) and self._events.wake_armed

    @wake_armed.setter
    def wake_armed(self, on: bool) -> None:
        if isinstance(self._events, RecordRing):
            self._events.wake_armed = on

    # -- typed pushes (hot path) -----------------------------------------------
    def trade(
        self, local_ts: int, exchange_ts: int, symbol: int, trade_id: bytes, price: float, amount: float, side: int
    ) -> None:
        ring = self._trades
        if ring is None or not ring.push_packed(  # type: ignore[union-attr]
            TRADE_STRUCT, local_ts, exchange_ts, price, amount, symbol, side, trade_id
        ):
            self._lose("trades", symbol)

    def book_change(
        self,
        local_ts: int,
        exchange_ts: int,
        symbol: int,
        is_snapshot: bool,
        side: int,
        price: float,
        amount: float,
    ) -> bool:
        ring = self._book
        if ring is None or not ring.push_packed(  # type: ignore[union-attr]
            BOOK_CHANGE_STRUCT, local_ts, exchange_ts, price, amount, symbol, side, is_snapshot
        ):
            self._lose("book_change", symbol)
            return False
        return True

    def book_snapshot(self, local_ts: int, exchange_ts: int, symbol: int, values: Sequence[float]) -> None:
        """``values``: bid prices, bid amounts, ask prices, ask amounts, N each (NaN-padded)."""
        ring = self._snap
        if ring is None or self._snap_struct is None:
            self._lose("book_snapshot", symbol)
            return
        if not ring.push_packed(self._snap_struct, local_ts, exchange_ts, symbol, *values):  # type: ignore[union-attr]
            self._lose(self._snap_type or "book_snapshot", symbol)

    def book_ticker(
        self, local_ts: int, exchange_ts: int, symbol: int, bid_price: float, bid_amount: float,
        ask_price: float, ask_amount: float,
    ) -> None:
        """The venue's best bid/offer (NaN = that side absent)."""
        ring = self._book_ticker
        if ring is None or not ring.push_packed(  # type: ignore[union-attr]
            BOOK_TICKER_STRUCT, local_ts, exchange_ts, bid_price, bid_amount, ask_price, ask_amount, symbol
        ):
            self._lose("book_ticker", symbol)

    def derivative_ticker(
        self, local_ts: int, exchange_ts: int, symbol: int, last_price: float, mark_price: float,
        index_price: float, funding_rate: float, funding_timestamp: int, predicted_funding_rate: float,
        open_interest: float,
    ) -> None:
        """The full ticker state after an update (NaN = the venue gives none; ``funding_timestamp`` ns, 0 = none)."""
        ring = self._deriv
        if ring is None or not ring.push_packed(  # type: ignore[union-attr]
            DERIVATIVE_TICKER_STRUCT, local_ts, exchange_ts, funding_timestamp, last_price, mark_price, index_price,
            funding_rate, predicted_funding_rate, open_interest, symbol,
        ):
            self._lose("derivative_ticker", symbol)

    def liquidation(
        self, local_ts: int, exchange_ts: int, symbol: int, liq_id: bytes, price: float, amount: float, side: int
    ) -> None:
        """One forced order; ``side`` = the liquidation order's side (sell = a long liquidated)."""
        ring = self._liq
        if ring is None or not ring.push_packed(  # type: ignore[union-attr]
            LIQUIDATION_STRUCT, local_ts, exchange_ts, price, amount, symbol, side, liq_id
        ):
            self._lose("liquidations", symbol)

    def raw(self, local_ts: int, payload: bytes | bytearray | memoryview, conn_id: int, symbol: int, channel: int) -> None:
        if self._raw is not None and not self._raw.push(local_ts, payload, conn_id, symbol, channel):
            self._lose("raw", symbol)

    def event(
        self,
        local_ts: int,
        kind: str,
        symbol: int = NO_SYMBOL,
        channel: int = 0,
        conn_id: int = 0,
        detail: str = "",
        exchange_ts: int = 0,
    ) -> bool:
        data = detail.encode()[:EVENT_DETAIL_BYTES]
        ok = self._events.push_packed(  # type: ignore[union-attr]
            EVENT_STRUCT, local_ts, exchange_ts, conn_id, symbol, channel, EVENT_CODE[kind], data
        )
        if not ok:
            self._lost[("events", symbol)] = self._lost.get(("events", symbol), 0) + 1
        return ok

    # -- per-frame fast entry points (same records and full-ring policy, fewer Python steps) --
    def trade_fast(
        self, local_ts: int, exchange_ts: int, symbol: int, trade_id: bytes, price: float, amount: float, side: int
    ) -> None:
        """``trade`` with the ring push inlined (one Python call per trade)."""
        ring = self._tr
        if ring is None:
            self._lose("trades", symbol)
            return
        seq = ring._wseq
        if seq - ring._read_cache >= ring.capacity:
            ring._read_cache = ring._words[_READ]
            if seq - ring._read_cache >= ring.capacity:
                ring._words[_DROPPED] += 1
                self._lose("trades", symbol)
                return
        TRADE_STRUCT.pack_into(
            ring._mv, HEADER_BYTES + (seq % ring.capacity) * ring.itemsize,
            local_ts, exchange_ts, price, amount, symbol, side, trade_id,
        )
        seq += 1
        ring._wseq = seq
        ring._words[_WRITE] = seq

    def _raw_fast_py(
        self, local_ts: int, payload: bytes | bytearray | memoryview, conn_id: int, symbol: int, channel: int
    ) -> None:
        """``raw`` with the arena copy and index record inlined; any full or wrapping
        case takes ``RawRing.push`` (which refreshes the caches and counts drops)."""
        r = self._raw
        if r is None:
            return
        n = len(payload)
        cap = r.arena_bytes
        pos = r._wpos
        off = pos % cap
        idx = r.index
        seq = idx._wseq
        end = pos + n  # payloads are packed (raw_ring._ALIGN == 1)
        if off + n > cap or end - r._rpos_cache > cap or seq - idx._read_cache >= idx.capacity:
            if not r.push(local_ts, payload, conn_id, symbol, channel):
                self._lose("raw", symbol)
            return
        r._data[off : off + n] = payload
        RAW_INDEX_STRUCT.pack_into(
            idx._mv, HEADER_BYTES + (seq % idx.capacity) * idx.itemsize, local_ts, pos, n, conn_id, symbol, channel
        )
        seq += 1
        idx._wseq = seq
        idx._words[_WRITE] = seq
        r._wpos = end
        r._words[_A_WRITE] = end

    def trade_frame_pusher(self) -> Callable[[int, int, int, int, float, float, int, Any, int, int], None]:
        """``push(local_ts, exchange_ts, symbol, trade_id, price, amount, side, payload, conn_id,
        channel)``: one call per trade frame, the busiest path. The trade row (an int
        ``trade_id`` is written in decimal) and, with raw capture on, the frame itself, packed
        straight into their rings with the rings' state bound once here: by the compiled
        ``TradeFrameWriter`` when it was built, else by a closure (same bytes). Same records and
        full-ring policy as ``trade`` + ``raw``: a full ring or an arena wrap goes through those."""
        tr, raw = self._tr, self._raw
        trade_slow, raw_slow = self.trade, self.raw
        if tr is None:

            def push_plain(ts: int, ets: int, sym: int, tid: int, price: float, amount: float, side: int,
                           payload: Any, conn_id: int, channel: int) -> None:
                trade_slow(ts, ets, sym, b"%d" % tid, price, amount, side)
                raw_slow(ts, payload, conn_id, sym, channel)

            return push_plain
        if self._trade_frame_writer is not None:
            idx = raw.index if raw is not None else None
            writer = self._trade_frame_writer(
                tr, tr._mv, tr.capacity, tr.itemsize, raw, idx, idx._mv if idx else None,
                idx.capacity if idx else 0, idx.itemsize if idx else 0, raw.arena_shm.buf if raw else None,
                raw.arena_bytes if raw else 0, HEADER_BYTES, _WRITE, self._trade_frame_slow,
            )
            push_c: Callable[[int, int, int, int, float, float, int, Any, int, int], None] = writer.push
            return push_c
        tpack = TRADE_STRUCT.pack_into
        tmv, tcap, tsize, twords = tr._mv, tr.capacity, tr.itemsize, tr._words

        def push_trade(ts: int, ets: int, sym: int, tid: int, price: float, amount: float, side: int,
                       payload: Any, conn_id: int, channel: int) -> None:
            seq = tr._wseq
            if seq - tr._read_cache >= tcap:
                trade_slow(ts, ets, sym, b"%d" % tid, price, amount, side)
                return
            tpack(tmv, HEADER_BYTES + seq % tcap * tsize, ts, ets, price, amount, sym, side, b"%d" % tid)
            seq += 1
            tr._wseq = seq
            twords[_WRITE] = seq

        if raw is None:
            return push_trade
        rpack = RAW_INDEX_STRUCT.pack_into
        idx = raw.index
        imv, icap, isize, iwords = idx._mv, idx.capacity, idx.itemsize, idx._words
        arena, acap, awords = raw._data, raw.arena_bytes, raw._words

        def push(ts: int, ets: int, sym: int, tid: int, price: float, amount: float, side: int,
                 payload: Any, conn_id: int, channel: int) -> None:
            seq = tr._wseq
            if seq - tr._read_cache >= tcap:
                trade_slow(ts, ets, sym, b"%d" % tid, price, amount, side)
            else:
                tpack(tmv, HEADER_BYTES + seq % tcap * tsize, ts, ets, price, amount, sym, side, b"%d" % tid)
                seq += 1
                tr._wseq = seq
                twords[_WRITE] = seq
            n = len(payload)
            pos = raw._wpos
            off = pos % acap
            seq = idx._wseq
            end = pos + n  # payloads are packed (raw_ring._ALIGN == 1)
            if off + n > acap or end - raw._rpos_cache > acap or seq - idx._read_cache >= icap:
                raw_slow(ts, payload, conn_id, sym, channel)
                return
            arena[off : off + n] = payload
            rpack(imv, HEADER_BYTES + seq % icap * isize, ts, pos, n, conn_id, sym, channel)
            seq += 1
            idx._wseq = seq
            iwords[_WRITE] = seq
            raw._wpos = end
            awords[_A_WRITE] = end

        return push

    def _trade_frame_slow(self, status: int, ts: int, ets: int, sym: int, tid: int, price: float, amount: float,
                          side: int, payload: Any, conn_id: int, channel: int) -> None:
        """What ``TradeFrameWriter.push`` left to Python: bit 1 the trade row (its ring looked
        full), bit 2 the raw frame (a wrap or a full arena/index): the ordinary pushes, drops counted."""
        if status & 1:
            self.trade(ts, ets, sym, b"%d" % tid if isinstance(tid, int) else tid, price, amount, side)
        if status & 2:
            self.raw(ts, payload, conn_id, sym, channel)

    def book_levels(
        self,
        local_ts: int,
        exchange_ts: int,
        symbol: int,
        is_snapshot: bool,
        side: int,
        levels: Sequence[Any],
        fields: tuple[str, str] | None = None,
    ) -> bool:
        """One ``book_change`` row per level, packed into contiguous slots; ``write_seq`` is
        published once. Levels are (price, amount) pairs, or objects whose ``fields``
        attributes are price and amount. Rows that do not fit are counted as dropped (ring
        header, pending drop event, one ``on_book_drop``), as ``book_change`` would. True if all fit."""
        if fields is not None:
            levels = list(map(attrgetter(*fields), levels))
        n = len(levels)
        if not n:
            return True
        ring = self._bk
        if ring is None:
            for _ in range(n):
                self._lose("book_change", symbol)
            return False
        cap = ring.capacity
        seq = ring._wseq
        free = cap - (seq - ring._read_cache)
        if free < n:
            ring._read_cache = ring._words[_READ]
            free = cap - (seq - ring._read_cache)
        k = n if free >= n else max(free, 0)
        if k:
            if self._pack_levels is not None:  # inlined: the common case pays no extra call
                self._pack_levels(ring._mv, HEADER_BYTES, ring.itemsize, cap, seq, k, local_ts, exchange_ts, symbol,
                                  side, is_snapshot, levels)
            else:
                self._write_levels(ring, seq, k, local_ts, exchange_ts, symbol, side, is_snapshot, levels)
            seq += k
            ring._wseq = seq
            ring._words[_WRITE] = seq
        if k < n:
            self._book_short(ring, symbol, n - k)
            return False
        return True

    def book_level_text(
        self,
        local_ts: int,
        exchange_ts: int,
        symbol: int,
        is_snapshot: bool,
        bids: Any,
        asks: Any,
    ) -> bool:
        """One frame's bid and ask levels straight from their JSON text (``msgspec.Raw`` or
        bytes: ``[["price","qty"],...]``), no per-level Python object on the compiled path:
        the same rows, slots and full-ring policy as ``book_levels`` for the bids then the
        asks with one reservation for both. Raises ``fastpack.LevelTextError`` (nothing
        written) when a text is not a level array. True if all rows fit."""
        ring = self._bk
        fn = self._pack_text
        if ring is None or fn is None:
            return self._book_level_text_py(local_ts, exchange_ts, symbol, is_snapshot, bids, asks)
        cap = ring.capacity
        seq = ring._wseq
        free = cap - (seq - ring._read_cache)
        n = fn(ring._mv, HEADER_BYTES, ring.itemsize, cap, seq, free, local_ts, exchange_ts, symbol, is_snapshot,
               BOOK_BID, bids, BOOK_ASK, asks)
        if n < 0:  # a spelling the C parser leaves to msgspec (or malformed: msgspec raises)
            return self._book_level_text_py(local_ts, exchange_ts, symbol, is_snapshot, bids, asks)
        if n > free:
            ring._read_cache = ring._words[_READ]
            more = cap - (seq - ring._read_cache)
            if more > free:
                fn(ring._mv, HEADER_BYTES, ring.itemsize, cap, seq, more, local_ts, exchange_ts, symbol, is_snapshot,
                   BOOK_BID, bids, BOOK_ASK, asks)
                free = more
        k = n if free >= n else max(free, 0)
        if k:
            seq += k
            ring._wseq = seq
            ring._words[_WRITE] = seq
        if k < n:
            self._book_short(ring, symbol, n - k)
            return False
        return True

    def _book_level_text_py(
        self, local_ts: int, exchange_ts: int, symbol: int, is_snapshot: bool, bids: Any, asks: Any
    ) -> bool:
        """``book_level_text`` with msgspec decoding the texts (the pure-Python path)."""
        b = fastpack.decode_levels(bids)
        a = fastpack.decode_levels(asks)
        nb = len(b)
        n = nb + len(a)
        ring = self._bk
        if ring is None:
            for _ in range(n):
                self._lose("book_change", symbol)
            return not n
        cap = ring.capacity
        seq = ring._wseq
        free = cap - (seq - ring._read_cache)
        if free < n:
            ring._read_cache = ring._words[_READ]
            free = cap - (seq - ring._read_cache)
        k = n if free >= n else max(free, 0)
        kb = min(k, nb)
        if kb:
            self._write_levels(ring, seq, kb, local_ts, exchange_ts, symbol, BOOK_BID, is_snapshot, b)
        if k > kb:
            self._write_levels(ring, seq + kb, k - kb, local_ts, exchange_ts, symbol, BOOK_ASK, is_snapshot, a)
        if k:
            seq += k
            ring._wseq = seq
            ring._words[_WRITE] = seq
        if k < n:
            self._book_short(ring, symbol, n - k)
            return False
        return True

    def _write_levels(
        self, ring: RecordRing, seq: int, k: int, local_ts: int, exchange_ts: int, symbol: int, side: int,
        is_snapshot: bool, levels: Sequence[Any],
    ) -> None:
        """levels[0:k] into slots seq .. seq+k-1 (the caller publishes ``write_seq``)."""
        mv = ring._mv
        size = ring.itemsize
        cap = ring.capacity
        if self._pack_levels is not None:
            self._pack_levels(mv, HEADER_BYTES, size, cap, seq, k, local_ts, exchange_ts, symbol, side,
                              is_snapshot, levels)
            return
        pack = BOOK_CHANGE_STRUCT.pack_into
        start = seq % cap
        if start + k <= cap:
            off = HEADER_BYTES + start * size
            for i in range(k):
                p, a = levels[i]
                pack(mv, off, local_ts, exchange_ts, p, a, symbol, side, is_snapshot)
                off += size
        else:
            for i in range(k):
                p, a = levels[i]
                pack(mv, HEADER_BYTES + ((seq + i) % cap) * size, local_ts, exchange_ts, p, a, symbol, side,
                     is_snapshot)

    def _book_short(self, ring: RecordRing, symbol: int, lost: int) -> None:
        """``lost`` book rows did not fit: counted in the ring header, one pending drop, one resync."""
        ring._words[_DROPPED] += lost
        key = ("book_change", symbol)
        self._lost[key] = self._lost.get(key, 0) + lost - 1
        self._lose("book_change", symbol)

    def book_snapshot_levels(
        self,
        local_ts: int,
        exchange_ts: int,
        symbol: int,
        bids: Sequence[Any],
        asks: Sequence[Any],
        fields: tuple[str, str] | None = None,
    ) -> bool:
        """``book_snapshot`` straight from decoded levels: (price, amount) pairs, or objects
        whose ``fields`` attributes are price and amount. A frame with exactly N levels a
        side (the partial-depth case) is unpacked and packed in one step with no
        intermediate tuple; False means the caller must use ``book_snapshot`` (other shapes)."""
        n = self.snapshot_levels
        packer = self._snap_packer
        if fields is not None and packer is not None:
            packer = self._field_packers.get(fields)
            if packer is None:
                assert self._snap_struct is not None
                packer = self._field_packers[fields] = _levels_packer(self._snap_struct, n, fields)
        if packer is None or len(bids) != n or len(asks) != n:
            return False
        ring = self._sn
        if ring is None:
            return False
        seq = ring._wseq
        if seq - ring._read_cache >= ring.capacity:
            ring._read_cache = ring._words[_READ]
            if seq - ring._read_cache >= ring.capacity:
                ring._words[_DROPPED] += 1
                self._lose(self._snap_type or "book_snapshot", symbol)
                return True
        packer(ring._mv, HEADER_BYTES + (seq % ring.capacity) * ring.itemsize, local_ts, exchange_ts, symbol, bids, asks)
        seq += 1
        ring._wseq = seq
        ring._words[_WRITE] = seq
        return True

    # -- full-ring policy --------------------------------------------------------
    def _lose(self, data_type: str, symbol: int) -> None:
        key = (data_type, symbol)
        self._lost[key] = self._lost.get(key, 0) + 1
        if data_type != "book_ticker" and data_type.startswith("book") and self.on_book_drop is not None:
            self.on_book_drop(symbol)
        now = time.monotonic()
        if now - self._last_warn > 5.0:
            self._last_warn = now
            log.warning(
                "ring full: dropping %s records for %s/%s",
                data_type,
                self.spec.exchange,
                self.spec.symbols[symbol] if symbol < len(self.spec.symbols) else symbol,
            )

    @property
    def pending_drops(self) -> int:
        return sum(self._lost.values())

    def flush_pending(self, now_ns: int | None = None) -> None:
        """Write a ``drop`` event for every (type, symbol) that lost records. Cheap when nothing was lost."""
        if not self._lost:
            return
        ts = now_ns if now_ns is not None else time.time_ns()
        for (dt, sym), n in list(self._lost.items()):
            if dt == "events":
                detail = f"events: {n} event rows dropped (ring full)"
            else:
                detail = f"{dt}: {n} records dropped (ring full)"
            if self.event(ts, "drop", symbol=sym, detail=detail):
                del self._lost[(dt, sym)]
                if dt != "events":
                    log.warning("%s/%s %s", self.spec.exchange, self.spec.symbols[sym], detail)
            else:
                break


def _levels_packer(packer: struct.Struct, n: int, fields: tuple[str, str] | None = None) -> Callable[..., None]:
    """A function that unpacks exactly ``n`` levels a side into locals and packs them in
    snapshot column order (bid prices, bid amounts, ask prices, ask amounts) with one
    ``pack_into``: tuple unpacking is the cheapest transpose Python has. Levels are
    (price, amount) pairs, or objects with the attributes named by ``fields``."""
    if fields is None:
        bp = [f"bp{i}" for i in range(n)]
        ba = [f"ba{i}" for i in range(n)]
        ap = [f"ap{i}" for i in range(n)]
        aa = [f"aa{i}" for i in range(n)]
        bl = ", ".join(f"({p}, {a})" for p, a in zip(bp, ba, strict=True))
        al = ", ".join(f"({p}, {a})" for p, a in zip(ap, aa, strict=True))
    else:
        px, sz = fields
        if not (px.isidentifier() and sz.isidentifier()):
            raise ValueError(f"level fields {fields!r} are not identifiers")
        bl = ", ".join(f"b{i}" for i in range(n))
        al = ", ".join(f"a{i}" for i in range(n))
        bp = [f"b{i}.{px}" for i in range(n)]
        ba = [f"b{i}.{sz}" for i in range(n)]
        ap = [f"a{i}.{px}" for i in range(n)]
        aa = [f"a{i}.{sz}" for i in range(n)]
    src = (
        "def pack(mv, off, ts, ets, sym, bids, asks):\n"
        f"    {bl}, = bids\n"
        f"    {al}, = asks\n"
        f"    pack_into(mv, off, ts, ets, sym, {', '.join(bp + ba + ap + aa)})\n"
    )
    ns: dict[str, object] = {"pack_into": packer.pack_into}
    exec(compile(src, f"<snapshot packer {n}>", "exec"), ns)
    return ns["pack"]  # type: ignore[return-value]
