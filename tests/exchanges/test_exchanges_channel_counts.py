"""Every frame a connector counts for a symbol names its channel: ``Feed.count(symbol, ts, nbytes, channel)``
feeds the per-(exchange, symbol, channel) counters of /metrics, and a call without the channel would put the
frames under ``channel="_"``. Checked on the source of every connector (new venues included)."""

from __future__ import annotations

import ast
from pathlib import Path

EXCHANGES = Path(__file__).resolve().parents[2] / "exchanges"


def test_every_symbol_frame_is_counted_with_its_channel() -> None:
    calls = []
    for path in sorted(EXCHANGES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "count"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in ("self", "feed")
                    and len(node.args) >= 3):
                symbol = node.args[0]
                control = isinstance(symbol, ast.Constant) and symbol.value == 0  # frames of no symbol
                calls.append((f"{path.name}:{node.lineno}", control, len(node.args) + len(node.keywords)))
    assert len(calls) >= 10, calls  # the scan finds the connectors' calls
    assert [c for c, control, n in calls if not control and n < 4] == []
