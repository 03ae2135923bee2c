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
                        help=f"scripted fault, AT seconds (float, e.g. 5.0) or frames (int); kinds: {', '.join(KINDS)}")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")


def _parse_fault(text: str) -> ScriptEntry:
    parts = text.split(":")
    if len(parts) < 2:
        raise ValueError(f"--fault {text!r}: expected AT:KIND[:EXCHANGE[:SECONDS]]")
    at: float | int = float(parts[0]) if "." in parts[0] else int(parts[0])
    ex = parts[2] if len(parts) > 2 and parts[2] else None
    secs = float(parts[3]) if len(parts) > 3 else 1.0
    return at, Fault(parts[1], ex, seconds=secs)


def main(args: argparse.Namespace) -> int:
    try:
        exchanges = [e.strip() for e in args.exchanges.split(",") if e.strip()]
        chosen: dict[str, list[str] | None] = {e: None for e in exchanges}
        for item in filter(None, args.symbols.split(",")):
            ex, _, syms = item.partition("=")
            if ex not in chosen:
                raise ValueError(f"--symbols: {ex!r} is not in --exchanges")
            chosen[ex] = [s for s in syms.split("+") if s]
        script = [_parse_fault(f) for f in args.fault]
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
    except (OSError, ValueError) as e:
        print(f"capture sim: {e}", file=sys.stderr)
        return 1
    return 0
