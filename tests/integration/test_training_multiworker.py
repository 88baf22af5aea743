"""Two workers on this machine, one MultiWorkerMirroredStrategy: two real entry-point processes, and a
SageMaker local-mode job with instance_count=2 (two containers of the ML image)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dataset.paths import ROOT
from mlops.train import run_local_job, write_channels
from standins.ports import free_port
from tests.integration.test_training_local_mode import image  # noqa: F401  (fixture: the rebuilt image)
from tests.unit.test_training_checkpoints import synthetic_data
from training.contract import SageMakerEnv

pytestmark = pytest.mark.slow
HOSTS = ["algo-1", "algo-2"]
EPOCHS = 3
_EPOCH_LINE = re.compile(r"epoch (\d+)/\d+: this worker trained on (\d+) examples, all 2 replicas on (\d+)")


def _root(base: Path, host: str) -> SageMakerEnv:
    env = SageMakerEnv.from_root(base / host)
    env.config_dir.mkdir(parents=True)
    env.hyperparameters_path.write_text(
        json.dumps(
            {
                "epochs": str(EPOCHS),
                "batch_size": "64",
                "embedding_dim": "8",
                "early_stopping_patience": "0",
                "dataset": "synthetic",
            }
        )
    )
    env.resource_config_path.write_text(json.dumps({"current_host": host, "hosts": HOSTS}))
    data = synthetic_data()
    write_channels(
        pd.concat([data.ratings, data.validation], ignore_index=True), data.movies, None, env.input_data_dir
    )
    return env


_DONE_LINE = re.compile(r"training: done: (\{.*\})")


def _report(log: str) -> dict:
    done = _DONE_LINE.findall(log)
    assert len(done) == 1, f"expected one 'done' line in the log:\n{log[-4000:]}"
    return json.loads(done[0])


def test_two_workers_train_together_and_only_the_chief_writes(tmp_path):
    workers = ",".join(f"{h}=127.0.0.1:{free_port()}" for h in HOSTS)
    envs = {h: _root(tmp_path, h) for h in HOSTS}
    procs = {}
    for host, env in envs.items():
        environ = {
            **os.environ,
            "MLOPS_SAGEMAKER_ROOT": str(env.root),
            "MLOPS_TF_WORKERS": workers,
            "MLFLOW_TRACKING_URI": "",
            "PYTHONPATH": str(ROOT),
        }
        procs[host] = subprocess.Popen(
            [sys.executable, "-m", "training.entrypoint", "train"],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    logs = {}
    for host, proc in procs.items():
        try:
            logs[host], _ = proc.communicate(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
    for host, proc in procs.items():
        assert proc.returncode == 0, f"{host} failed:\n{logs[host][-4000:]}"
    for host in HOSTS:
        assert "distributed: MultiWorkerMirroredStrategy" in logs[host] and "2 replicas in sync" in logs[host]

    # Only the chief writes the model and the checkpoints.
    chief, worker = envs["algo-1"], envs["algo-2"]
    metadata = json.loads((chief.model_dir / "metadata.json").read_text())
    assert metadata["training"]["workers"] == 2
    assert metadata["training"]["epochs_run"] == EPOCHS
    assert (chief.model_dir / "towers.npz").is_file()
    assert not worker.model_dir.exists() or not any(worker.model_dir.iterdir())
    assert [p.name for p in chief.checkpoints_dir.iterdir()] and not worker.checkpoints_dir.exists()

    # The data is split between the workers, never copied: each trains on a real part of every epoch,
    # and the parts add up to exactly the training ratings.
    n_train = len(pd.read_parquet(chief.input_data_dir / "train" / "ratings.parquet"))
    seen = {host: [tuple(map(int, m)) for m in _EPOCH_LINE.findall(logs[host])] for host in HOSTS}
    assert [e for e, _, _ in seen["algo-1"]] == list(range(1, EPOCHS + 1)), logs["algo-1"][-3000:]
    for (_, chief_n, total_1), (_, worker_n, total_2) in zip(seen["algo-1"], seen["algo-2"], strict=True):
        assert total_1 == total_2 == chief_n + worker_n == n_train
        assert 0 < chief_n < n_train and 0 < worker_n < n_train

    # Different data, yet the very same final weights on both workers: the gradients were all-reduced.
    reports = {host: _report(logs[host]) for host in HOSTS}
    assert reports["algo-1"]["towers_sha256"] == reports["algo-2"]["towers_sha256"]
    assert reports["algo-1"]["host_is_chief"] and not reports["algo-2"]["host_is_chief"]
    assert reports["algo-1"]["metrics"]["val_rmse"] == reports["algo-2"]["metrics"]["val_rmse"]

    # And it learned: the training loss falls epoch after epoch, and the model beats the global mean
    # (what an untrained model, all biases at the mean and tiny vectors, predicts).
    latest = max(chief.checkpoints_dir.glob("epoch-*"))
    history = json.loads((latest / "state.json").read_text())["history"]
    losses = history["loss"]
    assert len(losses) == EPOCHS and all(np.diff(losses) < 0), history
    metrics = metadata["metrics"]
    assert metrics["val_rmse"] < metrics["global_mean_val_rmse"], metrics
    print(
        json.dumps(
            {
                "train_ratings": n_train,
                "examples_per_epoch": {host: [n for _, n, _ in seen[host]] for host in HOSTS},
                "loss": losses,
                "val_rmse": metrics["val_rmse"],
                "global_mean_val_rmse": metrics["global_mean_val_rmse"],
                "towers_sha256": reports["algo-1"]["towers_sha256"],
            }
        )
    )


def test_local_mode_job_with_two_instances(image, tmp_path, capfd):  # noqa: F811
    data = synthetic_data()
    channels = write_channels(
        pd.concat([data.ratings, data.validation], ignore_index=True), data.movies, None, tmp_path / "ch"
    )
    hyperparameters = {
        "epochs": "2",
        "batch_size": "64",
        "embedding_dim": "8",
        "early_stopping_patience": "0",
        "dataset": "synthetic",
    }
    job = run_local_job(channels, hyperparameters, tmp_path / "job", image=image, instance_count=2)
    logs = capfd.readouterr().out
    assert job.failure is None, f"{job.failure}\n{logs[-4000:]}"
    metadata = json.loads((job.model_dir / "metadata.json").read_text())
    assert metadata["training"]["workers"] == 2 and metadata["training"]["epochs_run"] == 2
    assert (job.model_dir / "towers.npz").is_file()
    # The chief got to the end (local mode stops every container when the first one exits, and the
    # non-chief worker finishes first): its report is in the job's output.
    with tarfile.open(job.output_artifact) as tar:
        member = tar.extractfile("data/training_report.json")
        assert member is not None
        report = json.loads(member.read())
    assert report["workers"] == 2 and report["host_is_chief"]
    # One line per container: both trained together and ended with the same weights.
    done = [json.loads(m) for m in _DONE_LINE.findall(logs)]
    assert sorted(r["host_is_chief"] for r in done) == [False, True], logs[-4000:]
    assert len({r["towers_sha256"] for r in done}) == 1
    assert done[0]["towers_sha256"] == report["towers_sha256"]
    assert len(_EPOCH_LINE.findall(logs)) == 2 * 2
