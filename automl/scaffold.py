"""``automl plugins new``: write a small pip-installable plugin package to start from.

The package has its own ``pyproject.toml`` with the ``automl`` entry point, the plugin
module with every hook its kind needs (working defaults the author then edits), a test
that uses :mod:`automl.testing`, a tiny sample data set and a recipe that runs one quick
trial on it. Installed with ``pip install -e``, it works at once.

The files come from ``automl/templates/plugin/``: ``common/`` for every kind, and one
folder per kind with ``plugin.py``, ``test.py`` and ``recipe.yaml`` templates
(:class:`string.Template`: ``$module``, ``${class_name}`` and so on).
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import keyword
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path

from automl import API_VERSION, __version__, plugins
from automl.errors import UserError

KINDS = ("task", "backbone", "callback")

#: What the plugin module of each kind provides (for the README and the command's output).
WHAT = {
    "task": "a Task subclass (text classification over text/label columns) and automl_register_tasks",
    "backbone": "a Backbone subclass (all-MiniLM-L6-v2 or a model path) and automl_register_backbones",
    "callback": "automl_trial_start, automl_trial_end and automl_study_end, writing JSON lines",
}

# A distribution name as PEP 508 allows it.
_DIST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_RESERVED = {"automl", "automl_plugins", "test", "tests"}


@dataclass(frozen=True)
class PluginNames:
    """The names a new plugin package uses, all derived from the one the author gives.

    Attributes:
        distribution: the package name for pip (``automl-complaints``).
        module: the import name (``automl_complaints``).
        plugin: the entry-point name, which is also the task or backbone name recipes use
            (``complaints``: an ``automl-`` prefix is dropped).
        cls: the stem of class names (``Complaints``).
    """

    distribution: str
    module: str
    plugin: str
    cls: str

    def class_name(self, kind: str) -> str:
        """``ComplaintsTask``, ``MyBackbone`` (not ``MyBackboneBackbone``)."""
        suffix = kind.capitalize()
        return self.cls if self.cls.endswith(suffix) else self.cls + suffix


def plugin_names(name: str) -> PluginNames:
    """Check *name* and derive the others from it; :class:`UserError` if it cannot be used."""
    expected = "use letters, digits, '-' and '_', starting with a letter (e.g. automl-complaints)"
    if not _DIST_NAME.match(name) or not name[0].isalpha():
        raise UserError(f"'{name}' is not a valid plugin name: {expected}", field="NAME")
    module = re.sub(r"[-_.]+", "_", name).lower()
    if not module.isidentifier() or keyword.iskeyword(module):
        raise UserError(f"'{name}' is not a valid plugin name: {expected}", field="NAME")
    if module in _RESERVED or module in sys.stdlib_module_names:
        raise UserError(f"'{name}' would shadow the module '{module}'; choose another name", field="NAME")
    plugin = re.sub(r"[-_.]+", "-", name).lower()
    if plugin.startswith("automl-") and len(plugin) > len("automl-"):
        plugin = plugin[len("automl-") :]
    cls = "".join(part.capitalize() for part in plugin.split("-"))
    if not cls.isidentifier():
        cls = "Plugin" + cls
    return PluginNames(distribution=name, module=module, plugin=plugin, cls=cls)


def _check_free(names: PluginNames, kind: str) -> None:
    """Refuse names that an installed package already uses."""
    spec = importlib.util.find_spec(names.module)
    if spec is not None:
        where = f" ({spec.origin})" if spec.origin else ""
        raise UserError(f"a module named '{names.module}' is already installed{where}; choose another name", field="NAME")
    taken = {ep.name for ep in importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP)}
    if names.plugin in taken:
        raise UserError(f"an installed package already provides the automl plugin '{names.plugin}'", field="NAME")
    registry = {"task": plugins.get_tasks, "backbone": plugins.get_backbones}.get(kind)
    if registry is not None and names.plugin in registry():
        raise UserError(f"a {kind} named '{names.plugin}' is already installed; choose another name", field="NAME")


def _templates() -> importlib.resources.abc.Traversable:
    return importlib.resources.files("automl") / "templates" / "plugin"


def new_plugin(name: str, kind: str = "task", directory: str | Path | None = None) -> Path:
    """Write a new plugin package of *kind* for *name* into *directory* (default:
    ``./NAME``, which must not exist or be empty) and return the directory.

    Raises :class:`UserError` for a bad name or kind, a name that is already taken, or a
    directory that already has files in it.
    """
    if kind not in KINDS:
        raise UserError(f"unknown plugin kind '{kind}'; expected one of: {', '.join(KINDS)}", field="--kind")
    names = plugin_names(name)
    target = Path(directory) if directory is not None else Path.cwd() / name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError("already exists; choose another --dir or remove it first", file=target)
    _check_free(names, kind)

    values = {
        "dist": names.distribution,
        "module": names.module,
        "plugin": names.plugin,
        "class_name": names.class_name(kind),
        "kind": kind,
        "api": API_VERSION,
        "automl_version": ".".join(__version__.split(".")[:2]),
        "description": f"automl {kind} plugin {names.plugin}",
        "what": WHAT[kind],
    }
    templates = _templates()
    files = {
        "pyproject.toml": templates / "common" / "pyproject.toml.tmpl",
        "README.md": templates / "common" / "README.md.tmpl",
        ".gitignore": templates / "common" / "gitignore.tmpl",
        f"src/{names.module}/__init__.py": templates / kind / "plugin.py.tmpl",
        f"tests/test_{names.module}.py": templates / kind / "test.py.tmpl",
        "sample/recipe.yaml": templates / kind / "recipe.yaml.tmpl",
    }
    for relative, template in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(string.Template(template.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
    (target / "sample" / "train.csv").write_bytes((templates / "common" / "train.csv").read_bytes())
    return target


def created_files(directory: Path) -> list[str]:
    """The files under *directory*, relative and sorted (for the command's output)."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
