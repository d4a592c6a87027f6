"""Dependencies inside ``srdistill`` point one way: no import circles, no upward imports.

The graph is read from the source with ``ast`` (nothing is imported, torch is not needed). Every
import counts, including those inside functions: a lazy import is still a dependency, it only
moves the failure to a later moment. Imports under ``if TYPE_CHECKING:`` are exempt, since they
never run.

Importing ``a.b.c`` first runs ``a/__init__`` and ``a/b/__init__``; those package initialisers
are part of the edge too, except the importer's own ancestors (already running when it runs).
That is how ``registry -> distill.spec`` closed a circle: it ran ``distill/__init__``, which
imports ``distill.api`` -> ... -> ``models`` -> ``registry``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "srdistill"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Layers, lowest first: a module may import its own layer or a lower one, never a higher one.
# Keys are top-level modules or packages of src/srdistill (a package covers its submodules).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # Plain Python, no model knowledge: errors, settings parsing, host facts.
    ("foundation", ("_version", "allocator", "errors", "hparams", "memory", "precision", "rng")),
    # Generic infrastructure that knows nothing of architectures or methods.
    # ``inference`` (a network on a device) and ``tiling`` serve train, distill and upscale alike.
    ("infrastructure", ("registry", "io", "metrics", "data", "inference", "tiling")),
    # The architecture contract and its built-in families.
    ("archs", ("archs",)),
    # Models as objects: build/load/save, feature hooks, the bundled weights, file provenance.
    ("models", ("models", "hooks", "bundled", "provenance")),
    # The library's use cases.
    ("api", ("train", "distill", "upscale", "evaluate", "compare", "export")),
    # Argument parsing over the api.
    ("cli", ("cli",)),
    # The package root re-exports the api; ``python -m srdistill`` runs the cli.
    ("root", ("__init__", "__main__")),
]
# Modules of srdistill/cli that hold shared pieces rather than a command; a command imports these,
# never another command.
CLI_HELPERS = ("_console", "_progress", "options", "engine_options")
LAYER_OF = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
LAYER_NAME = [name for name, _ in LAYERS]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SOURCE.rglob("*.py"))}


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST):
    """Import nodes that can run: everything but the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _targets(importer: str, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The package modules this import statement executes (explicitly named ones first)."""
    named: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                named.add(alias.name)
    else:
        if node.level:
            base = importer.split(".")
            if not _is_package(importer, modules):
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source != PACKAGE and not source.startswith(PACKAGE + "."):
            return set()
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            # ``from pkg import sub`` loads the submodule; ``from pkg import name`` reads pkg.
            named.add(sub if sub in modules else source)
    out = set()
    own = set(_ancestors(importer))
    for target in named:
        assert target in modules, f"{importer} imports {target}, which is not a module of {PACKAGE}"
        out.add(target)
        out.update(a for a in _ancestors(target) if a not in own)
    out.discard(importer)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = graph.setdefault(name, set())
        for node in _runtime_imports(tree):
            edges |= _targets(name, node, modules)
    return graph


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Modules that import each other, directly or through others: the strongly connected
    components of the graph with more than one module (Tarjan), each as one cycle through them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    return [_one_cycle(graph, set(c)) for c in strongly_connected(graph)]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A readable path a -> b -> ... -> a inside one strongly connected component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return sorted(component)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for importer, targets in sorted(graph.items()):
        mine = LAYER_OF[_unit(importer)]
        for target in sorted(targets):
            theirs = LAYER_OF[_unit(target)]
            if theirs > mine:
                found.append(f"{importer} ({LAYER_NAME[mine]}) imports {target} ({LAYER_NAME[theirs]})")
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_top_level_module_has_a_layer():
    units = {_unit(name) for name in _modules()}
    missing = sorted(units - set(LAYER_OF))
    assert not missing, f"add {missing} to LAYERS in {Path(__file__).name}"


def test_no_import_cycles(graph):
    components = strongly_connected(graph)
    report = [" -> ".join(_one_cycle(graph, set(c))) + f"  (in a circle of {len(c)}: {', '.join(sorted(c))})" for c in components]
    assert not components, "import cycles:\n" + "\n".join(report)


def test_no_upward_imports(graph):
    found = upward_imports(graph)
    assert not found, "imports against the layer order:\n" + "\n".join(found)


def test_no_command_imports_another_command(graph):
    """``cli/__init__`` assembles the commands; each command stands alone on the shared helpers."""
    found = []
    for importer, targets in sorted(graph.items()):
        if not importer.startswith(f"{PACKAGE}.cli."):
            continue
        for target in sorted(targets):
            if target.startswith(f"{PACKAGE}.cli.") and target.split(".")[2] not in CLI_HELPERS:
                found.append(f"{importer} imports the command module {target}")
    assert not found, "\n".join(found) + f"\n(move what they share to a helper module: {', '.join(CLI_HELPERS)})"


def test_pyproject_version_is_the_package_version():
    import tomllib

    pyproject = tomllib.loads((SOURCE.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    namespace: dict = {}
    exec((SOURCE / "_version.py").read_text(encoding="utf-8"), namespace)
    assert pyproject["project"]["version"] == namespace["__version__"]


def test_no_private_names_across_modules():
    """``from x import _name`` between modules means the helper is shared: make it public."""
    modules = _modules()
    found = []
    for name, path in modules.items():
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not (node.level or (node.module or "").startswith(PACKAGE)):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and not any(t.endswith("." + alias.name) for t in _targets(name, node, modules)):
                    found.append(f"{name} imports {alias.name} from {node.module or '.'}")
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_the_checker_sees_a_lazy_circle_through_a_package_initialiser():
    """The graph rules themselves, on a made-up layout: a lazy import counts, TYPE_CHECKING does
    not, and importing a submodule runs its package's ``__init__``."""
    graph = {
        "srdistill.registry": {"srdistill.distill.spec", "srdistill.distill"},
        "srdistill.distill": {"srdistill.distill.api"},
        "srdistill.distill.api": {"srdistill.models"},
        "srdistill.distill.spec": set(),
        "srdistill.models": {"srdistill.registry"},
    }
    assert find_cycles(graph) == [["srdistill.distill", "srdistill.distill.api", "srdistill.models",
                                   "srdistill.registry", "srdistill.distill"]]
    assert upward_imports(graph) == [
        "srdistill.registry (infrastructure) imports srdistill.distill (api)",
        "srdistill.registry (infrastructure) imports srdistill.distill.spec (api)",
    ]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .distill.spec import MethodSpec\n"
        "def check():\n    from .archs.spec import ArchSpec\n"
    )
    modules = _modules()
    seen = set()
    for node in _runtime_imports(tree):
        seen |= _targets("srdistill.registry", node, modules)
    assert seen == {"srdistill.archs.spec", "srdistill.archs"}
