"""The folder names are the architecture: each layer imports only from layers below it.

Parses every module of `fedft/` and `strategies/` with `ast` (imports inside functions
and under `if TYPE_CHECKING:` included) and fails on an import of a higher layer, on an
import cycle between modules, and on a fedft import inside a function that is not there
for an optional dependency. docs/architecture.md's "Layout" table lists the same layers in this order.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module's layer is the longest prefix that matches its name.
LAYERS: list[tuple[str, ...]] = [
    ("fedft", "fedft.errors"),  # the root package holds only __version__
    ("fedft.config",),
    ("fedft.devices",),  # simulated devices and their schedules: pure, numpy only
    ("fedft.fl.protocol",),  # the wire's record keys: constants any layer may name
    ("fedft.state",),
    ("fedft.ml",),
    ("fedft.privacy",),
    ("strategies",),
    ("fedft.fl",),
    ("fedft.runtime",),
    ("fedft.jobs",),
    ("fedft.deploy",),
    ("fedft.api", "fedft.cli", "fedft.__main__"),
]
ENTRY_POINTS = {"fedft", "fedft.deploy.cli"}  # `fedft.run` forwards to the API lazily, so `import fedft` stays cheap; the deployment commands load when one runs


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted([*ROOT.glob("fedft/**/*.py"), *ROOT.glob("strategies/**/*.py")]):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS"
    return rank


def imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported fedft/strategies module, line, inside a function) for every import in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package[: len(package) - child.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names]
            for target in targets:
                if target.split(".")[0] in ("fedft", "strategies"):
                    out.append((target, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return out


def test_every_module_is_in_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_no_layer_imports_a_higher_one() -> None:
    known = modules()
    upward = []
    for module, path in known.items():
        for target, line, _ in imports(module, path, known):
            if module in ENTRY_POINTS:
                continue
            if layer_of(target) > layer_of(module):
                upward.append(f"{path.relative_to(ROOT)}:{line}: {module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    known = modules()
    graph = {m: sorted({t for t, _, _ in imports(m, p, known) if t in known and t != m}) for m, p in known.items()}
    # a package's __init__ re-exporting its own submodules is not a cycle with them
    graph = {m: [t for t in targets if not t.startswith(m + ".")] for m, targets in graph.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_fedft_imports_inside_functions_are_not_hiding_cycles() -> None:
    """A deferred import of fedft's own code is allowed only in entry points (the CLI
    loads each command's module when it runs, to start fast)."""
    known = modules()
    deferred = [
        f"{path.relative_to(ROOT)}:{line}: {target}"
        for module, path in known.items() if layer_of(module) < len(LAYERS) - 1 and module not in ENTRY_POINTS
        for target, line, inside in imports(module, path, known) if inside
    ]
    assert not deferred, "imports of fedft inside functions (move them to the top):\n" + "\n".join(deferred)
