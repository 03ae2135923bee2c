"""Real Deribit traffic through the whole capture path: the simulator replays the 2021
cryptofeed recording (10 options: ``book.*.raw`` snapshot/change, ``ticker.*.raw``) plus
tardis-dev's BTC-PERPETUAL trade messages (the recording has no trades) to the
``.100ms`` subscriptions of ``capture run``; the archive is checked against the
recording read here with ``json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from feeds_run_helpers import archived_book, capture_recording
from recorded_frames import SAMPLES, cryptofeed_frames
from test_exchanges_deribit_samples import recorded_instruments, reference

WS = SAMPLES / "deribit/cryptofeed_v2_DERIBIT.ws.1.0"
TARDIS = SAMPLES / "deribit/tardis_node_mappers_test_deribit.jsonl"


def recording(tmp: Path) -> Path:
    """The cryptofeed file, then the tardis-dev trades frames as if received 10 ms apart after it."""
    text = WS.read_bytes().rstrip(b"\n")
    last = cryptofeed_frames(WS)[-1][0] / 1e9
    trades = [x for x in TARDIS.read_bytes().splitlines() if x.startswith(b'{"jsonrpc":"2.0","method":"subscription",'
                                                                         b'"params":{"channel":"trades.BTC-PERPETUAL')]
    assert len(trades) == 3
    extra = b"\n".join(b"%.6f: %s" % (last + 0.01 * (i + 1), t) for i, t in enumerate(trades))
    path = tmp / "cryptofeed_v2_DERIBIT.ws.1.0"
    path.write_bytes(text + b"\n" + extra + b"\n")
    return path


def channel_of(frame: bytes) -> tuple[str, str]:
    kind, inst, _ = json.loads(frame)["params"]["channel"].split(".")
    return kind, inst


@pytest.mark.slow
def test_recorded_deribit_archived_exactly(tmp_path):
    rec = recording(tmp_path)
    frames = [(ts, f) for ts, f in cryptofeed_frames(rec) if b'"method":"subscription"' in f]
    syms = recorded_instruments(frames)
    assert len(syms) == 11 and "BTC-PERPETUAL" in syms
    channels = ["trades", "book_change", "book_ticker", "derivative_ticker", "liquidations"]
    run = capture_recording(tmp_path, "deribit", rec, {"symbols": syms, "channels": channels}, len(frames))
    n_raw = n_changes = 0
    for sym in syms:
        raw = run.load("deribit", "raw", sym).to_pylist()
        for kind in ("book", "ticker", "trades"):
            want = [f for _, f in frames if channel_of(f) == (kind, sym)]
            got = [r["payload"] for r in raw if str(r["channel"]) == kind and r["payload"]]
            assert got == want, (sym, kind, len(got), len(want))  # byte for byte, in order
            n_raw += len(got)
        events = [e["kind"] for e in run.events("deribit", sym)]
        assert not {"gap", "malformed", "duplicate", "resync", "subscribe_error"} & set(events), (sym, events)
        if sym != "BTC-PERPETUAL":
            ref = reference(frames, sym)
            assert archived_book(run, "deribit", sym) == {"bid": ref["b"], "ask": ref["a"]}, sym
            n_changes += sum(1 for _, f in frames if channel_of(f) == ("book", sym) and b'"type":"change"' in f)
            tick = [json.loads(f)["params"]["data"] for _, f in frames if channel_of(f) == ("ticker", sym)]
            bt = run.load("deribit", "book_ticker", sym).to_pylist()
            assert [(r["bid_price"], r["ask_amount"]) for r in bt] == [
                (t["best_bid_price"], t["best_ask_amount"]) for t in tick], sym
    assert n_raw == len(frames) == 138 and n_changes == 36
    # trades one for one; the ones marked liquidation are liquidations too
    want = [t for _, f in frames if channel_of(f)[0] == "trades" for t in json.loads(f)["params"]["data"]]
    got = run.load("deribit", "trades", "BTC-PERPETUAL").to_pylist()
    assert [(r["id"], r["price"], r["amount"], str(r["side"])) for r in got] == [
        (t["trade_id"], t["price"], t["amount"], t["direction"]) for t in want]
    liqs = run.load("deribit", "liquidations", "BTC-PERPETUAL").to_pylist()
    assert [r["id"] for r in liqs] == [t["trade_id"] for t in want if "liquidation" in t]
    assert len(got) >= 4 and len(liqs) == 2
