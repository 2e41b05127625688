"""Imports run one way: no cycle among the modules of strategies/ and delivery/, counting imports
inside functions too (a function-level import is how a cycle hides), and strategies never imports
delivery. Reads the source with ast; imports nothing it checks."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("strategies", "delivery")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Project modules ``path`` imports anywhere in its body (a package import counts as its __init__)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_checker_sees_relative_imports() -> None:
    edges = graph()
    assert "strategies.record" in edges["strategies.steps"]
    assert "strategies.canary" in edges["strategies.plan"]


def test_no_import_cycle_in_strategies_or_delivery() -> None:
    assert cycles(graph()) == []


def test_strategies_never_import_delivery() -> None:
    leaks = {m: sorted(d for d in deps if d.startswith("delivery")) for m, deps in graph().items()}
    assert {m: d for m, d in leaks.items() if m.startswith("strategies") and d} == {}


# ---------------------------------------------------------------- the wave uses the gate's public surface only

GATE = "delivery.gate"


def public_names(path: Path) -> set[str]:
    """The names in a module's ``__all__`` (a literal list), read from its source."""
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def names_taken_from(module: str, source: str, is_package: bool = False) -> set[str]:
    """The names ``module`` (its source) takes from ``delivery.gate``: ``from ..gate import x``, and
    ``gate.x`` after ``from .. import gate`` or ``import delivery.gate as gate``."""
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(source)
    taken: set[str] = set()
    aliases: set[str] = set()  # local names bound to the gate module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                if base == GATE:
                    taken.add(a.name)
                elif f"{base}.{a.name}" == GATE:
                    aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == GATE and a.asname:
                    aliases.add(a.asname)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id in aliases:
                taken.add(node.attr)
            elif ast.unparse(node.value) == GATE:
                taken.add(node.attr)
    return taken


def test_the_gate_checker_sees_private_and_internal_names() -> None:
    source = (
        "from ..gate import wait, _Waiter\n"
        "from .. import gate as g\n"
        "import delivery.gate\n"
        "g.decide(1)\n"
        "delivery.gate._images({})\n"
    )
    assert names_taken_from("delivery.wave.runner", source) == {"wait", "_Waiter", "decide", "_images"}
    assert names_taken_from("delivery.wave", "from ..gate import Pin", is_package=True) == {"Pin"}


def test_the_wave_and_the_gate_verb_use_only_the_gates_public_api() -> None:
    """The wave package and ``deliver gate`` take from ``delivery.gate`` only what its ``__all__`` names
    (issue 25): no private name, none of the rules inside (``decide``, ``resolve``)."""
    public = public_names(ROOT / "delivery" / "gate.py")
    assert {"wait", "look", "Pin"} <= public and not any(n.startswith("_") for n in public)
    used: dict[str, set[str]] = {}
    for path in [*sorted((ROOT / "delivery" / "wave").rglob("*.py")), ROOT / "delivery" / "cli" / "gate.py"]:
        name = module_name(path)
        used[name] = names_taken_from(name, path.read_text(), path.name == "__init__.py")
    assert {m: sorted(n - public) for m, n in used.items() if n - public} == {}
    assert set().union(*used.values()), "the checker found no import of the gate at all"
