"""Tardis's dataset downloads over the archive, so ``tardis_dev.download_datasets(..., endpoint=<server>/v1)``
works unchanged.

``GET /v1/{exchange}/{data_type}/{YYYY}/{MM}/{DD}/{SYMBOL}.csv.gz`` (the path datasets.tardis.dev serves):
one UTC day of one Tardis dataset, gzip CSV, produced by the same code as ``capture export`` for that day
(``archive.export.chunks``: same columns, units, and book rebuilds), so the body is byte for byte the
decompressed file ``capture export --from DAY --to DAY+1`` writes. It is built an hour at a time in the
server's threads and compressed as it goes (memory: one hour of the source table).

Every path component is checked before anything is read: a malformed one (anything outside the archive's
name rules, a ``/`` or ``..`` smuggled in percent-encoded, an impossible date, another file type) is a 400
naming it; a well-formed request for what the archive does not hold is a 404 saying what it does hold.
``SYMBOL`` is matched the way the clients name it: ``:`` and ``/`` replaced by ``-``, any case.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from ticktape.replay.state import (
    EXECUTOR,
    INVENTORY,
    SETTINGS,
    admit,
    bad_request,
    client_gone,
    refuse,
    register,
    unregister,
)
from ticktape.replay.streaming import Prefetch

if TYPE_CHECKING:
    from ticktape.archive.export import SeriesLike

SUFFIX = ".csv.gz"
log = logging.getLogger("ticktape.replay")
#: the archive's exchange ids
_EXCHANGE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
#: a symbol as the clients put it in the file name (the archive's symbol characters minus ``:``/``/``)
_SYMBOL = re.compile(r"^[A-Za-z0-9@][A-Za-z0-9._@-]{0,63}$")
_YEAR, _TWO = re.compile(r"^\d{4}$"), re.compile(r"^\d{2}$")


class DatasetError(ValueError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class DatasetRequest:
    exchange: str
    dataset: str
    day: datetime  # 00:00 UTC
    symbol: str  # as the archive names it


def _datasets() -> tuple[str, ...]:
    from ticktape.archive.tardis_csv import DATASETS

    return DATASETS


def parse_path(info: dict[str, str]) -> tuple[str, str, datetime, str]:
    """(exchange, dataset, day, file-name symbol) of the route's components; DatasetError(400) naming the bad one."""
    exchange, dataset, file = info["exchange"], info["data_type"], info["file"]
    if not _EXCHANGE.match(exchange):
        raise DatasetError(400, f"invalid exchange {exchange[:80]!r} (lowercase letters, digits and '-', at most 40)")
    known = _datasets()
    if dataset not in known:
        raise DatasetError(400, f"unknown data type {dataset[:80]!r} (one of {', '.join(known)})")
    y, m, d = info["year"], info["month"], info["day"]
    if not (_YEAR.match(y) and _TWO.match(m) and _TWO.match(d)):
        raise DatasetError(400, f"invalid date {y[:8]!r}/{m[:8]!r}/{d[:8]!r} (YYYY/MM/DD)")
    try:
        day = datetime(int(y), int(m), int(d), tzinfo=UTC)
    except ValueError as e:
        raise DatasetError(400, f"invalid date {y}/{m}/{d}: {e}") from None
    if not file.endswith(SUFFIX):
        raise DatasetError(400, f"invalid file {file[:80]!r}: only <SYMBOL>{SUFFIX} is served (format csv)")
    sym = file[: -len(SUFFIX)]
    if not _SYMBOL.match(sym) or ".." in sym:
        raise DatasetError(400, f"invalid symbol {sym[:80]!r} (letters, digits and . _ @ -, at most 64, no '..')")
    return exchange, dataset, day, sym


def resolve(app: web.Application, info: dict[str, str]) -> DatasetRequest:
    """The request checked against the archive; DatasetError 400 (malformed) or 404 (not archived)."""
    from ticktape.archive.tardis_csv import filename_symbol

    exchange, dataset, day, sym = parse_path(info)
    series = [s for s in app[INVENTORY].series() if s.exchange == exchange and s.symbol != "_"]
    if not series:
        raise DatasetError(404, f"the archive has no exchange {exchange!r}")
    want = sym.upper()
    names = sorted({s.symbol for s in series})
    match = [s for s in names if filename_symbol(s).upper() == want]
    if not match:
        shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
        raise DatasetError(404, f"the archive has no symbol {sym!r} for {exchange} (it has: {shown})")
    return DatasetRequest(exchange, dataset, day, match[0])


def day_bytes(root: str, req: DatasetRequest, series: Sequence[SeriesLike]) -> Iterator[bytes] | None:
    """The day's dataset file as gzip chunks (header first, then an hour at a time); None when the archive
    has no table to make the dataset from for that symbol."""
    from ticktape.archive import tardis_csv as T
    from ticktape.archive.export import Archive, chunks

    arc = Archive(root, req.exchange, series)
    made = chunks(arc, req.dataset, req.symbol, req.day, req.day + timedelta(days=1))
    if made is None:
        return None
    _source, tables = made

    def gen() -> Iterator[bytes]:
        gz = zlib.compressobj(T.GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: a gzip member
        head = gz.compress(T.header_bytes(req.dataset))
        for table in tables:  # the first chunk is the header and the first hour together
            data = head + gz.compress(T.csv_bytes(req.dataset, table))
            head = b""
            if data:
                yield data
        yield head + gz.flush()

    return gen()


async def dataset(request: web.Request) -> web.StreamResponse:
    app = request.app
    try:
        req = resolve(app, dict(request.match_info))
    except DatasetError as e:
        return bad_request(str(e)) if e.status == 400 else refuse(e.status, str(e))
    refusal = admit(app)
    if refusal is not None:
        return refusal
    key = id(request)
    state = register(app, key, f"/v1 dataset {req.exchange} {req.dataset} {req.day:%Y-%m-%d} {req.symbol}")
    loop = request.loop
    series = [s for s in app[INVENTORY].series() if s.exchange == req.exchange]
    it: Prefetch[bytes] | None = None
    try:
        made = await loop.run_in_executor(app[EXECUTOR], day_bytes, app[SETTINGS].root, req, series)
        if made is None:
            have = sorted({s.data_type for s in series if s.symbol == req.symbol})
            return refuse(404, f"the archive has no table to make {req.dataset} of {req.exchange} {req.symbol} "
                               f"from (it has: {', '.join(have)})")
        if client_gone(request):
            return web.Response(status=499)
        it = Prefetch(made, app[EXECUTOR])
        try:  # header + first hour: a first file that cannot be read fails before the 200
            first = await it.__anext__()
        except (OSError, ValueError) as e:  # pyarrow's errors are both
            log.warning("dataset %s: %s", state["what"], e)
            return refuse(500, f"reading the archive failed: {e}"[:300])
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/gzip"})
        await resp.prepare(request)
        await resp.write(first)
        state["sent_bytes"] += len(first)
        async for chunk in it:
            await resp.write(chunk)
            state["sent_bytes"] += len(chunk)
        await resp.write_eof()
        return resp
    except ConnectionError:
        return web.Response(status=499)
    finally:
        if it is not None:
            it.close()
        unregister(app, key)
