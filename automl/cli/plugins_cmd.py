"""``automl plugins``: installed plugins with their tasks and backbones."""

from __future__ import annotations

import json

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
        table.add_column("plugin", style="bold")
        table.add_column("package")
        table.add_column("provides")
        table.add_column("hooks", style="dim")
        for info in infos:
            provides = [f"task [cyan]{t}[/]: {tasks[t].description}" for t in info.tasks]
            provides += [f"backbone [magenta]{b}[/]: {backbones[b].description}" for b in info.backbones]
            package = f"{info.distribution or '?'} {info.version or ''}".strip()
            if info.builtin:
                package += " (built-in)"
            hooks = [h for h in info.hooks if h not in ("automl_register_tasks", "automl_register_backbones")]
            table.add_row(info.name, package, "\n".join(provides) or "-", "\n".join(hooks) or "-")
        console.print(table)
    for name, reason in failed:
        click.echo(f"warning: plugin '{name}' skipped: {reason}", err=True)
