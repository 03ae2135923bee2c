"""The Tardis Machine compatible HTTP server (aiohttp on uvloop).

Routes: ``GET /replay``, ``GET /replay-normalized``, ``GET /exchanges``
(and ``/exchanges/{id}``), ``WS /ws-replay``, ``WS /ws-replay-normalized``.
The WebSocket routes are served on the HTTP port and on port + 1, as Tardis
Machine does. Options are validated before the response starts: a bad
request is a 400 with ``{"code": 400, "message": reason}`` (``limits`` bounds
every route's query size and JSON depth). A stream is then admitted
(``state.admit``: 429 beyond ``max_streams``; ``limits.plan``: 503 beyond the
per-stream memory budget, else the batch size that fits it) and streams one
chunk at a time with awaited (draining) writes. Handlers are cancelled when
their client goes away, and no work is queued for a client already gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from ticktape.replay import data_api, datasets, fmt, limits, normalized, raw, ws
from ticktape.replay.inventory import Inventory
from ticktape.replay.merge import Chunk
from ticktape.replay.options import OptionsError, decode_options, parse_normalized, parse_raw
from ticktape.replay.state import (
    ACTIVE,
    COUNTS,
    EXECUTOR,
    INVENTORY,
    SESSIONS,
    SETTINGS,
    Settings,
    admit,
    bad_request,
    client_gone,
    count,
    refuse,
    register,
    trim_when_idle,
    unregister,
)
from ticktape.replay.streaming import Prefetch

__all__ = ["Server", "Settings", "make_app", "serve_forever"]

log = logging.getLogger("ticktape.replay")

CONTENT_TYPE = "application/x-json-stream"


@web.middleware
async def query_limits(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
    """Every route: a bounded query string and bounded JSON depth in its values, before any handler runs."""
    try:
        limits.check_query(request.query_string, request.query)
    except limits.LimitError as e:
        return refuse(e.status, str(e))
    return await handler(request)


async def _stream_chunks(request: web.Request, chunks: Iterator[Chunk], state: dict[str, Any]) -> web.StreamResponse:
    app = request.app
    what = state["what"]
    resp = web.StreamResponse(status=200, headers={"Content-Type": CONTENT_TYPE})
    it: Prefetch[Chunk] = Prefetch(chunks, app[EXECUTOR])
    n = 0
    t0 = time.perf_counter()
    try:
        await resp.prepare(request)
        async for chunk in it:
            if client_gone(request):
                raise ConnectionResetError("client gone")
            data = fmt.data_bytes(chunk.lines)
            await resp.write(data)
            n += len(chunk)
            state["sent_bytes"] += len(data)
        await resp.write_eof()
        log.info("%s done: %d messages in %.2fs", what, n, time.perf_counter() - t0)
    except ConnectionError as e:
        log.info("%s: client went away after %d messages (%s)", what, n, type(e).__name__)
    except asyncio.CancelledError:
        log.info("%s: cancelled after %d messages (client gone)", what, n)
        raise
    except Exception:
        # headers are out: drop the connection without the final chunk so the client sees an incomplete body
        log.exception("%s failed after %d messages", what, n)
        if request.transport is not None:
            request.transport.abort()
    finally:
        it.close()
    return resp


async def _admitted(request: web.Request, what: str, series: Callable[[], list[tuple[str, str, str]]],
                    start: Callable[[int], Iterator[Chunk]], start_ns: int, end_ns: int) -> web.StreamResponse:
    """Admission, then the stream: 429 beyond the stream cap, 503 beyond the memory budget, nothing at all for
    a client already gone; the stream's slot is held from admission to its last write."""
    app = request.app
    refusal = admit(app)
    if refusal is not None:
        return refusal
    if client_gone(request):
        count(app, "gone_before_start")
        return web.Response(status=499)  # nobody to answer: start no work
    key = id(request)
    state = register(app, key, what)
    try:
        s = app[SETTINGS]
        loop = asyncio.get_running_loop()
        try:
            plan = await loop.run_in_executor(
                app[EXECUTOR], lambda: limits.plan(s.root, series(), start_ns, end_ns, s.stream_budget))
        except limits.LimitError as e:
            count(app, f"refused_{e.status}")
            return refuse(e.status, str(e))
        if client_gone(request):
            count(app, "gone_before_start")
            return web.Response(status=499)
        state["batch_rows"] = plan.batch_rows
        return await _stream_chunks(request, start(plan.batch_rows), state)
    finally:
        unregister(app, key)


async def replay(request: web.Request) -> web.StreamResponse:
    s = request.app[SETTINGS]
    try:
        req = parse_raw(decode_options(request.query.get("options")), request.app[INVENTORY], s.max_range_hours)
    except OptionsError as e:
        return bad_request(str(e))
    return await _admitted(
        request, f"/replay {req.exchange}", lambda: raw.series(req),
        lambda rows: raw.stream(s.root, dataclasses.replace(req, batch_rows=rows)), req.range.start_ns, req.range.end_ns)


async def replay_normalized(request: web.Request) -> web.StreamResponse:
    s = request.app[SETTINGS]
    try:
        reqs = parse_normalized(decode_options(request.query.get("options")), request.app[INVENTORY], s.max_range_hours)
    except OptionsError as e:
        return bad_request(str(e))

    def start(rows: int) -> Iterator[Chunk]:
        for r in reqs:
            r.batch_rows = rows
        return normalized.stream(s.root, reqs)

    what = "/replay-normalized " + ",".join(r.exchange for r in reqs)
    return await _admitted(request, what, lambda: normalized.series(s.root, reqs), start,
                           min(r.range.start_ns for r in reqs), max(r.range.end_ns for r in reqs))


async def exchanges(request: web.Request) -> web.Response:
    inv = request.app[INVENTORY]
    code, body = await asyncio.get_running_loop().run_in_executor(
        request.app[EXECUTOR], inv.answer, request.match_info.get("exchange"))
    return web.json_response(body, status=code)


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
    """Liveness and resource use: open streams, WebSocket sessions, asyncio tasks, open fds, resident memory."""
    s = request.app[SETTINGS]
    counts: dict[str, int] = request.app[COUNTS]
    return web.json_response(
        {
            "active_streams": len(request.app[ACTIVE]),
            "max_streams": s.max_streams,
            "max_stream_mb": s.max_stream_mb,
            "streams": list(request.app[ACTIVE].values()),
            "ws_sessions": len(request.app[SESSIONS]),
            "counts": counts,
            "tasks": len(asyncio.all_tasks()),
            "fds": _fd_count(),
            "rss_kb": _rss_kb(),
        }
    )


def _fd_count() -> int:
    import os

    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def make_app(settings: Settings, *, ws_only: bool = False, shared: web.Application | None = None) -> web.Application:
    app = web.Application(middlewares=[query_limits])
    if shared is not None:  # the port + 1 app shares state with the main one
        app[SETTINGS] = shared[SETTINGS]
        app[INVENTORY] = shared[INVENTORY]
        app[EXECUTOR] = shared[EXECUTOR]
        app[ACTIVE] = shared[ACTIVE]
        app[COUNTS] = shared[COUNTS]
        app[SESSIONS] = shared[SESSIONS]
    else:
        app[SETTINGS] = settings
        app[INVENTORY] = Inventory(settings.root)
        app[EXECUTOR] = ThreadPoolExecutor(settings.threads, thread_name_prefix="replay")
        app[ACTIVE] = {}
        app[COUNTS] = {}
        app.cleanup_ctx.append(_idle_trim)
        app[SESSIONS] = {}
        app.on_cleanup.append(_shutdown_executor)
    if not ws_only:
        app.router.add_get("/replay", replay)
        app.router.add_get("/replay-normalized", replay_normalized)
        app.router.add_get("/exchanges", exchanges)
        app.router.add_get("/exchanges/{exchange}", exchanges)
        app.router.add_get("/status", status)
        # Tardis's HTTP data API (the official clients' ``endpoint`` pointed at this server's /v1)
        app.router.add_get("/v1/data-feeds/{exchange}", data_api.data_feed)
        app.router.add_get("/v1/exchanges/{exchange}", exchanges)
        # Tardis's dataset downloads (tardis_dev.download_datasets' ``endpoint`` pointed at this server's /v1)
        app.router.add_get("/v1/{exchange}/{data_type}/{year}/{month}/{day}/{file}", datasets.dataset)
    app.router.add_get("/ws-replay", ws.ws_replay)
    app.router.add_get("/ws-replay-normalized", ws.ws_replay_normalized)
    return app


def body_writes_without_join() -> bool:
    """Let aiohttp hand a response chunk's size line, data and CRLF to the transport's ``writelines``.

    Otherwise it joins the three into one new bytes first: a second copy of every byte served, on the
    event loop's thread, ~10 % of a raw replay's wall time. aiohttp keeps the join (``SKIP_WRITELINES``)
    on every Python before 3.12.9 because asyncio's ``writelines`` of 3.12.0-3.12.8 and 3.13.0-3.13.1
    did not pause a full transport (CVE-2024-12254). 3.11's is a join itself and uvloop has its own
    (writev), so the join is only kept on those versions. Returns whether writes go without it.
    """
    import sys

    from aiohttp import http_writer

    v = sys.version_info
    flawed = (3, 12, 0) <= v < (3, 12, 9) or (3, 13, 0) <= v < (3, 13, 2)
    if hasattr(http_writer, "SKIP_WRITELINES") and not flawed:
        http_writer.SKIP_WRITELINES = False
    return not getattr(http_writer, "SKIP_WRITELINES", True)


def make_runner(app: web.Application) -> web.AppRunner:
    """Handlers are cancelled when their client goes away (no work for a gone client); request lines up to
    ``limits.MAX_REQUEST_LINE`` reach the query check, which answers an oversized one with its reason."""
    body_writes_without_join()
    return web.AppRunner(app, access_log=None, handler_cancellation=True, max_line_size=limits.MAX_REQUEST_LINE)


async def _idle_trim(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.ensure_future(trim_when_idle(app))
    yield
    task.cancel()


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
            runner = make_runner(app)
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
