"""The ``synthetic`` exchange: a deterministic producer that needs no network.

It exists so the engine (supervisor, rings, writers, crash recovery) can be
tested and demonstrated on its own, and so tests can check *exactly* what
reached the disk. Parameters ride on the exchange's ``url``::

    [exchanges.synthetic]
    symbols = ["AAA", "BBB"]
    channels = ["trades", "book_change", "book_snapshot"]
    url = "synthetic://?rate=50000&seed=1&count=0&start=0&snap_every=10"

* ``rate``: trades per second over all symbols; ``count``: stop producing after
  this many trades (0 = never); ``start``: id of the first trade (use another
  value per run so ids never repeat); ``seed`` changes prices; ``snap_every``:
  one book snapshot per this many trades.

Record ``k`` of each data type is a pure function of ``k`` (see
``trade_values`` and friends), and trade ``k`` has id ``start + k``. Each
data type resumes from its own ring's count (write_seq + dropped), so a
restarted ingest process continues every sequence where the killed one
stopped: nothing repeated, nothing skipped.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
import numpy as np

from ticktape.engine import clock
from ticktape.engine.settings import ExchangeConfig, LogConfig
from ticktape.ipc import ringset
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.schemas import BOOK_ASK, BOOK_BID
from ticktape.ipc.stats import F, FeedStats

log = logging.getLogger("ticktape.synthetic")

CHANNELS = ("trades", "book_change", "book_snapshot")
#: raw frames carry the trades; one raw frame per trade
RAW_CHANNELS = ("trade",)
MAX_BATCH = 4096
_PRIME = 1_000_003


class Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rate: float = 1000.0
    seed: int = 1
    count: int = 0
    start: int = 0
    snap_every: int = 10


_INT_FIELDS = ("seed", "count", "start", "snap_every")


def parse_url(url: str | None) -> Params:
    """``synthetic://?rate=..&seed=..`` -> Params; ValueError naming the bad part."""
    if not url:
        return Params()
    parts = urlsplit(url)
    if parts.scheme != "synthetic" or parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"url must look like 'synthetic://?rate=1000&seed=1', got {url!r}")
    values: dict[str, Any] = {}
    for key, text in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key not in Params.__struct_fields__:
            raise ValueError(f"url: unknown parameter {key!r} (known: {', '.join(Params.__struct_fields__)})")
        try:
            values[key] = int(text) if key in _INT_FIELDS else float(text)
        except ValueError:
            raise ValueError(f"url: parameter {key}={text!r} is not a number") from None
    p = Params(**values)
    if not 0 < p.rate <= 10_000_000:
        raise ValueError("url: rate must be > 0 and <= 10000000 trades/s")
    if p.count < 0 or p.start < 0 or p.seed < 0:
        raise ValueError("url: count, start and seed must be >= 0")
    if not 1 <= p.snap_every <= 1_000_000:
        raise ValueError("url: snap_every must be 1..1000000")
    return p


# --- the connector interface -------------------------------------------------


def validate(name: str, ex_cfg: ExchangeConfig) -> None:
    bad = [c for c in ex_cfg.channels if c not in CHANNELS]
    if bad:
        raise ValueError(f"channels: unknown channel {bad[0]!r} (synthetic has {', '.join(CHANNELS)})")
    if not ex_cfg.channels:
        raise ValueError("channels: at least one channel is required")
    if ex_cfg.rest_url is not None or ex_cfg.trade_stream is not None:
        raise ValueError("rest_url and trade_stream do not apply to the synthetic exchange")
    parse_url(ex_cfg.url)


def data_types(name: str, ex_cfg: ExchangeConfig, raw: bool) -> list[str]:
    out = [c if c != "book_snapshot" else f"book_snapshot_{ex_cfg.depth}" for c in ex_cfg.channels]
    if raw:
        out.append("raw")
    return out


def raw_channels(name: str, ex_cfg: ExchangeConfig) -> tuple[str, ...]:
    return RAW_CHANNELS


# --- deterministic content (vectorized; tests call these to know what was sent) ---


def trade_values(p: Params, n_symbols: int, k: np.ndarray) -> dict[str, np.ndarray]:
    """Trades number ``k`` (0-based per run): symbol id (1-based), id, price, amount, side."""
    n = np.asarray(k, dtype=np.int64) + p.start
    h = ((n % _PRIME) * 7919 + p.seed * 104_729) % _PRIME
    return {
        "symbol": (n % n_symbols + 1).astype(np.int64),
        "id": n,
        "price": 100.0 + h / 100.0,
        "amount": ((n % 997) + 1) / 1000.0,
        "side": 1 + (n % 2),  # SIDE_BUY / SIDE_SELL
    }


def book_values(p: Params, n_symbols: int, k: np.ndarray) -> dict[str, np.ndarray]:
    """Book change ``k`` belongs to trade ``k``: one level next to the trade price."""
    t = trade_values(p, n_symbols, k)
    n = t["id"]
    side = np.where(n % 2 == 0, BOOK_BID, BOOK_ASK)
    return {
        "symbol": t["symbol"],
        "side": side,
        "price": t["price"] + np.where(side == BOOK_BID, -0.5, 0.5),
        "amount": (n % 7).astype(np.float64),  # 0 = level removed
    }


def snapshot_trade_index(p: Params, j: np.ndarray) -> np.ndarray:
    """Snapshot ``j`` is taken at trade ``j * snap_every``."""
    return np.asarray(j, dtype=np.int64) * p.snap_every


def snapshot_levels(p: Params, n_symbols: int, j: np.ndarray, levels: int) -> dict[str, np.ndarray]:
    t = trade_values(p, n_symbols, snapshot_trade_index(p, j))
    step = 0.01 * np.arange(1, levels + 1)
    size = np.arange(1, levels + 1, dtype=np.float64)
    price = t["price"][:, None]
    return {
        "symbol": t["symbol"],
        "bid_price": price - step,
        "bid_amount": np.broadcast_to(size, (len(price), levels)),
        "ask_price": price + step,
        "ask_amount": np.broadcast_to(size, (len(price), levels)),
    }


def raw_payload(symbol: str, trade_id: int, price: float, amount: float) -> bytes:
    return b'{"ch":"trade","s":"%s","id":%d,"p":%r,"q":%r}' % (symbol.encode(), trade_id, price, amount)


# --- the ingest process --------------------------------------------------------


def _produced(ring: Any) -> int:
    """Records of this ring's type produced so far in this run (pushed or dropped)."""
    idx: RecordRing = ring.index if hasattr(ring, "index") else ring
    return idx.write_seq + idx.dropped


class _Producer:
    def __init__(self, spec: RingSetSpec, rings: dict[str, Any], p: Params, stats: FeedStats) -> None:
        self.spec, self.rings, self.p, self.stats = spec, rings, p, stats
        self.out = Outbox(spec, rings)
        self.nsym = len(spec.symbols) - 1
        self.names = spec.symbols
        self.snap_type = next((dt for dt in rings if dt.startswith("book_snapshot_")), None)
        self.levels = self.out.snapshot_levels
        # next index per data type, resumed from the rings
        self.next = {dt: _produced(r) for dt, r in rings.items() if dt != "events"}
        lead = [v if dt != self.snap_type else v * p.snap_every for dt, v in self.next.items()]
        self.done = min(lead) if lead else 0  # trades fully produced in every type

    def produce(self, upto: int, now_ns: int) -> int:
        """Produce every record of every type up to trade index ``upto`` (exclusive)."""
        p, out, nsym = self.p, self.out, self.nsym
        exch_ts = now_ns // 1_000_000 * 1_000_000
        if "trades" in self.next and self.next["trades"] < upto:
            k = np.arange(self.next["trades"], upto)
            t = trade_values(p, nsym, k)
            for sym, tid, price, amount, side in zip(
                t["symbol"].tolist(), t["id"].tolist(), t["price"].tolist(), t["amount"].tolist(),
                t["side"].tolist(), strict=True,
            ):
                out.trade(now_ns, exch_ts, sym, b"%d" % tid, price, amount, side)
            self.next["trades"] = upto
        if "book_change" in self.next and self.next["book_change"] < upto:
            k = np.arange(self.next["book_change"], upto)
            b = book_values(p, nsym, k)
            for sym, side, price, amount in zip(
                b["symbol"].tolist(), b["side"].tolist(), b["price"].tolist(), b["amount"].tolist(), strict=True
            ):
                out.book_change(now_ns, exch_ts, sym, False, side, price, amount)
            self.next["book_change"] = upto
        if self.snap_type is not None:
            j_end = -(-upto // p.snap_every)
            if self.next[self.snap_type] < j_end:
                j = np.arange(self.next[self.snap_type], j_end)
                s = snapshot_levels(p, nsym, j, self.levels)
                flat = np.concatenate(
                    [s["bid_price"], s["bid_amount"], s["ask_price"], s["ask_amount"]], axis=1
                ).tolist()
                for sym, values in zip(s["symbol"].tolist(), flat, strict=True):
                    out.book_snapshot(now_ns, exch_ts, sym, values)
                self.next[self.snap_type] = j_end
        sizes = None
        if "raw" in self.next and self.next["raw"] < upto:
            k = np.arange(self.next["raw"], upto)
            t = trade_values(p, nsym, k)
            names = self.names
            sizes = np.empty(len(k), dtype=np.int64)
            for i, (sym, tid, price, amount) in enumerate(
                zip(t["symbol"].tolist(), t["id"].tolist(), t["price"].tolist(), t["amount"].tolist(), strict=True)
            ):
                payload = raw_payload(names[sym], tid, price, amount)
                sizes[i] = len(payload)
                out.raw(now_ns, payload, 0, sym, 1)
            self.next["raw"] = upto
        self._count(self.done, upto, now_ns, sizes)
        out.flush_pending(now_ns)
        self.done = upto
        return upto

    def recount(self) -> None:
        """Set the per-symbol message counters to the trades the rings hold.

        A kill -9 between a batch's ring pushes and its counter update would
        otherwise leave the counters short for good: the restart resumes after
        the pushed batch, so that batch is never counted. The rings are the record.
        """
        sym = trade_values(self.p, self.nsym, np.arange(self.done))["symbol"]
        v = self.stats.values
        v[1:, F["messages"]] = np.bincount(sym, minlength=self.nsym + 1)[1 : len(v)]
        self._channels()

    def _count(self, a: int, b: int, now_ns: int, sizes: np.ndarray | None) -> None:
        if b <= a:
            return
        sym = trade_values(self.p, self.nsym, np.arange(a, b))["symbol"]
        v = self.stats.values
        v[:, F["messages"]] += np.bincount(sym, minlength=self.nsym + 1)[: len(v)]
        if sizes is not None and len(sizes) == b - a:
            v[:, F["bytes"]] += np.bincount(sym, weights=sizes, minlength=self.nsym + 1)[: len(v)].astype(np.int64)
        touched = np.unique(sym)
        v[touched, F["last_msg_ns"]] = now_ns
        v[0, F["last_msg_ns"]] = now_ns
        self._channels()

    def _channels(self) -> None:
        """Every synthetic message is a trade frame of the one raw channel (id 1)."""
        ch = self.stats.channels
        if ch.shape[2] > 1:
            ch[0, :, 1] = self.stats.values[:, F["messages"]]
            ch[1, :, 1] = self.stats.values[:, F["bytes"]]


def ingest_main(spec: RingSetSpec, ex_cfg: ExchangeConfig, stats_name: str, stop: Any, log_cfg: LogConfig) -> None:
    """Process target: produce at ``rate`` until ``stop`` is set (or ``count`` is reached, then idle)."""
    p = parse_url(ex_cfg.url)
    rings = ringset.attach(spec)
    stats = FeedStats(stats_name, len(spec.symbols), len(spec.channels))
    prod = _Producer(spec, rings, p, stats)
    resumed = prod.done
    now = clock.now_ns()
    prod.out.event(now, "connect", detail=f"synthetic start at trade {resumed}")
    if resumed:
        stats.values[0, F["reconnects"]] += 1
        prod.recount()
    log.info(
        "synthetic producer started",
        extra={"exchange": spec.exchange, "resume_at": resumed, "rate": p.rate, "count": p.count},
    )
    t0 = time.monotonic()
    try:
        while not stop.is_set():
            target = resumed + int((time.monotonic() - t0) * p.rate)
            if p.count:
                target = min(target, p.count)
            if target > prod.done:
                prod.produce(min(target, prod.done + MAX_BATCH), clock.now_ns())
            else:
                time.sleep(0.002 if not p.count or prod.done < p.count else 0.05)
    finally:
        prod.out.flush_pending()
        log.info(
            "synthetic producer stopped",
            extra={"exchange": spec.exchange, "produced": prod.done, "pending_drops": prod.out.pending_drops},
        )
        ringset.close(rings)
        stats.close()
