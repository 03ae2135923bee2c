"""``capture bench merge`` runs and its figures add up: every update out once, both holes filled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ticktape.engine import cli


def test_bench_merge_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "merge", "--updates", "2000", "--repeat", "1", "--cache", str(tmp_path), "--json"]) == 0
    fig = json.loads(capsys.readouterr().out)
    assert fig["rows_out"] == 2000 * 4  # two book rows, a raw frame and a trade per update
    assert fig["windows_filled"] == 2
    assert fig["rows_in"] > fig["rows_out"]
