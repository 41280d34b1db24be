"""The layers hold: which packages may import which, where SQL is written, how big things grow.

Read from the source with `ast`, so the rules are checked without importing anything.
Imports under ``if TYPE_CHECKING:`` are for annotations only and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"

# Who may import whom: a layer imports itself, the layers below it, and the shared
# leaves (errors; config, which reads the environment).
ALLOWED = {
    "core": {"core", "errors"},
    "store": {"store", "core", "errors", "config"},
    "ops": {"ops", "store", "core", "errors", "config", "__init__"},
    "runtime": {"runtime", "ops", "store", "core", "errors", "config", "registry"},
    # HTTP jobs: declared calls to other services, run as job bodies by the runtime.
    "http_jobs": {"http_jobs", "runtime", "ops", "store", "core", "errors", "config", "__init__"},
    # The HTTP console and API: on top of everything but the CLI.
    "console": {
        "console",
        "http_jobs",
        "runtime",
        "ops",
        "store",
        "core",
        "errors",
        "config",
        "registry",
    },
    # The shared leaves: the error tree imports nothing, the settings only the core,
    # the registry (which loads the jobs module) the settings and the core.
    "errors.py": set(),
    "config.py": {"core", "errors", "config"},
    "registry.py": {"core", "errors", "config"},
}
# SQLAlchemy's statement builders: only the store composes SQL.
SQL_BUILDERS = {"select", "insert", "update", "delete", "text", "func", "literal_column"}
MAX_MODULE_LINES = 440  # about 400: the worker loop, the densest module, is near it
MAX_FUNCTION_LINES = 65
LONG_BY_NATURE = {("cli/__init__.py", "build_parser")}  # one declaration per flag


def modules() -> list[Path]:
    return sorted(APP.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(APP).as_posix()


def runtime_imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module, names) of every import outside `if TYPE_CHECKING:` blocks."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def layer_of(module: str, names: list[str]) -> list[str]:
    """The top-level parts of `app` that an import reaches."""
    parts = module.split(".")
    if parts[0] != "app":
        return []
    if len(parts) == 1:  # from app import x, y
        return [
            name if (APP / name).is_dir() or (APP / f"{name}.py").exists() else "__init__"
            for name in names
        ]
    return [parts[1]]


@pytest.mark.parametrize("path", modules(), ids=relative)
def test_layers_import_only_downwards(path: Path):
    layer = relative(path).split("/")[0]
    if layer not in ALLOWED:
        return
    tree = ast.parse(path.read_text())
    reached = {
        target for module, names in runtime_imports(tree) for target in layer_of(module, names)
    }
    assert reached <= ALLOWED[layer], f"{relative(path)} imports {sorted(reached - ALLOWED[layer])}"


@pytest.mark.parametrize("path", modules(), ids=relative)
def test_only_the_store_writes_sql(path: Path):
    where = relative(path)
    if where.startswith(("store/", "jobs/")):  # shipped jobs are user code
        return
    tree = ast.parse(path.read_text())
    builders = {
        name
        for module, names in runtime_imports(tree)
        if module == "sqlalchemy" or module.startswith("sqlalchemy.sql")
        for name in names
        if name in SQL_BUILDERS
    }
    assert not builders, f"{where} builds SQL with {sorted(builders)}; ask the store instead"


def test_nothing_below_the_cli_imports_it():
    for path in modules():
        if relative(path).startswith("cli/") or relative(path) == "__main__.py":
            continue
        for module, _ in runtime_imports(ast.parse(path.read_text())):
            assert not module.startswith("app.cli"), f"{relative(path)} imports {module}"


@pytest.mark.parametrize("path", modules(), ids=relative)
def test_modules_stay_small(path: Path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{relative(path)} has {lines} lines; split it by idea"


@pytest.mark.parametrize("path", modules(), ids=relative)
def test_functions_stay_short(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if (relative(path), node.name) in LONG_BY_NATURE:
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{relative(path)}:{node.name} has {length} lines"
