"""The benchmark's model: trained once on MovieLens by the training entry point, then reused.

Host-only (never in the serving image). Training runs as a subprocess of `python -m training.entrypoint`
on a directory laid out like `/opt/ml`, so serving imports nothing from training, and the MLflow model
compared against is the one the training entry point itself logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BenchModel:
    """A trained model directory, its MLflow model and the user features it was trained with."""

    model_dir: Path
    mlflow_tracking_uri: str
    mlflow_model_uri: str
    user_features: Path
    trained_now: bool


def _write_channels(root: Path, dataset: str) -> None:
    from dataset.tables import dataset_version, load_tables  # noqa: PLC0415  heavy: loads pandas only when called
    from features.compute import movie_features, user_features  # noqa: PLC0415  heavy: loads pandas only when called

    tables = load_tables(dataset)
    data = root / "input" / "data"
    for sub in ("train", "catalog", "features"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    tables.ratings.to_parquet(data / "train" / "ratings.parquet")
    tables.movies.to_parquet(data / "catalog" / "movies.parquet")
    tables.users.to_parquet(data / "catalog" / "users.parquet")
    user_features(tables.ratings, tables.movies).to_parquet(data / "features" / "user_features.parquet")
    movie_features(tables.ratings, tables.movies).to_parquet(data / "features" / "movie_features.parquet")
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    # Small and quick: the benchmark measures serving, not model quality.
    hp = {
        "epochs": "3",
        "embedding_dim": "32",
        "dataset": dataset,
        "dataset_version": dataset_version(dataset),
    }
    (config / "hyperparameters.json").write_text(json.dumps(hp))


def prepare(workdir: Path, dataset: str = "ml-100k") -> BenchModel:
    """Train (first time only) and return the model, its MLflow model and the user features."""
    workdir = workdir.resolve()
    root = workdir / "opt-ml"
    done = workdir / "trained.json"
    trained_now = False
    if not done.is_file():
        _write_channels(root, dataset)
        env = {**os.environ, "MLOPS_SAGEMAKER_ROOT": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
        print(f"bench: training a small {dataset} model with training.entrypoint in {root}", file=sys.stderr)
        proc = subprocess.run(
            [sys.executable, "-m", "training.entrypoint", "train"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            failure = root / "output" / "failure"
            reason = failure.read_text()[:2000] if failure.is_file() else proc.stderr[-2000:]
            raise RuntimeError(f"training for the benchmark failed (exit {proc.returncode}): {reason}")
        report = None
        for line in proc.stderr.splitlines() + proc.stdout.splitlines():
            if "done: {" in line:
                report = json.loads(line[line.index("done: ") + len("done: ") :])
        if report is None:
            raise RuntimeError(
                f"training.entrypoint printed no report; its stderr ends: {proc.stderr[-1000:]}"
            )
        tracking = report.get("tracking") or {}
        if not tracking.get("model_uri"):
            raise RuntimeError(f"training logged no MLflow model: {json.dumps(tracking)[:1000]}")
        done.write_text(json.dumps({"tracking_uri": tracking["uri"], "model_uri": tracking["model_uri"]}))
        trained_now = True
    info = json.loads(done.read_text())
    return BenchModel(
        model_dir=root / "model",
        mlflow_tracking_uri=info["tracking_uri"],
        mlflow_model_uri=info["model_uri"],
        user_features=root / "input" / "data" / "features" / "user_features.parquet",
        trained_now=trained_now,
    )
