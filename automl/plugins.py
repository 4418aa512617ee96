"""The plugin manager: loads plugins from the ``automl`` entry-point group.

Built-in plugins are found the same way as third-party ones; the core never imports them.
A plugin that fails to import, targets another API version or breaks the contract is
reported (name and reason) and skipped; the rest of the tool keeps working.

Environment variables:

* ``AUTOML_PLUGINS``: comma-separated allow-list of entry-point names; only these load.
* ``AUTOML_BLOCK_PLUGINS``: comma-separated entry-point names that never load.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from automl import API_VERSION, hookspecs
from automl.errors import PluginError, did_you_mean, one_of

if TYPE_CHECKING:
    from automl.backbone import Backbone
    from automl.task import Task

ENTRY_POINT_GROUP = "automl"


@dataclass(frozen=True)
class PluginInfo:
    """An installed plugin as ``automl plugins`` shows it."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    builtin: bool
    tasks: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ()
    hooks: tuple[str, ...] = ()


@dataclass
class _State:
    pm: pluggy.PluginManager
    failed: list[tuple[str, str]] = field(default_factory=list)
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    tasks: dict[str, type[Task]] | None = None
    backbones: dict[str, type[Backbone]] | None = None
    owners: dict[str, str] = field(default_factory=dict)


_state: _State | None = None


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {item.strip() for item in raw.split(",") if item.strip()}


def _check_api_version(name: str, module: ModuleType) -> None:
    declared = getattr(module, "automl_api_version", API_VERSION)
    major = str(declared).split(".")[0]
    if major != API_VERSION.split(".")[0]:
        raise PluginError(
            f"targets automl plugin API {declared}, this automl provides API {API_VERSION}; "
            f"upgrade the plugin or install a matching automl",
            field=f"plugin '{name}'",
        )


def _load() -> _State:
    pm = pluggy.PluginManager("automl")
    pm.add_hookspecs(hookspecs)
    state = _State(pm=pm)
    allow = _env_list("AUTOML_PLUGINS")
    block = _env_list("AUTOML_BLOCK_PLUGINS") or set()
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in block or (allow is not None and ep.name not in allow):
            continue
        if pm.has_plugin(ep.name):
            continue
        dist = getattr(ep, "dist", None)
        try:
            module = ep.load()
            _check_api_version(ep.name, module)
            pm.register(module, name=ep.name)
        except PluginError as exc:
            state.failed.append((ep.name, exc.message))
            continue
        except Exception as exc:  # a broken plugin must not take the tool down
            state.failed.append((ep.name, f"{type(exc).__name__}: {exc}"))
            continue
        dist_name = dist.metadata["Name"] if dist is not None else None
        state.infos[ep.name] = PluginInfo(
            name=ep.name,
            module=ep.value,
            distribution=dist_name,
            version=dist.version if dist is not None else None,
            builtin=dist_name == "automl",
            hooks=tuple(sorted(h.name for h in pm.get_hookcallers(module) or [])),
        )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin_name = pm.get_name(exc.plugin) if exc.plugin is not None else "?"
        state.failed.append((plugin_name or "?", str(exc)))
        if exc.plugin is not None:
            pm.unregister(exc.plugin)
            state.infos.pop(plugin_name, None)
    return state


def get_state() -> _State:
    global _state
    if _state is None:
        _state = _load()
    return _state


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading entry points on first use."""
    return get_state().pm


def reset() -> None:
    """Forget loaded plugins and registries (tests; after installing a package)."""
    global _state
    _state = None


def failed_plugins() -> list[tuple[str, str]]:
    """``(name, reason)`` for each plugin that was skipped."""
    state = get_state()
    _registries(state)
    return list(state.failed)


def warn_failed(stream: Any = None) -> None:
    """Print one line per skipped plugin to stderr."""
    stream = stream or sys.stderr
    for name, reason in failed_plugins():
        print(f"warning: plugin '{name}' skipped: {reason}", file=stream)


def register_plugin(plugin: object, name: str) -> None:
    """Register an in-process plugin object (for tests and embedding)."""
    state = get_state()
    state.pm.register(plugin, name=name)
    state.pm.check_pending()
    state.tasks = state.backbones = None


def unregister_plugin(name: str) -> None:
    state = get_state()
    plugin = state.pm.get_plugin(name)
    if plugin is not None:
        state.pm.unregister(plugin)
    state.tasks = state.backbones = None


def _collect(state: _State, hook_name: str, base: type, kind: str) -> dict[str, type]:
    found: dict[str, type] = {}
    hook = getattr(state.pm.hook, hook_name)
    for impl in reversed(hook.get_hookimpls()):
        plugin_name = impl.plugin_name

        def register(cls: type, _plugin: str = plugin_name) -> None:
            if not isinstance(cls, type) or not issubclass(cls, base):
                raise PluginError(
                    f"registered {cls!r}, expected a subclass of {base.__module__}.{base.__name__}",
                    field=f"plugin '{_plugin}'",
                )
            problems = getattr(cls, "contract_problems", lambda: [])()
            if problems:
                raise PluginError(
                    f"{kind} class {cls.__name__} breaks the contract: " + "; ".join(problems),
                    field=f"plugin '{_plugin}'",
                )
            if cls.name in found:
                other = state.owners.get(f"{kind}:{cls.name}", "?")
                raise PluginError(
                    f"{kind} '{cls.name}' is registered by both '{other}' and '{_plugin}'",
                    field=f"plugin '{_plugin}'",
                )
            found[cls.name] = cls
            state.owners[f"{kind}:{cls.name}"] = _plugin

        try:
            impl.function(register=register)
        except PluginError as exc:
            state.failed.append((plugin_name, exc.message))
        except Exception as exc:
            state.failed.append((plugin_name, f"{hook_name} raised {type(exc).__name__}: {exc}"))
    return found


def _registries(state: _State) -> None:
    if state.tasks is None or state.backbones is None:
        from automl.backbone import Backbone
        from automl.task import Task

        state.failed = [f for f in state.failed if not f[1].startswith("automl_register_")]
        state.tasks = _collect(state, "automl_register_tasks", Task, "task")
        state.backbones = _collect(state, "automl_register_backbones", Backbone, "backbone")


def get_tasks() -> dict[str, type[Task]]:
    """Registered task classes by name."""
    state = get_state()
    _registries(state)
    assert state.tasks is not None
    return dict(state.tasks)


def get_backbones() -> dict[str, type[Backbone]]:
    """Registered backbone classes by name."""
    state = get_state()
    _registries(state)
    assert state.backbones is not None
    return dict(state.backbones)


def owner_of(kind: str, name: str) -> str | None:
    """Which plugin registered task/backbone *name*."""
    state = get_state()
    _registries(state)
    return state.owners.get(f"{kind}:{name}")


def get_task(name: str, *, file: str | None = None, field: str = "task") -> type[Task]:
    tasks = get_tasks()
    if name not in tasks:
        raise PluginError(
            f"unknown task '{name}'{did_you_mean(name, tasks)}; installed tasks: {one_of(tasks)}",
            file=file,
            field=field,
        )
    return tasks[name]


def get_backbone(name: str, *, file: str | None = None, field: str = "backbone") -> type[Backbone]:
    backbones = get_backbones()
    if name not in backbones:
        raise PluginError(
            f"unknown backbone '{name}'{did_you_mean(name, backbones)}; "
            f"installed backbones: {one_of(backbones)}",
            file=file,
            field=field,
        )
    return backbones[name]


def plugin_infos(include_builtin: bool = False) -> list[PluginInfo]:
    """Installed plugins with the tasks and backbones each registered."""
    state = get_state()
    _registries(state)
    out = []
    for name, info in sorted(state.infos.items()):
        if info.builtin and not include_builtin:
            continue
        tasks = tuple(sorted(k.split(":", 1)[1] for k, v in state.owners.items() if v == name and k.startswith("task:")))
        backbones = tuple(
            sorted(k.split(":", 1)[1] for k, v in state.owners.items() if v == name and k.startswith("backbone:"))
        )
        out.append(PluginInfo(**{**info.__dict__, "tasks": tasks, "backbones": backbones}))
    return out
