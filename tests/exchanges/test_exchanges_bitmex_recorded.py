"""Real BitMEX traffic through the whole capture path: the simulator replays the 2021 cryptofeed
recording (10 symbols: orderBookL2 partial/insert/update/delete without prices on update and
delete, trade, quote) to ``capture run``; the archive is checked against the recording read here
with ``json``."""

from __future__ import annotations

import json

import pytest
from feeds_run_helpers import archived_book, capture_recording
from recorded_frames import SAMPLES, cryptofeed_frames
from test_exchanges_bitmex_samples import SYMBOLS, recorded_trades, reference_books

WS = SAMPLES / "bitmex/cryptofeed_v2_BITMEX.ws.1.0"


def table_of(frame: bytes) -> tuple[str, str]:
    d = json.loads(frame)
    return d["table"], d["data"][0]["symbol"] if d["data"] else d["filter"]["symbol"]


@pytest.mark.slow
def test_recorded_bitmex_archived_exactly(tmp_path):
    frames = [f for _, f in cryptofeed_frames(WS) if f.startswith(b'{"table":')]
    assert len(frames) == 2089
    run = capture_recording(tmp_path, "bitmex", WS, {"symbols": SYMBOLS, "channels": ["trades", "book_change", "book_ticker"]},
                            len(frames))
    ref = reference_books(frames)
    n_raw = 0
    for sym in SYMBOLS:
        raw = run.load("bitmex", "raw", sym).to_pylist()
        for table in ("orderBookL2", "trade", "quote"):
            want = [f for f in frames if table_of(f) == (table, sym)]
            got = [r["payload"] for r in raw if str(r["channel"]) == table and r["payload"]]
            assert got == want, (sym, table, len(got), len(want))  # byte for byte, in order
            n_raw += len(got)
        events = [e["kind"] for e in run.events("bitmex", sym)]
        assert not {"gap", "malformed", "duplicate", "resync", "subscribe_error"} & set(events), (sym, events)
        assert archived_book(run, "bitmex", sym) == {"bid": ref[sym]["b"], "ask": ref[sym]["a"]}, sym
        got_trades = [(r["id"], r["price"], r["amount"]) for r in run.load("bitmex", "trades", sym).to_pylist()]
        assert got_trades == recorded_trades(frames, sym), sym
        quotes = [q for f in frames if table_of(f) == ("quote", sym) and b'"action":"insert"' in f
                  for q in json.loads(f)["data"]]
        bt = run.load("bitmex", "book_ticker", sym).to_pylist()
        assert [(r["bid_price"], r["ask_amount"]) for r in bt] == [(q["bidPrice"], q["askSize"]) for q in quotes], sym
    assert n_raw == len(frames)
