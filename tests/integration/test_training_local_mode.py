"""A real SageMaker local-mode training job (SDK 3.x ModelTrainer, LOCAL_CONTAINER) with the ML image on
ml-100k, tracked by a real MLflow server on the host; and a job whose bad hyperparameter fails it."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import mlflow
import pytest

from dataset.paths import ROOT
from dataset.tables import load_tables
from mlops.train import run_local_job, write_channels
from standins.docker import docker_bridge_ip
from standins.servers import mlflow_server

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def image() -> str:
    """The ML image, rebuilt by the real CLI so it holds the code under test (Docker caches the rest)."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail(
            "no Docker engine answers: run `bash scripts/docker-up.sh` (integration tests never skip)"
        )
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "mlops"), "images", "build", "--only", "training", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["missing"] == []
    (built,) = report["images"]
    assert built["tag"] == "mlops-training:latest" and built["size_bytes"] > 500_000_000
    user = subprocess.run(
        ["docker", "image", "inspect", built["tag"], "--format", "{{.Config.User}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert user not in ("", "root", "0"), f"the image runs as {user!r}, not a non-root user"
    return str(built["tag"])


@pytest.fixture(scope="module")
def channels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    try:
        tables = load_tables("ml-100k")
    except FileNotFoundError as err:
        pytest.fail(f"ml-100k is not fetched: {err}")
    return write_channels(tables.ratings, tables.movies, tables.users, tmp_path_factory.mktemp("channels"))


def test_local_mode_job_on_ml100k_writes_model_and_mlflow_run(image, channels, tmp_path):
    hyperparameters = {
        "epochs": "2",
        "dataset": "ml-100k",
        "dataset_version": "integration-test",
        "early_stopping_patience": "0",
    }
    with mlflow_server(tmp_path / "mlflow", docker_bridge_ip()) as uri:
        job = run_local_job(
            channels,
            {**hyperparameters, "mlflow_tracking_uri": uri},
            tmp_path / "job",
            image=image,
            environment={"MLOPS_GIT_COMMIT": "integration"},
        )
        assert job.failure is None, job.failure
        with tarfile.open(job.model_artifact) as tar:
            names = set(tar.getnames())
        assert {"metadata.json", "towers.npz", "catalog.parquet", "rated.npz", "keras/model.keras"} <= names
        metadata = json.loads((job.model_dir / "metadata.json").read_text())
        assert metadata["dataset"] == "ml-100k" and metadata["git_commit"] == "integration"
        assert metadata["hyperparameters"]["epochs"] == 2
        assert metadata["tracking"]["ok"] is True, metadata["tracking"]
        # A model that learned something: better than predicting the global mean on held-out ratings.
        assert metadata["metrics"]["val_rmse"] < metadata["metrics"]["global_mean_val_rmse"]

        client = mlflow.MlflowClient(uri)
        run = client.get_run(metadata["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.params["epochs"] == "2" and run.data.params["dataset"] == "ml-100k"
        assert run.data.tags["git_commit"] == "integration"
        per_epoch = client.get_metric_history(run.info.run_id, "epoch/val_rmse")
        assert sorted(m.step for m in per_epoch) == [1, 2]
        assert run.data.metrics["val_rmse"] == pytest.approx(metadata["metrics"]["val_rmse"])
        plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert plots == {"plots/learning_curves.png", "plots/metrics_vs_baselines.png"}
        assert "model_dir/metadata.json" in {
            a.path for a in client.list_artifacts(run.info.run_id, "model_dir")
        }
        mlflow.set_tracking_uri(uri)
        info = mlflow.models.get_model_info(metadata["tracking"]["model_uri"])
        assert "keras" in info.flavors
        assert [i.name for i in info.signature.inputs.inputs] == ["user_id", "movie_id", "user_features"]


def test_local_mode_job_with_bad_hyperparameter_fails_naming_it(image, channels, tmp_path):
    job = run_local_job(channels, {"epochs": "2", "learning_rate": "fast"}, tmp_path / "job", image=image)
    assert job.failure is not None
    assert "learning_rate" in job.failure and "'fast'" in job.failure
