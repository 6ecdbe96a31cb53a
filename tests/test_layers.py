"""The package's layers, read from its imports (ast): the core stands on its own.

- ``symelbo.core`` imports nothing but the standard library, SymPy, mpmath and
  itself: no jinja2, no lark, no rendering, parsing, models or command line.
- No two modules import each other, directly or around a circle (imports
  inside functions count: a lazy import is still a dependency).
- No private name (``_x``) is imported from another module, in the package or
  in the tests: what another module needs is public API.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "symelbo"
CORE_MAY_IMPORT = {"sympy", "mpmath", "symelbo"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str):
    """(imported module, imported names, line) for every import in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target, tuple(a.name for a in node.names), node.lineno


def _resolve(target: str, names, modules) -> list[str]:
    """The package modules an import statement loads (a name may be a submodule)."""
    out = [target] if target in modules else []
    out += [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
    return out


def test_core_imports_only_itself_sympy_mpmath_and_the_standard_library():
    modules = _modules()
    assert any(name.startswith("symelbo.core.") for name in modules), "no symelbo/core package"
    stdlib = set(sys.stdlib_module_names)
    offences = []
    for name, path in modules.items():
        if not name.startswith("symelbo.core"):
            continue
        for target, names, line in _imports(path, name):
            top = target.split(".")[0]
            if top in stdlib:
                continue
            if top not in CORE_MAY_IMPORT or (top == "symelbo" and not target.startswith("symelbo.core")):
                offences.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not offences, offences


def test_no_import_circles():
    modules = _modules()
    edges = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names, _ in _imports(path, name):
            for module in _resolve(target, names, modules):
                if module != name and not name.startswith(module + "."):
                    edges[name].add(module)   # a package's own __init__ above it is not a circle
    # Tarjan's strongly connected components
    index, low, stack, on_stack, circles, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
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
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not circles, circles


def test_no_private_name_is_imported_across_modules():
    files = list(PACKAGE.rglob("*.py")) + list((REPO / "tests").rglob("*.py")) + \
        list((REPO / "benchmarks").rglob("*.py"))
    offences = []
    for path in sorted(files):
        name = _module_name(path)
        for target, names, line in _imports(path, name):
            if not (target or "").startswith(("symelbo", "tests", "benchmarks")):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                offences.append(f"{path.relative_to(REPO)}:{line} imports {', '.join(private)} "
                                f"from {target}")
    assert not offences, offences


def test_the_kernel_is_one_small_module():
    kernel = PACKAGE / "core" / "kernel.py"
    assert kernel.is_file()
    assert len(kernel.read_text(encoding="utf-8").splitlines()) < 800
