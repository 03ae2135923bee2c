"""What one request may cost the server: JSON size and depth of its options, and memory in flight.

Options arrive as url-encoded JSON in the query string. ``check_query`` runs
on every route (a middleware) before any handler: the query's size and the
nesting depth of its JSON values are bounded, so a hostile request is a 400
with a reason instead of a ``RecursionError`` deep in ``json.loads``.

Memory per stream is what the sources of one stream hold at once: every
series (table x symbol) is read one batch ahead, merged, and turned into
lines, so it scales with ``series x batch_rows x bytes per row``. ``plan``
estimates the bytes per row from each series' Parquet metadata (no data is
read) and picks the largest batch size that keeps the estimate under the
server's per-stream budget; a request that does not fit even at the smallest
batch is refused (503 with the figures) rather than admitted to grow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ticktape.replay import sources, storage

MAX_QUERY_BYTES = 100_000
MAX_JSON_DEPTH = 8
#: aiohttp's request-line limit, raised so an oversized query reaches ``check_query`` (a JSON 400 with a reason)
MAX_REQUEST_LINE = 4 * MAX_QUERY_BYTES
MIN_BATCH_ROWS = 256
#: batches of one series alive at once: the one read ahead, the one waiting in the merge, and its lines
IN_FLIGHT_COPIES = 4
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


class LimitError(ValueError):
    """A request over one of the server's limits; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in a JSON text (brackets inside strings do not count); linear, no recursion."""
    body = np.frombuffer(_STRING.sub(b'""', text.encode("utf-8", "surrogatepass")), np.uint8)
    if not len(body):
        return 0
    step = ((body == 0x5B) | (body == 0x7B)).astype(np.int32) - ((body == 0x5D) | (body == 0x7D))
    return int(np.cumsum(step).max(initial=0))


def check_json(name: str, text: str) -> None:
    if len(text) > MAX_QUERY_BYTES:
        raise LimitError(400, f"'{name}' is {len(text)} bytes; at most {MAX_QUERY_BYTES}")
    d = json_depth(text)
    if d > MAX_JSON_DEPTH:
        raise LimitError(400, f"'{name}' nests {d} levels deep; at most {MAX_JSON_DEPTH}")


def check_query(raw_query: str, query: Mapping[str, str]) -> None:
    """Every route: the whole query string bounded, and every JSON-looking value bounded in depth."""
    if len(raw_query) > MAX_QUERY_BYTES:
        raise LimitError(400, f"query string is {len(raw_query)} bytes; at most {MAX_QUERY_BYTES}")
    for k, v in query.items():
        if v[:1] in ("[", "{") or k in ("options", "filters"):
            check_json(k, v)


@dataclass(frozen=True, slots=True)
class Plan:
    batch_rows: int
    estimate_bytes: int


def row_bytes(path: str) -> float:
    """Uncompressed bytes per row of an archive file, from its footer (0 when unreadable: the stream itself
    reports that file when it reaches it)."""
    try:
        md = storage.open_parquet(path).metadata
    except (OSError, pa.ArrowInvalid):
        return 0.0
    rows = md.num_rows
    if rows == 0:
        return 0.0
    return sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups)) / rows


def plan(root: str, series: Iterable[tuple[str, str, str]], start_ns: int, end_ns: int, budget_bytes: int) -> Plan:
    """Batch size for a stream over ``series`` ((exchange, table, symbol)) so it stays under ``budget_bytes``."""
    per_row = 0.0
    for exchange, table, symbol in series:
        paths = sources.hour_paths(root, exchange, table, symbol, start_ns, end_ns)
        if paths:
            per_row += IN_FLIGHT_COPIES * max(row_bytes(paths[0]), 64.0)
    if per_row == 0:
        return Plan(sources.BATCH_ROWS, 0)
    rows = min(sources.BATCH_ROWS, int(budget_bytes / per_row))
    if rows < MIN_BATCH_ROWS:
        need = int(per_row * MIN_BATCH_ROWS)
        raise LimitError(
            503,
            f"this request would hold ~{need >> 20} MB in flight even at the smallest batch; the server allows "
            f"{budget_bytes >> 20} MB per stream (--max-stream-mb): ask for fewer symbols or channels per request",
        )
    return Plan(rows, int(per_row * rows))
