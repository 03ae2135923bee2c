"""Every bad option is a 400 with a JSON reason; nothing outside the archive is reachable."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from replay_helpers import ServerProc

OK = {"exchange": "binance-futures", "from": "2021-07-22T22:00:00Z", "to": "2021-07-22T23:00:00Z"}
NORM = {**OK, "dataTypes": ["trade"]}

RAW_CASES: list[tuple[Any, str]] = [
    ({**OK, "exchange": "nope"}, "unknown exchange"),
    ({**OK, "exchange": "../../etc"}, "invalid exchange"),
    ({**OK, "filters": [{"channel": "nosuch"}]}, "unknown channel"),
    ({**OK, "filters": [{"channel": "depth", "symbols": ["../../../etc/passwd"]}]}, "invalid symbol"),
    ({**OK, "filters": [{"channel": "depth", "symbols": ["NOPEUSDT"]}]}, "unknown symbol"),
    ({**OK, "filters": "depth"}, "filters"),
    ({**OK, "from": "yesterday"}, "bad time"),
    ({**OK, "to": "2021-13-40"}, "bad time"),
    ({**OK, "from": "2021-07-23", "to": "2021-07-22"}, "must be before"),
    ({**OK, "from": "2021-07-22T22:00:00Z", "to": "2021-07-22T22:00:00Z"}, "must be before"),
    ({**OK, "to": "2021-07-30"}, "exceeds the server's maximum"),
    ({k: v for k, v in OK.items() if k != "from"}, "'from' and 'to' are required"),
    ({**OK, "withDisconnects": "yes"}, "withDisconnects"),
    ([OK], "must be a JSON object"),
]

NORM_CASES: list[tuple[Any, str]] = [
    ({**NORM, "dataTypes": ["trades"]}, "unknown data type"),
    ({**NORM, "dataTypes": ["book_snapshot_10"]}, "unknown data type"),
    ({**NORM, "dataTypes": ["book_snapshot_0_1s"]}, "depth must be"),
    ({**NORM, "dataTypes": ["trade_bar_0ticks"]}, "positive"),
    ({**NORM, "dataTypes": []}, "dataTypes"),
    ({**NORM, "symbols": ["NOPE"]}, "unknown symbol"),
    ({**NORM, "symbols": "BTCUSDT"}, "array of strings"),
    ([NORM, {**NORM, "exchange": "nope"}], "unknown exchange"),
    ([], "empty"),
    ({**NORM, "to": "2021-08-30"}, "exceeds"),
    ({**NORM, "bookGaps": "resynced"}, "'bookGaps' must be one of \"tardis\", \"resync\""),
    ({**NORM, "bookGaps": True}, "'bookGaps' must be one of"),
    ({**NORM, "openInterestTime": "rest"}, "'openInterestTime' must be one of \"tardis\", \"poll\""),
    ({**NORM, "openInterestTime": {"a": 1}}, "'openInterestTime' must be one of"),
]


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize(("options", "reason"), RAW_CASES)
def test_replay_rejects(server: ServerProc, options: Any, reason: str) -> None:
    status, body = get(server.url("replay", options))
    assert status == 400
    assert body["code"] == 400 and reason in body["message"], body


@pytest.mark.parametrize(("options", "reason"), NORM_CASES)
def test_replay_normalized_rejects(server: ServerProc, options: Any, reason: str) -> None:
    status, body = get(server.url("replay-normalized", options))
    assert status == 400
    assert reason in body["message"], body


@pytest.mark.parametrize("raw", ["", "%7Bnot%20json", "%7B%22exchange%22"])
def test_malformed_options_text(server: ServerProc, raw: str) -> None:
    for path in ("replay", "replay-normalized"):
        status, body = get(f"{server.base}/{path}?options={raw}" if raw else f"{server.base}/{path}")
        assert status == 400 and body["message"], body


def test_valid_request_still_works(server: ServerProc) -> None:
    status, body = get(server.url("replay", {**OK, "filters": [{"channel": "depth", "symbols": ["sushiusdt"]}]}))
    assert status == 200 and body.count(b"\n") > 100
