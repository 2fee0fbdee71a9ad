"""The storage code's shape (issue 19): small modules, no import cycle, dependencies one way
(_fs <- crypto <- store <- CLI; crypto knows nothing of the store), each module importable alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGES = ["surgbox/crypto", "surgbox_ext/store", "surgbox/testing"]
MODULES = sorted(
    [".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
     for pkg in PACKAGES for p in (SRC / pkg).glob("*.py")] + ["surgbox._fs", "surgbox.cli.store", "surgbox.cli.crypt"])


def module_file(name: str) -> Path:
    p = SRC.joinpath(*name.split("."))
    return p / "__init__.py" if p.is_dir() else p.with_suffix(".py")


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports (at any depth of the file: function-local imports count)."""
    tree = ast.parse(module_file(name).read_text())
    package = name if module_file(name).name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in MODULES}


def test_no_import_cycle_among_the_storage_modules():
    graph = {m: imports_of(m) - {m} for m in MODULES}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for n in sorted(graph[m]):
            visit(n, path + [m])
        state[m] = 2

    for m in MODULES:
        visit(m, [])


def test_dependencies_point_one_way():
    for m in MODULES:
        deps = imports_of(m)
        if m.startswith("surgbox.crypto") or m == "surgbox._fs":
            assert not any(d.startswith(("surgbox_ext", "surgbox.cli")) for d in deps), (m, deps)
        if m.startswith("surgbox_ext.store") and m != "surgbox_ext.store":
            assert not any(d.startswith("surgbox.cli") for d in deps), (m, deps)
            assert not {"surgbox_ext.store.local", "surgbox_ext.store.mirror"} & deps or m == "surgbox_ext.store", (m, deps)
    assert "surgbox_ext.store" not in imports_of("surgbox.cli.store")  # the CLI goes through the plugin registry


@pytest.mark.parametrize("name", MODULES)
def test_each_module_imports_alone_in_a_fresh_interpreter(name):
    out = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_modules_are_small():
    sizes = {m: len(module_file(m).read_text().splitlines()) for m in MODULES}
    assert {m: n for m, n in sizes.items() if n > 500} == {}
