"""Project-wide test fixtures (package-specific ones live in tests/<package>/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from demo_run import DemoCapture
from ports import free_port_pair

REPO = Path(__file__).resolve().parent.parent
#: ../shared beside the checkout (DESIGN.md, EXCHANGES.md, samples/); CI clones put it there too
SHARED = REPO.parent / "shared"


def free_tcp_port() -> int:
    return free_port_pair()


@pytest.fixture
def free_port() -> int:
    return free_tcp_port()


@pytest.fixture(scope="session")
def capture_cmd() -> list[str]:
    """How tests run the ``capture`` CLI as a user would, from this checkout's interpreter."""
    return [sys.executable, "-m", "ticktape.engine.cli"]


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """Real recorded exchange messages (``../shared/samples``), wherever the checkout lives."""
    path = SHARED / "samples"
    assert path.is_dir(), f"{path} missing: clone the project with ../shared beside it"
    return path


@pytest.fixture(scope="session")
def demo_capture(tmp_path_factory: pytest.TempPathFactory) -> DemoCapture:
    """The README's demo capture, ``capture run configs/demo.toml`` (built-in simulator, three
    exchanges over real websockets; free ports swapped in), run once per session: several modules
    read the same kind of archive, and each run costs 20+ s on a loaded 2-core machine."""
    work = tmp_path_factory.mktemp("demo-capture")
    text = (REPO / "configs" / "demo.toml").read_text().replace("18765", str(free_tcp_port()))
    text = text.replace("port = 9464", "port = 0")
    (work / "demo.toml").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "ticktape.engine.cli", "run", str(work / "demo.toml"), "--duration", "8"],
        cwd=work, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return DemoCapture(work / "archive-demo", proc.stdout)
