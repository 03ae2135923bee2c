"""``capture replay serve --archive DIR --port 8000 [--host 127.0.0.1]``.

Start-up order (so ``serve & curl`` works): check the archive, bind both
listening sockets (a busy port is one line, exit 2), then serve them with
``replay.front`` (aiohttp and the directory listing only: ``/exchanges`` is
answered within a second of start) while the server's modules (pyarrow,
pandas, the replay pipeline) load in a thread; requests to other routes wait
for them. The raw channel names are read in the background once the server
runs. An ``s3://`` archive is checked before anything is served.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import ssl
import sys

DESCRIPTION = (
    "Serve an archive (a directory or s3://bucket/prefix) over the Tardis Machine replay API: "
    "/replay, /replay-normalized, /exchanges on HTTP, /ws-replay and /ws-replay-normalized on the port and port + 1."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="replay_cmd", metavar="CMD", required=True)
    p = sub.add_parser("serve", help="serve an archive over the Tardis Machine replay API (HTTP + WebSocket)",
                       description=DESCRIPTION)
    p.add_argument("--archive", required=True, help="archive root: a directory or s3://bucket/prefix")
    p.add_argument("--port", type=int, default=8000, help="HTTP port; WebSocket routes also on port + 1 (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only)")
    p.add_argument("--max-range-hours", type=float, default=None,
                   help="largest from..to span a request may ask for (default 744 h = 31 days)")
    p.add_argument("--ws-subscribe-window", type=float, default=2.0,
                   help="seconds a /ws-replay client has to send its subscribe messages (default 2)")
    p.add_argument("--batch-rows", type=int, default=0,
                   help="rows per read batch (bounds memory per client; default 32768)")
    p.add_argument("--threads", type=int, default=4, help="worker threads that build response batches")
    p.add_argument("--max-streams", type=int, default=64,
                   help="concurrent streams (all routes together); more are refused with 429 (default 64)")
    p.add_argument("--max-stream-mb", type=int, default=256,
                   help="memory one stream may hold in flight; batches shrink to fit, a request that cannot fit "
                        "is refused with 503 (default 256)")
    p.add_argument("--tls-cert", default=None, metavar="PEM",
                   help="serve HTTPS/WSS with this certificate chain (with --tls-key): the Node tardis-dev "
                        "client only fetches https:// endpoints")
    p.add_argument("--tls-key", default=None, metavar="PEM", help="private key of --tls-cert")


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The server's TLS context, None without --tls-cert; ValueError with a one-line reason."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    for name, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not os.path.isfile(path):
            raise ValueError(f"{name} {path!r}: no such file")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ValueError(f"--tls-cert {cert!r} / --tls-key {key!r}: not a usable certificate and key ({e})") from None
    return ctx


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(128)
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def _bind_error(host: str, port: int, e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return f"replay: port {port} on {host} is already in use (the server needs --port and --port + 1); choose another --port"
    if e.errno == errno.EACCES:
        return f"replay: no permission to listen on {host}:{port}; choose a --port above 1023"
    return f"replay: cannot listen on {host}:{port}: {e.strerror or e}"


def main(args: argparse.Namespace) -> int:
    s3 = args.archive.startswith("s3://")
    if not s3 and not os.path.isdir(args.archive):
        print(f"replay: archive directory {args.archive!r} does not exist", file=sys.stderr)
        return 2
    for name, v in (("--max-streams", args.max_streams), ("--max-stream-mb", args.max_stream_mb),
                    ("--threads", args.threads)):
        if not 1 <= v <= 100_000:
            print(f"replay: bad {name} {v} (1..100000)", file=sys.stderr)
            return 2
    if not 0 < args.port < 65535:
        print(f"replay: bad port {args.port} (1..65534: the WebSocket routes use port + 1)", file=sys.stderr)
        return 2
    try:
        args.ssl = tls_context(args.tls_cert, args.tls_key)
    except ValueError as e:
        print(f"replay: {e}", file=sys.stderr)
        return 2
    socks: list[socket.socket] = []
    for port in (args.port, args.port + 1):
        try:
            socks.append(bind(args.host, port))
        except (OSError, UnicodeError) as e:
            for s in socks:
                s.close()
            if isinstance(e, socket.gaierror | UnicodeError):
                print(f"replay: bad --host {args.host!r}: {e}", file=sys.stderr)
            else:
                print(_bind_error(args.host, port, e), file=sys.stderr)
            return 2
    try:
        from ticktape.engine.logging_setup import setup

        setup(None, "replay")  # the engine's JSON lines on stdout
    except ImportError:
        logging.basicConfig(level=logging.INFO)
    if s3:
        from ticktape.archive.s3_client import load_env

        load_env()  # AWS_* from the environment or a .env file
    try:
        import uvloop

        uvloop.run(_serve(args, socks))
    except KeyboardInterrupt:
        pass
    except FileNotFoundError as e:  # an s3:// prefix that is not there
        print(f"replay: {e}", file=sys.stderr)
        return 2
    return 0


def _load_server(args: argparse.Namespace) -> object:
    """Import the server (the slow part of start-up: run in a thread) and return its Settings."""
    import ticktape.replay.server  # noqa: F401  (pyarrow, pandas, the pipeline: loaded here, off the loop)
    from ticktape.replay.options import DEFAULT_MAX_RANGE_HOURS
    from ticktape.replay.state import Settings

    if args.batch_rows > 0:
        from ticktape.replay import sources

        sources.BATCH_ROWS = args.batch_rows
    s3 = args.archive.startswith("s3://")
    return Settings(args.archive if s3 else os.path.abspath(args.archive),
                    DEFAULT_MAX_RANGE_HOURS if args.max_range_hours is None else args.max_range_hours,
                    args.ws_subscribe_window, args.threads, args.max_streams, args.max_stream_mb)


async def _serve(args: argparse.Namespace, socks: list[socket.socket]) -> None:
    import asyncio

    from aiohttp import web

    from ticktape.replay.front import Front
    from ticktape.replay.inventory import Inventory

    s3 = args.archive.startswith("s3://")
    loop = asyncio.get_running_loop()
    if s3:  # listing it needs the S3 client anyway: check the prefix before serving
        settings = await loop.run_in_executor(None, _load_server, args)
        from ticktape.replay import storage

        if not await loop.run_in_executor(None, storage.root_exists, args.archive):
            raise FileNotFoundError(f"archive {args.archive!r} does not exist")
    inventory = Inventory(args.archive)
    fronts = [Front(inventory), Front(None)]  # port: every route; port + 1: the WebSocket routes
    runners = []
    front_sites = []
    for front, sock in zip(fronts, socks, strict=True):
        # a long request line gets to the server's own query check (the server's runner bounds it after start-up)
        runner = web.AppRunner(front.app, access_log=None, handler_cancellation=True, max_line_size=1 << 20)
        await runner.setup()
        site = web.SockSite(runner, sock.dup(), ssl_context=args.ssl)  # own fd: closing it leaves ``sock`` listening
        await site.start()
        runners.append(runner)
        front_sites.append(site)
    log = logging.getLogger("ticktape.replay")
    scheme = "https" if args.ssl is not None else "http"
    log.info("replay front on %s://%s:%d (ws also on %d), archive %s: /exchanges answered, server loading",
             scheme, args.host, args.port, args.port + 1, inventory.root)
    try:
        if not s3:
            settings = await loop.run_in_executor(None, _load_server, args)
        from ticktape.replay.server import make_app, make_runner
        from ticktape.replay.state import EXECUTOR, INVENTORY, Settings

        assert isinstance(settings, Settings)
        app = make_app(settings)
        app[INVENTORY] = inventory  # one inventory for the front's early answers and the server
        ws_app = make_app(settings, ws_only=True, shared=app)
        for a, sock in ((app, socks[0]), (ws_app, socks[1])):
            runner = make_runner(a)
            await runner.setup()
            await web.SockSite(runner, sock, ssl_context=args.ssl).start()
            runners.append(runner)
        for front, a in zip(fronts, (app, ws_app), strict=True):
            front.hand_over(a)  # requests the fronts hold (and their open connections) go to the server
        for site in front_sites:
            await site.stop()  # new connections: the server's own sites
        log.info("replay server on %s://%s:%d (ws also on %d), archive %s", scheme, args.host, args.port,
                 args.port + 1, settings.root)
        # read the raw channel names (for /replay's filters) while nobody waits for them
        app[EXECUTOR].submit(inventory.warm)
        await asyncio.Event().wait()
    finally:
        for r in reversed(runners):
            await r.cleanup()
