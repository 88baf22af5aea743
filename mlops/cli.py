"""The `mlops` console command: one Typer app, a sub-command group per room."""

from __future__ import annotations

import sys
from importlib.metadata import version as dist_version
from typing import Annotated

import typer

from mlops import commands, verbosity

app = typer.Typer(
    name="mlops",
    help="MLOps platform on AWS SageMaker, with a MovieLens recommender as its worked example.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            envvar=verbosity.VERBOSE_ENV,
            help="Also show the SDKs' INFO/DEBUG logs, notices and warnings (accepted anywhere).",
        ),
    ] = False,
) -> None:
    """MLOps platform on AWS SageMaker, with a MovieLens recommender as its worked example."""
    verbosity.configure(verbose)


@app.command()
def version() -> None:
    """Print the platform's version."""

    typer.echo(dist_version("mlops-movielens"))


def _register() -> None:
    """Attach each room's command group; each module owns its own `app`."""
    # Imported lazily per group so `mlops --help` stays fast and a room's heavy imports
    # (TensorFlow, Feast) load only when that room's command runs.

    for name, group in commands.groups():
        app.add_typer(group, name=name)


def main() -> None:
    """Entry point of the `mlops` console script."""
    _register()
    # `mlops pipeline definition --verbose` reads as naturally as `mlops --verbose pipeline definition`.
    sys.argv[1:] = verbosity.hoist_verbose(sys.argv[1:])
    app()
