"""The Tardis Machine compatible HTTP server (aiohttp on uvloop).

Routes: ``GET /replay``, ``GET /replay-normalized``, ``GET /exchanges``
(and ``/exchanges/{id}``), ``WS /ws-replay``, ``WS /ws-replay-normalized``.
The WebSocket routes are served on the HTTP port and on port + 1, as Tardis
Machine does. Options are validated before the response starts: a bad
request is a 400 with ``{"code": 400, "message": reason}``. Responses stream
one chunk at a time with awaited (draining) writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ticktape.replay import fmt, normalized, raw
from ticktape.replay.inventory import Inventory
from ticktape.replay.merge import Chunk
from ticktape.replay.options import (
    DEFAULT_MAX_RANGE_HOURS,
    OptionsError,
    decode_options,
    parse_normalized,
    parse_raw,
)
from ticktape.replay.streaming import Prefetch

log = logging.getLogger("ticktape.replay")

CONTENT_TYPE = "application/x-json-stream"


@dataclass(slots=True)
class Settings:
    root: str
    max_range_hours: float = DEFAULT_MAX_RANGE_HOURS
    ws_subscribe_window: float = 2.0
    threads: int = 4


SETTINGS = web.AppKey("settings", Settings)
INVENTORY = web.AppKey("inventory", Inventory)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
ACTIVE = web.AppKey("active", dict)


def bad_request(reason: str) -> web.Response:
    return web.json_response({"code": 400, "message": reason}, status=400)


async def _stream_chunks(request: web.Request, chunks: Any, what: str) -> web.StreamResponse:
    app = request.app
    resp = web.StreamResponse(status=200, headers={"Content-Type": CONTENT_TYPE})
    await resp.prepare(request)
    it: Prefetch[Chunk] = Prefetch(chunks, app[EXECUTOR])
    sid = id(resp)
    state: dict[str, Any] = {"what": what, "sent_bytes": 0}
    app[ACTIVE][sid] = state
    n = 0
    t0 = time.perf_counter()
    try:
        async for chunk in it:
            data = fmt.data_bytes(chunk.lines)
            await resp.write(data)
            n += len(chunk)
            state["sent_bytes"] += len(data)
        await resp.write_eof()
        log.info("%s done: %d messages in %.2fs", what, n, time.perf_counter() - t0)
    except ConnectionError as e:
        log.info("%s: client went away after %d messages (%s)", what, n, type(e).__name__)
    except asyncio.CancelledError:
        log.info("%s: cancelled after %d messages", what, n)
        raise
    except Exception:
        # headers are out: drop the connection without the final chunk so the client sees an incomplete body
        log.exception("%s failed after %d messages", what, n)
        if request.transport is not None:
            request.transport.abort()
    finally:
        await it.close()
        app[ACTIVE].pop(sid, None)
    return resp


async def replay(request: web.Request) -> web.StreamResponse:
    s = request.app[SETTINGS]
    try:
        req = parse_raw(decode_options(request.query.get("options")), request.app[INVENTORY], s.max_range_hours)
    except OptionsError as e:
        return bad_request(str(e))
    return await _stream_chunks(request, raw.stream(s.root, req), f"/replay {req.exchange}")


async def replay_normalized(request: web.Request) -> web.StreamResponse:
    s = request.app[SETTINGS]
    try:
        reqs = parse_normalized(decode_options(request.query.get("options")), request.app[INVENTORY], s.max_range_hours)
    except OptionsError as e:
        return bad_request(str(e))
    what = "/replay-normalized " + ",".join(r.exchange for r in reqs)
    return await _stream_chunks(request, normalized.stream(s.root, reqs), what)


async def exchanges(request: web.Request) -> web.Response:
    inv = request.app[INVENTORY]
    desc = await asyncio.get_running_loop().run_in_executor(request.app[EXECUTOR], inv.describe)
    ex = request.match_info.get("exchange")
    if ex is None:
        return web.json_response(desc)
    for d in desc:
        if d["id"] == ex:
            return web.json_response(d)
    return web.json_response({"code": 404, "message": f"unknown exchange {ex!r}"}, status=404)


def _rss_kb() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


async def status(request: web.Request) -> web.Response:
    """Liveness and resource use: open streams, WebSocket sessions, asyncio tasks, resident memory."""
    from ticktape.replay import ws

    return web.json_response(
        {
            "active_streams": len(request.app[ACTIVE]),
            "streams": list(request.app[ACTIVE].values()),
            "ws_sessions": len(request.app[ws.SESSIONS]),
            "tasks": len(asyncio.all_tasks()),
            "rss_kb": _rss_kb(),
        }
    )


def make_app(settings: Settings, *, ws_only: bool = False, shared: web.Application | None = None) -> web.Application:
    from ticktape.replay import ws

    app = web.Application()
    if shared is not None:  # the port + 1 app shares state with the main one
        app[SETTINGS] = shared[SETTINGS]
        app[INVENTORY] = shared[INVENTORY]
        app[EXECUTOR] = shared[EXECUTOR]
        app[ACTIVE] = shared[ACTIVE]
        app[ws.SESSIONS] = shared[ws.SESSIONS]
    else:
        app[SETTINGS] = settings
        app[INVENTORY] = Inventory(settings.root)
        app[EXECUTOR] = ThreadPoolExecutor(settings.threads, thread_name_prefix="replay")
        app[ACTIVE] = {}
        app[ws.SESSIONS] = {}
        app.on_cleanup.append(_shutdown_executor)
    if not ws_only:
        app.router.add_get("/replay", replay)
        app.router.add_get("/replay-normalized", replay_normalized)
        app.router.add_get("/exchanges", exchanges)
        app.router.add_get("/exchanges/{exchange}", exchanges)
        app.router.add_get("/status", status)
    app.router.add_get("/ws-replay", ws.ws_replay)
    app.router.add_get("/ws-replay-normalized", ws.ws_replay_normalized)
    return app


async def _shutdown_executor(app: web.Application) -> None:
    app[EXECUTOR].shutdown(wait=False, cancel_futures=True)


class Server:
    """The server's two listeners (port: everything; port + 1: WebSocket routes)."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.app = make_app(settings)
        self.ws_app = make_app(settings, ws_only=True, shared=self.app)
        self.runners: list[web.AppRunner] = []

    async def start(self) -> None:
        from ticktape.replay import storage

        if not storage.root_exists(self.settings.root):
            raise FileNotFoundError(f"archive {self.settings.root!r} does not exist")
        for app, port in ((self.app, self.port), (self.ws_app, self.port + 1)):
            runner = web.AppRunner(app, access_log=None, handler_cancellation=False)
            await runner.setup()
            await web.TCPSite(runner, self.host, port, backlog=128).start()
            self.runners.append(runner)
        log.info("replay server on http://%s:%d (ws also on %d), archive %s", self.host, self.port, self.port + 1,
                 self.settings.root)

    async def stop(self) -> None:
        for r in reversed(self.runners):
            await r.cleanup()
        self.runners.clear()


async def serve_forever(settings: Settings, host: str, port: int) -> None:
    srv = Server(settings, host, port)
    await srv.start()
    try:
        await asyncio.Event().wait()
    finally:
        await srv.stop()
