"""``capture sim``: run the simulator until interrupted (or ``--duration``).
Prints one JSON line with its URLs first, so a script or config can use them,
and one ``{"stats": ...}`` line on stderr at exit. Keeps no record of sent
frames (memory stays flat however long it runs)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

import uvloop

from ticktape.sim.faults import KINDS, Fault, ScriptEntry
from ticktape.sim.server import EXCHANGES, Simulator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port for all exchanges (0 = any free port)")
    parser.add_argument("--exchanges", default=",".join(EXCHANGES),
                        help=f"comma-separated exchange ids (default {','.join(EXCHANGES)})")
    parser.add_argument("--symbols", default="",
                        help="restrict symbols: 'binance-futures=BTCUSDT+ETHUSDT,bybit=BTCUSDT' (default: any)")
    parser.add_argument("--rate", type=float, default=100.0, help="market events per second per symbol (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="market RNG seed (default 1)")
    parser.add_argument("--trade-share", type=float, default=0.5,
                        help="share of market events that are trades, the rest book updates (default 0.5)")
    parser.add_argument("--replay", type=Path, default=None,
                        help="serve a recording (cryptofeed v2/v3, or '<ns> <frame>' lines) instead of the synthetic market")
    parser.add_argument("--speed", type=float, default=0.0,
                        help="replay pacing: 0 = as fast as possible, 1 = recorded speed, 2 = twice as fast")
    parser.add_argument("--max-conn-age", type=float, default=None,
                        help="binance-futures connection lifetime in seconds (real: 86400)")
    parser.add_argument("--fault", action="append", default=[], metavar="AT:KIND[:EXCHANGE[:SECONDS]]",
                        help="scripted fault, AT seconds (float, e.g. 5.0) or frames (int); delist takes "
                             f"AT:delist:EXCHANGE:SYMBOL; kinds: {', '.join(KINDS)}")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")


def _parse_fault(text: str, exchanges: list[str] | None = None) -> ScriptEntry:
    """``AT:KIND[:EXCHANGE[:SECONDS]]`` (``AT:delist:EXCHANGE:SYMBOL``); each bad part is named (``--fault 12:drop:kraken``:
    ``kraken`` is not a served exchange), so a typo never silently disables a fault."""
    served = list(exchanges) if exchanges is not None else list(EXCHANGES)
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"--fault {text!r}: expected AT:KIND[:EXCHANGE[:SECONDS]]")
    try:
        at: float | int = float(parts[0]) if "." in parts[0] else int(parts[0])
    except ValueError:
        raise ValueError(f"--fault {text!r}: AT {parts[0]!r} is not a number (seconds like 5.0, or frames like 100)") from None
    if not at >= 0 or at == float("inf"):
        raise ValueError(f"--fault {text!r}: AT {parts[0]!r} must be a finite number >= 0")
    if parts[1] not in KINDS:
        raise ValueError(f"--fault {text!r}: KIND: unknown fault {parts[1]!r} (kinds: {', '.join(KINDS)})")
    ex = parts[2] if len(parts) > 2 and parts[2] else None
    if ex is not None and ex not in served:
        raise ValueError(f"--fault {text!r}: EXCHANGE: unknown exchange {ex!r} (simulated here: {', '.join(served)})")
    if parts[1] == "delist":  # the fourth part names the symbol
        if ex is None or len(parts) < 4 or not parts[3]:
            raise ValueError(f"--fault {text!r}: delist needs AT:delist:EXCHANGE:SYMBOL")
        return at, Fault("delist", ex, symbol=parts[3])
    secs = 1.0
    if len(parts) > 3:
        try:
            secs = float(parts[3])
        except ValueError:
            raise ValueError(f"--fault {text!r}: SECONDS {parts[3]!r} is not a number") from None
        if not 0 < secs <= 86400:
            raise ValueError(f"--fault {text!r}: SECONDS {parts[3]!r} must be > 0 and <= 86400")
    return at, Fault(parts[1], ex, seconds=secs)


def _check_args(args: argparse.Namespace) -> None:
    """Range checks of the numeric options: one line naming the option, exit 2."""
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: must be 0..65535 (0 = any free port)")
    if not 0 < args.rate <= 1_000_000:
        raise ValueError(f"--rate {args.rate:g}: must be > 0 and <= 1000000 events/s per symbol")
    if not 0 <= args.trade_share <= 1:
        raise ValueError(f"--trade-share {args.trade_share:g}: must be 0..1")
    if not 0 <= args.speed <= 1e6:
        raise ValueError(f"--speed {args.speed:g}: must be 0 (as fast as possible) or > 0")
    if args.max_conn_age is not None and not 0 < args.max_conn_age <= 1e7:
        raise ValueError(f"--max-conn-age {args.max_conn_age:g}: must be > 0 seconds")
    if not 0 <= args.duration <= 1e9:
        raise ValueError(f"--duration {args.duration:g}: must be >= 0 seconds (0 = until Ctrl-C)")
    if args.replay is not None and not args.replay.is_file():
        raise ValueError(f"--replay {args.replay}: no such file")


def main(args: argparse.Namespace) -> int:
    try:
        _check_args(args)
        exchanges = [e.strip() for e in args.exchanges.split(",") if e.strip()]
        for e in exchanges:
            if e not in EXCHANGES:
                raise ValueError(f"--exchanges: unknown exchange {e!r} (simulated: {', '.join(EXCHANGES)})")
        chosen: dict[str, list[str] | None] = {e: None for e in exchanges}
        for item in filter(None, args.symbols.split(",")):
            ex, _, syms = item.partition("=")
            if ex not in chosen:
                raise ValueError(f"--symbols: {ex!r} is not in --exchanges")
            chosen[ex] = [s for s in syms.split("+") if s]
        script = [_parse_fault(f, exchanges) for f in args.fault]
        sim = Simulator(chosen, host=args.host, port=args.port, seed=args.seed, rate=args.rate,
                        trade_share=args.trade_share,
                        replay=args.replay, replay_speed=args.speed, script=script,
                        max_conn_age=args.max_conn_age, record=False)  # nobody can query a record here
    except (ValueError, TypeError, OSError) as e:
        print(f"capture sim: {e}", file=sys.stderr)
        return 2

    async def run() -> None:
        await sim.start()
        print(json.dumps(sim.endpoints()), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            if args.duration > 0:
                await asyncio.wait_for(stop.wait(), args.duration)
            else:
                await stop.wait()
        except TimeoutError:
            pass
        finally:
            print(json.dumps({"stats": sim.stats()}), file=sys.stderr, flush=True)
            await sim.stop()

    try:
        uvloop.run(run())
    except OSError as e:  # the bind: a taken port, an address that is not this machine's
        print(f"capture sim: --host {args.host} --port {args.port}: cannot listen ({e.strerror or e})", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"capture sim: {e}", file=sys.stderr)
        return 1
    return 0
