"""`mlops pipeline`: print the definition, run it locally, upsert/start/status it in SageMaker."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from dataset.dataset_names import DatasetName
from mlops.cli_common import JsonOpt, parse_params
from pipelines import control
from pipelines.definition import definition_json
from pipelines.local import LocalRunError, run_local
from pipelines.settings import load_settings

app = typer.Typer(
    name="pipeline",
    help="The SageMaker training pipeline: definition, local run, AWS upsert/start/status.",
    no_args_is_help=True,
)
_err = Console(stderr=True)

SettingsOption = Annotated[
    Path | None,
    typer.Option("--settings", help="JSON file of PipelineSettings fields (see docs/pipeline.md)."),
]


def _settings(path: Path | None, **overrides: object) -> Any:

    try:
        return load_settings(path, **overrides)
    except ValueError as error:
        _err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error


def _emit(payload: dict[str, Any], as_json: bool, human: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload, sort_keys=True, default=str) + "\n")
    else:
        _err.print(human)


@app.command()
def definition(
    settings: SettingsOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
) -> None:
    """Print the pipeline definition JSON (built offline, byte-identical for the same settings)."""

    text = definition_json(_settings(settings))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        _err.print(f"wrote {output} ({len(text)} bytes)")


@app.command()
def upsert(settings: SettingsOption = None, as_json: JsonOpt = False) -> None:
    """Create or update the pipeline in SageMaker (AWS_ENDPOINT_URL points it at a moto server)."""

    s = _settings(settings)
    result = control.upsert(control.sagemaker_client(s), s, definition_json(s))
    _emit(
        {
            "pipeline_arn": result.pipeline_arn,
            "created": result.created,
            "definition_sha256": result.definition_sha256,
        },
        as_json,
        f"{'created' if result.created else 'updated'} {result.pipeline_arn}",
    )


@app.command()
def start(
    settings: SettingsOption = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Parameter override NAME=VALUE (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start an execution of the upserted pipeline."""

    s = _settings(settings)
    overrides = parse_params(param)
    try:
        arn = control.start(control.sagemaker_client(s), s, overrides)
    except ValueError as error:
        _err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    _emit({"execution_arn": arn, "parameters": overrides}, as_json, f"started {arn}")


@app.command()
def status(
    settings: SettingsOption = None,
    execution_arn: Annotated[
        str | None, typer.Option("--execution-arn", help="Default: the pipeline's latest execution.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show an execution's status (and its steps where the service lists them)."""

    s = _settings(settings)
    client = control.sagemaker_client(s)
    try:
        arn = execution_arn or control.latest_execution(client, s)
    except LookupError as error:
        _err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    report = control.status(client, arn)
    lines = [f"{arn}: {report['status']}"] + [
        f"  {step['name']}: {step['status']} {step['failure_reason'] or ''}" for step in report["steps"]
    ]
    _emit(report, as_json, "\n".join(lines))


@app.command()
def run(
    local: Annotated[bool, typer.Option("--local", help="Run in Docker with SageMaker local mode.")] = False,
    dataset: Annotated[DatasetName, typer.Option("--dataset", help="The dataset to train on.")] = (
        DatasetName.ML_100K
    ),
    settings: SettingsOption = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Parameter override NAME=VALUE (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the pipeline: `--local` runs it in Docker and registers into the moto server's registry."""
    if not local:
        _err.print(
            "[red]error:[/red] only `--local` runs here; in AWS use `mlops pipeline upsert` then "
            "`mlops pipeline start`"
        )
        raise typer.Exit(2)

    overrides = parse_params(param)
    try:
        result = run_local(
            dataset=dataset, settings_path=settings, parameter_overrides=overrides, console=_err
        )
    except ValueError as error:
        _err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    except LocalRunError as error:
        _err.print(f"[red]pipeline failed:[/red] {error}")
        if as_json:
            sys.stdout.write(json.dumps(error.as_dict(), sort_keys=True, default=str) + "\n")
        raise typer.Exit(1) from error
    _emit(result.as_dict(), as_json, result.summary())
