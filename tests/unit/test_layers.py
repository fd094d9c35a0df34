"""The import structure of `shared/`: layers, no circle, one composition root, one Firestore home.

Every import of every module is read with `ast` (module level, inside functions and under
`TYPE_CHECKING` alike: a circle of type-only imports is still a circle for a reader). The
layers, lowest first (docs/decisions/0003-composition-root.md):

    models, errors, logs  <-  config, store, traccar, secrets, web  <-  pipeline, scheduler, notify
    <-  services, sync, receiver, service_status  <-  sources  <-  runtime, openapi  <-  functions

A module may import its own layer and those below, never one above.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("shared", "shared.models", "shared.errors", "shared.logs"),
    ("shared.config", "shared.store", "shared.traccar", "shared.secrets", "shared.web"),
    ("shared.pipeline", "shared.scheduler", "shared.notify", "shared.traccar_status",
     "shared.command_provisioning"),
    ("shared.services", "shared.sync", "shared.receiver", "shared.service_status", "shared.alerts",
     "shared.device_refresh",
     "shared.status_report", "shared.commands", "shared.removal"),
    ("shared.sources",),
    ("shared.runtime", "shared.openapi"),
)  # fmt: skip
VENDORS = ("google", "smartcar", "tlink")
# Who may import the composition root.
RUNTIME_IMPORTERS = ("functions", "devtools", "bench")
FIRESTORE_MODULES = ("google.cloud.firestore", "google.cloud.firestore_v1")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        if "proto" not in path.parts and "__pycache__" not in path.parts:
            yield path


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, as dotted names (`from a import b` gives `a.b` when `a.b` is
    a module of ours, else `a`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module_name(path if path.name == "__init__.py" else path.parent)
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if not base.startswith("shared"):
                    found.update({base, candidate})  # `from google.cloud import firestore`
                else:
                    found.add(candidate if is_our_module(candidate) else base)
    return found


def is_our_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the matching prefix, layer)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), index)
    return None if best is None else best[1]


def shared_graph() -> dict[str, set[str]]:
    graph = {}
    for path in python_files(SHARED):
        graph[module_name(path)] = {
            name for name in imports_of(path) if name == "shared" or name.startswith("shared.")
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_of_shared_has_a_layer() -> None:
    assert [m for m in shared_graph() if layer_of(m) is None] == []


def test_no_import_circle_in_shared() -> None:
    assert cycles(shared_graph()) == []


def test_no_module_of_shared_imports_a_higher_layer() -> None:
    upward = []
    for module, targets in shared_graph().items():
        own = layer_of(module)
        assert own is not None
        for target in targets:
            other = layer_of(target)
            if other is not None and other > own:
                upward.append(f"{module} (layer {own}) imports {target} (layer {other})")
    assert upward == []


def test_a_vendor_package_imports_no_other_vendor() -> None:
    crossing = []
    for module, targets in shared_graph().items():
        for vendor in VENDORS:
            if not module.startswith(f"shared.sources.{vendor}"):
                continue
            for target in targets:
                for other in VENDORS:
                    if other != vendor and target.startswith(f"shared.sources.{other}"):
                        crossing.append(f"{module} imports {target}")
    assert crossing == []


def test_no_module_imports_a_private_name_of_another() -> None:
    """`from shared.x import _name`: a name kept private is no one else's to call; a function
    two modules share is public, named for what it does."""
    private = []
    for folder in ("shared", "functions"):
        for path in python_files(ROOT / folder):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not isinstance(node, ast.ImportFrom):
                    continue
                if not (node.module or "").startswith("shared"):
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append(f"{module_name(path)}: {node.module}.{alias.name}")
    assert private == []


def test_only_functions_devtools_and_bench_import_the_runtime() -> None:
    importers = []
    for folder in ("shared", "functions", "devtools", "bench"):
        for path in python_files(ROOT / folder):
            if "shared.runtime" in imports_of(path) and module_name(path) != "shared.runtime":
                importers.append(module_name(path))
    assert importers, "the functions import the runtime: the walk is broken if none is found"
    assert [m for m in importers if not m.startswith(RUNTIME_IMPORTERS)] == []


def test_only_the_store_package_and_the_runtime_import_firestore() -> None:
    reaching = []
    for folder in ("shared", "functions"):
        for path in python_files(ROOT / folder):
            module = module_name(path)
            if module == "shared.runtime" or module.startswith("shared.store"):
                continue
            if any(name.startswith(FIRESTORE_MODULES) for name in imports_of(path)):
                reaching.append(module)
    assert reaching == []


def test_no_library_class_takes_the_runtime_or_the_whole_settings() -> None:
    """A parameter annotated `Runtime` or `Settings` outside the composition root."""
    taking = []
    for path in python_files(SHARED):
        module = module_name(path)
        if module in {"shared.runtime", "shared.config"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                arguments = [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]
                for argument in arguments:
                    annotation = ast.unparse(argument.annotation) if argument.annotation else ""
                    if annotation.strip("'\"") in {"Runtime", "Settings"}:
                        taking.append(f"{module}.{node.name}({argument.arg}: {annotation})")
    assert taking == []


# --- the walk itself can fail ------------------------------------------------------------------


def test_the_cycle_finder_finds_a_circle_and_the_layer_check_an_upward_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("shared.store.google") == 1
    assert layer_of("shared.sources.google.source") == 4
    assert layer_of("shared.runtime") > layer_of("shared.sync")  # type: ignore[operator]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from shared.store import Store\n", {"shared.store"}),
        ("from shared import sync\n", {"shared.sync"}),
        ("import shared.runtime\n", {"shared.runtime"}),
        (
            "def f():\n    from google.cloud import firestore\n",
            {"google.cloud", "google.cloud.firestore"},
        ),
        (
            "import typing\nif typing.TYPE_CHECKING:\n    from shared.runtime import R\n",
            {"typing", "shared.runtime"},
        ),
    ],
)
def test_imports_are_read_wherever_they_are(
    tmp_path: Path, source: str, expected: set[str]
) -> None:
    module = tmp_path / "probe.py"
    module.write_text(source)
    assert imports_of(module) == expected
