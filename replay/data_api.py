"""Tardis's HTTP data API over the archive, so the official clients work with their endpoint pointed here.

``GET /v1/data-feeds/{exchange}?from=<ISO>&offset=<minutes>[&sliceSize=<minutes>][&filters=<JSON>]``: the
raw frames of ``sliceSize`` minutes starting ``offset`` minutes after ``from``, in the format tardis-dev
downloads and caches (``<28-char ISO time> <frame>`` lines, an empty line for a disconnect), gzip-encoded,
with the ``x-slice-size`` header the clients read (``GET /v1/exchanges/{exchange}`` is ``/exchanges/{id}``).
Same validation, admission and memory plan as ``/replay`` (it is the same stream, in another line format).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import zlib
from datetime import timedelta

from aiohttp import web

from ticktape.archive.layout import parse_time
from ticktape.replay import fmt, limits, raw
from ticktape.replay.merge import Chunk
from ticktape.replay.options import OptionsError, RawRequest, parse_raw
from ticktape.replay.state import (
    EXECUTOR,
    INVENTORY,
    SETTINGS,
    admit,
    bad_request,
    client_gone,
    count,
    refuse,
    register,
    unregister,
)
from ticktape.replay.streaming import Prefetch

MAX_SLICE_MINUTES = 60
MAX_OFFSET_MINUTES = 60 * 24 * 366


def _int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int:
    text = request.query.get(name)
    if text is None:
        if default is None:
            raise OptionsError(f"'{name}' is required ({lo}..{hi})")
        return default
    try:
        v = int(text)
    except ValueError:
        raise OptionsError(f"'{name}' must be an integer ({lo}..{hi}), got {text!r}") from None
    if not lo <= v <= hi:
        raise OptionsError(f"'{name}' must be {lo}..{hi}, got {v}")
    return v


def _options(request: web.Request) -> tuple[dict[str, object], int]:
    frm = request.query.get("from")
    if not frm:
        raise OptionsError("'from' is required: an ISO 8601 date (e.g. 2025-01-06T18:00:00.000Z)")
    try:
        start = parse_time(frm)
    except ValueError as e:
        raise OptionsError(f"'from' is not an ISO 8601 date: {e}") from None
    offset = _int(request, "offset", None, 0, MAX_OFFSET_MINUTES)
    size = _int(request, "sliceSize", 1, 1, MAX_SLICE_MINUTES)
    lo = start.replace(second=0, microsecond=0) + timedelta(minutes=offset)
    filters: object = []
    if request.query.get("filters"):
        try:
            filters = json.loads(request.query["filters"])
        except ValueError as e:
            raise OptionsError(f"'filters' is not valid JSON: {e}") from None
        if isinstance(filters, list):  # tardis-dev sends "symbols": null for every symbol
            filters = [{k: v for k, v in f.items() if v is not None} if isinstance(f, dict) else f for f in filters]
    iso = "%Y-%m-%dT%H:%M:%S.000Z"
    return ({"exchange": request.match_info["exchange"], "from": lo.strftime(iso),
             "to": (lo + timedelta(minutes=size)).strftime(iso), "filters": filters, "withDisconnects": True}, size)


async def data_feed(request: web.Request) -> web.StreamResponse:
    app = request.app
    s = app[SETTINGS]
    try:
        options, size = _options(request)
        req = parse_raw(options, app[INVENTORY], s.max_range_hours)
    except OptionsError as e:
        return bad_request(str(e))
    refusal = admit(app)
    if refusal is not None:
        return refusal
    key = id(request)
    register(app, key, f"/v1/data-feeds {req.exchange}")
    it: Prefetch[Chunk] | None = None
    loop = asyncio.get_running_loop()
    try:
        try:
            plan = await loop.run_in_executor(app[EXECUTOR], lambda: limits.plan(
                s.root, raw.series(req), req.range.start_ns, req.range.end_ns, s.stream_budget))
        except limits.LimitError as e:
            count(app, f"refused_{e.status}")
            return refuse(e.status, str(e))
        if client_gone(request):
            return web.Response(status=499)
        resp = web.StreamResponse(status=200, headers={
            "Content-Type": "application/x-json-stream", "Content-Encoding": "gzip", "x-slice-size": str(size)})
        await resp.prepare(request)
        gz = zlib.compressobj(1, zlib.DEFLATED, 31)
        it = Prefetch(raw.stream(s.root, _with_rows(req, plan.batch_rows), cache=True), app[EXECUTOR])
        async for chunk in it:
            data = fmt.data_bytes(chunk.lines)
            await resp.write(await loop.run_in_executor(app[EXECUTOR], gz.compress, data))
        await resp.write(gz.flush())
        await resp.write_eof()
        return resp
    except ConnectionError:
        return web.Response(status=499)
    finally:
        if it is not None:
            it.close()
        unregister(app, key)


def _with_rows(req: RawRequest, rows: int) -> RawRequest:
    return dataclasses.replace(req, batch_rows=rows)
