"""Prepare step: validate the raw files, split, compute features, baseline statistics, ingest.

Runs in the ML image as a SageMaker processing job. Any rejected row fails the step: the full
validation report goes to stderr (the job log) and its summary to /opt/ml/output/message, which
SageMaker shows as the job's failure reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataset.dataset_names import DatasetName
from dataset.schema import dataset_spec
from dataset.store import Policy, build_report
from dataset.validate import validate_dataset
from dataset.versioning import dir_md5
from features.definition import feature_view
from features.push import push_features
from features.sagemaker import to_record
from pipelines.steps.runner import run_step
from training.channels import SplitPolicy, write_channels

ROOT = Path("/opt/ml/processing")
HISTOGRAM_BINS = 10
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


class PrepareError(RuntimeError):
    """The raw data cannot be used; the message says why and what to do."""


def validate_raw(
    raw_dir: Path, dataset: str, expected_version: str
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Validate the raw files with the data layer's validator; refuse any rejection."""

    spec = dataset_spec(dataset)
    if not raw_dir.is_dir() or not any(raw_dir.iterdir()):
        raise PrepareError(
            f"no raw files under {raw_dir}: "
            f"check that the InputDataUri parameter points at the raw {dataset} files"
        )
    version = dir_md5(raw_dir)
    files = {f.name: (raw_dir / f.name).read_bytes() for f in spec.files if (raw_dir / f.name).is_file()}
    result = validate_dataset(spec, files)
    report = build_report(spec, result, version, Policy.FAIL)
    if not result.ok:
        raise PrepareError(
            f"validation rejected {report['rejected_all_tables']} row(s) of {dataset} "
            f"(reasons {report['reasons']}, file errors {[e['message'] for e in report['file_errors']]}); "
            f"fix or re-fetch the raw data. Report: {json.dumps(report, sort_keys=True)}"
        )
    if expected_version not in ("", "unversioned") and expected_version != version:
        raise PrepareError(
            f"DatasetVersion parameter {expected_version!r} does not match the raw data's content hash "
            f"{version!r}: start the pipeline with DatasetVersion={version} "
            "or point InputDataUri at that version"
        )
    return result.tables, report


def baseline_statistics(frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Per numeric column: count, nulls, mean, std, quantiles and a histogram (drift baseline)."""
    out: dict[str, Any] = {}
    for table, frame in frames.items():
        columns: dict[str, Any] = {}
        for column in frame.columns:
            series = frame[column]
            if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
                continue
            values = series.dropna().to_numpy(dtype=np.float64)
            entry: dict[str, Any] = {"count": int(series.size), "nulls": int(series.isna().sum())}
            if values.size:
                counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
                entry.update(
                    mean=float(values.mean()),
                    std=float(values.std()),
                    quantiles={
                        str(q): float(v)
                        for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
                    },
                    histogram={"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
                )
            columns[column] = entry
        out[table] = {"rows": len(frame), "columns": columns}
    return out


def ingest_sagemaker(
    features: dict[str, pd.DataFrame], groups: dict[str, str], region: str, client: Any = None
) -> dict[str, Any]:
    """PutRecord every feature row into its SageMaker feature group (online + offline store)."""
    import boto3  # noqa: PLC0415  heavy: loads boto3 only when called

    client = client or boto3.client("sagemaker-featurestore-runtime", region_name=region)
    counts: dict[str, int] = {}
    for view_name, frame in features.items():
        view = feature_view(view_name)
        group = groups[view_name]
        for row in frame.to_dict(orient="records"):
            client.put_record(FeatureGroupName=group, Record=to_record(view, row))  # type: ignore[arg-type]
        counts[group] = len(frame)
    return {"store": "sagemaker", "records": counts}


def ingest_feast(features: dict[str, pd.DataFrame], url: str) -> dict[str, Any]:
    """Push every feature row to Feast's feature server (`POST /push`, online store), in batches."""

    if not url:
        raise PrepareError(
            "--feature-store feast needs --feast-url, the base URL of a `feast serve` this container "
            "can reach (`mlops pipeline run --local` starts one and passes it)"
        )
    counts = {name: push_features(url, feature_view(name), frame) for name, frame in features.items()}
    as_of = {name: str(frame[feature_view(name).event_time_column].max()) for name, frame in features.items()}
    return {"store": "feast", "url": url, "to": "online", "records": counts, "as_of": as_of}


def prepare(args: argparse.Namespace, root: Path = ROOT) -> dict[str, Any]:
    """Run the whole step with inputs and outputs under `root`; return its summary."""

    out = root / "output"
    tables, report = validate_raw(root / "input" / "raw", args.dataset, args.dataset_version)
    # train/validation/test ratings, catalog and features (from the training ratings only: nothing
    # from the validation or test ratings leaks into what the model or the evaluation sees).
    written = write_channels(
        tables["ratings"],
        tables["movies"],
        tables["users"],
        out,
        SplitPolicy.RANDOM_80_10_10,
        args.split_seed,
    )
    splits, features = written.splits, written.features
    statistics = baseline_statistics({"train_ratings": splits["train"], **features})
    (out / "baseline").mkdir(parents=True, exist_ok=True)
    (out / "baseline" / "statistics.json").write_text(json.dumps(statistics, indent=2, sort_keys=True))
    if args.feature_store == "sagemaker":
        ingestion = ingest_sagemaker(
            features,
            {"user_features": args.user_feature_group, "movie_features": args.movie_feature_group},
            args.region,
        )
    elif args.feature_store == "feast":
        ingestion = ingest_feast(features, args.feast_url)
    else:
        ingestion = {"store": "none", "records": {}}
    summary = {
        "dataset": args.dataset,
        "dataset_version": report["version"],
        "validation": {k: report[k] for k in ("rows_in", "accepted", "rejected", "counts")},
        "splits": {k: len(v) for k, v in splits.items()},
        "features": {k: len(v) for k, v in features.items()},
        "ingestion": ingestion,
    }
    (out / "feature_store").mkdir(parents=True, exist_ok=True)
    (out / "feature_store" / "ingestion.json").write_text(json.dumps(ingestion, indent=2, sort_keys=True))
    (out / "baseline" / "prepare.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The step's arguments, as the pipeline definition passes them."""

    parser = argparse.ArgumentParser(prog="pipelines.steps.prepare")
    parser.add_argument("--dataset", required=True, choices=DatasetName.values())
    parser.add_argument("--dataset-version", default="")
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--feature-store", choices=["sagemaker", "feast", "none"], default="none")
    parser.add_argument("--user-feature-group", default="")
    parser.add_argument("--movie-feature-group", default="")
    parser.add_argument("--feast-url", default="")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 with a summary on stdout, or 1 with the reason in the failure file."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_step("Prepare", lambda: prepare(args))


if __name__ == "__main__":
    raise SystemExit(main())
