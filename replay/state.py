"""What the replay app's handlers share: settings, app keys, refusals, and stream admission.

Both the HTTP routes (``server``) and the WebSocket routes (``ws``) read
these, so they live apart from both. Every stream (an HTTP response, a
/ws-replay session, a /ws-replay-normalized socket) is registered in
``ACTIVE`` while it runs; ``admit`` refuses a new one beyond
``max_streams`` (429, with Retry-After) so abusive clients cannot pile up
work, and ``/status`` reports the registry.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ticktape.replay.inventory import Inventory
from ticktape.replay.options import DEFAULT_MAX_RANGE_HOURS

DEFAULT_MAX_STREAMS = 64
DEFAULT_MAX_STREAM_MB = 256


@dataclass(slots=True)
class Settings:
    root: str
    max_range_hours: float = DEFAULT_MAX_RANGE_HOURS
    ws_subscribe_window: float = 2.0
    threads: int = 4
    max_streams: int = DEFAULT_MAX_STREAMS  # concurrent streams of all routes together
    max_stream_mb: int = DEFAULT_MAX_STREAM_MB  # estimated bytes in flight for one stream

    @property
    def stream_budget(self) -> int:
        return self.max_stream_mb << 20


SETTINGS = web.AppKey("settings", Settings)
INVENTORY = web.AppKey("inventory", Inventory)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
ACTIVE = web.AppKey("active", dict)  # id -> {"what", "sent_bytes", ...} of every running stream
SESSIONS = web.AppKey("ws_sessions", dict)  # /ws-replay session key -> Session, while its window is open
COUNTS = web.AppKey("counts", dict)  # refusals and clients gone before their stream started, for /status


def refuse(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": status, "message": reason}, status=status, headers=headers)


def bad_request(reason: str) -> web.Response:
    return refuse(400, reason)


def count(app: web.Application, what: str) -> None:
    app[COUNTS][what] = app[COUNTS].get(what, 0) + 1


def admit(app: web.Application) -> web.Response | None:
    """None when one more stream may start; else the 429 to answer with."""
    cap = app[SETTINGS].max_streams
    if len(app[ACTIVE]) >= cap:
        count(app, "refused_429")
        return refuse(429, f"the server is already running {cap} streams (its --max-streams); retry later",
                      {"Retry-After": "1"})
    return None


def client_gone(request: web.Request) -> bool:
    t = request.transport
    return t is None or t.is_closing()


def register(app: web.Application, key: int, what: str) -> dict[str, Any]:
    state: dict[str, Any] = {"what": what, "sent_bytes": 0}
    app[ACTIVE][key] = state
    return state


def unregister(app: web.Application, key: int) -> None:
    app[ACTIVE].pop(key, None)


async def trim_when_idle(app: web.Application, every_s: float = 1.0, idle_trims: int = 5) -> None:
    """Give freed pages back once no stream runs, at each of the first ``idle_trims`` idle looks after
    activity: a stream whose client went away returns from its handler while its reader may still be
    decoding a batch, and the pages that batch frees come after a single trim (seen: 130 MB kept after
    200 aborted requests on a loaded machine)."""
    import asyncio

    left = 0
    while True:
        await asyncio.sleep(every_s)
        if app[ACTIVE]:
            left = idle_trims
        elif left:
            left -= 1
            await asyncio.get_running_loop().run_in_executor(app[EXECUTOR], release_memory)


def release_memory() -> None:
    """Arrow's pool (mimalloc/jemalloc) and glibc's malloc keep freed pages for reuse; after a burst of streams
    that is hundreds of MB the server would hold while idle."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL("libc.so.6")
