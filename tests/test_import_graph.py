"""The project's modules import each other without loops, and the layers only downwards: `envs` imports
neither of the others, `agents` imports `envs` at most, `selfplay` anything. An import inside a function
counts as an edge like any other (a lazy import hides a loop, it does not remove it); imports of other
packages (torch, ray, ...) are not edges."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("envs", "agents", "selfplay")
LAYER = {"envs": 0, "agents": 1, "selfplay": 2}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (`from a.b import c` names `a.b`, and `a.b.c` if that is a
    module; `from a import b` names the package `a` too, since Python runs its `__init__`)."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[name] |= {t for t in map(known, targets) if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_others():
    assert cycles(import_graph()) == []


def test_the_walk_sees_imports_inside_functions_and_finds_loops():
    assert "selfplay.runtime.ray_backend" in import_graph()["selfplay.runtime"]  # imported inside a method
    graph = {"selfplay.a": {"selfplay.b"}, "selfplay.b": {"selfplay.c"}, "selfplay.c": {"selfplay.a"}}
    assert cycles({**graph, "envs": {"envs.core"}, "envs.core": set()}) == [
        ["selfplay.a", "selfplay.b", "selfplay.c"]
    ]


def test_layers_import_only_downwards():
    upward = [
        f"{m} imports {t}"
        for m, targets in import_graph().items()
        for t in targets
        if LAYER[t.split(".")[0]] > LAYER[m.split(".")[0]]
    ]
    assert upward == []
