"""The import graph: no cycles (none hidden in function-local imports), dependencies one way.

Built statically from every module of ``src/`` (``ast``): an edge ``a -> b`` for each import of
``b`` in ``a``, top-level (imports under ``if TYPE_CHECKING:`` do not run and are left out)
or inside a function. A cycle of top-level edges fails; so does a function-local import that
closes one (the way cycles used to be hidden). The recording package never imports the catalog
(the catalog's recording sink depends on the recorder, not the reverse), and importing it in a
fresh interpreter loads neither the catalog nor PyAV.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(SRC.rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


MODS = _modules()


def _targets(mod: str, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        pkg = mod if MODS[mod].name == "__init__.py" else mod.rpartition(".")[0]
        base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
        name = ".".join(base + ([node.module] if node.module else []))
    else:
        name = node.module or ""
    subs = [f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in MODS]
    return subs + ([name] if len(subs) < len(node.names) else [])


def _edges() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(top-level edges, function-local edges)`` between modules of ``src/``."""
    top: dict[str, set[str]] = {m: set() for m in MODS}
    local: dict[str, set[str]] = {m: set() for m in MODS}

    def visit(mod: str, body: list[ast.stmt], in_function: bool, type_checking: bool = False) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if not type_checking:
                    for t in _targets(mod, node):
                        if t in MODS and t != mod:
                            (local if in_function else top)[mod].add(t)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(mod, node.body, True)
            elif isinstance(node, ast.If):
                tc = isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                visit(mod, node.body, in_function, type_checking or tc)
                visit(mod, node.orelse, in_function, type_checking)
            elif isinstance(node, ast.Try):
                for part in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                    visit(mod, part, in_function, type_checking)
            elif isinstance(node, (ast.ClassDef, ast.With, ast.For, ast.While)):
                visit(mod, node.body, in_function, type_checking)

    for mod, path in MODS.items():
        visit(mod, ast.parse(path.read_text()).body, False)
    return top, local


def _reaches(graph: dict[str, set[str]], a: str, b: str) -> list[str] | None:
    """A path a -> ... -> b of ``graph`` edges, if there is one."""
    prev: dict[str, str | None] = {a: None}
    todo = [a]
    while todo:
        x = todo.pop()
        if x == b:
            path = [x]
            while prev[path[-1]] is not None:
                path.append(prev[path[-1]])  # type: ignore[arg-type]
            return path[::-1]
        for y in graph[x]:
            if y not in prev:
                prev[y] = x
                todo.append(y)
    return None


TOP, LOCAL = _edges()


def test_the_graph_was_read():
    assert len(MODS) > 100 and "surgbox.recording.recorder" in MODS
    assert "surgbox.recording.sinks" in TOP["surgbox.recording.recorder"]


def test_no_import_cycle():
    cycles = []
    for a, targets in TOP.items():
        for b in targets:
            back = _reaches(TOP, b, a)
            if back is not None:
                cycles.append(" -> ".join([a, *back]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))


def test_no_function_local_import_hides_a_cycle():
    hidden = []
    for a, targets in LOCAL.items():
        for b in targets:
            back = _reaches(TOP, b, a)
            if back is not None:
                hidden.append(f"{a} imports {b} inside a function; {' -> '.join(back)} imports it back")
    assert not hidden, "\n".join(hidden)


def test_the_recorder_never_imports_the_catalog():
    recording = [m for m in MODS if m.startswith("surgbox.recording") or m in ("surgbox.mux", "surgbox.packets", "surgbox.recorder")]
    assert len(recording) >= 10
    offenders = {m: sorted(t for t in TOP[m] | LOCAL[m] if t.startswith("surgbox.catalog")) for m in recording}
    assert not any(offenders.values()), offenders
    assert "surgbox.recording.store_sink" in TOP["surgbox.catalog.recording_sink"]  # the dependency points this way


def test_importing_the_recorder_loads_no_catalog_and_no_pyav():
    code = ("import sys, surgbox.recording, surgbox.mux, surgbox.packets, surgbox.recorder, surgbox.config;"
            "print(sorted(m for m in sys.modules if m.startswith(('surgbox.catalog', 'av', 'torch')) and m.split('.')[0] in ('surgbox', 'av', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
