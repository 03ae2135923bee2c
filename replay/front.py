"""The first thing ``capture replay serve`` runs on its listening sockets.

The server's modules (pyarrow, pandas, numpy, the replay pipeline) take most of
a second or more to import. The front needs only aiohttp and the directory
listing (``replay.inventory``), so ``/exchanges`` is answered while they load
in a thread; a request to any other route (or to ``/exchanges`` with a query,
which the server's limits check) waits for them and is then handed to the
server's application as if that had received it. Once the server is loaded,
``/exchanges`` goes there too, so every answer after start-up comes from one
place with the same inventory.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ticktape.replay.inventory import Inventory

log = logging.getLogger("ticktape.replay")


class Front:
    """Routes every request of one listening socket to ``target`` once it is set (``ready``)."""

    def __init__(self, inventory: Inventory | None) -> None:
        self.inventory = inventory  # None: no early /exchanges on this socket (the WebSocket-only port)
        self.target: web.Application | None = None
        self.ready = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    def hand_over(self, target: web.Application) -> None:
        self.target = target
        self.ready.set()

    def _early(self, request: web.Request) -> tuple[bool, str | None]:
        """(answer here, exchange id or None for all): only a plain GET of ``/exchanges[/{id}]`` before hand-over."""
        if self.target is not None or self.inventory is None or request.method != "GET" or request.query_string:
            return False, None
        if request.path == "/exchanges":
            return True, None
        head, _, exchange = request.path.rpartition("/")
        return head == "/exchanges" and bool(exchange), exchange

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        early, exchange = self._early(request)
        if early and self.inventory is not None:
            code, body = await asyncio.get_running_loop().run_in_executor(None, self.inventory.answer, exchange)
            return web.json_response(body, status=code)
        await self.ready.wait()
        assert self.target is not None
        # the server's own dispatch (router, middlewares, handler): same request, same connection
        return await self.target._handle(request)
