"""The README's promise that its query snippets "run as written on the demo's
``archive-demo``": each one is taken from README.md as it stands and run in its own
interpreter beside the session's demo capture, the way a user pastes it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _section(start: str, end: str) -> str:
    i = README.index(start)
    return README[i : README.index(end, i)]


def _engine_snippets() -> list[tuple[str, str]]:
    """(engine label, code) of every python block in "These run as written on the demo's ..."."""
    text = _section("These run as written on the demo's `archive-demo`", "### Backup to S3")
    return [(m["label"].strip().rstrip(":"), m["code"])
            for m in re.finditer(r"\n(?P<label>[^\n]+)\n\n```python\n(?P<code>.*?)```", text, re.S)]


def _after_demo_commands() -> list[str]:
    """The ``python -c`` one-liners of "After the demo, look at what was captured"."""
    block = re.search(r"```bash\n(.*?)```", _section("After the demo, look at what was captured", "\n## "), re.S)
    assert block is not None
    return [line for line in block[1].splitlines() if line.startswith(".venv/bin/python -c ")]


SNIPPETS = _engine_snippets()
ONE_LINERS = _after_demo_commands()


def test_the_readme_still_has_the_snippets_this_test_runs() -> None:
    labels = [label.split(",")[0] for label, _ in SNIPPETS]
    assert labels == ["DuckDB", "Polars", "pandas", "pyarrow", "Spark", "Dask"], labels
    assert len(ONE_LINERS) == 3


def _run(work: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    # a JVM that starts fast on a busy 2-core machine (only Spark reads it)
    env = {**os.environ, "JDK_JAVA_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}
    return subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def work(demo_capture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the demo's ``archive-demo``, as the README's commands expect."""
    d = tmp_path_factory.mktemp("readme")
    (d / "archive-demo").symlink_to(demo_capture.root, target_is_directory=True)
    return d


@pytest.mark.slow
@pytest.mark.parametrize(("label", "code"), SNIPPETS, ids=[label.split(",")[0] for label, _ in SNIPPETS])
def test_query_snippet_runs_as_written_on_the_demo(work: Path, label: str, code: str) -> None:
    if label.startswith("Spark") and shutil.which("java") is None:
        pytest.skip("no java on PATH (.ci/run installs a headless JRE)")
    p = _run(work, [sys.executable, "-c", code])
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    bybit = sorted(x.name.split("=", 1)[1] for x in (work / "archive-demo/trades/exchange=bybit").iterdir())
    # each snippet prints rows of the demo's data (its filter decides which)
    expect = {"pandas": bybit[0]}.get(label.split(",")[0], "BTCUSDT" if label == "Polars" else "binance-futures")
    assert expect in out, (label, out[-2000:])


@pytest.mark.slow
@pytest.mark.parametrize("line", ONE_LINERS, ids=["trades", "derivative_ticker", "liquidations"])
def test_after_demo_one_liner_runs_as_written(work: Path, line: str) -> None:
    argv = shlex.split(line)
    assert argv[0] == ".venv/bin/python"
    p = _run(work, [sys.executable, *argv[1:]])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "binance-futures" in p.stdout and "bybit" in p.stdout, p.stdout[-2000:]
