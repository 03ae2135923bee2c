"""Replay of a recording over the simulator's websocket and REST endpoints, so
real traffic runs through a client's whole capture path.

Formats: cryptofeed v2 text (``<ts>: <frame>`` received frames; REST bodies
``<url> -> <ts>: <body>`` are read from the file and its siblings with the same
prefix, e.g. ``X.ws.1.0`` + ``X.0`` + ``X.http.0.0``), cryptofeed v3
(``*.jsonl.zst``, ``recv``/``http`` records) and plain ``<receive ns> <frame>``
lines. Each frame is routed by its own ``stream`` (Binance), ``topic`` (Bybit),
``arg`` (OKX: ``channel`` + ``instId``, spot or swap by the instId's shape),
``channel`` + ``coin`` (Hyperliquid) or ``table`` + ``symbol`` (BitMEX) to the
connections subscribed to it,
byte for byte. Control frames (acks, pongs) are not replayed.

Playback starts once every stream of the recording is subscribed, or
``wait`` seconds after the first subscription; ``speed`` 0 = as fast as
possible, 1 = the recorded pace.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import msgspec

from ticktape.sim.venue import Venue

_V2_RECV = re.compile(rb"^(\d+(?:\.\d+)?): (.*)$")
_V2_HTTP = re.compile(rb"^(\S+) -> (\d+(?:\.\d+)?): (.*)$")
_PLAIN = re.compile(rb"^(\d{10,20}) (.*)$")
#: Binance ids in the order a ``stream`` frame goes to (the frame does not say which Binance API sent it:
#: a recording is served by the one Binance venue the simulator runs)
BINANCE = ("binance-futures", "binance-delivery", "binance")
_DEPTH_PATHS = ("/fapi/v1/depth", "/dapi/v1/depth", "/api/v3/depth")


class _Params(msgspec.Struct):
    channel: str = ""


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
    data: msgspec.Raw = msgspec.Raw(b"")


class _Coin(msgspec.Struct):
    coin: str = ""
    symbol: str = ""


def read_recording(path: Path) -> tuple[list[tuple[int, bytes]], list[tuple[str, int, bytes]]]:
    """(receive ns, frame) of every received frame and (url, ns, body) of every REST answer."""
    frames: list[tuple[int, bytes]] = []
    http: list[tuple[str, int, bytes]] = []
    if path.name.endswith(".zst"):
        import zstandard

        with path.open("rb") as fh:
            text = zstandard.ZstdDecompressor().stream_reader(fh).read()
        for line in text.splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            t = rec.get("t")
            if t == "recv":
                frames.append((int(float(rec["ts"]) * 1e9), rec["data"].encode()))
            elif t == "http":
                http.append((rec.get("url", ""), int(float(rec["ts"]) * 1e9), rec["data"].encode()))
        return frames, http
    files = [path]
    m = re.match(r"^(.*)\.ws\.\d+\.\d+$", path.name)
    if m:
        prefix = m.group(1)
        files += sorted(p for p in path.parent.glob(prefix + ".*") if p != path and ".ws." not in p.name)
    for f in files:
        for line in f.read_bytes().splitlines():
            if (mm := _PLAIN.match(line)) and f == path and b"." not in mm.group(1):
                frames.append((int(mm.group(1)), mm.group(2)))
            elif (mm := _V2_RECV.match(line)) and f == path:
                frames.append((int(float(mm.group(1)) * 1e9), mm.group(2)))
            elif mm := _V2_HTTP.match(line):
                http.append((mm.group(1).decode(), int(float(mm.group(2)) * 1e9), mm.group(3)))
    return frames, http


def route(frame: bytes, dec: msgspec.json.Decoder[_Env] = msgspec.json.Decoder(_Env)) -> tuple[str, str, str, str] | None:
    """(exchange, key, channel, symbol) of a data frame, None for control frames or junk."""
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
        return "deribit", f"{parts[0]}.{parts[1]}", parts[0], parts[1]
    if env.stream:
        parts = env.stream.split("@")
        return "binance-futures", env.stream, parts[1] if len(parts) > 1 else "", parts[0].upper()
    if env.topic:
        parts = env.topic.split(".")
        return "bybit", env.topic, ".".join(parts[:-1]), parts[-1]
    if env.table:  # bitmex: the symbol of the first item, or the partial's filter (an empty partial)
        try:
            items = msgspec.json.decode(env.data, type=list[_Coin]) if env.data else []
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        sym = items[0].symbol if items else env.filter.symbol if env.filter is not None else ""
        return ("bitmex", f"{env.table}:{sym}", env.table, sym) if sym else None
    if env.arg is not None and env.data:  # OKX v5: the id follows the instrument's shape
        a = env.arg
        inst = a.instId or a.instType
        ex = ("okex-swap" if inst == "SWAP" or inst.endswith("-SWAP") or a.channel == "index-tickers"
              else "okex" if inst == "SPOT" or inst.count("-") == 1 else "okex-futures")
        return ex, f"{a.channel}:{inst}", a.channel, inst
    if env.channel in ("l2Book", "trades", "bbo") and env.data:
        try:
            d = msgspec.json.decode(env.data)
        except msgspec.DecodeError:
            return None
        coin = d[0].get("coin", "") if isinstance(d, list) and d else d.get("coin", "") if isinstance(d, dict) else ""
        return "hyperliquid", f"{env.channel}:{coin}", env.channel, coin
    return None


class Replayer:
    def __init__(self, venues: Mapping[str, Venue], path: Path, speed: float = 0.0, wait: float = 2.0) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"recording {path} not found")
        frames, http = read_recording(path)
        if not frames:
            raise ValueError(f"recording {path}: no received frames (cryptofeed v2/v3 or '<ns> <frame>' lines)")
        self.venues = venues
        self.speed = speed
        self.wait = wait
        self.frames: list[tuple[int, bytes, tuple[str, str, str, str]]] = []
        self.skipped = 0  # control frames and junk
        binance = next((e for e in BINANCE if e in venues), None)
        for ts, fr in frames:
            r = route(fr)
            if r is None:
                self.skipped += 1
                continue
            if r[0] == "binance-futures" and binance is not None:
                r = (binance, *r[1:])
            if r[0] in venues:
                self.frames.append((ts, fr, r))
        self.keys = {r[1] for _, _, r in self.frames}
        self.snapshots: dict[str, list[bytes]] = {}
        for url, _, body in http:
            u = urlsplit(url)
            if u.path in _DEPTH_PATHS:
                sym = dict(parse_qsl(u.query)).get("symbol", "")
                self.snapshots.setdefault(sym, []).append(body)
        self.served: dict[str, int] = {}
        self.done = asyncio.Event()
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self._first_sub = 0.0
        for v in venues.values():
            v.replay = self

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
    def subscribed_keys(self) -> set[str]:
        out: set[str] = set()
        for v in self.venues.values():
            for c in v.conns.values():
                out.update(_keys_of(v.exchange, c.state.get("subs", {})))
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
        ts0 = self.frames[0][0]
        for i, (ts, frame, (ex, key, channel, symbol)) in enumerate(self.frames):
            if self.speed > 0:
                delay = (ts - ts0) / 1e9 / self.speed - (time.monotonic() - t0)
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 256 == 255:
                await asyncio.sleep(0)
            v = self.venues[ex]
            for c in list(v.conns.values()):
                if key in _keys_of(ex, c.state.get("subs", {})):
                    data = frame
                    if ex in BINANCE and not c.state.get("combined", True):
                        data = _unwrap(frame)
                    c.send(channel, symbol, data, (), i)
                    self.sent += 1
        self.done.set()


def _keys_of(exchange: str, subs: dict[tuple[str, str], str]) -> Iterator[str]:
    for (channel, symbol), name in subs.items():
        if exchange == "hyperliquid":
            yield f"{channel}:{symbol}"
        elif exchange == "deribit":
            yield f"{channel}.{symbol}"
        else:
            yield name


def _unwrap(frame: bytes) -> bytes:
    """``{"stream":..,"data":X}`` -> ``X`` without re-encoding."""
    i = frame.find(b'"data":')
    return frame[i + 7 : frame.rfind(b"}")] if i >= 0 else frame


__all__ = ["Replayer", "read_recording", "route"]
