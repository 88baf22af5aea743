"""Build the CDK app: one Stage per environment named in cdk.json context, checked by cdk-nag."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from infra.nag import acknowledge_findings, add_nag
from infra.settings import ENV_NAMES, OVERRIDES, EnvironmentSettings, SettingsError, parse_environment
from infra.stage import EnvironmentStage


def stage_id(env: str) -> str:
    """The construct id of an environment's stage (dev -> Dev)."""
    return env.capitalize()


def selected_settings(app: cdk.App) -> list[EnvironmentSettings]:
    """Validate the environments this synth covers: `-c env=NAME`, or all of them."""
    environments = app.node.try_get_context("environments")
    if not isinstance(environments, dict) or not environments:
        raise SettingsError("cdk.json context.environments is missing or empty; add dev, staging and prod")
    chosen = app.node.try_get_context("env")
    overrides = {
        key: str(app.node.try_get_context(key)) for key in OVERRIDES if app.node.try_get_context(key)
    }
    if chosen is None:
        if overrides:
            raise SettingsError(
                f"context overrides {sorted(overrides)} need one environment; add -c env=dev|staging|prod"
            )
        names = [name for name in ENV_NAMES if name in environments]
        unknown = sorted(set(environments) - set(ENV_NAMES))
        if unknown:
            raise SettingsError(
                f"cdk.json context.environments has {unknown}; allowed are {', '.join(ENV_NAMES)}"
            )
        return [parse_environment(name, environments[name]) for name in names]
    if chosen not in environments:
        raise SettingsError(
            f"-c env={chosen!r} is not in cdk.json context.environments ({', '.join(sorted(environments))})"
        )
    return [parse_environment(chosen, environments[chosen], overrides)]


def build_app(context: dict[str, Any] | None = None, outdir: str | None = None) -> cdk.App:
    """Build the app with its stages; `context` (tests) is merged over cdk.json's."""
    app = cdk.App(context=context, outdir=outdir)
    add_nag(app)
    for settings in selected_settings(app):
        stage = EnvironmentStage(app, stage_id(settings.name), settings=settings)
        acknowledge_findings(stage)
        if stage.serving is None:
            print(
                f"note: {settings.name}: no model_package_arn, so no Serving stack "
                "(pass -c env=NAME -c model_package_arn=ARN to deploy an approved model)",
                file=sys.stderr,
            )
    return app


def project_context() -> dict[str, Any]:
    """The `context` of the project's cdk.json (what the CDK CLI passes to app.py)."""

    path = Path(__file__).resolve().parents[1] / "cdk.json"
    context = json.loads(path.read_text())["context"]
    assert isinstance(context, dict)
    return context
