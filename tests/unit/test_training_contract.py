"""The SageMaker training contract: paths, config files, failure file, multi-worker TF_CONFIG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.contract import ContractError, ResourceConfig, SageMakerEnv, split_container_keys
from training.distributed import parse_worker_overrides, strategy_for, tf_config, worker_addresses


def _env(
    tmp_path: Path, hyperparameters: object | None = None, resource: object | None = None
) -> SageMakerEnv:
    env = SageMakerEnv.from_root(tmp_path)
    env.config_dir.mkdir(parents=True)
    if hyperparameters is not None:
        env.hyperparameters_path.write_text(json.dumps(hyperparameters))
    if resource is not None:
        env.resource_config_path.write_text(json.dumps(resource))
    return env


def test_paths_follow_opt_ml_layout(tmp_path):
    env = SageMakerEnv.from_root(tmp_path)
    assert env.hyperparameters_path == tmp_path / "input/config/hyperparameters.json"
    assert env.resource_config_path == tmp_path / "input/config/resourceconfig.json"
    assert env.input_data_dir == tmp_path / "input/data"
    assert env.model_dir == tmp_path / "model"
    assert env.failure_path == tmp_path / "output/failure"
    assert env.output_data_dir == tmp_path / "output/data"
    assert env.checkpoints_dir == tmp_path / "checkpoints"


def test_hyperparameters_read_as_strings(tmp_path):
    env = _env(tmp_path, {"epochs": "3", "learning_rate": 0.01, "lr_decay": True})
    assert env.read_hyperparameters() == {"epochs": "3", "learning_rate": "0.01", "lr_decay": "true"}


def test_missing_hyperparameters_file_means_none(tmp_path):
    assert _env(tmp_path).read_hyperparameters() == {}


@pytest.mark.parametrize(
    ("content", "needle"),
    [("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object"), ('{"epochs": {"n": 3}}', "'epochs'")],
)
def test_bad_hyperparameters_file_is_named(tmp_path, content, needle):
    env = _env(tmp_path)
    env.hyperparameters_path.write_text(content)
    with pytest.raises(ContractError, match=needle) as info:
        env.read_hyperparameters()
    assert "hyperparameters.json" in str(info.value)


def test_container_keys_are_split_from_model_keys():
    container, model = split_container_keys({"epochs": "2", "mlflow_tracking_uri": "http://x", "seed": "1"})
    assert container == {"mlflow_tracking_uri": "http://x"}
    assert model == {"epochs": "2", "seed": "1"}


def test_resource_config_default_is_one_host(tmp_path):
    rc = _env(tmp_path).read_resource_config()
    assert rc == ResourceConfig("algo-1", ("algo-1",))
    assert rc.is_chief and not rc.is_distributed


def test_resource_config_two_hosts(tmp_path):
    rc = _env(
        tmp_path, resource={"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}
    ).read_resource_config()
    assert rc.is_distributed and rc.worker_index == 1 and not rc.is_chief


@pytest.mark.parametrize(
    ("resource", "needle"),
    [
        ({"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}, "'algo-3'"),
        ({"hosts": ["algo-1"]}, "current_host"),
    ],
)
def test_bad_resource_config_is_named(tmp_path, resource, needle):
    with pytest.raises(ContractError, match=needle):
        _env(tmp_path, resource=resource).read_resource_config()


def test_missing_channel_names_it_and_lists_present(tmp_path):
    env = _env(tmp_path)
    (env.input_data_dir / "catalog").mkdir(parents=True)
    with pytest.raises(ContractError, match=r"'train' is missing.*catalog"):
        env.channel("train")
    assert env.channel("catalog") == env.input_data_dir / "catalog"


def test_write_failure_creates_output_dir(tmp_path):
    env = SageMakerEnv.from_root(tmp_path)
    env.write_failure("ValueError: bad epochs\n\ntraceback")
    assert env.failure_path.read_text().splitlines()[0] == "ValueError: bad epochs"


def test_tf_config_makes_the_first_host_the_chief():
    rc = ResourceConfig("algo-2", ("algo-1", "algo-2"))
    assert tf_config(rc, 2222) == {
        "cluster": {"worker": ["algo-1:2222", "algo-2:2222"]},
        "task": {"type": "worker", "index": 1},
    }


def test_worker_overrides_place_workers_on_ports():
    rc = ResourceConfig("algo-1", ("algo-1", "algo-2"))
    overrides = parse_worker_overrides("algo-1=127.0.0.1:4001, algo-2=127.0.0.1:4002")
    assert worker_addresses(rc, 2222, overrides) == ["127.0.0.1:4001", "127.0.0.1:4002"]


@pytest.mark.parametrize("text", ["algo-1", "algo-1=127.0.0.1", "=1.2.3.4:5"])
def test_bad_worker_override_is_named(text):
    with pytest.raises(ContractError, match="MLOPS_TF_WORKERS"):
        parse_worker_overrides(text)


def test_override_of_unknown_host_is_refused():
    rc = ResourceConfig("algo-1", ("algo-1", "algo-2"))
    with pytest.raises(ContractError, match="algo-9"):
        worker_addresses(rc, 2222, {"algo-9": "127.0.0.1:1"})


def test_single_host_needs_no_strategy():
    assert strategy_for(ResourceConfig("algo-1", ("algo-1",)), {}) is None
