"""The project's modules import each other without loops, and the layers only downwards: `envs` imports
neither of the others, `agents` imports `envs` at most, `selfplay` anything; inside `selfplay`, its sections
import only the sections below them (`SECTIONS`), and the game and text pipelines never each other. An
import inside a function counts as an edge like any other (a lazy import hides a loop, it does not remove
it); imports of other packages (torch, ray, ...) are not edges, nor those only a type checker reads."""

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
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[name] |= {t for t in map(known, targets) if t and t != name}
    return graph


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:` (imports for readers and type checkers alone)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in ast.walk(child))
            continue
        yield node
        yield from _runtime_nodes(node)


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


# selfplay's sections, lowest first: each imports only those before it; the game and text pipelines share
# a rank and never import each other. A module takes the rank of the longest prefix listed.
SECTIONS = {
    "selfplay.io": 0,  # atomic files, the label files' records
    "selfplay.config": 1,  # the run config, player specs
    "selfplay.core": 2,  # run directory, resume state, the stage-2 loop, transcripts, what stage 1 shares
    "selfplay.runtime": 3,  # actors in processes or on Ray
    "selfplay.arena": 4,  # players, matches, league, ratings, evaluation, play
    "selfplay.label": 5,  # the labelling workbench: queue, workbench, judges
    "selfplay.games": 6,  # the game pipeline
    "selfplay.text": 6,  # the text pipeline
    "selfplay.sweep": 7,
    "selfplay.label.cli": 7,  # the `label` command and its pages
    "selfplay.label.web": 7,
    "selfplay.label.terminal": 7,
    "selfplay.label.__main__": 7,
    "selfplay.run": 8,
}
TOP = 9  # selfplay itself and its commands


def section(module: str) -> str | None:
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in SECTIONS:
            return ".".join(parts[:n])
    return None


def rank(module: str) -> int:
    s = section(module)
    return TOP if s is None else SECTIONS[s]


def against_the_grain(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for m, targets in graph.items():
        for t in targets:
            if not (m.startswith("selfplay") and t.startswith("selfplay")):
                continue
            pipelines = {section(m), section(t)} == {"selfplay.games", "selfplay.text"}
            if rank(t) > rank(m) or pipelines:
                out.append(f"{m} imports {t}")
    return sorted(out)


def longest_chain(graph: dict[str, set[str]], prefix: str = "selfplay") -> list[str]:
    inside = {m: {t for t in ts if t.startswith(prefix)} for m, ts in graph.items() if m.startswith(prefix)}
    memo: dict[str, list[str]] = {}

    def chain(m: str) -> list[str]:
        if m not in memo:
            memo[m] = [m, *max((chain(t) for t in sorted(inside[m])), key=len, default=[])]
        return memo[m]

    return max((chain(m) for m in sorted(inside)), key=len)


def test_sections_import_only_downwards_and_the_pipelines_not_each_other():
    assert against_the_grain(import_graph()) == []
    assert against_the_grain({"selfplay.io": {"selfplay.config"}}) == ["selfplay.io imports selfplay.config"]
    assert against_the_grain({"selfplay.text.rl": {"selfplay.games.actor"}}) != []
    assert against_the_grain({"selfplay.label.cli": {"selfplay.text.episodes"}}) == []


def test_the_longest_chain_of_imports_inside_selfplay_is_at_most_ten():
    chain = longest_chain(import_graph())
    assert len(chain) <= 10, " -> ".join(chain)


def test_selfplay_is_a_handful_of_sections_and_the_commands_that_keep_their_names():
    top = ROOT / "selfplay"
    packages = sorted(p.name for p in top.iterdir() if (p / "__init__.py").is_file())
    assert len(packages) <= 12 and all(f"selfplay.{p}" in SECTIONS for p in packages), packages
    modules = sorted(p.stem for p in top.glob("*.py") if p.stem != "__init__")
    commands = [m for m in modules if 'if __name__ == "__main__":' in (top / f"{m}.py").read_text()]
    assert modules == commands, "a top-level module that is not a `python -m selfplay.X` command"
    documented = " ".join(p.read_text() for p in [ROOT / "README.md", *ROOT.glob("docs/*.md")])
    assert [m for m in commands if f"python -m selfplay.{m}" not in documented] == []


def test_imports_sit_at_the_top_but_those_that_say_why_not():
    """An import inside a function is an optional dependency's or a fast path's, and its line says which."""
    silent = []
    for path in sorted((ROOT / "selfplay").rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)) and "#" not in lines[sub.lineno - 1]:
                        silent.append(f"{path.relative_to(ROOT)}:{sub.lineno}")
    assert silent == []
