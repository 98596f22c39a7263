"""The package's layering: no import cycle, and no module imports a layer above its own.

The layers, lowest first, are listed in the README's architecture section; this test reads the source
(every import statement, including ones inside functions) rather than importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "amnesiac"

# lowest first: a unit may import only units listed before it
LAYERS = ["_version", "errors", "registry", "names", "options", "faults", "utils", "data", "models", "ledger", "training",
          "config", "run", "unlearn", "integrations", "attacks", "service", "report", "experiments", "cli", "__main__"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, *, type_checking: bool = False) -> set[str]:
    """Every ``amnesiac`` module this file imports, resolved to absolute names (``type_checking``: also the
    imports under ``if TYPE_CHECKING:``, which never run but still tie the two modules together)."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                 for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in type_only and not type_checking:  # `if TYPE_CHECKING:` imports never run
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "amnesiac" or target.startswith("amnesiac."):
                found.add(target)
                # `from . import x` names a submodule when x is one
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if (ROOT.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                            (ROOT.parent / Path(*sub.split("."))).is_dir():
                        found.add(sub)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("amnesiac")}
    found.discard(mod)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in _graph()} - {None}
    assert units <= set(LAYERS), f"modules outside the layer list: {sorted(units - set(LAYERS))}"


def _layer_violations(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for mod, targets in graph.items():
        unit = _unit(mod)
        if unit is None:  # the top-level package: only the version (its API is loaded lazily by name)
            wrong += [f"amnesiac -> {t}" for t in targets if t != "amnesiac._version"]
            continue
        for t in targets:
            other = _unit(t)
            if other is None:
                wrong.append(f"{mod} -> amnesiac (the top-level package)")
            elif LAYERS.index(other) > LAYERS.index(unit):
                wrong.append(f"{mod} -> {t}")
    return sorted(wrong)


def test_no_module_imports_a_layer_above_its_own():
    wrong = _layer_violations(_graph())
    assert not wrong, "imports of a higher layer:\n" + "\n".join(wrong)


def test_no_import_cycle_between_modules():
    graph = _graph()
    # a module's import also runs its package's __init__: count that edge too
    for mod in list(graph):
        for t in list(graph[mod]):
            parts = t.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in graph and parent != mod and not mod.startswith(parent + "."):
                    graph[mod].add(parent)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if t not in graph:
                continue
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles[:10])


def _mutual(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} <-> {b}" for a, targets in graph.items() for b in targets if a < b and a in graph.get(b, ()))


def test_no_two_modules_import_each_other():
    """Counting imports inside functions and under TYPE_CHECKING: two modules that need each other are one
    module, or a third holds what both need."""
    graph = {_module_name(p): _imports(p, type_checking=True) for p in sorted(ROOT.rglob("*.py"))}
    assert not _mutual(graph), "modules that import each other:\n" + "\n".join(_mutual(graph))
    graph["amnesiac.ledger.blob"] = graph["amnesiac.ledger.blob"] | {"amnesiac.ledger.store"}
    assert _mutual(graph) == ["amnesiac.ledger.blob <-> amnesiac.ledger.store"]  # the check can say no


@pytest.mark.parametrize("bad", ["amnesiac.cli", "amnesiac.unlearn.forget", "amnesiac"])
def test_the_layer_check_can_say_no(bad):
    """The checker flags a ledger module that reaches up (so the test above is not vacuous)."""
    graph = _graph()
    graph["amnesiac.ledger.store"] = graph["amnesiac.ledger.store"] | {bad}
    assert any(v.startswith("amnesiac.ledger.store -> ") for v in _layer_violations(graph))


def _long_public_functions(limit: int = 60, *, private_too: bool = False) -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (private_too or not node.name.startswith("_")):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_public_function_is_over_60_lines():
    long = _long_public_functions()
    assert not long, "public functions over 60 lines (split them into named stages):\n" + "\n".join(long)
    assert _long_public_functions(limit=20), "the length check found nothing at 20 lines: it is not reading the code"


def test_no_function_at_all_is_over_60_lines():
    """Private helpers and ``__init__`` included: state that outgrows 60 lines goes into named parts."""
    long = _long_public_functions(private_too=True)
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


_THIRD_PARTY = {"torch", "np", "numpy", "os", "sys", "sqlite3", "mp", "dist", "nn", "F", "pl", "warnings", "fcntl"}


def _private_reads_in(name: str, text: str) -> list[str]:
    """Reads of another module's private names in one module's source: ``from amnesiac.x import _name``, and
    ``obj._attr`` where the module does not itself define ``_attr`` (on ``self``/``cls``, or as a function,
    class or variable)."""
    tree = ast.parse(text)
    own = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    own |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)}
    own |= {t.id for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("amnesiac")):
            found += [f"{name}: imports {a.name}" for a in node.names if a.name.startswith("_")
                      and not a.name.startswith("__") and a.asname != a.name]
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ({"self", "cls"} | _THIRD_PARTY):
                continue
            if node.attr not in own:
                found.append(f"{name}:{node.lineno}: reads .{node.attr}")
    return found


def test_no_module_reads_another_modules_private_names():
    reads = [r for p in sorted(ROOT.rglob("*.py")) for r in _private_reads_in(str(p.relative_to(ROOT)), p.read_text())]
    assert not reads, "private names read across modules:\n" + "\n".join(reads)
    # the check can say no: the two kinds the audit and the DDP trainer used to do
    bad = "from .format import _blob_step\nfrom .format import ok\n\ndef f(store):\n    return store._conn\n"
    assert _private_reads_in("bad.py", bad) == ["bad.py: imports _blob_step", "bad.py:5: reads ._conn"]


def _public_methods(path: Path, cls: str) -> list[str]:
    """Public methods of class ``cls`` in ``path`` (properties, class and static methods counted too)."""
    tree = ast.parse(path.read_text())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    return [n.name for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and not n.name.startswith("_")]


def test_the_ledger_store_is_a_small_front_door():
    """Library users meet at most 15 methods; the index, blobs, shard sums and commit operations are parts."""
    front = _public_methods(ROOT / "ledger" / "store.py", "LedgerStore")
    assert len(front) <= 15, f"LedgerStore has {len(front)} public methods: {front}"
    dangerous = {"set_meta", "delete_blobs", "truncate_after", "commit_revert", "commit_head", "destroy", "revert"}
    assert not dangerous & set(front), f"commit operations on the front door: {sorted(dangerous & set(front))}"
    # the count can say no: the index part is far bigger than a front door
    assert len(_public_methods(ROOT / "ledger" / "index.py", "LedgerIndex")) > 15
