"""The layout shows the pipeline: each module sits in one layer and imports only from its own
layer or those below (imports inside functions count too), no module imports itself back through
a cycle, Ray is imported only where a stage runs on the cluster, and no module grows past 300
lines."""

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "xdray"
# Lowest first, as the folders are: a stage's config section (schema.py) sits in its stage; the
# experiment file (xdray.config) composes them above every stage, and only the entry points (the
# pipeline maps it onto each stage's sections) see it.
LAYERS = [
    ("core", lambda m: m.startswith("xdray.core")),
    ("data", lambda m: m.startswith("xdray.data")),
    ("teacher", lambda m: m.startswith("xdray.teacher")),
    ("transfer", lambda m: m.startswith("xdray.transfer")),
    ("distill", lambda m: m.startswith("xdray.distill")),
    ("frontier", lambda m: m.startswith("xdray.frontier")),
    ("serve", lambda m: m.startswith("xdray.serve")),
    ("experiment", lambda m: m == "xdray.config"),
    ("entry points", lambda m: m in ("xdray.pipeline", "xdray.doctor", "xdray.__main__", "xdray")
     or m.startswith(("xdray.bench", "xdray.cli"))),
]
# The modules that run a stage on the cluster (Ray at the edges); core.runtime starts or joins it.
RAY_MODULES = {"xdray.core.runtime", "xdray.teacher.finetune", "xdray.transfer.build", "xdray.distill.tuning",
               "xdray.frontier.latency", "xdray.serve.deploy", "xdray.serve.corpus", "xdray.doctor"}
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    return next(i for i, (_, match) in enumerate(LAYERS) if match(module))


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside functions (TYPE_CHECKING blocks left out:
    they hold type names only)."""
    found = set()
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if f"{node.module}.{alias.name}" in MODULES}
    return found


def xdray_imports(path: Path) -> set[str]:
    return {m for m in imports(path) if m in MODULES and m != "xdray"}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    mine = layer_of(module)
    upward = sorted(m for m in xdray_imports(MODULES[module]) if layer_of(m) > mine)
    assert not upward, f"{module} ({LAYERS[mine][0]}) imports from above: " + \
        ", ".join(f"{m} ({LAYERS[layer_of(m)][0]})" for m in upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in the import graph (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(module: str, stack: list[str]) -> list[str] | None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep, stack + [dep])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [module])):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle({m: xdray_imports(p) for m, p in MODULES.items()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_find_what_they_look_for(tmp_path):
    """The checkers themselves: a cycle is found, and imports inside functions count."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from xdray.core import stage\n")
    assert "xdray.core.stage" in xdray_imports(module)


def test_ray_stays_at_the_edges():
    users = {m for m, p in MODULES.items() if any(i == "ray" or i.startswith("ray.") for i in imports(p))}
    assert users <= RAY_MODULES, f"Ray imported outside the cluster-facing modules: {sorted(users - RAY_MODULES)}"


def test_no_module_is_long():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_transfer_reader_needs_neither_ray_nor_datasets():
    """A trial (or a user's own loop) reads transfer sets with plain pyarrow + torch."""
    import subprocess
    import sys

    code = ("import sys, xdray.transfer.reader; "
            "print(sorted(m for m in ('ray', 'datasets', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
