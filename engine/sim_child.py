"""The built-in exchange simulator as a supervised child of ``capture run``
(config ``[simulator]``), so a demo or soak run is one bounded command."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import uvloop

from ticktape.engine.config import SimulatorConfig

log = logging.getLogger("ticktape.sim")

#: exchanges the simulator speaks
SIMULATED = ("binance-futures", "bybit", "bybit-spot", "hyperliquid", "deribit", "bitmex", "okex", "okex-swap",
             "binance", "binance-delivery")


def simulator_main(exchanges: list[str], cfg: SimulatorConfig, stop: Any) -> None:
    """Process target: serve ``exchanges`` on cfg.host:cfg.port until ``stop`` is set."""
    from ticktape.sim.server import Simulator

    async def run() -> None:
        sim = Simulator(
            {e: None for e in exchanges},
            host=cfg.host,
            port=cfg.port,
            seed=cfg.seed,
            rate=cfg.rate,
            trade_share=cfg.trade_share,
            record=False,
            replay=cfg.replay,
            replay_speed=cfg.replay_speed,
        )
        await sim.start()
        log.info("simulator listening", extra={"endpoints": sim.endpoints()})
        try:
            while not stop.is_set():
                await asyncio.sleep(0.2)
        finally:
            log.info("simulator stopping", extra={"stats": sim.stats()})
            await sim.stop()

    uvloop.run(run())


def wait_listening(host: str, port: int, timeout: float = 15.0) -> bool:
    """True once something accepts connections on host:port."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False
