"""The package's shape: every module imports, the import graph has no cycle, and each layer
imports only from the layers below it (see README, "Layout")."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "empathy_core"
# Lower number = lower layer. A module may import from its own layer or below.
LAYERS = {"errors": 0, "core": 1, "store": 2, "testing": 3, "study": 3, "app": 4, "cli": 5, "bench": 5, "gpu_check": 5, "dataset": 5,
          "__main__": 6, "__init__": 0}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Every empathy_core module that ``name`` imports, at the top or inside a function."""
    known = modules()
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            if t in known and t != name and t != "empathy_core":
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    return {name: imports_of(name, path) for name, path in modules().items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (c := visit(n)):
            return c
    return None


@pytest.mark.parametrize("name", sorted(n for n in modules() if not n.endswith("__main__") and n != "empathy_core.dataset"))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_the_import_graph_has_no_cycle():
    g = graph()
    assert len(g) > 20
    assert find_cycle(g) is None, " -> ".join(find_cycle(g) or [])


def test_a_cycle_would_be_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def test_each_layer_imports_only_from_below():
    wrong = [f"{a} imports {b}" for a, bs in graph().items() for b in bs if layer(b) > layer(a)]
    assert not wrong, wrong


def test_gradio_is_imported_only_by_the_ui():
    for name, path in modules().items():
        if ".app.ui" in name:
            continue
        tree = ast.parse(path.read_text())
        mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(m.split(".")[0] == "gradio" for m in mods), name


def test_no_function_over_60_lines_unless_its_docstring_says_why():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                if "Longer than 60 lines because" not in (ast.get_docstring(node) or ""):
                    long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, long


def test_every_relative_import_resolves():
    """A stale ``from .x import`` inside a function would only fail when that function runs."""
    known = modules()
    bad = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
                if mod not in known and mod != "empathy_core":
                    bad.append(f"{name}: {mod}")
    assert not bad, bad
