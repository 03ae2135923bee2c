"""A built wheel in a fresh venv next to PyPI's ``replay`` and ``Archive``.

Before the packaging change the wheel put generic top-level modules (``replay``,
``archive``, ...) into site-packages: installing these PyPI packages beside it
replaced ticktape's files, uninstalling them deleted ticktape's files. Here the
wheel is built from a copy of the tracked sources, installed with ``--no-deps``
into a new venv that borrows this interpreter's site-packages for the
dependencies (a ``.pth`` line, appended after the venv's own site-packages, so
the wheel's ``ticktape`` is the one imported), then the two PyPI packages are
installed beside it, and ``capture --help``, ``import ticktape`` and a short
``capture run --demo`` (the demo config is package data) are run from an empty
directory with no PYTHONPATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPI_NEIGHBOURS = ("replay", "Archive")  # both install a top-level package of a name the repository uses


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from the tracked files only (symlinks kept), never in the checkout itself."""
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        s, d = REPO / rel, src / rel
        if not s.exists() and not s.is_symlink():
            continue  # deleted in the work tree
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_symlink():
            d.symlink_to(os.readlink(s))
        else:
            shutil.copy2(s, d)
    out = tmp_path_factory.mktemp("dist")
    proc = _run(_pip("wheel", "--no-deps", "-q", "-w", str(out), str(src)), src, dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("ticktape-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_in_fresh_venv_beside_pypi_replay_and_archive(wheel: Path, tmp_path: Path) -> None:
    import zipfile

    tops = {n.split("/", 1)[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ticktape"}

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    vpy = venv / "bin" / "python"
    site = Path(_run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                     {"PATH": os.environ["PATH"]}).stdout.strip())
    (site / "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    proc = _run(_pip("--python", str(vpy), "install", "-q", "--no-deps", str(wheel)), tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # fetched once (this is also the probe for PyPI), then installed from the files: one index round trip
    dl = tmp_path / "neighbours"
    probe = _run(_pip("download", "--no-deps", "-q", "-d", str(dl), *PYPI_NEIGHBOURS), tmp_path, env, 120)
    if probe.returncode != 0:
        pytest.skip(f"PyPI not reachable with pip: {probe.stderr.strip()[-300:]}")
    got = sorted(dl.iterdir())
    assert len(got) == len(PYPI_NEIGHBOURS), got
    proc = _run(_pip("--python", str(vpy), "install", "-q", *map(str, got)), tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    work = tmp_path / "work"  # an empty directory: no checkout, no configs/ beside it
    work.mkdir()
    check = (
        "import archive, replay, ticktape, ticktape.archive.loaders, ticktape.replay.server\n"
        "print(ticktape.__file__); print(replay.__file__); print(archive.__file__)\n"
        "print(ticktape.replay.server.__file__)\n"
    )
    proc = _run([str(vpy), "-c", check], work, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours, theirs_replay, theirs_archive, server = proc.stdout.split()
    assert Path(ours).is_relative_to(site) and Path(server).is_relative_to(site / "ticktape")
    assert Path(theirs_replay).is_relative_to(site / "replay")
    assert Path(theirs_archive).is_relative_to(site / "archive")

    capture = str(venv / "bin" / "capture")
    proc = _run([capture, "--help"], work, env)
    assert proc.returncode == 0 and "replay" in proc.stdout, proc.stderr[-2000:]
    proc = _run([capture, "replay", "serve", "--help"], work, env)
    assert proc.returncode == 0, proc.stderr[-2000:]

    proc = _run([capture, "run", "--demo", "--duration", "2"], work, env, timeout=180)  # counted once every feed receives
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    files = [p.relative_to(work / "archive-demo") for p in (work / "archive-demo").rglob("*.parquet")]
    for ex in ("binance-futures", "bybit", "hyperliquid"):
        assert any(f"exchange={ex}" in p.parts for p in files), (ex, files[:10])
    assert "WRITE " in proc.stdout

    # uninstalling the neighbours leaves ticktape whole (it used to delete ticktape's replay/ and archive/)
    proc = _run(_pip("--python", str(vpy), "uninstall", "-y", "-q", *PYPI_NEIGHBOURS), tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _run([str(vpy), "-c", "import ticktape.replay.server, ticktape.archive.loaders"], work, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
