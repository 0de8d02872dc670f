"""The house's layers, enforced: every import of every module points down, never up or
sideways, and no module imports itself back through others.

The order (bottom first; the README's layout section shows the same picture):

    edgehar            errors, argtypes, plugins: what every layer may raise, parse or look up
    contract           the input contract, torch-free: manifest, bundle, formats, series, preprocess
    firmware_bridge    devices: wire protocol, transports, clock mapping, health, sessions
    app | simulator    the runtime | the simulated world (+ its fake devices, in simulator.devices)
    models             torch: model families, registry, data sets, training, bundle writer
    quantize           export to edge runtimes, fidelity checks
    benchmarks         measurement
    cli                the roof (the CLI and the demo wiring): the only package that knows every other

Packages on one line are siblings: neither imports the other. Imports inside functions
count as much as those at the top of a file: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LAYERS: tuple[tuple[str, ...], ...] = (
    ("edgehar",),  # its own modules: errors, argtypes, plugins (cli and __main__ sit above)
    ("edgehar.contract",),
    ("edgehar.firmware_bridge",),
    ("edgehar.app", "edgehar.simulator"),
    ("edgehar.models",),
    ("edgehar.quantize",),
    ("edgehar.benchmarks",),
    ("edgehar.cli",),
    ("edgehar.__main__",),
)
# Rooms inside a package that the rest of it must not import.
ROOMS = {"edgehar.simulator": "edgehar.simulator.devices"}


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name (package-dir maps the folders)."""
    import importlib.util

    out: dict[str, Path] = {}
    roots = ["edgehar"] + [name for layer in LAYERS for name in layer if name.count(".") == 1]
    for root in roots:
        spec = importlib.util.find_spec(root)  # found, not run (edgehar.__main__ would run the CLI)
        if not spec.submodule_search_locations:
            out[root] = Path(spec.origin)
            continue
        folder = Path(spec.origin).parent
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([root] + parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import module` imports the module itself
            found += [(f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target, node.lineno)
                      for a in node.names]
    return [(t, line) for t, line in found if t == "edgehar" or t.startswith("edgehar.")]


def _owner(module: str) -> tuple[int, str]:
    """(layer index, package) of a module: the longest layer entry it falls under."""
    best = None
    for i, layer in enumerate(LAYERS):
        for pkg in layer:
            if (module == pkg or module.startswith(pkg + ".")) and (best is None or len(pkg) > len(best[1])):
                best = (i, pkg)
    assert best is not None, f"{module} is in no layer: add its package to LAYERS"
    return best


def test_every_module_is_in_a_layer():
    assert len(MODULES) > 80  # the walk found the project, not an empty install
    for name in MODULES:
        _owner(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    layer, package = _owner(name)
    wrong = []
    for target, line in _imports(name, MODULES[name]):
        t_layer, t_package = _owner(target)
        if t_package == package:
            room = ROOMS.get(package)
            if room and target.startswith(room) and not name.startswith(room):
                wrong.append(f"line {line}: {target} (the {room} room; {package} must not import it)")
            continue
        if t_layer > layer:
            wrong.append(f"line {line}: {target} is above ({t_package}, layer {t_layer} > {layer})")
        elif t_layer == layer:
            wrong.append(f"line {line}: {target} is a sibling package ({t_package}) of {package}")
    assert not wrong, f"{name} imports up or sideways:\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules():
    graph = {name: {t for t, _ in _imports(name, path) if t in MODULES and t != name}
             for name, path in MODULES.items()}
    # A package's __init__ is imported by every module under it; edges into parents are implied.
    graph = {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for t in sorted(graph[n]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """A relative import inside a function that points up fails the check (so it can fail)."""
    bad = tmp_path / "sampling.py"
    bad.write_text("def f():\n    from ...app.live import run_live\n")
    monkeypatch.setitem(MODULES, "edgehar.contract.preprocess.sampling", bad)
    with pytest.raises(AssertionError, match="line 2: edgehar.app.live is above"):
        test_imports_point_down("edgehar.contract.preprocess.sampling")
