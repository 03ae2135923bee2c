"""Protocol-faithful local exchange simulator (binance-futures, bybit, hyperliquid).

Public API: ``Simulator`` (async, in-process), ``SimulatorThread`` (background
thread, thread-safe), ``Fault`` (scripted faults), ``Sent`` (what was sent).
See sim/README.md.
"""

from ticktape.sim.faults import Fault
from ticktape.sim.record import Sent
from ticktape.sim.server import EXCHANGES, Simulator
from ticktape.sim.thread import SimulatorThread

__all__ = ["EXCHANGES", "Fault", "Sent", "Simulator", "SimulatorThread"]
