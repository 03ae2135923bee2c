"""WebSocket replay: /ws-replay (exchange-native subscribe messages) and /ws-replay-normalized.

/ws-replay: after the upgrade the client has ``ws_subscribe_window`` seconds
(2 s, as Tardis Machine) to send its exchange's subscribe messages; then the
matching frames are sent, one WebSocket text message per frame. Clients that
connect with the same ``session`` while the first one's window is open form
one replay: their streams are merged by local timestamp and each frame goes to
the client that asked for it, so they see the same clock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from ticktape.archive.layout import LayoutError, check_exchange
from ticktape.replay import limits, normalized, raw
from ticktape.replay.merge import Chunk, merge
from ticktape.replay.options import (
    OptionsError,
    check_exchange_known,
    decode_options,
    parse_normalized,
    parse_range,
)
from ticktape.replay.state import (
    EXECUTOR,
    INVENTORY,
    SESSIONS,
    SETTINGS,
    admit,
    bad_request,
    refuse,
    register,
    unregister,
)
from ticktape.replay.streaming import Prefetch
from ticktape.replay.subscribe import ALL, SubscribeError, parse

log = logging.getLogger("ticktape.replay")


@dataclass(eq=False)
class Member:
    ws: web.WebSocketResponse
    exchange: str
    start_ns: int
    end_ns: int
    subs: list[tuple[str, str]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class Session:
    key: str
    members: list[Member] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


async def ws_replay(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    q = request.query
    try:
        exchange = q.get("exchange", "")
        check_exchange(exchange)
        check_exchange_known(exchange, request.app[INVENTORY])
        rng = parse_range(q.get("from"), q.get("to"), settings.max_range_hours)
    except (OptionsError, LayoutError) as e:
        return bad_request(str(e))
    session_key = q.get("session") or None
    sessions: dict[str, Session] = request.app[SESSIONS]
    if session_key is None or session_key not in sessions:  # joining an open session adds no stream
        refusal = admit(request.app)
        if refusal is not None:
            return refusal
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1 << 20)
    await ws.prepare(request)
    member = Member(ws, exchange, rng.start_ns, rng.end_ns)
    if session_key is not None and session_key in sessions:
        sess = sessions[session_key]
        sess.members.append(member)
    else:
        sess = Session(session_key or f"_{id(member)}", [member])
        if session_key is not None:
            sessions[session_key] = sess
        register(request.app, id(sess), f"/ws-replay session {sess.key}")
        sess.task = asyncio.ensure_future(_run_session(request.app, sess, settings.ws_subscribe_window))
    try:
        await _collect_subscriptions(member, settings.ws_subscribe_window, request.app)
        await member.done.wait()
    finally:  # also when this handler is cancelled (its client went away)
        if not ws.closed:
            await ws.close()
    return ws


async def _collect_subscriptions(m: Member, window: float, app: web.Application) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + window
    channels = set(app[INVENTORY].raw_channels(m.exchange))
    symbols = {s.upper(): s for s in app[INVENTORY].symbols(m.exchange, "raw")}
    every = ("_",) if app[INVENTORY].hours(m.exchange, "raw", "_") is not None else ()
    try:
        while True:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                msg = await m.ws.receive(timeout=left)
            except TimeoutError:
                break
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                pairs = parse(msg.data)
            except SubscribeError as e:
                await m.ws.send_json({"error": str(e)})
                continue
            unknown = sorted({c for c, _ in pairs if c not in channels} - {"depthSnapshot"})
            if unknown:
                await m.ws.send_json({"error": f"unknown channel(s) {unknown} for {m.exchange}"})
            # every archived symbol for a subscription by instrument type (OKX liquidation-orders), and the
            # no-symbol bucket ``_`` where the connector files the instruments nobody configured
            pairs = [(c, s) for c, sym in pairs for s in ((*symbols.values(), *every) if sym == ALL else (sym,))]
            # symbols are matched to the archive's (case-insensitively), so no name reaches a path unchecked
            real = [(c, "_" if sym == "_" and every else symbols.get(sym.upper())) for c, sym in pairs]
            missing = sorted({sym for (c, sym), (_, r) in zip(pairs, real, strict=True) if r is None})
            if missing:
                await m.ws.send_json({"error": f"unknown symbol(s) {missing} for {m.exchange}"})
            m.subs += [(c, r) for c, r in real if r is not None and c in channels and (c, r) not in m.subs]
    finally:
        m.ready.set()


async def _run_session(app: web.Application, sess: Session, window: float) -> None:
    settings = app[SETTINGS]
    root = settings.root
    it: Prefetch[Chunk] | None = None
    try:
        await asyncio.sleep(window)  # others may join while the first subscribe window is open
        if app[SESSIONS].get(sess.key) is sess:
            del app[SESSIONS][sess.key]
        members = list(sess.members)
        await asyncio.gather(*(m.ready.wait() for m in members))
        wanted: list[tuple[Member, str, list[str]]] = []
        owner: list[int] = []
        for i, m in enumerate(members):
            by_sym: dict[str, list[str]] = {}
            for ch, sym in m.subs:
                by_sym.setdefault(sym, []).append(ch)
            for sym, chans in sorted(by_sym.items()):
                wanted.append((m, sym, chans))
                owner.append(i)
        if wanted and not all(m.ws.closed for m in members):
            series = [(m.exchange, "raw", sym) for m, sym, _ in wanted]
            lo, hi = min(m.start_ns for m in members), max(m.end_ns for m in members)
            try:
                plan = await asyncio.get_running_loop().run_in_executor(
                    app[EXECUTOR], lambda: limits.plan(root, series, lo, hi, settings.stream_budget))
            except limits.LimitError as e:
                for m in members:
                    await m.ws.send_json({"error": str(e)})
                return
            srcs = [raw.frame_source(root, m.exchange, sym, chans, m.start_ns, m.end_ns, plan.batch_rows)
                    for m, sym, chans in wanted]
            it = Prefetch(merge(srcs), app[EXECUTOR])
            owners = np.asarray(owner, np.int32)
            async for chunk in it:
                await _send_chunk(chunk, [m.ws for m in members], owners)
    except (ConnectionResetError, ConnectionError):
        log.info("ws-replay session %s: a client went away", sess.key)
    except Exception:
        log.exception("ws-replay session %s failed", sess.key)
    finally:
        if it is not None:
            it.close()
        if app[SESSIONS].get(sess.key) is sess:
            del app[SESSIONS][sess.key]
        unregister(app, id(sess))
        for m in sess.members:
            m.done.set()


async def _send_chunk(chunk: Chunk, sockets: list[web.WebSocketResponse], owners: np.ndarray | None) -> None:
    """One text message per value; ``owners`` maps a chunk's source index to its socket."""
    arr = chunk.lines
    offs = np.frombuffer(arr.buffers()[1], np.int32, len(arr) + 1, arr.offset * 4).tolist()
    buf = memoryview(arr.buffers()[2]) if arr.buffers()[2] is not None else memoryview(b"")
    dest = owners[chunk.src].tolist() if owners is not None and chunk.src is not None else [0] * len(arr)
    for i, d in enumerate(dest):
        ws = sockets[d]
        if ws.closed:
            continue
        try:
            await ws.send_frame(bytes(buf[offs[i] : offs[i + 1]]), WSMsgType.TEXT)
        except ConnectionError:  # this client left; the others of its session go on
            await ws.close()
    if all(ws.closed for ws in sockets):
        raise ConnectionResetError("every client of the session is gone")


async def ws_replay_normalized(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    try:
        reqs = parse_normalized(decode_options(request.query.get("options")), app[INVENTORY], settings.max_range_hours)
    except OptionsError as e:
        return bad_request(str(e))
    refusal = admit(app)
    if refusal is not None:
        return refusal
    key = id(request)
    register(app, key, "/ws-replay-normalized " + ",".join(r.exchange for r in reqs))
    it: Prefetch[Chunk] | None = None
    try:
        lo, hi = min(r.range.start_ns for r in reqs), max(r.range.end_ns for r in reqs)
        try:
            plan = await asyncio.get_running_loop().run_in_executor(
                app[EXECUTOR], lambda: limits.plan(settings.root, normalized.series(settings.root, reqs), lo, hi,
                                                   settings.stream_budget))
        except limits.LimitError as e:
            return refuse(e.status, str(e))
        for r in reqs:
            r.batch_rows = plan.batch_rows
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        it = Prefetch(normalized.stream(settings.root, reqs), app[EXECUTOR])
        try:
            async for chunk in it:
                # lines end with '\n'; a WebSocket message is the JSON alone
                stripped = Chunk(chunk.ts, _strip_newlines(chunk.lines), None)
                await _send_chunk(stripped, [ws], None)
        except (ConnectionResetError, ConnectionError):
            log.info("ws-replay-normalized: client went away")
        finally:
            if not ws.closed:
                await ws.close()
        return ws
    finally:
        if it is not None:
            it.close()
        unregister(app, key)


def _strip_newlines(arr: Any) -> Any:
    import pyarrow.compute as pc

    return pc.binary_slice(arr, 0, -1) if hasattr(pc, "binary_slice") else pc.utf8_slice_codeunits(arr, 0, -1)
