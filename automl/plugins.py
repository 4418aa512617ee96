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
from typing import Any

import pluggy

from automl import hookspecs
from automl.backbone import Backbone
from automl.errors import PluginError, did_you_mean, one_of
from automl.hookspecs import API_VERSION
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
    #: While the registries are being built: what the plugins called so far registered,
    #: by kind ("task", "backbone"). A plugin's hook that asks for the registry (to
    #: subclass a built-in task, say) gets these instead of starting the build again.
    partial: dict[str, dict[str, type]] | None = None


_state: _State | None = None


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {item.strip() for item in raw.split(",") if item.strip()}


def _check_api_version(name: str, module: object) -> None:
    declared = getattr(module, "automl_api_version", API_VERSION)
    major = str(declared).split(".")[0]
    if major != API_VERSION.split(".")[0]:
        raise PluginError(
            f"targets automl plugin API {declared}, this automl provides API {API_VERSION}; "
            f"upgrade the plugin or install a matching automl",
            field=f"plugin '{name}'",
        )


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _hook_problems(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hooks *plugin* implements that automl does not have, and ``automl_*`` functions it
    forgot to mark with ``@automl.hookimpl`` (automl would never call either)."""
    known = sorted(name for name in dir(hookspecs) if name.startswith("automl_"))
    problems = []
    for caller in pm.get_hookcallers(plugin) or []:
        if not caller.has_spec() and any(
            impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()
        ):
            problems.append(
                f"implements unknown hook '{caller.name}'{did_you_mean(caller.name, known)}; "
                f"automl's hooks are listed in docs/hooks.md"
            )
    implemented = {caller.name for caller in pm.get_hookcallers(plugin) or []}
    for attr in known:
        value = getattr(plugin, attr, None)
        if callable(value) and attr not in implemented and pm.parse_hookimpl_opts(plugin, attr) is None:
            problems.append(f"function {attr} is not marked with @automl.hookimpl, so automl would never call it")
    return problems


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Register *plugin*, or raise :class:`PluginError` naming it and what it did wrong
    (the plugin is then left unregistered)."""
    _check_api_version(name, plugin)
    try:
        pm.register(plugin, name=name)
    except ValueError as exc:  # pluggy: name or object already registered
        raise PluginError(_one_line(exc), field=f"plugin '{name}'") from None
    except pluggy.PluginValidationError as exc:  # a hookimpl whose arguments the spec lacks
        raise PluginError(_one_line(exc), field=f"plugin '{name}'") from None
    problems = _hook_problems(pm, plugin)
    if problems:
        pm.unregister(plugin)
        raise PluginError("; ".join(problems), field=f"plugin '{name}'")


def _load() -> _State:
    pm = pluggy.PluginManager("automl")
    pm.add_hookspecs(hookspecs)
    state = _State(pm=pm)
    allow = _env_list("AUTOML_PLUGINS")
    block = _env_list("AUTOML_BLOCK_PLUGINS") or set()

    def dist_name(ep: importlib.metadata.EntryPoint) -> str | None:
        dist = getattr(ep, "dist", None)
        return dist.metadata["Name"] if dist is not None else None

    # Built-in plugins first, so a third-party plugin cannot take over a built-in's name:
    # of two plugins registering the same task, the one registered later is refused.
    entry_points = sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (dist_name(e) != "automl", e.name)
    )
    for ep in entry_points:
        if ep.name in block or (allow is not None and ep.name not in allow):
            continue
        if pm.has_plugin(ep.name):
            continue
        dist = getattr(ep, "dist", None)
        try:
            module = ep.load()
            _register(pm, module, ep.name)
        except PluginError as exc:
            state.failed.append((ep.name, exc.message))
            continue
        except Exception as exc:  # a broken plugin must not take the tool down
            state.failed.append((ep.name, f"failed to import {ep.value}: {type(exc).__name__}: {_one_line(exc)}"))
            continue
        state.infos[ep.name] = PluginInfo(
            name=ep.name,
            module=ep.value,
            distribution=dist_name(ep),
            version=dist.version if dist is not None else None,
            builtin=dist_name(ep) == "automl",
            hooks=tuple(sorted(h.name for h in pm.get_hookcallers(module) or [])),
        )
    pm.check_pending()  # _register refused every plugin with an unknown hook
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
    """Register an in-process plugin object (for tests and embedding).

    Raises :class:`PluginError` (naming *name*) for a plugin that targets another API
    version or implements a hook automl does not have; the plugin is then not registered.
    Problems with what it registers show in :func:`failed_plugins`, as for installed ones.
    """
    state = get_state()
    _register(state.pm, plugin, name)
    state.tasks = state.backbones = None


def unregister_plugin(name: str) -> None:
    state = get_state()
    plugin = state.pm.get_plugin(name)
    if plugin is not None:
        state.pm.unregister(plugin)
    state.failed = [f for f in state.failed if f[0] != name]
    state.tasks = state.backbones = None


def _collect(
    state: _State, hook_name: str, base: type, kind: str
) -> tuple[dict[str, type], dict[str, str], dict[str, str]]:
    """``(classes by name, {name: plugin}, {plugin: reason})``: what the plugins registered
    through *hook_name*, who registered it, and the plugins that broke the contract."""
    found: dict[str, type] = {}
    owners: dict[str, str] = {}
    bad: dict[str, str] = {}
    if state.partial is not None:
        state.partial[kind] = found  # the same dict: it grows as plugins register
    hook = getattr(state.pm.hook, hook_name)
    for impl in hook.get_hookimpls():  # registration order: the first to take a name keeps it
        plugin_name = impl.plugin_name
        mine: dict[str, type] = {}

        def register(cls: type, _mine: dict[str, type] = mine) -> None:
            if not isinstance(cls, type) or not issubclass(cls, base):
                what = cls.__name__ if isinstance(cls, type) else f"{cls!r} (of type {type(cls).__name__})"
                raise PluginError(
                    f"{hook_name} registered {what}, expected a subclass of {base.__module__}.{base.__name__}"
                )
            problems = cls.contract_problems()  # type: ignore[attr-defined]
            if problems:
                raise PluginError(f"{kind} class {cls.__name__} breaks the contract: " + "; ".join(problems))
            if cls.name in _mine:
                raise PluginError(f"{hook_name} registered {kind} '{cls.name}' twice")
            if cls.name in found:
                raise PluginError(f"{kind} '{cls.name}' is registered by both '{owners[cls.name]}' and '{plugin_name}'")
            _mine[cls.name] = cls

        try:
            impl.function(register=register)
        except PluginError as exc:
            bad[plugin_name] = exc.message
            continue
        except Exception as exc:
            bad[plugin_name] = f"{hook_name} raised {type(exc).__name__}: {_one_line(exc)}"
            continue
        found.update(mine)
        owners.update(dict.fromkeys(mine, plugin_name))
    return found, owners, bad


def _registries(state: _State) -> None:
    if state.tasks is not None and state.backbones is not None:
        return
    if state.partial is not None:
        return  # asked from a plugin's hook during the build: see _State.partial
    state.partial = {}
    try:
        while True:
            tasks, task_owners, bad = _collect(state, "automl_register_tasks", Task, "task")
            backbones, backbone_owners, bad_backbones = _collect(state, "automl_register_backbones", Backbone, "backbone")
            bad = bad_backbones | bad
            if not bad:
                break
            # A plugin that breaks the contract is skipped as a whole: none of its hooks run,
            # and what it registered before the error is dropped.
            for name, reason in bad.items():
                state.failed.append((name, reason))
                state.pm.unregister(name=name)
                state.infos.pop(name, None)
    finally:
        state.partial = None
    state.tasks, state.backbones = tasks, backbones
    state.owners = {f"task:{n}": o for n, o in task_owners.items()}
    state.owners.update({f"backbone:{n}": o for n, o in backbone_owners.items()})


def get_tasks() -> dict[str, type[Task]]:
    """Registered task classes by name."""
    state = get_state()
    _registries(state)
    if state.tasks is None:  # from a plugin's hook, during the build
        return dict((state.partial or {}).get("task", {}))  # type: ignore[arg-type]
    return dict(state.tasks)


def get_backbones() -> dict[str, type[Backbone]]:
    """Registered backbone classes by name."""
    state = get_state()
    _registries(state)
    if state.backbones is None:  # from a plugin's hook, during the build
        return dict((state.partial or {}).get("backbone", {}))  # type: ignore[arg-type]
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
