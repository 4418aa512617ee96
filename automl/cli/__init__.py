"""The ``automl`` command line: one command per module (each exposes ``command``), each a
thin layer over the library.

User errors (:class:`automl.errors.UserError`) print one line and exit 2; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from automl import __version__, plugins
from automl.errors import UserError

COMMAND_MODULES = (
    "automl.cli.run_cmd",
    "automl.cli.worker_cmd",
    "automl.cli.plugins_cmd",
    "automl.cli.recipe_cmd",
    "automl.cli.leaderboard_cmd",
    "automl.cli.compare_cmd",
    "automl.cli.report_cmd",
    "automl.cli.predict_cmd",
    "automl.cli.explain_cmd",
    "automl.cli.export_cmd",
    "automl.cli.dashboard_cmd",
    "automl.cli.serve_cmd",
)


class AutomlGroup(click.Group):
    """Turns :class:`UserError` into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=AutomlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="automl")
@click.option("--debug", is_flag=True, envvar="AUTOML_DEBUG", help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Fine-tune pretrained models on your task: recipes, Optuna search, plugins.

    \b
    automl recipe check recipes/fraud.yaml   validate a recipe and its data
    automl run recipes/fraud.yaml            search, export the best model, report
    automl leaderboard runs/fraud            the trials of a run, best first
    automl predict runs/fraud/best data.csv  predictions from the exported model
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if debug and not os.environ.get("AUTOML_DEBUG"):
        # Worker processes inherit it: their errors then come with tracebacks too.
        os.environ["AUTOML_DEBUG"] = "1"
        ctx.call_on_close(lambda: os.environ.pop("AUTOML_DEBUG", None))


_loaded = False


def _load_commands() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command a later release adds
                continue
            raise
        cli.add_command(module.command)
    try:
        plugins.get_plugin_manager().hook.automl_register_commands(cli=cli)
    except Exception as exc:  # a plugin's command must not break the CLI
        click.echo(f"warning: a plugin failed to add its commands: {exc}", err=True)


def main(argv: list[str] | None = None) -> None:
    _load_commands()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli.main(args=argv, prog_name="automl", standalone_mode=True)


_load_commands()

if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
