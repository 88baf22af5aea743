"""What every `mlops` command group shares: the `--json` option, failing with a reason, NAME=VALUE.

Top-floor code: the command groups (data, features, pipeline, ...) import it; no room below does.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")]


def fail(message: str, as_json: bool, extra: dict[str, Any] | None = None) -> typer.Exit:
    """Report an error on stderr (and as one JSON object on stdout when asked); return the exit to raise."""
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": message, **(extra or {})}))
    err.print(f"error: {message}", style="red", highlight=False, markup=False, soft_wrap=True)
    return typer.Exit(1)


def parse_params(items: list[str] | None, option: str = "--param") -> dict[str, str]:
    """Parse repeated `NAME=VALUE` options into a dict; a malformed one exits 2 naming it."""
    parsed: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            err.print(
                f"error: {option} {item!r} is not NAME=VALUE (e.g. {option} MaxRmse=0.95)",
                style="red",
                highlight=False,
                markup=False,
            )
            raise typer.Exit(2)
        parsed[name] = value
    return parsed
