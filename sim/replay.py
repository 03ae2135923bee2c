"""Replay of a recording over the simulator's websocket and REST endpoints, so
real traffic runs through a client's whole capture path.

Formats (told apart by content; gzip and zstd files by their magic bytes, any
suffix): cryptofeed v2 text (``<url> <-> <ts>`` connection line, ``<ts>:
<frame>`` received frames; REST bodies ``<url> -> <ts>: <body>`` are read from
the file and its siblings with the same prefix, e.g. ``X.ws.1.0`` + ``X.0`` +
``X.http.0.0``), cryptofeed v3 JSON lines (``connect``/``recv``/``http``
records with their ``conn``) and plain ``<receive ns> <frame>`` lines.

Routing, per frame:

- the venue: the one whose ``recorded_urls`` match the URL the frame's
  connection was opened on (v3 ``connect`` ``addr``, v2 ``<->`` line), so a v3
  recording's spot connection feeds ``bybit-spot`` and never the linear
  subscriber; a connection of a venue not simulated here is skipped (counted
  in ``foreign``). Without a URL (plain lines) the frame's shape decides
  (``stream`` Binance, ``topic`` Bybit, ``channel`` + ``coin`` Hyperliquid):
  the first simulated venue of that shape.
- the subscribers: connections whose subscription names that recorded key,
  or an alias of it (``Venue.replay_source``: Binance ``@depth@0ms`` serves a
  ``@depth@100ms`` subscriber when the recording has no 100 ms stream; Bybit
  ``orderbook.200`` serves ``orderbook.50``). An aliased frame is sent under
  the subscriber's name (``Venue.replay_frame``: the envelope's stream/topic
  is rewritten, as the exchange labels a stream by its subscription; the data
  stays byte for byte). Frames are not re-batched to the other speed.
- REST: ``/depth`` bodies of the recording (v2/v3 ``http``, or recorded inline
  as Tardis does, ``{"stream":"<s>@depthSnapshot","generated":true,"data":
  <body>}``) are served in order per symbol at the venue's REST path; inline
  snapshot frames are not sent on the websocket. Control frames (acks, pongs)
  are not replayed.

Playback starts once every stream of the recording is subscribed, or
``wait`` seconds after the first subscription; ``speed`` 0 = as fast as
possible, 1 = the recorded pace.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import parse_qsl, urlsplit

import msgspec

from ticktape.sim.venue import Venue

log = logging.getLogger("ticktape.sim")

_V2_RECV = re.compile(rb"^(\d+(?:\.\d+)?): (.*)$")
_V2_HTTP = re.compile(rb"^(\S+) -> (\d+(?:\.\d+)?): (.*)$")
_V2_CONN = re.compile(rb"^(\S+) <-> (\d+(?:\.\d+)?)$")
_PLAIN = re.compile(rb"^(\d{10,20}) (.*)$")
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
_COMPRESSED_SUFFIX = re.compile(r"\.(gz|zst|zstd)$")
#: the exchange id a frame shape stands for when its connection is unknown (``route``)
SHAPES = {"stream": "binance-futures", "topic": "bybit", "coin": "hyperliquid", "rpc": "deribit", "table": "bitmex",
          "arg": "okex"}
#: Binance ids in the order a ``stream`` frame of no known connection goes to (the frame does not say which
#: Binance API sent it: such a recording is served by the one Binance venue the simulator runs)
BINANCE = ("binance-futures", "binance-delivery", "binance")
_PREFER = {"stream": BINANCE}
INLINE_SNAPSHOT = "depthSnapshot"


class _Params(msgspec.Struct):
    channel: str = ""


class _Coin(msgspec.Struct):
    coin: str = ""
    symbol: str = ""


class _Arg(msgspec.Struct):
    channel: str = ""
    instId: str = ""
    instType: str = ""


class _Env(msgspec.Struct):
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw(b"")  # deribit: {"channel": "book.X.raw", "data": ...}
    arg: _Arg | None = None
    stream: str | None = None
    topic: str | None = None
    channel: str | None = None
    table: str | None = None
    filter: _Coin | None = None
    generated: bool = False
    data: msgspec.Raw = msgspec.Raw(b"")


@dataclass
class Recording:
    """A recording as read: frames with the connection they came on, REST bodies, connection URLs."""

    frames: list[tuple[int, bytes, str]] = field(default_factory=list)  # (receive ns, frame, conn label)
    http: list[tuple[str, int, bytes]] = field(default_factory=list)  # (url, receive ns, body)
    conns: dict[str, str] = field(default_factory=dict)  # conn label -> url it was opened on


@contextmanager
def _reader(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading, gunzipped / un-zstd'ed when its first bytes say so (not its name)."""
    with path.open("rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        if head[:2] == _GZIP:
            yield cast(BinaryIO, gzip.GzipFile(fileobj=fh))
        elif head == _ZSTD:
            import zstandard

            yield cast(BinaryIO, zstandard.ZstdDecompressor().stream_reader(fh))
        else:
            yield fh


def read_bytes(path: Path) -> bytes:
    """A file's whole content, decompressed when it is gzip or zstd."""
    with _reader(path) as r:
        return r.read()


def sniff(path: Path, size: int = 1 << 16) -> str:
    """The recording format of ``path`` from its first ``size`` bytes (decompressed): "v3", "v2" or
    "plain"; "" if none of its first lines is one of them. Cheap: for a config check before start."""
    with _reader(path) as r:
        text = r.read(size)
    for line in text.splitlines()[:50]:
        if line.startswith(b'{"t":'):
            return "v3"
        if _V2_CONN.match(line) or (_V2_RECV.match(line) and b"." in line.split(b":", 1)[0]):
            return "v2"
        if _PLAIN.match(line):
            return "plain"
    return ""


def _is_v3(text: bytes) -> bool:
    first = text[: text.find(b"\n")] if b"\n" in text else text
    return first.lstrip().startswith(b'{"t":')


def load(path: Path) -> Recording:
    """Every received frame (with its connection) and REST answer of ``path`` and, for a
    cryptofeed v2 ``*.ws.*`` file, the REST bodies of its sibling files."""
    rec = Recording()
    text = read_bytes(path)
    if _is_v3(text):
        for line in text.splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            t = r.get("t")
            conn = str(r.get("conn", ""))
            if t == "recv":
                rec.frames.append((int(float(r["ts"]) * 1e9), r["data"].encode(), conn))
            elif t == "connect":
                rec.conns[conn] = str(r.get("addr", ""))
            elif t == "http":
                rec.http.append((r.get("url", ""), int(float(r["ts"]) * 1e9), r["data"].encode()))
        return rec
    name = _COMPRESSED_SUFFIX.sub("", path.name)
    label = name
    _lines(text, label, rec, own=True)
    m = re.match(r"^(.*)\.ws\.\d+\.\d+$", name)
    if m:
        for sib in sorted(path.parent.glob(m.group(1) + ".*")):
            if sib != path and ".ws." not in sib.name:
                _lines(read_bytes(sib), label, rec, own=False)
    return rec


def _lines(text: bytes, label: str, rec: Recording, own: bool) -> None:
    for line in text.splitlines():
        if own and (mm := _PLAIN.match(line)) and b"." not in mm.group(1):
            rec.frames.append((int(mm.group(1)), mm.group(2), label))
        elif own and (mm := _V2_RECV.match(line)):
            rec.frames.append((int(float(mm.group(1)) * 1e9), mm.group(2), label))
        elif mm := _V2_HTTP.match(line):
            rec.http.append((mm.group(1).decode(), int(float(mm.group(2)) * 1e9), mm.group(3)))
        elif own and (mm := _V2_CONN.match(line)):
            rec.conns[label] = mm.group(1).decode()


def read_recording(path: Path) -> tuple[list[tuple[int, bytes]], list[tuple[str, int, bytes]]]:
    """(receive ns, frame) of every received frame and (url, ns, body) of every REST answer."""
    rec = load(path)
    return [(ts, fr) for ts, fr, _ in rec.frames], rec.http


def shape(frame: bytes, dec: msgspec.json.Decoder[_Env] = msgspec.json.Decoder(_Env)) -> tuple[str, str, str, str, str] | None:
    """(shape, key, channel, symbol, hint) of a data frame, None for control frames or junk. ``shape``:
    a ``SHAPES`` key; ``hint``: the exchange id the frame itself names ("" if it does not: only OKX's
    instId tells spot from swap, which share one connection path)."""
    try:
        env = dec.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if env.method == "subscription" and env.params:
        try:
            ch = msgspec.json.decode(env.params, type=_Params).channel
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        parts = ch.split(".")
        if len(parts) < 2:
            return None
        # keyed without the interval: a recorded ``.raw`` frame reaches a ``.100ms`` subscriber
        return "rpc", f"{parts[0]}.{parts[1]}", parts[0], parts[1], ""
    if env.stream:
        parts = env.stream.split("@")
        return "stream", env.stream, parts[1] if len(parts) > 1 else "", parts[0].upper(), ""
    if env.topic:
        parts = env.topic.split(".")
        return "topic", env.topic, ".".join(parts[:-1]), parts[-1], ""
    if env.table:  # bitmex: the symbol of the first item, or the partial's filter (an empty partial)
        try:
            items = msgspec.json.decode(env.data, type=list[_Coin]) if env.data else []
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        sym = items[0].symbol if items else env.filter.symbol if env.filter is not None else ""
        return ("table", f"{env.table}:{sym}", env.table, sym, "") if sym else None
    if env.arg is not None and env.data:  # OKX v5: the id follows the instrument's shape
        a = env.arg
        inst = a.instId or a.instType
        ex = ("okex-swap" if inst == "SWAP" or inst.endswith("-SWAP") or a.channel == "index-tickers"
              else "okex" if inst == "SPOT" or inst.count("-") == 1 else "okex-futures")
        return "arg", f"{a.channel}:{inst}", a.channel, inst, ex
    if env.channel in ("l2Book", "trades", "bbo") and env.data:
        try:
            d = msgspec.json.decode(env.data)
        except msgspec.DecodeError:
            return None
        coin = d[0].get("coin", "") if isinstance(d, list) and d else d.get("coin", "") if isinstance(d, dict) else ""
        return "coin", f"{env.channel}:{coin}", env.channel, coin, ""
    return None


def route(frame: bytes) -> tuple[str, str, str, str] | None:
    """(exchange, key, channel, symbol) of a data frame by its shape alone, None for control frames."""
    r = shape(frame)
    return None if r is None else (r[4] or SHAPES[r[0]], r[1], r[2], r[3])


def family(exchange: str) -> str:
    """Tardis ids of one protocol family share their first part (``bybit``, ``bybit-spot``)."""
    return exchange.split("-", 1)[0]


def _inline_body(frame: bytes) -> bytes:
    """The ``data`` of a generated snapshot frame, byte for byte."""
    try:
        env = msgspec.json.decode(frame, type=_Env)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return b""
    return bytes(env.data) if env.generated else b""


class Replayer:
    """``known``: every venue class the simulator has (``sim.server.VENUES``): a connection URL one of
    them recognizes is that venue's, skipped when it is not simulated here; an unrecognized URL is
    routed by the frame's shape."""

    def __init__(self, venues: Mapping[str, Venue], path: Path, speed: float = 0.0, wait: float = 2.0,
                 known: Mapping[str, type[Venue]] | None = None) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"recording {path} not found")
        rec = load(path)
        if not rec.frames:
            raise ValueError(f"recording {path}: no received frames (cryptofeed v2/v3 or '<ns> <frame>' lines)")
        self.venues = venues
        self.known = known or {}
        self.speed = speed
        self.wait = wait
        #: (receive ns, frame, exchange, key, channel, symbol) of every frame to play
        self.frames: list[tuple[int, bytes, str, str, str, str]] = []
        self.skipped = 0  # control frames and junk
        self.foreign: dict[str, int] = {}  # frames of connections to venues not simulated here, by conn URL
        self.snapshots: dict[str, list[bytes]] = {}
        conn_venue = {label: self._venue_of_url(url) for label, url in rec.conns.items()}
        for ts, fr, label in rec.frames:
            r = shape(fr)
            if r is None:
                self.skipped += 1
                continue
            if r[2] == INLINE_SNAPSHOT:  # a REST answer recorded inline (Tardis): served at the REST path
                body = _inline_body(fr)
                if body:
                    self.snapshots.setdefault(r[3], []).append(body)
                    continue
            ex = conn_venue.get(label, "")
            if ex is None:
                url = rec.conns[label]
                self.foreign[url] = self.foreign.get(url, 0) + 1
                continue
            hint = r[4]
            if hint and (not ex or family(ex) == family(hint)):  # the frame names its id (OKX spot / swap)
                if hint not in venues:
                    what = f"({hint} frames: not simulated here)"
                    self.foreign[what] = self.foreign.get(what, 0) + 1
                    continue
                ex = hint
            if not ex:
                ex = self._by_shape(r[0])
            if not ex:
                what = f"({r[0]} frames: no venue of that shape simulated)"
                self.foreign[what] = self.foreign.get(what, 0) + 1
                continue
            self.frames.append((ts, fr, ex, r[1], r[2], r[3]))
        for url, n in self.foreign.items():
            log.info("replay: %d frames of %s skipped (its venue is not simulated here)", n, url)
        self.keys = {(f[2], f[3]) for f in self.frames}
        self._recorded: dict[str, set[str]] = {}
        for ex, key in self.keys:
            self._recorded.setdefault(ex, set()).add(key)
        for url, _, body in rec.http:
            u = urlsplit(url)
            if u.path.endswith("/depth"):
                sym = dict(parse_qsl(u.query)).get("symbol", "")
                self.snapshots.setdefault(sym, []).append(body)
        self.served: dict[str, int] = {}
        self.done = asyncio.Event()
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self._first_sub = 0.0
        self._targets: dict[int, tuple[int, dict[str, list[str]]]] = {}
        for v in venues.values():
            v.replay = self

    def _by_shape(self, shape: str) -> str:
        """The simulated venue that takes frames of ``shape`` from no known connection ("" if none)."""
        order = [e for e in _PREFER.get(shape, ()) if e in self.venues] + list(self.venues)
        return next((e for e in order if self.venues[e].replay_shape == shape), "")

    def _venue_of_url(self, url: str) -> str | None:
        """The simulated venue a connection URL belongs to; None: another venue's (not simulated);
        "": unknown (route by the frame's shape)."""
        if not url:
            return ""
        for e, v in self.venues.items():
            if v.recorded_at(url):
                return e
        return None if any(cls.recorded_at(url) for cls in self.known.values()) else ""

    def symbols(self, exchange: str) -> set[str]:
        """The symbols the recording holds for ``exchange`` (its instrument list when replaying)."""
        return {f[5] for f in self.frames if f[2] == exchange}

    # -- REST -----------------------------------------------------------------------------
    def rest(self, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        sym = query.get("symbol", "")
        bodies = self.snapshots.get(sym)
        if not bodies:
            return 400, b'{"code":-1121,"msg":"Invalid symbol."}'
        i = self.served.get(sym, 0)
        self.served[sym] = i + 1
        return 200, bodies[min(i, len(bodies) - 1)]

    # -- websocket ------------------------------------------------------------------------
    def targets(self, v: Venue, conn: Any) -> dict[str, list[str]]:
        """Recorded key -> the subscription names of ``conn`` it feeds (cached per subscription change)."""
        ver = conn.state.get("subs_ver", 0)
        hit = self._targets.get(conn.id)
        if hit is not None and hit[0] == ver:
            return hit[1]
        recorded = self._recorded.get(v.exchange, set())
        out: dict[str, list[str]] = {}
        for name in v.replay_names(conn):
            src = v.replay_source(name, recorded)
            if src is not None:
                out.setdefault(src, []).append(name)
        self._targets[conn.id] = (ver, out)
        return out

    def subscribed_keys(self) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for e, v in self.venues.items():
            for c in v.conns.values():
                out.update((e, k) for k in self.targets(v, c))
        return out

    def poke(self) -> None:
        """Called by the watchdog: start playback when its streams are subscribed."""
        if self._task is not None:
            return
        have = self.subscribed_keys() & self.keys
        if not have:
            return
        now = time.monotonic()
        if not self._first_sub:
            self._first_sub = now
        if have == self.keys or now - self._first_sub >= self.wait:
            self._task = asyncio.get_running_loop().create_task(self.play())

    async def play(self) -> None:
        t0 = time.monotonic()
        ts0 = self.frames[0][0] if self.frames else 0
        for i, (ts, frame, ex, key, channel, symbol) in enumerate(self.frames):
            if self.speed > 0:
                delay = (ts - ts0) / 1e9 / self.speed - (time.monotonic() - t0)
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 256 == 255:
                await asyncio.sleep(0)
            v = self.venues[ex]
            for c in list(v.conns.values()):
                names = self.targets(v, c).get(key)
                if not names:
                    continue
                for name in names:
                    c.send(channel, symbol, v.replay_frame(c, frame, key, name), (), i)
                    self.sent += 1
        self.done.set()
        log.info("replay finished: %d frames sent", self.sent)


__all__ = ["Recording", "Replayer", "family", "load", "read_bytes", "read_recording", "route", "shape", "sniff"]
