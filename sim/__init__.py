"""Protocol-faithful local exchange simulator (binance-futures, bybit, hyperliquid).

Public API: ``Simulator`` (async, in-process), ``SimulatorThread`` (background
thread, thread-safe), ``Fault`` (scripted faults), ``Sent`` (what was sent).
See sim/README.md.
"""

from sim.faults import Fault
from sim.record import Sent
from sim.server import EXCHANGES, Simulator
from sim.thread import SimulatorThread

__all__ = ["EXCHANGES", "Fault", "Sent", "Simulator", "SimulatorThread"]
