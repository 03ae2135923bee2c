"""The differential suite's plumbing: tardis-dev from npm, archives captured by ``capture run``, and the
comparison of ``/replay-normalized`` with tardis-dev's own ``replayNormalized`` on the same raw frames."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ports import free_port_pair

TARDIS_DEV = "tardis-dev@13.35.3"
ORACLE = Path(__file__).with_name("tardis_oracle.js")
REPO = Path(__file__).resolve().parents[2]


def tardis_modules() -> Path:
    """node_modules holding tardis-dev 13.35.3 (installed once into a cache dir; .ci/run does it first)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("node and npm are needed by the differential suite (bash .ci/run installs them)")
    base = Path(os.environ.get("TICKTAPE_NODE_CACHE", Path.home() / ".cache" / "ticktape-node")) / TARDIS_DEV
    mods = base / "node_modules"
    if not (mods / "tardis-dev" / "package.json").is_file():
        base.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(base), "--no-audit", "--no-fund", "--loglevel=error",
                        TARDIS_DEV], check=True, timeout=300)
    return mods


def metrics(port: int) -> dict[str, float]:
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


def seqs(m: dict[str, float], name: str) -> dict[str, float]:
    return {k.split("{", 1)[1]: v for k, v in m.items() if k.startswith(f"ticktape_ring_{name}_seq{{")}


def run_capture(tmp: Path, exchanges_toml: str, port: int, until: Any, timeout: float = 60) -> None:
    """``capture run`` with ``exchanges_toml``; once ``until()`` holds and the writers committed everything
    published by then, SIGTERM (finalizes the hour files)."""
    cfg = tmp / "capture.toml"
    cfg.write_text(f"""
writers = 1

[archive]
root = "{tmp / 'archive'}"
flush_interval = 0.2
raw = true
finalize_grace = 1.0

[log]
dir = "{tmp / 'logs'}"

[metrics]
port = {port}

[ring]
records = 65536
raw_records = 16384
raw_bytes = 8388608
{exchanges_toml}
""")
    proc = subprocess.Popen([sys.executable, "-m", "ticktape.engine.cli", "run", str(cfg), "--duration", "120"],
                            cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + timeout
        while not until():
            assert proc.poll() is None, "capture exited early"
            assert time.monotonic() < deadline, "capture did not reach its goal"
            time.sleep(0.2)
        published = seqs(metrics(port), "write")
        while not all(seqs(metrics(port), "read").get(k, -1) >= v for k, v in published.items()):
            assert proc.poll() is None, "capture exited early"
            assert time.monotonic() < deadline, "writers did not commit"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:] + out[-1000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


class Server:
    """``capture replay serve`` over an archive, as a subprocess."""

    def __init__(self, root: Path, log: Path) -> None:
        self.port = free_port_pair()
        self._log = open(log, "wb")  # noqa: SIM115 - the server writes to it while it runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ticktape.engine.cli", "replay", "serve", "--archive", str(root), "--port",
             str(self.port), "--max-range-hours", "48"],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "replay server did not listen"
                time.sleep(0.1)

    def get(self, path: str, options: Any) -> bytes:
        url = f"http://127.0.0.1:{self.port}/{path}?options={urllib.parse.quote_plus(json.dumps(options))}"
        with urllib.request.urlopen(url, timeout=120) as r:
            return bytes(r.read())

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def oracle(modules: Path, work: Path, server: Server, options: dict[str, Any]) -> list[bytes]:
    """tardis-dev's replayNormalized over the raw frames ticktape archived (its /replay, the filters
    tardis-dev itself asks for), written into tardis-dev's cache."""
    work.mkdir(parents=True, exist_ok=True)
    spec = {"modules": str(modules), "cacheDir": str(work / "cache"), "raw": str(work / "raw.ndjson"),
            "options": options}
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    filters = json.loads(subprocess.run(["node", str(ORACLE), "filters", str(spec_path)], check=True,
                                        capture_output=True, timeout=60).stdout)
    raw = server.get("replay", {"exchange": options["exchange"], "from": options["from"], "to": options["to"],
                                "filters": filters, "withDisconnects": True})
    (work / "raw.ndjson").write_bytes(raw)
    run = subprocess.run(["node", str(ORACLE), "run", str(spec_path)], capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    return run.stdout.splitlines()


def first_difference(ours: list[bytes], theirs: list[bytes]) -> str:
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            return f"line {i} of {len(ours)} (ticktape) / {len(theirs)} (tardis-dev):\n  ticktape:   {a[:600]!r}\n" \
                   f"  tardis-dev: {b[:600]!r}"
    return f"ticktape has {len(ours)} lines, tardis-dev {len(theirs)}; first extra: " \
           f"{(ours[len(theirs):] or theirs[len(ours):])[0][:400]!r}"


def minute_range(t0_ns: int, t1_ns: int) -> tuple[str, str]:
    """[floor(t0) to the minute, ceil(t1) + 1 minute) as ISO strings."""
    import datetime as dt

    m = 60_000_000_000
    a = (t0_ns // m) * m
    b = (t1_ns // m + 2) * m
    f = "%Y-%m-%dT%H:%M:%S.000Z"
    return (dt.datetime.fromtimestamp(a / 1e9, dt.UTC).strftime(f), dt.datetime.fromtimestamp(b / 1e9, dt.UTC).strftime(f))
