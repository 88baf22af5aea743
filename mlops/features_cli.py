"""`mlops features ...`: build the Feast repo, materialize it, show a user's online features."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from dataset.dataset_names import DatasetName
from features import feast_repo
from features.definition import DEFINITION_VERSION
from features.online import FeastOnlineReader, UnknownEntityError
from features.sagemaker import feature_group_specs
from mlops.cli_common import JsonOpt, err, fail

app = typer.Typer(
    help="Features: the one definition, its Feast repo (local) and its SageMaker Feature Store export.",
    no_args_is_help=True,
)

DatasetOpt = Annotated[DatasetName, typer.Option("--dataset", "-d", help="The dataset.")]


def _log(message: str) -> None:
    """Progress goes to stderr, so stdout stays one JSON object."""
    err.print(f"[dim]features:[/dim] {message}", highlight=False)


@contextlib.contextmanager
def _feast_quiet_stdout(label: str) -> Iterator[None]:
    """Feast prints progress on stdout; send it to stderr under a spinner instead."""
    with err.status(label, spinner="dots"), contextlib.redirect_stdout(sys.stderr):
        yield


def _jsonable(value: Any) -> Any:
    """JSON has no NaN: a missing float becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@app.command()
def build(
    dataset: DatasetOpt = DatasetName.ML_100K,
    every_days: Annotated[
        int,
        typer.Option(min=1, help="Days between offline snapshots (each snapshot: every entity as of then)."),
    ] = 7,
    as_json: JsonOpt = False,
) -> None:
    """Compute feature snapshots from the dataset's tables, write the Feast repo and apply it."""

    try:
        with _feast_quiet_stdout(f"building the Feast repo for {dataset}"):
            report = feast_repo.build(dataset, every_days=every_days, log=_log)
    except (FileNotFoundError, ValueError) as e:
        raise fail(str(e), as_json) from None
    out = report.as_dict()
    if as_json:
        typer.echo(json.dumps(out))
    else:
        typer.echo(
            f"{dataset}: {out['snapshots']} snapshots {out['first_snapshot']} .. {out['last_snapshot']}, "
            f"rows {out['rows']}, definition {out['definition_version']}, repo {out['repo']}"
        )


@app.command()
def materialize(dataset: DatasetOpt = DatasetName.ML_100K, as_json: JsonOpt = False) -> None:
    """Load the latest features into the SQLite online store (builds the repo first if needed)."""

    repo = feast_repo.FeastRepo.for_dataset(dataset)
    try:
        try:
            built = repo.manifest().get("definition_version")
        except feast_repo.RepoNotBuiltError:
            built = None
        if built != DEFINITION_VERSION:
            why = (
                "not built yet"
                if built is None
                else f"built from definition {built}, not {DEFINITION_VERSION}"
            )
            _log(f"the Feast repo is {why}: building it first")
            with _feast_quiet_stdout(f"building the Feast repo for {dataset}"):
                feast_repo.build(dataset, log=_log)
        with _feast_quiet_stdout(f"materializing {dataset}"):
            out = feast_repo.materialize(dataset, log=_log)
    except (FileNotFoundError, ValueError) as e:
        raise fail(str(e), as_json) from None
    if as_json:
        typer.echo(json.dumps(out))
    else:
        typer.echo(f"{dataset}: online store holds {out['online_entities']} ({out['start']} .. {out['end']})")


@app.command()
def show(
    user_id: Annotated[
        int | None, typer.Option("--user-id", help="Show this user's online features.")
    ] = None,
    movie_id: Annotated[
        int | None, typer.Option("--movie-id", help="Show this movie's online features.")
    ] = None,
    dataset: DatasetOpt = DatasetName.ML_100K,
    as_json: JsonOpt = False,
) -> None:
    """Print one user's (or movie's) features from the online store."""
    if (user_id is None) == (movie_id is None):
        raise fail("give exactly one of --user-id N or --movie-id N", as_json)

    view, key_name, key = (
        ("user_features", "user_id", user_id)
        if user_id is not None
        else ("movie_features", "movie_id", movie_id)
    )
    assert key is not None
    try:
        with _feast_quiet_stdout("reading the online store"):
            reader = FeastOnlineReader(dataset)
            values = reader.features(view, key)
        manifest = reader.repo.manifest()
    except (FileNotFoundError, UnknownEntityError) as e:
        raise fail(str(e), as_json) from None
    out = {
        "dataset": dataset,
        "view": view,
        key_name: key,
        "definition_version": manifest["definition_version"],
        "as_of": manifest["last_snapshot"],
        # Set when the pipeline's Prepare step pushed its rows after the last materialize.
        "pushed": manifest.get("pushed"),
        "features": {name: _jsonable(v) for name, v in values.items()},
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(f"{view} {key_name}={key} (as of {out['as_of']}, definition {out['definition_version']})")
    width = max(len(n) for n in values)
    for name, value in out["features"].items():
        typer.echo(f"  {name:<{width}}  {value}")


@app.command()
def sagemaker(as_json: JsonOpt = False) -> None:
    """Print the SageMaker Feature Store feature groups the definition exports."""

    specs = feature_group_specs()
    if as_json:
        typer.echo(json.dumps({"feature_groups": specs}))
        return
    for spec in specs:
        typer.echo(
            f"{spec['FeatureGroupName']}: record id {spec['RecordIdentifierFeatureName']}, "
            f"event time {spec['EventTimeFeatureName']}"
        )
        for d in spec["FeatureDefinitions"]:
            typer.echo(f"  {d['FeatureName']:<40} {d['FeatureType']}")
