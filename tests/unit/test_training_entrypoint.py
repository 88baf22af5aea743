"""The container entry point against a temp directory laid out like /opt/ml: success, failures, resume."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest

from mlops.train import write_channels
from tests.unit.test_training_checkpoints import (
    _FirstEpoch,
    _SpotInterruptionError,
    _StopAfter,
    synthetic_data,
)
from training import entrypoint
from training.contract import SageMakerEnv
from training.tracking import local_store

HP = {
    "epochs": "3",
    "batch_size": "64",
    "embedding_dim": "8",
    "seed": "5",
    "early_stopping_patience": "0",
    "dataset": "synthetic",
    "dataset_version": "test-1",
}


def _job(
    root: Path, hyperparameters: dict[str, str], monkeypatch: pytest.MonkeyPatch, channels: bool = True
) -> SageMakerEnv:
    env = SageMakerEnv.from_root(root)
    env.config_dir.mkdir(parents=True)
    env.hyperparameters_path.write_text(json.dumps(hyperparameters))
    if channels:
        data = synthetic_data()
        ratings = pd.concat([data.ratings, data.validation], ignore_index=True)
        write_channels(ratings, data.movies, None, env.input_data_dir)
    monkeypatch.setenv(entrypoint.ROOT_ENV, str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLOPS_GIT_COMMIT", "abc123")
    return env


def _failure(env: SageMakerEnv) -> str:
    return env.failure_path.read_text().splitlines()[0]


def test_wrong_argument_fails_with_reason(tmp_path, monkeypatch):
    env = _job(tmp_path, {}, monkeypatch, channels=False)
    assert entrypoint.main(["serve"]) == 2
    assert "'serve'" in _failure(env) and "train" in _failure(env)


@pytest.mark.parametrize(
    ("hyperparameters", "needles"),
    [
        ({"epochs": "many"}, ["epochs", "'many'"]),
        ({"colour": "red"}, ["'colour'", "allowed"]),
        ({"mlflow_timeout_seconds": "-1"}, ["mlflow_timeout_seconds", "'-1'"]),
    ],
)
def test_bad_hyperparameter_stops_the_job_naming_it(tmp_path, monkeypatch, hyperparameters, needles):
    env = _job(tmp_path, hyperparameters, monkeypatch, channels=False)
    assert entrypoint.main([]) == 1
    first = _failure(env)
    for needle in needles:
        assert needle in first
    assert not (env.model_dir / "metadata.json").exists()


def test_missing_channel_is_reported(tmp_path, monkeypatch):
    env = _job(tmp_path, HP, monkeypatch, channels=False)
    assert entrypoint.main(["train"]) == 1
    assert "train/ratings.parquet" in _failure(env)


def test_job_writes_model_report_and_mlflow_run(tmp_path, monkeypatch):
    env = _job(tmp_path, HP, monkeypatch)
    assert entrypoint.main([]) == 0
    assert not env.failure_path.exists()
    for name in ("metadata.json", "towers.npz", "catalog.parquet", "keras/model.keras"):
        assert (env.model_dir / name).is_file(), name
    metadata = json.loads((env.model_dir / "metadata.json").read_text())
    assert metadata["dataset"] == "synthetic" and metadata["dataset_version"] == "test-1"
    assert metadata["git_commit"] == "abc123"
    assert metadata["tracking"]["ok"] is True and metadata["mlflow_run_id"]
    report = json.loads((env.output_data_dir / "training_report.json").read_text())
    assert report["epochs_run"] == 3 and report["resumed_from_epoch"] == 0
    # Beside the model, the baselines scored on the same validation ratings.
    assert {"val_rmse", "global_mean_val_rmse", "biased_baseline_val_rmse"} <= set(metadata["metrics"])

    # The default store lives in output/data, which SageMaker ships as output.tar.gz.
    uri, _ = local_store(env.output_data_dir / "mlflow")
    client = mlflow.MlflowClient(uri)
    run = client.get_run(metadata["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "3" and run.data.params["embedding_dim"] == "8"
    assert run.data.metrics["val_rmse"] == pytest.approx(metadata["metrics"]["val_rmse"])
    assert len(client.get_metric_history(run.info.run_id, "epoch/loss")) == 3
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {"plots/learning_curves.png", "plots/metrics_vs_baselines.png"}
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"model_dir", "plots"}
    model = mlflow.pyfunc.load_model(metadata["tracking"]["model_uri"])
    towers = np.load(env.model_dir / "towers.npz")
    example = {
        "user_id": towers["user_ids"][:2].astype("int64"),
        "movie_id": towers["movie_ids"][:2].astype("int64"),
        "user_features": np.tile(towers["feature_mean"], (2, 1)).astype("float32"),
    }
    # The MLflow model (Keras flavour) answers like the exported keras/model.keras.
    predicted = _rating(model.predict(example)).reshape(-1)
    exported = keras.saving.load_model(env.model_dir / "keras" / "model.keras")
    expected = _rating(exported.predict(example, verbose=0)).reshape(-1)
    assert predicted.shape == (2,) and np.all((predicted >= 1.0) & (predicted <= 5.0))
    np.testing.assert_allclose(predicted, expected, rtol=1e-6)


def _rating(output: object) -> np.ndarray:
    # Keras returns a dict for a model with named outputs; MLflow's pyfunc wraps it in a 0-d array.
    if isinstance(output, np.ndarray) and output.shape == ():
        output = output.item()
    return np.asarray(output["rating"] if isinstance(output, dict) else output)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tracking_server_down_keeps_the_model_and_says_so(tmp_path, monkeypatch):
    port = _closed_port()
    env = _job(
        tmp_path,
        {
            **HP,
            "epochs": "1",
            "mlflow_tracking_uri": f"http://127.0.0.1:{port}",
            "mlflow_timeout_seconds": "2",
        },
        monkeypatch,
    )
    assert entrypoint.main([]) == 0
    metadata = json.loads((env.model_dir / "metadata.json").read_text())
    assert (env.model_dir / "towers.npz").is_file()
    assert metadata["tracking"]["ok"] is False and metadata["mlflow_run_id"] is None
    assert f"127.0.0.1:{port}" in metadata["tracking"]["error"]


def test_restarted_job_resumes_from_checkpoint_and_matches_uninterrupted(tmp_path, monkeypatch):
    hp = {**HP, "epochs": "4"}
    straight = _job(tmp_path / "straight", hp, monkeypatch)
    assert entrypoint.main([]) == 0

    spot = _job(tmp_path / "spot", hp, monkeypatch)
    with pytest.raises(_SpotInterruptionError):
        entrypoint.run(spot, extra_callbacks=[_StopAfter(2)])
    assert not (spot.model_dir / "towers.npz").exists()
    first = _FirstEpoch()
    report = entrypoint.run(spot, extra_callbacks=[first])
    assert report["resumed_from_epoch"] == 2 and first.first == 2
    assert report["epochs_run"] == 4
    a, b = np.load(straight.model_dir / "towers.npz"), np.load(spot.model_dir / "towers.npz")
    for key in a.files:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)
