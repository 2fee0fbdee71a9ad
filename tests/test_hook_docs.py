"""Every hook is documented (with its exact signature) in docs/plugins.md and has a test.

A hook ``name`` counts as tested when some test function is called ``test_hook_<name>``.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from surgbox import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "surgbox_spec"))


def test_hookspecs_found():
    assert set(HOOKS) == set(hookspecs.REGISTRATION_HOOKS.values()) | set(hookspecs.LIFECYCLE_HOOKS)


def _signature(name: str) -> str:
    fn = getattr(hookspecs, name)
    params = ", ".join(inspect.signature(fn).parameters)
    return f"{name}({params})"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented(name):
    doc = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{_signature(name)}`" in doc, f"docs/plugins.md lacks a '### `{_signature(name)}`' section"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_test(name):
    names = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                names.add(node.name)
    assert f"test_hook_{name}" in names, f"no test function named test_hook_{name} in tests/"
