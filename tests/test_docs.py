"""Docs that list things the code defines are checked against the code, so they cannot
drift: every recipe key with its default, every hyperparameter name, every hook with its
exact signature, every command with its arguments and options, and every relative link."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click
import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from automl import hookspecs
from automl.recipe import ENGINE_HYPERPARAMETERS, DataSpec, ObjectiveSpec, ParamSpec, PrivacySpec, Recipe, SearchSpec, TrainingSpec

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: The pages this suite checks (data.md, benchmarks.md and reliability.md have their own owners).
PAGES = ["getting-started.md", "recipes.md", "hooks.md", "writing-a-plugin.md", "architecture.md", "cli.md", "integrations.md"]
_HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$", re.MULTILINE)


def sections(page: str) -> dict[str, str]:
    """Heading text -> the text up to the next heading (of any level), outside code blocks."""
    text = re.sub(r"^```.*?^```", "", (DOCS / page).read_text(), flags=re.MULTILINE | re.DOTALL)
    found = list(_HEADING.finditer(text))
    return {
        m.group(2): text[m.end() : found[i + 1].start() if i + 1 < len(found) else len(text)]
        for i, m in enumerate(found)
    }


def table_rows(section: str) -> dict[str, list[str]]:
    """First cell (a `code` name) -> the other cells, for each table row of *section*."""
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and (m := re.fullmatch(r"`([^`]+)`", cells[0])):
            rows[m.group(1)] = cells[1:]
    return rows


# --------------------------------------------------------------------------- recipes.md


def documented_default(field) -> str:  # type: ignore[no-untyped-def]
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return "`{}`"
    value = field.default
    if value is None or value is PydanticUndefined:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


MODELS = [Recipe, DataSpec, ObjectiveSpec, SearchSpec, ParamSpec, TrainingSpec, PrivacySpec]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_recipe_key_is_documented_with_its_default(model: type[BaseModel]):
    page = sections("recipes.md")
    (section,) = [text for heading, text in page.items() if heading.endswith(f"({model.__name__})")]
    rows = table_rows(section)
    fields = {name: f for name, f in model.model_fields.items() if not f.exclude}
    assert sorted(rows) == sorted(fields), f"recipes.md, section {model.__name__}: keys differ from the code"
    for name, field in fields.items():
        type_, default, meaning = rows[name]
        assert default == documented_default(field), f"{model.__name__}.{name}: documented default {default}"
        assert type_ and len(meaning) > 20, f"{model.__name__}.{name}: say its type and what it means"


def test_every_hyperparameter_name_is_documented():
    rows = table_rows(sections("recipes.md")["Hyperparameters"])
    assert sorted(rows) == sorted(ENGINE_HYPERPARAMETERS)


# --------------------------------------------------------------------------- hooks.md


def hookspec_functions() -> dict[str, object]:
    return {
        name: func
        for name, func in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(func, "automl_spec")
    }


def signature_line(name: str, func) -> str:  # type: ignore[no-untyped-def]
    sig = inspect.signature(func)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {name}({params}) -> {sig.return_annotation}"


def test_every_hook_is_documented_with_its_exact_signature():
    text = (DOCS / "hooks.md").read_text()
    specs = hookspec_functions()
    assert len(specs) >= 6
    documented = set(re.findall(r"^### `(automl_\w+)`", text, re.MULTILINE))
    assert documented == set(specs), "hooks.md headings differ from automl/hookspecs.py"
    for name, func in specs.items():
        section = text.split(f"### `{name}`", 1)[1].split("\n#", 1)[0]
        block = re.search(r"```python\n(.*?)\n```", section, re.DOTALL)
        assert block, f"hooks.md: no signature block for {name}"
        assert block.group(1).strip() == signature_line(name, func), f"hooks.md: the signature of {name} differs"


# --------------------------------------------------------------------------- cli.md


def automl_commands() -> dict[str, click.Command]:
    """``"automl run"`` -> command, for automl's own commands and its built-in plugins'."""
    from automl.cli import _load_commands, cli

    _load_commands()
    found: dict[str, click.Command] = {}

    def walk(prefix: str, group: click.Group) -> None:
        for name, command in group.commands.items():
            module = getattr(command.callback, "__module__", "") or ""
            if command.hidden or not module.startswith(("automl.", "automl_plugins.")):
                continue
            found[f"{prefix} {name}"] = command
            if isinstance(command, click.Group):
                walk(f"{prefix} {name}", command)

    walk("automl", cli)
    return found


def test_every_command_is_documented():
    commands = automl_commands()
    assert {"automl run", "automl worker", "automl plugins", "automl plugins new", "automl recipe check"} <= set(commands)
    headings = {m.group(1) for h in sections("cli.md") if (m := re.fullmatch(r"`(automl [a-z -]+)`", h))}
    assert sorted(headings) == sorted(commands), "cli.md headings differ from the commands"


@pytest.mark.parametrize("name", sorted(automl_commands()))
def test_every_argument_and_option_is_documented(name):
    command = automl_commands()[name]
    section = sections("cli.md")[f"`{name}`"]
    usage = re.search(rf"```text\n{re.escape(name)}(.*?)```", (DOCS / "cli.md").read_text(), re.DOTALL)
    documented = section + (usage.group(1) if usage else "")
    for param in command.params:
        if isinstance(param, click.Argument):
            assert param.human_readable_name in documented, f"cli.md, {name}: argument {param.human_readable_name}"
        elif isinstance(param, click.Option) and "--help" not in param.opts:
            option = max(param.opts, key=len)
            assert f"`{option}" in documented, f"cli.md, {name}: option {option}"


# --------------------------------------------------------------------------- links


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_point_to_files(page):
    text = (DOCS / page).read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        assert (DOCS / target).exists(), f"{page}: broken link {target}"
