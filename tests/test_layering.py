"""The layout is the architecture: each folder one job, imports only downward, no cycles.

Layers, bottom to top (a folder may import only the folders listed for it):

- ``spikeacc`` (configuration, errors, working directories): nothing of ours;
- ``golden`` (the maths) and ``hw`` (the generators): the configuration only, not each other;
- ``verif`` (benches, runners, scoreboards, harnesses): golden and hw;
- ``energy`` (gate-level power, toggle models, calibration): verif and below;
- ``app`` (CLI, main job, report, the LLM through the RTL): everything; nothing imports it.

Imports are read from the source (every ``import``, including the ones inside
functions), so a lazy import cannot hide a cycle or an upward edge.
"""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from spikeacc.sources import SUBPACKAGES, modules

ALLOWED = {
    "spikeacc": set(),
    "golden": {"spikeacc"},
    "hw": {"spikeacc"},
    "verif": {"spikeacc", "golden", "hw"},
    "energy": {"spikeacc", "golden", "hw", "verif"},
    "app": {"spikeacc", "golden", "hw", "verif", "energy"},
}
ROOT = Path(__file__).resolve().parent.parent


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SUBPACKAGES else "spikeacc"


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that ``module`` imports anywhere in its source (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:   # `from spikeacc.golden import integer` names a module
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(m, p, set(mods)) for m, p in mods.items()}


def test_every_folder_is_walked():
    """Every package pyproject installs has a rule, and the walk reaches every .py file in it."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    installed = {name.partition(".")[2] or "spikeacc" for name in setup["packages"]}
    assert installed == set(ALLOWED) == {"spikeacc", *SUBPACKAGES}
    walked = {p.resolve() for p in modules().values()}
    for name in setup["packages"]:
        folder = ROOT / setup["package-dir"][name]
        missing = sorted(str(p) for p in folder.glob("*.py") if p.resolve() not in walked)
        assert not missing, f"modules the walk missed: {missing}"
    assert {"spikeacc.golden.model", "spikeacc.golden.perplexity", "spikeacc.app.cli"} <= set(modules())


def test_imports_go_downward_only():
    upward = sorted(f"{m} imports {d} ({layer_of(m)} -> {layer_of(d)})"
                    for m, deps in import_graph().items() for d in deps
                    if layer_of(d) != layer_of(m) and layer_of(d) not in ALLOWED[layer_of(m)])
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = import_graph()
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checks_see_a_violation():
    """The graph reader finds a lazy upward import and a relative import, so the rules can fail."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.py"
        path.write_text("def f():\n    from spikeacc.app import flow\nfrom . import integer\n")
        found = imports_of("spikeacc.golden.probe", path, set(modules()))
    assert found == {"spikeacc.app", "spikeacc.app.flow", "spikeacc.golden.integer", "spikeacc.golden"}


def loaded_after(imports: str) -> set[str]:
    code = f"import sys; {imports}; print(' '.join(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(run.stdout.split())


def _all_of(layer: str) -> str:
    return ", ".join(m for m in modules() if layer_of(m) == layer)


def test_golden_loads_no_hardware():
    mods = loaded_after(f"import {_all_of('golden')}")
    assert not {m for m in mods if m.startswith(("spikeacc.hw", "spikeacc.verif", "amaranth", "cocotb"))}


def test_hardware_needs_no_torch():
    mods = loaded_after(f"import {_all_of('hw')}")
    assert "torch" not in mods and not {m for m in mods if m.startswith("spikeacc.golden")}
