"""Real recorded exchange traffic through the whole capture path: the simulator
replays cryptofeed recordings (Binance futures 2021 aggTrade + depth@100ms with
its REST snapshots, Bybit v5 linear orderbook.1) over real websockets, ``capture
run`` captures them in subprocesses, and the archive is checked against the
recording parsed independently with ``json``."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from engine_recorded_helpers import (
    binance_book,
    book_from_rows,
    by_stream,
    bybit_book,
    levels,
    read,
    recorded_frames,
    recorded_rest,
    rows_of,
)

from ticktape.sim.thread import SimulatorThread

BINANCE_SYMBOLS = ("SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT")
BYBIT_SYMBOLS = ("BANDUSDT", "RADUSDT", "SNTUSDT", "AIOZUSDT")


def _config(tmp: Path, binance_url: str, bybit_url: str | None, metrics_port: int, exchange: str = "binance-futures",
            symbols: tuple[str, ...] = BINANCE_SYMBOLS, channels: tuple[str, ...] = ("trades", "book_change")) -> Path:
    text = f"""
writers = 1

[archive]
root = "{tmp / 'archive'}"
flush_interval = 0.2
raw = true
finalize_grace = 2.0

[log]
dir = "{tmp / 'logs'}"

[metrics]
port = {metrics_port}

[ring]
records = 65536
raw_records = 16384
raw_bytes = 8388608

[exchanges.{exchange}]
symbols = {json.dumps(list(symbols))}
channels = {json.dumps(list(channels))}
trade_stream = "aggTrade"
url = "{binance_url}"
"""
    if bybit_url is not None:
        text += f"""
[exchanges.bybit]
symbols = {json.dumps(list(BYBIT_SYMBOLS))}
channels = ["book_change"]
depth = 1
url = "{bybit_url}"
"""
    cfg = tmp / "recorded.toml"
    cfg.write_text(text)
    return cfg


def _replayed(sim: SimulatorThread) -> bool:
    return bool(sim.call(lambda s: s.replayer.done.is_set()))


def _metrics(port: int) -> dict[str, float]:
    """The supervisor's /metrics, one entry per sample line."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _received(m: dict[str, float], want: dict[str, int]) -> bool:
    """Every replayed frame counted by its feed."""
    for exchange, n in want.items():
        got = sum(v for k, v in m.items() if k.startswith(f'ticktape_feed_messages_total{{exchange="{exchange}"')
                  and 'symbol="_"' not in k)
        if got < n:
            return False
    return True


def _seqs(m: dict[str, float], name: str) -> dict[str, float]:
    return {k.split("{", 1)[1]: v for k, v in m.items() if k.startswith(f"ticktape_ring_{name}_seq{{")}


def _until_archived(proc: subprocess.Popen[str], port: int, want_msgs: dict[str, int], deadline: float,
                    ready: Callable[[], bool] = lambda: True) -> None:
    """Wait until the feeds counted every replayed frame, ``ready()`` holds and the writers committed
    what was published by then (a resync may keep publishing REST snapshots, so not "read == write")."""
    while not _received(m := _metrics(port), want_msgs):
        assert proc.poll() is None, "capture exited early"
        assert time.monotonic() < deadline, f"frames missing: {m}"
        time.sleep(0.2)
    while not ready():
        assert proc.poll() is None, "capture exited early"
        assert time.monotonic() < deadline, "the connector did not ask for a new snapshot"
        time.sleep(0.1)
    m = _metrics(port)
    published = _seqs(m, "write")
    while not all(_seqs(m := _metrics(port), "read").get(k, -1) >= v for k, v in published.items()):
        assert proc.poll() is None, "capture exited early"
        assert time.monotonic() < deadline, f"not committed: {published} vs {m}"
        time.sleep(0.2)


def _capture(
    tmp: Path, capture_cmd: list[str], port: int, bn_ws: Path, by_ws: Path | None, want_msgs: dict[str, int],
    min_served: dict[str, int] | None = None, exchange: str = "binance-futures", **config_kw: Any,
) -> tuple[int, str, str, dict[str, int]]:
    """Replay the recordings to ``capture run``; SIGTERM once everything is received and durable.
    Returns (exit code, stdout, stderr, REST snapshots served per Binance symbol)."""
    with contextlib.ExitStack() as stack:
        bn_sim = stack.enter_context(SimulatorThread([exchange], replay=bn_ws, replay_speed=0))
        sims = [bn_sim]
        by_url = None
        if by_ws is not None:
            by_sim = stack.enter_context(SimulatorThread(["bybit"], replay=by_ws, replay_speed=0))
            sims.append(by_sim)
            by_url = by_sim.ws_url("bybit")
        cfg = _config(tmp, bn_sim.ws_url(exchange), by_url, port, exchange, **config_kw)
        proc = subprocess.Popen(
            [*capture_cmd, "run", str(cfg), "--duration", "180"],
            cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            deadline = time.monotonic() + 120  # generous: start-up alone takes 10 s on a busy 2-core machine
            while not all(_replayed(s) for s in sims):
                assert proc.poll() is None, "capture exited before the replay finished"
                assert time.monotonic() < deadline, "replay did not finish (streams not subscribed?)"
                time.sleep(0.2)
            _until_archived(proc, port, want_msgs, deadline, lambda: all(
                bn_sim.call(lambda s: dict(s.replayer.served)).get(k, 0) >= n for k, n in (min_served or {}).items()))
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        served = bn_sim.call(lambda s: dict(s.replayer.served))
    return proc.returncode, out, err, served


def _check_bybit_orderbook1(root: Path, exchange: str, symbols: tuple[str, ...],
                            topics: dict[str, list[bytes]]) -> int:
    """Raw byte for byte, one snapshot group per recorded orderbook.1 message, final books equal the
    recording's rebuild, no gap/malformed/duplicate/resync event. Returns the frames checked."""
    by_raw = read(root, exchange, "raw")
    by_book = read(root, exchange, "book_change")
    by_events = read(root, exchange, "events")
    by_kinds = [str(k) for k in by_events["kind"].to_pylist()] if by_events.num_rows else []
    assert not {"gap", "malformed", "duplicate", "resync"} & set(by_kinds), by_kinds
    n_bybit = 0
    for sym in symbols:
        want_frames = topics[f"orderbook.1.{sym}"]
        got = [r["payload"] for r in rows_of(by_raw, sym, channel="orderbook.1") if r["payload"]]
        assert got == want_frames, f"{exchange} raw {sym}: {len(got)} vs {len(want_frames)}"
        want_book, n_snaps = bybit_book(want_frames)
        got_book, groups = book_from_rows(rows_of(by_book, sym))
        # orderbook.1 pushes only snapshots: one is_snapshot group per recorded message
        assert len(groups) == n_snaps == len(want_frames), (sym, len(groups), n_snaps)
        for g, fr in zip(groups, want_frames, strict=True):
            d = json.loads(fr)["data"]
            assert {(str(r["side"]), r["price"], r["amount"]) for r in g} == {
                *(("bid", float(p), float(q)) for p, q in d["b"]),
                *(("ask", float(p), float(q)) for p, q in d["a"]),
            }, sym
        assert got_book == want_book, sym
        n_bybit += len(want_frames)
    # nothing of another symbol (the other connection's) was archived under this exchange
    assert {s for s in by_raw["symbol"].to_pylist() if s != "_"} <= set(symbols)
    return n_bybit


@pytest.mark.slow
def test_recorded_traffic_archived_exactly(
    tmp_path: Path, samples_dir: Path, capture_cmd: list[str], free_port: int
) -> None:
    bn_ws = samples_dir / "binance_futures" / "cryptofeed_v2_BINANCE_FUTURES.ws.1.0"
    bn_http = samples_dir / "binance_futures" / "cryptofeed_v2_BINANCE_FUTURES.http.0.0"
    by_ws = samples_dir / "bybit" / "cryptofeed_v2_v5_BYBIT.ws.1.0"
    bn_streams = by_stream(recorded_frames(bn_ws), "stream")
    by_topics = by_stream(recorded_frames(by_ws), "topic")
    # frames the feeds must count: the subscribed streams' data frames (+ one REST snapshot per Binance symbol)
    want_msgs = {
        "binance-futures": sum(len(bn_streams[f"{s.lower()}@{c}"]) for s in BINANCE_SYMBOLS
                               for c in ("aggTrade", "depth@100ms")) + len(BINANCE_SYMBOLS),
        "bybit": sum(len(by_topics[f"orderbook.1.{s}"]) for s in BYBIT_SYMBOLS),
    }

    code, out, err, served = _capture(tmp_path, capture_cmd, free_port, bn_ws, by_ws, want_msgs)
    assert code == 0, err[-3000:] + out[-2000:]
    root = tmp_path / "archive"

    # ---- Binance: raw, byte for byte per stream -----------------------------------------------
    snapshots = recorded_rest(bn_http)
    raw = read(root, "binance-futures", "raw")
    counts: dict[str, int] = {}
    for sym in BINANCE_SYMBOLS:
        low = sym.lower()
        for channel, stream in (("aggTrade", f"{low}@aggTrade"), ("depth", f"{low}@depth@100ms")):
            got = [r["payload"] for r in rows_of(raw, sym, channel=channel) if r["payload"]]
            want = bn_streams[stream]
            assert got == want, f"raw {stream}: {len(got)} rows vs {len(want)} recorded frames"
            counts[stream] = len(got)
        # the REST snapshot is kept in raw, as Tardis does, and served once (it bridges)
        assert served.get(sym) == 1, served
        snap_raw = [r["payload"] for r in rows_of(raw, sym, channel="depthSnapshot") if r["payload"]]
        assert len(snap_raw) == 1 and json.loads(snap_raw[0])["data"] == json.loads(snapshots[sym][0])

    # ---- Binance: trades one for one ------------------------------------------------------------
    trades = read(root, "binance-futures", "trades")
    n_trades = 0
    for sym in BINANCE_SYMBOLS:
        want_t = [json.loads(f)["data"] for f in bn_streams[f"{sym.lower()}@aggTrade"]]
        got_t = rows_of(trades, sym)
        assert [r["id"] for r in got_t] == [str(d["a"]) for d in want_t], sym
        assert [r["price"] for r in got_t] == [float(d["p"]) for d in want_t], sym
        assert [r["amount"] for r in got_t] == [float(d["q"]) for d in want_t], sym
        assert [str(r["side"]) for r in got_t] == ["sell" if d["m"] else "buy" for d in want_t], sym
        assert [r["exchange_ts"].timestamp() * 1000 for r in got_t] == pytest.approx(
            [d["T"] for d in want_t], abs=1
        ), sym
        n_trades += len(got_t)

    # ---- Binance: book_change synced, snapshot from REST, final book equal --------------------
    book = read(root, "binance-futures", "book_change")
    events = read(root, "binance-futures", "events")
    kinds = [str(k) for k in events["kind"].to_pylist()] if events.num_rows else []
    n_diffs = 0
    for sym in BINANCE_SYMBOLS:
        want_book, applied, rec_gaps = binance_book(snapshots[sym][0], bn_streams[f"{sym.lower()}@depth@100ms"])
        sym_kinds = [str(r["kind"]) for r in rows_of(events, sym)]
        assert sym_kinds.count("gap") == len(rec_gaps), (sym, rec_gaps, sym_kinds)
        rows = rows_of(book, sym)
        got_book, groups = book_from_rows(rows)
        assert len(groups) == 1, f"{sym}: {len(groups)} snapshots (resync?)"
        snap = json.loads(snapshots[sym][0])
        assert {r["price"]: r["amount"] for r in groups[0] if str(r["side"]) == "bid"} == levels(snap["bids"])
        assert {r["price"]: r["amount"] for r in groups[0] if str(r["side"]) == "ask"} == levels(snap["asks"])
        assert rows[: len(groups[0])] == groups[0], f"{sym}: rows before the snapshot"
        assert got_book == want_book, sym
        n_diffs += applied
    assert "gap" not in kinds and "malformed" not in kinds and "resync" not in kinds, kinds
    # both connections opened once, and the planned stop is marked on every stream they carried
    assert kinds.count("connect") == 2, kinds
    for sym in BINANCE_SYMBOLS:
        stops = {(r["channel"], r["detail"]) for r in rows_of(events, sym, kind="disconnect")}
        assert {("depth", "shutdown"), ("aggTrade", "shutdown")} <= stops, (sym, stops)

    # ---- Bybit: raw byte for byte, every orderbook.1 snapshot, final book --------------------
    n_bybit = _check_bybit_orderbook1(root, "bybit", BYBIT_SYMBOLS, by_topics)

    # counts actually verified (non-trivial replay)
    assert sum(counts.values()) == 91 + 764 and n_trades == 91 and n_bybit == 198, (counts, n_trades, n_bybit)
    assert n_diffs > 0


@pytest.mark.slow
def test_recorded_gap_is_marked_where_it_is(
    tmp_path: Path, samples_dir: Path, capture_cmd: list[str], free_port: int
) -> None:
    """The same real traffic with one SUSHIUSDT diff withheld (as a lost frame would be): the gap event
    lands on the diff that breaks the ``pu`` chain, the book up to it is exact, the other books are untouched."""
    src = samples_dir / "binance_futures"
    rec = tmp_path / "rec"
    rec.mkdir()
    for name in ("cryptofeed_v2_BINANCE_FUTURES.0", "cryptofeed_v2_BINANCE_FUTURES.http.0.0"):
        (rec / name).write_bytes((src / name).read_bytes())
    lines = (src / "cryptofeed_v2_BINANCE_FUTURES.ws.1.0").read_bytes().split(b"\n")
    sushi = [i for i, line in enumerate(lines) if b'"stream":"sushiusdt@depth@100ms"' in line]
    missing = 150  # well after the snapshot bridges (the first ~3 diffs predate it)
    del lines[sushi[missing]]
    bn_ws = rec / "cryptofeed_v2_BINANCE_FUTURES.ws.1.0"
    bn_ws.write_bytes(b"\n".join(lines))

    bn_streams = by_stream(recorded_frames(bn_ws), "stream")
    snapshots = recorded_rest(rec / "cryptofeed_v2_BINANCE_FUTURES.http.0.0")
    want_msgs = {"binance-futures": sum(len(bn_streams[f"{s.lower()}@{c}"]) for s in BINANCE_SYMBOLS
                                        for c in ("aggTrade", "depth@100ms")) + len(BINANCE_SYMBOLS)}
    code, out, err, served = _capture(
        tmp_path, capture_cmd, free_port, bn_ws, None, want_msgs, min_served={"SUSHIUSDT": 2}
    )
    assert code == 0, err[-3000:] + out[-2000:]
    root = tmp_path / "archive"

    diffs = bn_streams["sushiusdt@depth@100ms"]
    breaker = json.loads(diffs[missing])["data"]
    before = json.loads(diffs[missing - 1])["data"]
    _, _, rec_gaps = binance_book(snapshots["SUSHIUSDT"][0], diffs)
    assert rec_gaps == [breaker["u"]]  # the test's own reading of the recording sees the one gap

    events = read(root, "binance-futures", "events")
    sushi_ev = rows_of(events, "SUSHIUSDT")
    gaps = [r for r in sushi_ev if str(r["kind"]) == "gap"]
    assert len(gaps) == 1, sushi_ev
    assert f"pu {breaker['pu']}" in gaps[0]["detail"] and f"u {before['u']}" in gaps[0]["detail"], gaps[0]
    raw = [r for r in rows_of(read(root, "binance-futures", "raw"), "SUSHIUSDT", channel="depth") if r["payload"]]
    assert [r["payload"] for r in raw] == diffs  # raw still holds every frame that arrived
    assert gaps[0]["local_ts_ns"] == raw[missing]["local_ts_ns"], "gap not charged to the diff that broke the chain"
    breaking = json.loads(raw[missing]["payload"])["data"]  # the event carries that diff's exchange time
    assert round(gaps[0]["exchange_ts"].timestamp() * 1000) == breaking["E"]
    assert any(str(r["kind"]) == "resync" for r in sushi_ev)
    # the recording has no later snapshot to bridge a resync: the connector asked again (stale) rather than guess
    assert served["SUSHIUSDT"] >= 2

    book = read(root, "binance-futures", "book_change")
    got, groups = book_from_rows(rows_of(book, "SUSHIUSDT"))
    want, _, _ = binance_book(snapshots["SUSHIUSDT"][0], diffs[:missing])
    assert len(groups) == 1 and got == want
    for sym in ("AKROUSDT", "KEEPUSDT", "CTKUSDT"):
        assert not [r for r in rows_of(events, sym) if str(r["kind"]) in ("gap", "resync")], sym
        got, _ = book_from_rows(rows_of(book, sym))
        want, _, _ = binance_book(snapshots[sym][0], bn_streams[f"{sym.lower()}@depth@100ms"])
        assert got == want, sym


COINM_SYMBOLS = ("BCHUSD_PERP", "XRPUSD_PERP", "BTCUSD_211231", "ETHUSD_210924")


@pytest.mark.slow
def test_recorded_coinm_traffic_archived_exactly_as_binance_delivery(
    tmp_path: Path, samples_dir: Path, capture_cmd: list[str], free_port: int
) -> None:
    """The real COIN-M recording (perpetual and dated contracts) through ``capture run`` as
    ``binance-delivery``: raw byte for byte per stream (depth, aggTrade, bookTicker), the
    ``/dapi/v1/depth`` snapshot kept and bridged, trades one for one, final books equal."""
    ws = samples_dir / "binance_delivery" / "cryptofeed_v2_BINANCE_DELIVERY.ws.1.0"
    snapshots = recorded_rest(samples_dir / "binance_delivery" / "cryptofeed_v2_BINANCE_DELIVERY.http.0.0")
    streams = by_stream(recorded_frames(ws), "stream")
    kinds = ("aggTrade", "depth@100ms", "bookTicker")
    want = {"binance-delivery": sum(len(streams[f"{s.lower()}@{c}"]) for s in COINM_SYMBOLS for c in kinds)
            + len(COINM_SYMBOLS)}
    code, out, err, served = _capture(tmp_path, capture_cmd, free_port, ws, None, want, exchange="binance-delivery",
                                      symbols=COINM_SYMBOLS, channels=("trades", "book_change", "book_ticker"))
    assert code == 0, err[-3000:] + out[-2000:]
    root = tmp_path / "archive"
    raw = read(root, "binance-delivery", "raw")
    events = read(root, "binance-delivery", "events")
    ev_kinds = [str(k) for k in events["kind"].to_pylist()]
    assert not {"gap", "malformed", "resync", "duplicate"} & set(ev_kinds), ev_kinds
    assert ev_kinds.count("connect") == 1  # spot and COIN-M carry every stream on one /stream connection
    assert [r for r in rows_of(raw, "_") if r["payload"]] == []  # no data frame fell through as a control frame
    trades = read(root, "binance-delivery", "trades")
    book = read(root, "binance-delivery", "book_change")
    tickers = read(root, "binance-delivery", "book_ticker")
    n_frames = n_trades = 0
    for sym in COINM_SYMBOLS:
        low = sym.lower()
        for channel, stream in (("aggTrade", f"{low}@aggTrade"), ("depth", f"{low}@depth@100ms"),
                                ("bookTicker", f"{low}@bookTicker")):
            got = [r["payload"] for r in rows_of(raw, sym, channel=channel) if r["payload"]]
            assert got == streams[stream], f"raw {stream}: {len(got)} rows vs {len(streams[stream])} recorded"
            n_frames += len(got)
        assert served.get(sym) == 1, served
        snap_raw = [r["payload"] for r in rows_of(raw, sym, channel="depthSnapshot") if r["payload"]]
        assert len(snap_raw) == 1 and json.loads(snap_raw[0])["data"] == json.loads(snapshots[sym][0])
        want_t = [json.loads(f)["data"] for f in streams[f"{low}@aggTrade"]]
        got_t = rows_of(trades, sym)
        assert [(r["id"], r["price"], r["amount"]) for r in got_t] == [
            (str(d["a"]), float(d["p"]), float(d["q"])) for d in want_t], sym
        n_trades += len(got_t)
        want_book, applied, gaps = binance_book(snapshots[sym][0], streams[f"{low}@depth@100ms"])
        got_book, groups = book_from_rows(rows_of(book, sym))
        assert not gaps and len(groups) == 1 and applied > 0 and got_book == want_book, sym
        want_bt = [json.loads(f)["data"] for f in streams[f"{low}@bookTicker"]]
        assert [(r["bid_price"], r["ask_amount"]) for r in rows_of(tickers, sym)] == [
            (float(d["b"]), float(d["A"])) for d in want_bt], sym
    assert n_trades > 0 and n_frames > 1000, (n_trades, n_frames)


SPOT_SYMBOLS = ("OPUSDC", "TUSDUSDT", "KCSUSDT", "CPOOLUSDT", "ARBUSDC", "MASAUSDT")


@pytest.mark.slow
def test_recorded_linear_and_spot_connections_run_by_capture_with_simulator_replay(
    tmp_path: Path, samples_dir: Path, capture_cmd: list[str], free_port: int
) -> None:
    """``[simulator] replay = FILE``: ``capture run`` starts the simulator on a cryptofeed v3 recording
    with a Bybit linear and a spot connection (the two v2 connection files of the 2025 v5 sample,
    combined) and archives the linear connection under ``bybit``, the spot one under ``bybit-spot``,
    each byte for byte and neither mixed into the other."""
    from ports import free_port_pair
    from recordings import v2_to_v3

    rec = tmp_path / "BYBIT.jsonl.zst"
    linear, spot = v2_to_v3([samples_dir / "bybit" / "cryptofeed_v2_v5_BYBIT.ws.1.0",
                             samples_dir / "bybit" / "cryptofeed_v2_v5_BYBIT.ws.2.0"], rec, "BYBIT")
    lin_topics, spot_topics = by_stream(linear, "topic"), by_stream(spot, "topic")
    assert not set(lin_topics) & set(spot_topics)
    sim_port = free_port_pair()
    url = f"ws://127.0.0.1:{sim_port}"
    cfg = tmp_path / "replay.toml"
    cfg.write_text(f"""
[simulator]
port = {sim_port}
replay = "{rec}"

[archive]
root = "{tmp_path / 'archive'}"
flush_interval = 0.2
finalize_grace = 2.0

[log]
dir = "{tmp_path / 'logs'}"

[metrics]
port = {free_port}

[ring]
records = 65536
raw_records = 16384
raw_bytes = 8388608

[exchanges.bybit]
symbols = {json.dumps(list(BYBIT_SYMBOLS))}
channels = ["book_change"]
depth = 1
url = "{url}"

[exchanges.bybit-spot]
symbols = {json.dumps(list(SPOT_SYMBOLS))}
channels = ["book_change"]
depth = 1
url = "{url}"
""")
    want = {"bybit": sum(len(v) for v in lin_topics.values()), "bybit-spot": sum(len(v) for v in spot_topics.values())}
    proc = subprocess.Popen([*capture_cmd, "run", str(cfg), "--duration", "180"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _until_archived(proc, free_port, want, time.monotonic() + 120)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:] + out[-2000:]
    root = tmp_path / "archive"
    n_linear = _check_bybit_orderbook1(root, "bybit", BYBIT_SYMBOLS, lin_topics)
    n_spot = _check_bybit_orderbook1(root, "bybit-spot", SPOT_SYMBOLS, spot_topics)
    assert (n_linear, n_spot) == (198, 139) == (want["bybit"], want["bybit-spot"])
