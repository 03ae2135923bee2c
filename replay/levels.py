"""Assemble JSON messages made of a header, bid levels, ask levels and a trailer, for many messages at once.

Used for ``book_change`` (levels = the rows of one message) and
``book_snapshot`` (levels = the top N of each side). Every piece is an Arrow
binary value; the pieces of all messages are put in output order and cut into
messages in one copy (``fmt.gather``; snapshots: one ``take`` cut by subsetting
offsets, ``fmt.regroup``), so the cost is a few vector passes whatever the
number of levels.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.replay import fmt

ASKS_OPEN = b'],"asks":['


def constant(value: bytes, n: int) -> pa.Array:
    return fmt.fixed_width(np.tile(np.frombuffer(value, np.uint8), (n, 1)))


def _bodies(price: pa.Array, amount: pa.Array, pad: np.ndarray) -> pa.Array:
    """``{"price":p,"amount":a}`` from number texts; where ``pad`` (a NaN price: a snapshot deeper than the book)
    ``{}``, as Tardis pads it."""
    body = fmt.join(b'{"price":', price, b',"amount":', amount, b"}")
    if pad.any():
        body = pc.if_else(pa.array(pad), pa.scalar(b"{}", pa.binary()), body)
    return body


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


def distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct float64 values by their bits (a hash pass, not a sort) and each value's index into them.

    Bits, not ``==``: -0.0 and 0.0 stay apart and every NaN is one value, so equal bits always print alike."""
    uniq, codes = distinct_ints(np.ascontiguousarray(values, np.float64).view(np.int64))
    return uniq.view(np.float64), codes


def distinct_ints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct int64 values in order of first appearance (one hash pass) and each value's index into them."""
    bits = np.ascontiguousarray(values, np.int64)
    # from_buffers: pa.array() of a numpy view is slow (it inspects the base array)
    enc = pc.dictionary_encode(pa.Array.from_buffers(pa.int64(), len(bits), [None, pa.py_buffer(bits)]))
    # to_numpy, not np.asarray: the latter costs milliseconds per call here
    return enc.dictionary.to_numpy(), enc.indices.to_numpy().astype(np.int64)


def snapshot_lines(header: bytes, trailers: pa.Array, price: np.ndarray, amount: np.ndarray) -> pa.Array:
    """One line per row of ``price``/``amount`` (k, 2 * depth: bids best first, then asks; NaN price = ``{}``):
    ``header`` (ending ``"bids":[``), the levels, ``ASKS_OPEN``, the levels, ``trailers``.

    Every snapshot has exactly ``depth`` levels a side, so the output is a fixed grid of pieces: each distinct
    price and amount is formatted once, each distinct (price, amount) element once (with and without its
    comma), and the lines are one ``take`` of those texts cut by offsets; no sort, no per-line work."""
    k, w = price.shape
    d = w // 2
    up, pi = distinct(price.reshape(-1))
    ua, ai = distinct(amount.reshape(-1))
    uniq, inv = distinct_ints(pi * len(ua) + ai)
    inv = inv.reshape(k, w)
    p_of, a_of = uniq // max(1, len(ua)), uniq % max(1, len(ua))
    body = _bodies(fmt.numbers(up).take(pa.array(p_of)), fmt.numbers(ua).take(pa.array(a_of)), np.isnan(up[p_of]))
    m = len(uniq)
    # pieces: header, asks opening, m bodies, m bodies with a leading comma, k trailers
    concat = pa.concat_arrays([pa.array([header, ASKS_OPEN], pa.binary()), body, fmt.join(b",", body),
                               trailers.cast(pa.binary())])
    src = np.empty((k, w + 3), np.int64)
    src[:, 0] = 0
    src[:, 1 : d + 1] = inv[:, :d] + (2 + m)
    src[:, d + 1] = 1
    src[:, d + 2 : w + 2] = inv[:, d:] + (2 + m)
    src[:, [1, d + 2]] -= m  # the first level of each side has no comma
    src[:, w + 2] = np.arange(2 + 2 * m, 2 + 2 * m + k)
    return fmt.regroup(concat.take(pa.array(src.reshape(-1))), np.arange(0, k * (w + 3), w + 3, dtype=np.int64))


def assemble(
    headers: pa.Array,
    trailers: pa.Array,
    msg: np.ndarray,
    is_ask: np.ndarray,
    price: np.ndarray,
    amount: np.ndarray,
) -> pa.Array:
    """One finished line per message.

    ``headers`` end with ``"bids":[``; ``trailers`` start with ``]`` (closing asks).
    Level rows carry their message index ``msg`` (non-decreasing) and side;
    bids then asks within a message, each side in the order given.
    Each level is five pieces (opening with or without its comma, price text, ``,"amount":``, amount
    text, ``}``); every piece of every line is copied once, in order (``fmt.gather``).
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
    pad = np.isnan(price)
    nb = np.bincount(msg[~is_ask], minlength=g) if n else np.zeros(g, np.int64)
    na = np.bincount(msg[is_ask], minlength=g) if n else np.zeros(g, np.int64)
    size = 3 + _LEVEL_PIECES * (nb + na)
    base = np.zeros(g + 1, np.int64)
    np.cumsum(size, out=base[1:])
    total = int(base[-1])
    # position of each piece in the output sequence
    pos_open = base[:-1] + 1 + _LEVEL_PIECES * nb
    row_start_of_key = np.zeros(n, np.int64)
    if n:
        starts = np.flatnonzero(first)
        row_start_of_key = np.repeat(starts, np.diff(np.append(starts, n)))
    rank = np.arange(n, dtype=np.int64) - row_start_of_key
    pos_rows = (np.where(is_ask, pos_open[msg] + 1, base[:-1][msg] + 1) + _LEVEL_PIECES * rank
                if n else np.zeros(0, np.int64))
    # each distinct price and amount formatted once (a hash pass costs a tenth of formatting a number)
    up, pi = distinct(price)
    ua, ai = distinct(amount)
    part = np.empty(total, np.int32)
    row = np.empty(total, np.int64)
    ids = np.arange(g, dtype=np.int64)
    part[base[:-1]], row[base[:-1]] = 0, ids
    part[pos_open], row[pos_open] = 4, _ASKS
    part[base[1:] - 1], row[base[1:] - 1] = 1, ids
    part[pos_rows], row[pos_rows] = 4, np.where(first, _OPEN, _OPEN_COMMA)
    part[pos_rows + 1], row[pos_rows + 1] = 2, pi
    part[pos_rows + 2], row[pos_rows + 2] = 4, _AMOUNT
    part[pos_rows + 3], row[pos_rows + 3] = 3, ai
    part[pos_rows + 4], row[pos_rows + 4] = 4, _CLOSE
    if pad.any():  # a NaN price: the level is ``{}``, as Tardis pads a snapshot deeper than the book
        at = pos_rows[pad]
        row[at] = np.where(first[pad], _NOTHING, _COMMA)
        part[at + 1], row[at + 1] = 4, _EMPTY
        for k in (2, 3, 4):
            part[at + k], row[at + k] = 4, _NOTHING
    return fmt.gather([headers.cast(pa.binary()), trailers.cast(pa.binary()), fmt.numbers(up), fmt.numbers(ua),
                       _PIECES], part, row, base)


# the constant pieces of a level, by row of _PIECES
_OPEN, _OPEN_COMMA, _AMOUNT, _CLOSE, _ASKS, _EMPTY, _NOTHING, _COMMA = range(8)
_PIECES = pa.array([b'{"price":', b',{"price":', b',"amount":', b"}", ASKS_OPEN, b"{}", b"", b","], pa.binary())
_LEVEL_PIECES = 5
