"""Assemble JSON messages made of a header, bid levels, ask levels and a trailer, for many messages at once.

Used for ``book_change`` (levels = the rows of one message) and
``book_snapshot`` (levels = the top N of each side). Every piece is an Arrow
binary value; the pieces of all messages are put in output order with one
``take`` and cut into messages by subsetting offsets (``fmt.regroup``), so the
cost is a few vector passes whatever the number of levels.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.replay import fmt

ASKS_OPEN = b'],"asks":['


def constant(value: bytes, n: int) -> pa.Array:
    return fmt.fixed_width(np.tile(np.frombuffer(value, np.uint8), (n, 1)))


def level_elements(price: np.ndarray, amount: np.ndarray, first: np.ndarray, dedupe: bool = False) -> pa.Array:
    """``{"price":p,"amount":a}`` per level, with a leading comma unless it opens its list.

    A NaN price is an empty level (a snapshot deeper than the book): ``{}``, as Tardis pads it. With
    ``dedupe`` each distinct (price, amount, first) is formatted once and the texts are gathered: consecutive
    snapshots repeat most of their levels, and formatting numbers is the expensive part.
    """
    n = len(price)
    if dedupe and n > 64:
        order = np.lexsort((first, amount, price))
        p, a, f = price[order], amount[order], first[order]
        new = np.ones(n, np.bool_)
        new[1:] = (_differ(p[1:], p[:-1])) | (_differ(a[1:], a[:-1])) | (f[1:] != f[:-1])
        starts = np.flatnonzero(new)
        inverse = np.empty(n, np.int64)
        inverse[order] = np.cumsum(new) - 1
        return _elements(p[starts], a[starts], f[starts]).take(pa.array(inverse))
    return _elements(price, amount, first)


def _differ(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Not the same value (two NaNs are the same; -0.0 and 0.0 are not, they may print differently)."""
    return ~(((x == y) & (np.signbit(x) == np.signbit(y))) | (np.isnan(x) & np.isnan(y)))


def _elements(price: np.ndarray, amount: np.ndarray, first: np.ndarray) -> pa.Array:
    body = fmt.join(b'{"price":', fmt.numbers(price), b',"amount":', fmt.numbers(amount), b"}")
    pad = np.isnan(price)
    if pad.any():
        body = pc.if_else(pa.array(pad), pa.scalar(b"{}", pa.binary()), body)
    comma = pa.array(np.where(first, b"", b","), pa.binary())
    return fmt.join(comma, body)


def trailer(exchange_ts: np.ndarray, local_ts: np.ndarray, opening: bytes = b"]") -> pa.Array:
    """``<opening>,"timestamp":"…","localTimestamp":"…"}\n`` per message (``]`` closes the asks list);
    ``timestamp`` with milliseconds, ``localTimestamp`` with microseconds, as Tardis Machine writes them."""
    a, b, c = opening + b',"timestamp":"', b'","localTimestamp":"', b'"}\n'
    d, e = fmt.ts_width(fmt.EXCHANGE_DIGITS), fmt.ts_width(fmt.LOCAL_DIGITS)
    w = len(a) + d + len(b) + e + len(c)
    m = np.empty((len(local_ts), w), np.uint8)
    m[:, : len(a)] = np.frombuffer(a, np.uint8)
    m[:, len(a) : len(a) + d] = fmt.ts_matrix(exchange_ts, fmt.EXCHANGE_DIGITS)
    i = len(a) + d
    m[:, i : i + len(b)] = np.frombuffer(b, np.uint8)
    m[:, i + len(b) : i + len(b) + e] = fmt.ts_matrix(local_ts, fmt.LOCAL_DIGITS)
    m[:, w - len(c) :] = np.frombuffer(c, np.uint8)
    return fmt.fixed_width(m)


def assemble(
    headers: pa.Array,
    trailers: pa.Array,
    msg: np.ndarray,
    is_ask: np.ndarray,
    price: np.ndarray,
    amount: np.ndarray,
    dedupe: bool = False,
) -> pa.Array:
    """One finished line per message (``dedupe``: see ``level_elements``).

    ``headers`` end with ``"bids":[``; ``trailers`` start with ``]`` (closing asks).
    Level rows carry their message index ``msg`` (non-decreasing) and side;
    bids then asks within a message, each side in the order given.
    """
    g = len(headers)
    n = len(msg)
    key = msg.astype(np.int64) * 2 + is_ask.astype(np.int64)
    if n and not bool(np.all(key[1:] >= key[:-1])):
        order = np.argsort(key, kind="stable")
        msg, is_ask, price, amount, key = msg[order], is_ask[order], price[order], amount[order], key[order]
    first = np.ones(n, np.bool_)
    if n:
        first[1:] = key[1:] != key[:-1]
    elems = level_elements(price, amount, first, dedupe)
    nb = np.bincount(msg[~is_ask], minlength=g) if n else np.zeros(g, np.int64)
    na = np.bincount(msg[is_ask], minlength=g) if n else np.zeros(g, np.int64)
    size = 3 + nb + na
    base = np.zeros(g, np.int64)
    if g > 1:
        np.cumsum(size[:-1], out=base[1:])
    total = int(size.sum())
    # position of each piece in the output sequence
    pos_header = base
    pos_open = base + 1 + nb
    pos_trailer = base + 2 + nb + na
    # rank of each level within its message side
    row_start_of_key = np.zeros(n, np.int64)
    if n:
        starts = np.flatnonzero(first)
        run_len = np.diff(np.append(starts, n))
        row_start_of_key = np.repeat(starts, run_len)
    rank = np.arange(n, dtype=np.int64) - row_start_of_key
    pos_rows = np.where(is_ask, pos_open[msg] + 1 + rank, base[msg] + 1 + rank) if n else np.zeros(0, np.int64)
    concat = pa.concat_arrays([headers.cast(pa.binary()), elems, constant(ASKS_OPEN, g), trailers])
    src = np.empty(total, np.int64)
    src[pos_header] = np.arange(g)
    src[pos_rows] = g + np.arange(n)
    src[pos_open] = g + n + np.arange(g)
    src[pos_trailer] = 2 * g + n + np.arange(g)
    pieces = concat.take(pa.array(src))
    return fmt.regroup(pieces, base)
