"""The command groups of the `mlops` CLI, one per room; each room adds its group here."""

from __future__ import annotations

import importlib

import typer

# (command name, module holding a Typer `app`). A module that is missing is a bug, not an option.
_GROUPS: list[tuple[str, str]] = [
    ("data", "mlops.data_cli"),
    ("features", "mlops.features_cli"),
    ("serve", "inference.cli"),
    ("images", "mlops.images"),
    ("train", "mlops.train"),
    ("pipeline", "mlops.pipeline_cli"),
    ("infra", "infra.cli"),
]


def groups() -> list[tuple[str, typer.Typer]]:
    """Return every command group as (name, Typer app)."""
    out: list[tuple[str, typer.Typer]] = []
    for name, module in _GROUPS:
        out.append((name, importlib.import_module(module).app))
    return out
