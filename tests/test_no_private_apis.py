"""automl uses only the public API of its dependencies (optuna, transformers, peft, pluggy,
torch...): private names change without notice between releases.

The scan reads every module of ``automl/`` and ``plugins/`` (the built-in plugins and the
example plugin) and fails on

* an import of a private module or name of a third-party package
  (``from optuna.storages._heartbeat import ...``, ``from peft import _x``), and
* an attribute with one leading underscore that the project itself never defines
  (``study._storage``, ``trial._trial_id``): such an attribute can only belong to
  someone else's object.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("automl", "plugins") for p in (ROOT / d).rglob("*.py") if "/tests/" not in str(p))
OWN = {"automl", "automl_plugins", "automl_jsonl_logger"}
#: Private names of the standard library that are documented for use (sys._getframe...).
ALLOWED = {"_exit", "_getframe", "_current_frames", "_asdict", "_replace", "_fields", "_make", "_name_", "_value_",
           "_missing_", "_generate_next_value_"}
#: Underscored names of dependencies that their own API reference documents for use, with
#: why the public alternative does not do: (module, name) -> reason.
DOCUMENTED = {
    ("sklearn.utils", "_safe_indexing"): (
        "in scikit-learn's API reference (utilities, 'documented, but private'); the stacked "
        "family of fraud-detection selects half a million sparse columns by position with it, "
        "where a ColumnTransformer keeps a list of every index and made a 1.4 GB saved model"
    ),
}


def third_party(module: str) -> bool:
    top = module.split(".")[0]
    return bool(top) and top not in OWN and top not in sys.stdlib_module_names


def private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def own_private_names() -> set[str]:
    """Every ``_name`` the project defines: functions, classes, attributes it assigns,
    parameters, module names."""
    names: set[str] = set()
    for path in SOURCES:
        names.add(path.stem)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return {n for n in names if private(n)}


def scan(path: Path, own: set[str]) -> list[str]:
    problems = []
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(ROOT)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and third_party(node.module):
            parts = node.module.split(".")
            bad = [p for p in parts if private(p)] + [
                a.name for a in node.names if private(a.name) and (node.module, a.name) not in DOCUMENTED
            ]
            if bad:
                problems.append(f"{where}:{node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if third_party(alias.name) and any(private(p) for p in alias.name.split(".")):
                    problems.append(f"{where}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.Attribute) and private(node.attr) and node.attr not in own | ALLOWED:
            problems.append(f"{where}:{node.lineno}: .{node.attr}")
    return problems


def test_sources_are_found():
    assert len(SOURCES) > 30
    assert ROOT / "automl" / "search" / "worker.py" in SOURCES


def test_no_private_names_of_dependencies():
    own = own_private_names()
    problems = [p for path in SOURCES for p in scan(path, own)]
    assert problems == [], "private API of a dependency:\n" + "\n".join(problems)


def test_the_scan_catches_what_it_should(tmp_path):
    """The scan itself: each kind of private use is found, public use is not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from optuna.storages._heartbeat import get_heartbeat_thread\n"
        "import transformers._private\n"
        "from peft import _hidden\n"
        "from automl._own import thing\n"
        "from .x import _fine\n"
        "import os\n"
        "study._storage.set_trial_user_attr(trial._trial_id, 'k', 1)\n"
        "self._own_attr = 1\n"
        "os._exit(0)\n"
        "obj.__class__\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = scan(sample, {"_own_attr"})
    finally:
        ROOT = saved
    assert sorted(f.split(": ", 1)[1] for f in found) == sorted([
        "from optuna.storages._heartbeat import get_heartbeat_thread",
        "import transformers._private",
        "from peft import _hidden",
        "._storage",
        "._trial_id",
    ])
