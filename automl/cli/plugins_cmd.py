"""``automl plugins``: installed plugins with their tasks and backbones."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from automl import plugins


@click.group(name="plugins", invoke_without_command=True)
@click.option("--all", "include_all", is_flag=True, help="Include the built-in plugins.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def command(ctx: click.Context, include_all: bool, as_json: bool) -> None:
    """List installed plugins, the tasks and backbones each provides, and any that failed."""
    if ctx.invoked_subcommand is not None:
        return
    infos = plugins.plugin_infos(include_builtin=include_all)
    failed = plugins.failed_plugins()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "plugins": [
                        {
                            "name": i.name,
                            "module": i.module,
                            "distribution": i.distribution,
                            "version": i.version,
                            "builtin": i.builtin,
                            "tasks": list(i.tasks),
                            "backbones": list(i.backbones),
                            "hooks": list(i.hooks),
                        }
                        for i in infos
                    ],
                    "failed": [{"name": n, "reason": r} for n, r in failed],
                },
                indent=2,
            )
        )
        return
    console = Console()
    if not infos:
        console.print("No third-party plugins installed." + ("" if include_all else " Use --all to include the built-in ones."))
    else:
        tasks = plugins.get_tasks()
        backbones = plugins.get_backbones()
        table = Table(title="automl plugins", title_justify="left")
        table.add_column("plugin", style="bold", no_wrap=True)
        table.add_column("package", no_wrap=True)
        table.add_column("provides")
        for info in infos:
            provides = [f"task [cyan]{t}[/]: {tasks[t].description}" for t in info.tasks]
            provides += [f"backbone [magenta]{b}[/]: {backbones[b].description}" for b in info.backbones]
            hooks = [h for h in info.hooks if h not in ("automl_register_tasks", "automl_register_backbones")]
            if hooks:
                provides.append("[dim]hooks: " + ", ".join(hooks) + "[/]")
            package = f"{info.distribution or '?'} {info.version or ''}".strip()
            if info.builtin:
                package += " (built-in)"
            table.add_row(info.name, package, "\n".join(provides) or "-")
        console.print(table)
    for name, reason in failed:
        click.echo(f"warning: plugin '{name}' skipped: {reason}", err=True)


@command.command(name="new")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["task", "backbone", "callback"]),
    default="task",
    show_default=True,
    help="What the plugin provides: a task, a backbone, or callbacks on trial and run events.",
)
@click.option("--dir", "directory", type=click.Path(path_type=Path), help="Where to write the package (default: ./NAME).")
def new_cmd(name: str, kind: str, directory: Path | None) -> None:
    """Write a new plugin package NAME to start from: pyproject.toml with the entry point,
    the plugin module, a test, sample data and a recipe that runs one quick trial."""
    from automl.scaffold import WHAT, created_files, new_plugin, plugin_names  # when the command runs: `automl --help` stays fast

    target = new_plugin(name, kind=kind, directory=directory)
    names = plugin_names(name)
    console = Console(highlight=False)
    console.print(f"Created the {kind} plugin [bold]{names.plugin}[/] in {target}: {WHAT[kind]}.")
    for file in created_files(target):
        console.print(f"  {file}", markup=False)
    console.print("Next:")
    for step in (
        f"cd {target}",
        "pip install -e '.[test]'",
        "automl plugins",
        "pytest",
        "automl run sample/recipe.yaml --output runs/sample",
    ):
        console.print(f"  {step}", markup=False, soft_wrap=True)
