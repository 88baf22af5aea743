"""Two workers on this machine: two real entry-point processes, one MultiWorkerMirroredStrategy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlops.paths import ROOT
from mlops.train import free_port, write_channels
from tests.unit.test_training_checkpoints import synthetic_data
from training.contract import SageMakerEnv

pytestmark = pytest.mark.slow
HOSTS = ["algo-1", "algo-2"]


def _root(base: Path, host: str) -> SageMakerEnv:
    env = SageMakerEnv.from_root(base / host)
    env.config_dir.mkdir(parents=True)
    env.hyperparameters_path.write_text(
        json.dumps(
            {
                "epochs": "2",
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


# Known failure, upstream: Keras 3's model.fit does not run under tf.distribute.MultiWorkerMirroredStrategy
# (keras-team/keras#20585, tensorflow/tensorflow#72388; reproduced here with a one-Dense-layer model).
# The cluster set-up is ours and works: both workers connect and build the strategy (2 replicas in
# sync), then Keras fails converting the per-replica batch ("Attempt to convert a value (PerReplica...)
# ... to a Tensor"). Strict: the day Keras or fit gets past it, XPASS turns the test red and this
# mark must go.
@pytest.mark.xfail(strict=True, reason="Keras 3 model.fit under MultiWorkerMirroredStrategy (keras#20585)")
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
    chief, worker = envs["algo-1"], envs["algo-2"]
    metadata = json.loads((chief.model_dir / "metadata.json").read_text())
    assert metadata["training"]["workers"] == 2
    assert (chief.model_dir / "towers.npz").is_file()
    assert not worker.model_dir.exists() or not any(worker.model_dir.iterdir())
    assert [p.name for p in chief.checkpoints_dir.iterdir()] and not worker.checkpoints_dir.exists()
    for host in HOSTS:
        assert "distributed: MultiWorkerMirroredStrategy" in logs[host] and "2 replicas in sync" in logs[host]
