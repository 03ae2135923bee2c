"""What one ``capture run`` wrote and lost, for the exit summary.

Files and rows come from the writers' ``WRITE <path> records: N`` lines of this
run (the last line of a file wins: a late-record merge rewrites it whole), bytes
from the file on disk. Losses come from the shared-memory counters before the
segments are released: ring drops per table, gaps, resyncs, malformed frames,
duplicates, disconnects and refused subscriptions per exchange; frames received
per channel from the per-(symbol, channel) counters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from ticktape.archive.layout import FileKey, LayoutError

LOSS_FIELDS = ("dropped", "gaps", "resyncs", "malformed", "duplicates", "disconnects", "subscribe_errors")
#: frames a connector makes from REST answers (Tardis's ``"generated": true`` raw frames): no stream data
GENERATED = frozenset({"depthSnapshot", "openInterest"})
#: exit code of a run in which a configured exchange delivered no data frame at all (0 ok, 1 data lost,
#: 2 config / pre-flight, 130 interrupted at start)
NO_DATA_EXIT = 3


@dataclass
class TableStats:
    rows: int = 0
    files: int = 0
    bytes: int = 0


@dataclass
class RunSummary:
    root: str
    log_file: str
    tables: dict[tuple[str, str], TableStats] = field(default_factory=dict)  # (exchange, table)
    losses: dict[str, dict[str, int]] = field(default_factory=dict)  # exchange -> field -> count
    undrained: int = 0
    #: exchange -> channel (the venue's name) -> frames received for a symbol, over the run
    received: dict[str, dict[str, int]] = field(default_factory=dict)
    #: exchanges that delivered no data frame in the whole run (the run fails: ``NO_DATA_EXIT``)
    no_data: list[str] = field(default_factory=list)
    #: exchange -> its symbols without a data frame while the exchange had some (a warning: an
    #: illiquid symbol's streams can be quiet)
    quiet: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": [{"exchange": e, "table": t, "rows": s.rows, "files": s.files, "bytes": s.bytes}
                       for (e, t), s in sorted(self.tables.items())],
            "received": self.received,
            "losses": self.losses,
            "undrained": self.undrained,
            "no_data": self.no_data,
            "quiet_symbols": self.quiet,
        }

    def no_data_reasons(self) -> list[str]:
        """One line per exchange that delivered no data frame."""
        return [f"exchange {ex} delivered no data frame during the whole run (check its url, symbols and "
                f"channels; its connection events are in the log)" for ex in self.no_data]

    def any_loss(self) -> bool:
        return self.undrained > 0 or any(v for d in self.losses.values() for v in d.values())


def files_by_table(root: str, written: dict[str, int]) -> dict[tuple[str, str], TableStats]:
    out: dict[tuple[str, str], TableStats] = {}
    for path, rows in written.items():
        try:
            key = FileKey.from_relpath(os.path.relpath(path, root))
            k = (key.exchange, key.data_type)
        except (LayoutError, ValueError):
            k = ("?", os.path.basename(os.path.dirname(path)))
        s = out.setdefault(k, TableStats())
        s.rows += rows
        s.files += 1
        try:
            s.bytes += os.path.getsize(path)
        except OSError:
            pass
    return out


def render(summary: RunSummary) -> Table:
    t = Table(title="capture summary (this run)", title_justify="left")
    for col in ("exchange", "table", "rows", "files", "bytes"):
        t.add_column(col, justify="right" if col in ("rows", "files", "bytes") else "left")
    for (ex, table), s in sorted(summary.tables.items()):
        t.add_row(ex, table, f"{s.rows:,}", f"{s.files:,}", _size(s.bytes))
    if not summary.tables:
        t.add_row("-", "(nothing finalized)", "0", "0", "0 B")
    t.add_section()
    for ex, chans in sorted(summary.received.items()):
        t.add_row(ex, "frames received", " · ".join(f"{c} {n:,}" for c, n in chans.items()) or "none", "", "")
    for ex, counts in sorted(summary.losses.items()):
        found = [f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items() if v]
        t.add_row(ex, "losses / faults", ", ".join(found) if found else "none", "", "")
    if summary.undrained:
        t.add_row("*", "never written", f"{summary.undrained:,} records left in the rings", "", "")
    for ex in summary.no_data:
        t.add_row(ex, "NO DATA", f"no data frame in the whole run (exit code {NO_DATA_EXIT})", "", "")
    for ex, syms in sorted(summary.quiet.items()):
        t.add_row(ex, "warning", f"no data frame for {', '.join(syms)}", "", "")
    t.caption = (
        f"where to look: `capture report {summary.root}` (every gap, drop, disconnect with its time), "
        f"the events table under {summary.root}, and the log {summary.log_file}"
    )
    return t


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
