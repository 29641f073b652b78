"""The library's layers, checked over every import (module level and inside functions).

ocog_lib's packages are layered (docs/architecture.md): a module imports its own package
or layers below it, never a layer beside or above; no private name crosses a package; no
circle between modules; ocog_lib never imports dagster; ocog_assets never imports the CLI.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# unit -> layer; a unit is a package under ocog_lib or one of the foundation modules
LAYERS: dict[str, int] = {
    "foundation": 0,
    "storage": 1, "results": 1,
    "data": 2, "result_columns": 2,
    "cog": 3,
    "stream": 4, "remote": 4,
    "hdf5": 5, "train": 5, "cube": 5, "embed": 5,
    "compress": 6,
    "bench": 7,
    "search": 8,
    "serve": 9,
    "cli": 10,
    "ocog_assets": 11,
}  # fmt: skip
FOUNDATION = {"errors", "settings", "atomic", "host", "memory", "secrets", "env", ""}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module
    target: str  # dotted module imported (or the module a name was taken from)
    names: tuple[str, ...]
    line: int

    def where(self) -> str:
        return f"{self.importer}:{self.line} imports {self.target}" + (
            f" ({', '.join(self.names)})" if self.names else ""
        )


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path) -> list[Import]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [Import(name, a.name, (), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:  # `from pkg import module` imports the module
                sub = f"{base}.{a.name}"
                if is_module(sub):
                    out.append(Import(name, sub, (), node.lineno))
                else:
                    out.append(Import(name, base, (a.name,), node.lineno))
    return out


def unit_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] == "ocog_assets":
        return "ocog_assets"
    if parts[0] != "ocog_lib":
        return None
    head = parts[1] if len(parts) > 1 else ""
    return "foundation" if head in FOUNDATION else head


def all_imports() -> list[Import]:
    files = sorted((ROOT / "ocog_lib").rglob("*.py")) + sorted((ROOT / "ocog_assets").rglob("*.py"))
    return [imp for f in files for imp in imports_of(f)]


IMPORTS = all_imports()


def test_every_library_package_has_a_layer():
    units = {unit_of(module_name(p)) for p in (ROOT / "ocog_lib").rglob("*.py")}
    assert units - LAYERS.keys() == set(), "a new ocog_lib package needs a layer in LAYERS"


def test_each_layer_imports_only_its_own_package_or_layers_below():
    bad = []
    for imp in IMPORTS:
        src, dst = unit_of(imp.importer), unit_of(imp.target)
        if dst is None or src == dst:
            continue
        if LAYERS[dst] >= LAYERS[src]:
            bad.append(f"{imp.where()}: {src} (layer {LAYERS[src]}) -> {dst} (layer {LAYERS[dst]})")
    assert bad == []


def test_no_private_name_crosses_a_package():
    bad = [
        imp.where()
        for imp in IMPORTS
        if unit_of(imp.target) not in (None, unit_of(imp.importer))
        and any(n.startswith("_") and not n.startswith("__") for n in imp.names)
    ]
    assert bad == []


def test_no_circle_between_modules():
    graph: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if unit_of(imp.target) is not None and imp.target != imp.importer:
            graph.setdefault(imp.importer, set()).add(imp.target)
    circles = [c for c in strongly_connected(graph) if len(c) > 1]
    assert circles == []


@pytest.mark.parametrize(
    ("importers", "forbidden"),
    [("ocog_lib", "dagster"), ("ocog_lib", "ocog_assets"), ("ocog_assets", "ocog_lib.cli")],
)
def test_forbidden_imports(importers, forbidden):
    bad = [
        imp.where()
        for imp in IMPORTS
        if imp.importer.split(".")[0] == importers
        and (imp.target == forbidden or imp.target.startswith(forbidden + "."))
    ]
    assert bad == []


def test_the_checker_sees_imports_inside_functions():
    """The rules would pass vacuously if the parser missed imports inside functions."""
    nested = 0
    for path in (ROOT / "ocog_lib").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lines = {
            n.lineno for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
            for n in ast.walk(f) if isinstance(n, ast.Import | ast.ImportFrom)
        }  # fmt: skip
        assert lines <= {i.line for i in imports_of(path)}, path
        nested += len(lines)
    assert nested > 50 and len(IMPORTS) > 300
    assert unit_of("ocog_lib.cog.write") == "cog" and unit_of("ocog_lib.errors") == "foundation"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components, iteratively (the graph is a few hundred modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                out.append(sorted(comp))
    return out


def test_strongly_connected_finds_a_circle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(c for c in strongly_connected(graph) if len(c) > 1) == [["a", "b", "c"]]
