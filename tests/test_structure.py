"""The package's structure rules, read from the source with ``ast`` (nothing is imported).

- every module has at most :data:`MAX_LINES` lines;
- :mod:`volseg.tiling` and the run's plan (:mod:`volseg.inference.plan`) import no
  torch, dask or zarr;
- only :mod:`volseg.io` imports zarr, tifffile or h5py;
- only :mod:`volseg.cluster` builds clusters (dask_jobqueue, distributed's clusters);
- nothing imports :mod:`volseg.cli`;
- there are no import circles between modules, counting imports inside functions and
  the names a lazy package (``volseg._lazy.attach``) serves from its submodules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "volseg"
MAX_LINES = 400
NUMPY_ONLY = ("volseg.tiling", "volseg.inference.plan")
FRAMEWORKS = {"torch", "dask", "zarr", "distributed", "segmentation_models_pytorch"}
STORAGE = {"zarr", "tifffile", "h5py"}
CLUSTER_BUILDERS = {"LocalCluster", "SpecCluster", "SLURMCluster", "Scheduler", "Nanny"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import in ``module``."""
    found = []
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            found.extend((source, alias.name, node.lineno) for alias in node.names)
    return found


def _lazy_table(package: str) -> dict[str, str]:
    """{name: absolute submodule} served by a package's ``attach(__name__, {...})`` table."""
    table: dict[str, str] = {}
    for node in ast.walk(TREES[package]):
        if (
            isinstance(node, ast.Dict)
            and node.keys
            and all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys)
        ):
            for key, value in zip(node.keys, node.values):
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    where = value.value
                    target = where if where.startswith("volseg.") else f"{package}.{where}"
                    if target in MODULES:
                        table[key.value] = target
    return table


LAZY = {name: _lazy_table(name) for name in MODULES if _is_package(name)}


def _targets(module: str, imported: str, name: str | None) -> set[str]:
    """The volseg modules an import makes ``module`` depend on."""
    if not imported.startswith("volseg"):
        return set()
    if name is not None and f"{imported}.{name}" in MODULES:
        return {f"{imported}.{name}"}  # a submodule
    if name is not None and imported in LAZY and name in LAZY[imported]:
        return {LAZY[imported][name]}
    return {imported} if imported in MODULES else set()


def _attribute_targets(module: str) -> set[str]:
    """Modules reached through ``alias.name`` where ``alias`` is a lazily loaded package."""
    aliases: dict[str, str] = {}
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in LAZY:
                    aliases[alias.asname or alias.name] = full
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in LAZY and alias.asname:
                    aliases[alias.asname] = alias.name
    found = set()
    for node in ast.walk(TREES[module]):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            table = LAZY[aliases[node.value.id]]
            if node.attr in table:
                found.add(table[node.attr])
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module in MODULES:
        edges = set()
        for imported, name, _ in _imports(module):
            edges |= _targets(module, imported, name)
        edges |= _attribute_targets(module)
        graph[module] = edges - {module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _in(module: str, owner: str) -> bool:
    return module == owner or module.startswith(owner + ".")


def test_the_rules_see_the_package():
    assert len(MODULES) > 40
    # the checker finds a circle when there is one, and resolves lazy names
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert LAZY["volseg.io"]["open_scan"] == "volseg.io.scans"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_short(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES}): split it by job"


@pytest.mark.parametrize("owner", NUMPY_ONLY)
def test_numpy_only_modules_import_no_framework(owner):
    """Neither the module nor anything it imports from volseg (transitively) loads one."""
    graph = _graph()
    seen, todo = set(), [m for m in MODULES if _in(m, owner)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(graph[module])
    offenders = [
        f"{module}:{line} imports {imported}"
        for module in sorted(seen)
        for imported, _, line in _imports(module)
        if imported.split(".")[0] in FRAMEWORKS
    ]
    assert not offenders, f"{owner} reaches {offenders}"


def test_only_io_imports_storage_libraries():
    offenders = [
        f"{module}:{line} imports {imported}"
        for module in MODULES
        if not _in(module, "volseg.io")
        for imported, _, line in _imports(module)
        if imported.split(".")[0] in STORAGE
    ]
    assert not offenders, offenders


def test_only_cluster_builds_clusters():
    offenders = [
        f"{module}:{line} imports {imported}.{name or ''}"
        for module in MODULES
        if not _in(module, "volseg.cluster")
        for imported, name, line in _imports(module)
        if imported.split(".")[0] == "dask_jobqueue"
        or (imported.split(".")[0] in ("distributed", "dask") and name in CLUSTER_BUILDERS)
    ]
    assert not offenders, offenders


def test_nothing_imports_the_cli():
    graph = _graph()
    offenders = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if not _in(module, "volseg.cli")
        for target in targets
        if _in(target, "volseg.cli")
    ]
    assert not offenders, offenders


def test_no_import_circles():
    assert _cycles(_graph()) == []


@pytest.mark.parametrize(
    ("function", "settings"),
    [
        ("volseg.inference.api.segment", "volseg.inference.settings.SegmentSettings"),
        ("volseg.training.api.train", "volseg.training.settings.TrainSettings"),
    ],
)
def test_api_defaults_are_the_settings_defaults(function, settings):
    """The functions' signatures show the defaults users read; the settings own them."""
    import dataclasses
    import importlib
    import inspect

    def load(path):
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)

    defaults = {f.name: f.default for f in dataclasses.fields(load(settings))}
    parameters = inspect.signature(load(function)).parameters
    shared = [name for name in parameters if name in defaults]
    assert len(shared) >= 15
    for name in shared:
        assert parameters[name].default == defaults[name], name
