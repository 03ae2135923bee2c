"""No import cycles among ticktape's modules.

Every import counts: module level, ``if TYPE_CHECKING:`` blocks and imports
inside functions (a "late" import that hides a circle is still a circle: the two
modules cannot be understood, tested or moved apart). Built from the source with
``ast``, so nothing is imported.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import ticktape

PKG = Path(ticktape.__file__).resolve().parent.parent  # the repository root (ticktape/ links to its folders)
#: Cycles inside these packages belong to another piece of work in progress; remove the entry when
#: that lands. Nothing else may be listed here (replay's cycles are gone: settings and app keys live in
#: replay/state.py, which server and ws both import).
PENDING: tuple[str, ...] = ()


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    top = Path(ticktape.__file__).parent
    for sub in sorted(p for p in top.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        for dirpath, _dirs, files in os.walk(sub, followlinks=True):
            for f in files:
                if not f.endswith(".py"):
                    continue
                rel = (Path(dirpath) / f).relative_to(top).with_suffix("")
                parts = list(rel.parts)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                mods[".".join(["ticktape", *parts])] = Path(dirpath) / f
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the ticktape modules it imports (anywhere in its body)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(resolve(a.name) for a in node.names if a.name.startswith("ticktape."))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = pkg
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                if not base.startswith("ticktape."):
                    continue
                for a in node.names:  # ``from pkg import module`` imports the module itself
                    sub = f"{base}.{a.name}"
                    edges.add(sub if sub in mods else resolve(base))
        edges.discard(None)
        edges.discard(mod)
        graph[mod] = {e for e in edges if e is not None}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_graph_sees_every_package() -> None:
    graph = import_graph()
    for pkg in ("engine", "ipc", "writers", "bench", "archive", "replay", "sim", "exchanges"):
        assert f"ticktape.{pkg}" in graph
    assert "ticktape.engine.config" in graph["ticktape.engine.run"]  # a known edge: the walk works


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = [c for c in cycles(graph) if not all(m.startswith(PENDING) for m in c)]
    detail = "\n".join(
        " <-> ".join(c) + "\n    " + "\n    ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) for c in found
    )
    assert not found, f"import cycles:\n{detail}"
