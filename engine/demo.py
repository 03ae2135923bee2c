"""The shipped demo config (package data ``ticktape.configs/demo.toml``), ready to run.

``capture run --demo`` works from a plain ``pip install``: no checkout, no file
to copy. The archive and logs go to ``./archive-demo`` and ``./logs-demo``
(the config's relative paths, from the working directory). A port the demo
wants that is already taken (the simulator's, /metrics) is swapped for a
free one, so a second demo or another service on 9464 does not stop it.
"""

from __future__ import annotations

import socket
import tomllib
from importlib import resources
from typing import Any

from ticktape.engine.config import Config, from_dict

SOURCE = "ticktape.configs/demo.toml"


def demo_text() -> str:
    return (resources.files("ticktape.configs") / "demo.toml").read_text()


def _taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _free(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def demo_config(root: str | None = None) -> tuple[Config, list[str]]:
    """The demo config (``root`` overrides ``archive.root``) and notes on ports it moved."""
    data: dict[str, Any] = tomllib.loads(demo_text())
    notes: list[str] = []
    sim = data["simulator"]
    host = str(sim.get("host", "127.0.0.1"))
    old = int(sim["port"])
    if _taken(host, old):
        sim["port"] = _free(host)
        for ex in data["exchanges"].values():
            if isinstance(ex.get("url"), str):
                ex["url"] = ex["url"].replace(f":{old}", f":{sim['port']}")
        notes.append(f"simulator port {old} is taken: using {sim['port']}")
    m = data.setdefault("metrics", {})
    mport = int(m.get("port", 9464))
    if mport and _taken(str(m.get("host", "127.0.0.1")), mport):
        m["port"] = _free(str(m.get("host", "127.0.0.1")))
        notes.append(f"metrics port {mport} is taken: /metrics on {m['port']}")
    if root is not None:
        data["archive"]["root"] = root
    return from_dict(data, SOURCE), notes
