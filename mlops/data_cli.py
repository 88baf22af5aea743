"""`mlops data ...`: fetch, validate and version the MovieLens datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dataset import paths, store, versioning
from dataset.download import SourceError
from dataset.schema import DATASETS, dataset_spec
from dataset.tables import dataset_version
from mlops.cli_common import JsonOpt, err, fail

app = typer.Typer(help="MovieLens data: fetch, validate, version (DVC).", no_args_is_help=True)

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help=f"One of {', '.join(DATASETS)}.")]


def _log(message: str) -> None:
    """Progress and notes go to stderr, so stdout stays one JSON object."""
    err.print(f"data: {message}", highlight=False, markup=False, soft_wrap=True)


def _check_dataset(dataset: str) -> None:
    """Refuse an unknown dataset name with the list of known ones."""
    try:
        dataset_spec(dataset)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--dataset") from None


def _summary(report: dict[str, Any]) -> str:
    """One human line per dataset report."""
    return (
        f"{report['dataset']}: ratings rows_in={report['rows_in']} accepted={report['accepted']} "
        f"rejected={report['rejected']} (all tables: {report['rejected_all_tables']} rejected) "
        f"version={report['version']}"
    )


@app.command()
def fetch(
    dataset: DatasetOpt,
    source: Annotated[
        str | None,
        typer.Option(
            help="A GroupLens-layout zip or directory: local path, s3://bucket/key, or http(s) URL."
        ),
    ] = None,
    grouplens_url: Annotated[
        str | None,
        typer.Option(help="Base URL of the GroupLens archives (env MLOPS_GROUPLENS_URL)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even if the data is in place.")] = False,
    raw_only: Annotated[
        bool, typer.Option(help="Only store the raw files (the dvc.yaml fetch stage).")
    ] = False,
    dvc: Annotated[bool, typer.Option(help="Record the result in dvc.lock (dvc commit).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Fetch a dataset into the data directory, validate it and store its tables (no-op if present)."""
    _check_dataset(dataset)
    try:
        with err.status(f"fetching {dataset}", spinner="dots"):
            result = store.fetch(
                dataset,
                source=source,
                grouplens_url=grouplens_url,
                force=force,
                raw_only=raw_only,
                dvc_commit=dvc,
                log=_log,
            )
    except (SourceError, store.DataError, versioning.VersioningError, ValueError, OSError) as e:
        raise fail(str(e), as_json, {"dataset": dataset}) from None
    out = {
        "dataset": dataset,
        "skipped": result.skipped,
        "source": result.source,
        "version": result.report.get("version"),
        "data_dir": str(paths.data_dir()),
    }
    if "accepted" in result.report:
        out.update({k: result.report[k] for k in ("rows_in", "accepted", "rejected", "counts")})
    if as_json:
        typer.echo(json.dumps(out))
    else:
        verb = "already present" if result.skipped else f"fetched from {result.source}"
        typer.echo(f"{dataset}: {verb}, version {out['version']}")


@app.command()
def validate(
    dataset: DatasetOpt,
    policy: Annotated[
        store.Policy, typer.Option(help="fail: exit 1 on any rejected row. quarantine: set them aside.")
    ] = store.Policy.FAIL,
    as_json: JsonOpt = False,
) -> None:
    """Validate the raw files row by row and (unless `fail` meets a rejection) write the tables."""
    _check_dataset(dataset)
    try:
        with err.status(f"validating {dataset}", spinner="dots"):
            report = store.validate(dataset, policy=policy)
    except (store.DataError, OSError) as e:
        raise fail(str(e), as_json, {"dataset": dataset}) from None
    if as_json:
        typer.echo(json.dumps(report))
    else:
        typer.echo(_summary(report))
        for name, table in report["tables"].items():
            if table["reasons"]:
                typer.echo(f"  {name} ({table['file']}): {table['reasons']}")
    for error in report["file_errors"]:
        err.print(f"error: {error['message']}", style="red", highlight=False, markup=False, soft_wrap=True)
    if report["file_errors"] or (policy is store.Policy.FAIL and report["rejected_all_tables"]):
        if not report["file_errors"]:
            err.print(
                f"{report['rejected_all_tables']} rows rejected; see the samples above or in --json, "
                "or keep the accepted rows with --policy quarantine",
                style="red",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        raise typer.Exit(1)
    if report.get("quarantine"):
        _log(f"rejected rows written to {paths.data_dir() / report['quarantine']}")


@app.command()
def version(dataset: DatasetOpt) -> None:
    """Print the dataset version (DVC's md5 of the raw directory)."""

    _check_dataset(dataset)
    try:
        typer.echo(dataset_version(dataset))
    except FileNotFoundError as e:
        raise fail(str(e), False) from None


def _datasets(dataset: str | None) -> list[str]:
    """The datasets a push/pull acts on: one, or every dataset present in the data dir."""
    if dataset:
        _check_dataset(dataset)
        return [dataset]
    return list(DATASETS)


@app.command()
def push(
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Default: every dataset.")] = None,
    remote: Annotated[str | None, typer.Option(help="DVC remote name (default: the configured one).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Push the tracked raw data and tables to a DVC remote (`dvc push`)."""
    names = _datasets(dataset)
    try:
        with err.status("dvc push", spinner="dots"):
            count = versioning.push(names, remote)
    except versioning.VersioningError as e:
        raise fail(str(e), as_json) from None
    out = {"datasets": names, "remote": remote, "pushed": count}
    typer.echo(json.dumps(out) if as_json else f"pushed {count} files to {remote or 'the default remote'}")


@app.command()
def pull(
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Default: every dataset.")] = None,
    remote: Annotated[str | None, typer.Option(help="DVC remote name (default: the configured one).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pull the raw data and tables dvc.lock names from a DVC remote (`dvc pull`)."""
    names = _datasets(dataset)
    try:
        with err.status("dvc pull", spinner="dots"):
            count = versioning.pull(names, remote)
    except versioning.VersioningError as e:
        raise fail(str(e), as_json) from None
    out = {"datasets": names, "remote": remote, "fetched": count}
    typer.echo(json.dumps(out) if as_json else f"fetched {count} files from {remote or 'the default remote'}")


@app.command()
def remote(
    name: Annotated[str, typer.Option(help="Remote name, e.g. aws.")],
    url: Annotated[str, typer.Option(help="s3://bucket/prefix or a local directory.")],
    endpoint_url: Annotated[
        str | None, typer.Option(help="S3 endpoint (a moto server, MinIO); default AWS.")
    ] = None,
    default: Annotated[bool, typer.Option(help="Make it the default remote.")] = False,
) -> None:
    """Configure a DVC remote in .dvc/config.local (not committed)."""
    try:
        path: Path = versioning.set_remote(name, url, endpoint_url=endpoint_url, default=default)
    except versioning.VersioningError as e:
        raise fail(str(e), False) from None
    typer.echo(f"remote {name} -> {url} written to {path}")
