"""The core's layers (docs/architecture.md, the import-linter contracts in pyproject.toml):
the contracts hold, every module of automl has its place in a layer, no automl modules
import each other in a cycle, and an automl import inside a function says why it is there."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import grimp
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "automl"
#: Packages whose modules are placed one by one, so the package itself has no layer; its
#: __init__ may import only its own modules.
UNPLACED_PACKAGES = {"automl.search", "automl.results"}


def _contract(contract_id: str) -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["id"] == contract_id)


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("automl", cache_dir=None)


def test_the_import_contracts_hold(capsys):
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, report


def test_every_module_has_a_layer():
    contract = _contract("layers")
    (container,) = contract["containers"]
    placed = {f"{container}.{name.strip()}" for layer in contract["layers"] for name in re.split(r"[|:]", layer)}
    graph = _graph()
    missing = sorted(
        m
        for m in graph.modules
        if m != container and m not in UNPLACED_PACKAGES and not any(m == p or m.startswith(p + ".") for p in placed)
    )
    assert not missing, f"place these modules in a layer of [tool.importlinter] in pyproject.toml: {missing}"
    for package in UNPLACED_PACKAGES:
        outside = {m for m in graph.find_modules_directly_imported_by(package) & graph.modules if not m.startswith(package + ".")}
        assert not outside, (package, outside)


def test_no_import_cycles():
    graph = _graph()
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & graph.modules):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append(" -> ".join((importer, *back)))
    assert not cycles, "\n".join(cycles)


def _function_level_imports(tree: ast.AST) -> list[ast.stmt]:
    found: list[ast.stmt] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                names = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                if any(n == "automl" or n.startswith("automl.") for n in names):
                    found.append(child)
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(tree, False)
    return found


def test_an_automl_import_inside_a_function_says_why():
    """An automl import is late only for start-up time (a CLI command's library, torch in
    the supervisor before its workers start): the line says so (docs/architecture.md)."""
    silent = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in _function_level_imports(ast.parse(path.read_text())):
            if "#" not in lines[node.end_lineno - 1]:
                silent.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not silent, "import at the top of the module, or say why not:\n" + "\n".join(silent)


def test_the_architecture_page_shows_the_layers_of_the_contract():
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Layers", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == _contract("layers")["layers"]
