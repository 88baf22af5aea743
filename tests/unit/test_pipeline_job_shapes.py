"""The jobs' network, encryption and runtime arguments, checked against botocore's SageMaker service model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipelines import definition as d
from pipelines.settings import PipelineSettings

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SUBNETS = ["subnet-0a1b2c3d4e5f60719", "subnet-0a1b2c3d4e5f6071a"]
GROUP = "sg-0a1b2c3d4e5f60718"
REQUESTS = {"Processing": "CreateProcessingJobRequest", "Training": "CreateTrainingJobRequest"}
# Set by SageMaker Pipelines when it starts the job, so absent from the definition's arguments.
SET_AT_RUN = {"ProcessingJobName", "TrainingJobName"}


def private(**overrides: Any) -> PipelineSettings:
    values: dict[str, Any] = {
        "processing_role_arn": "arn:aws:iam::123456789012:role/p",
        "training_role_arn": "arn:aws:iam::123456789012:role/t",
        "kms_key_id": KEY,
        "subnet_ids": SUBNETS,
        "security_group_ids": [GROUP],
        "max_processing_seconds": 1800,
        "max_training_seconds": 9000,
    }
    values.update(overrides)
    return PipelineSettings.model_validate(values)


@pytest.fixture(scope="module")
def model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker", api_version="2017-07-24")


def _steps(settings: PipelineSettings) -> dict[str, dict[str, Any]]:
    doc = json.loads(d.definition_json(settings))
    return {step["Name"]: step for step in doc["Steps"]}


EXPRESSIONS = {"Get", "Std:Join", "Std:JsonGet"}
SCALARS: dict[str, Any] = {"string": str, "integer": int, "long": int, "boolean": bool, "float": (int, float)}


def _check(value: Any, shape: Any, where: str) -> list[str]:
    """Problems of `value` against a botocore shape; a pipeline expression ({"Get": ...}) is any value."""
    if isinstance(value, dict) and EXPRESSIONS & set(value):
        return []
    kind = shape.type_name
    if kind == "structure":
        return _check_structure(value, shape, where)
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [p for i, item in enumerate(value) for p in _check(item, shape.member, f"{where}[{i}]")]
    if kind == "map":
        return [p for key, item in value.items() for p in _check(item, shape.value, f"{where}.{key}")]
    python = SCALARS.get(kind)
    if python is not None and (
        not isinstance(value, python) or (kind != "boolean" and isinstance(value, bool))
    ):
        return [f"{where}: {value!r} is not a {kind}"]
    if kind == "string" and shape.enum and value not in shape.enum:
        return [f"{where}: {value!r} is not one of {shape.enum}"]
    return []


def _check_structure(value: Any, shape: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: {value!r} is not a {shape.name} structure"]
    problems = [f"{where}.{key}: not a member of {shape.name}" for key in value if key not in shape.members]
    problems += [
        f"{where}.{key}: required by {shape.name}" for key in shape.required_members if key not in value
    ]
    for key, item in value.items():
        if key in shape.members:
            problems += _check(item, shape.members[key], f"{where}.{key}")
    return problems


def test_shape_check_catches_a_misplaced_member(model: Any) -> None:
    request = model.shape_for("CreateTrainingJobRequest")
    problems = _check({"NetworkConfig": {"EnableNetworkIsolation": True}}, request, "Train")
    assert "Train.NetworkConfig: not a member of CreateTrainingJobRequest" in problems
    assert "Train.EnableNetworkIsolation: 'yes' is not a boolean" in _check(
        {"EnableNetworkIsolation": "yes"}, request, "Train"
    )


@pytest.mark.parametrize("settings", [private(), PipelineSettings()], ids=["private", "defaults"])
def test_job_arguments_match_the_service_model(model: Any, settings: PipelineSettings) -> None:
    for name, step in _steps(settings).items():
        if step["Type"] not in REQUESTS:
            continue
        request = model.shape_for(REQUESTS[step["Type"]])
        arguments = {**step["Arguments"], **{key: "set-at-run" for key in SET_AT_RUN & set(request.members)}}
        assert _check(arguments, request, name) == []


def test_jobs_run_in_the_vpc_encrypted_and_bounded() -> None:
    steps = _steps(private())
    for name in (d.PREPARE, d.EVALUATE):
        args = steps[name]["Arguments"]
        assert args["RoleArn"] == "arn:aws:iam::123456789012:role/p"
        assert args["NetworkConfig"]["VpcConfig"] == {"SecurityGroupIds": [GROUP], "Subnets": SUBNETS}
        assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == KEY
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == KEY
        assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800}
    train = steps[d.TRAIN]["Arguments"]
    assert train["RoleArn"] == "arn:aws:iam::123456789012:role/t"
    assert train["VpcConfig"] == {"SecurityGroupIds": [GROUP], "Subnets": SUBNETS}
    assert train["ResourceConfig"]["VolumeKmsKeyId"] == KEY
    assert train["OutputDataConfig"]["KmsKeyId"] == KEY
    assert train["EnableInterContainerTrafficEncryption"] is True
    assert train["StoppingCondition"]["MaxRuntimeInSeconds"] == 9000


@pytest.mark.parametrize(
    ("overrides", "isolated"),
    [
        ({}, {d.EVALUATE, d.TRAIN}),
        (
            {"mlflow_tracking_uri": "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/x"},
            {d.EVALUATE},
        ),
        ({"feature_store": "none"}, {d.EVALUATE, d.TRAIN, d.PREPARE}),
    ],
    ids=["no-mlflow", "mlflow", "no-feature-store"],
)
def test_network_isolation_where_the_step_needs_no_network(
    overrides: dict[str, Any], isolated: set[str]
) -> None:
    steps = _steps(private(**overrides))
    got = {
        name
        for name in (d.PREPARE, d.TRAIN, d.EVALUATE)
        if (steps[name]["Arguments"].get("NetworkConfig") or steps[name]["Arguments"])[
            "EnableNetworkIsolation"
        ]
    }
    assert got == isolated


def test_subnets_without_security_groups_are_refused() -> None:
    with pytest.raises(ValueError, match="both or with neither"):
        private(security_group_ids=[])
    with pytest.raises(ValueError, match="not an id like sg-"):
        private(security_group_ids=["default"])
    with pytest.raises(ValueError, match="kms_key_id 'alias' is not a KMS key ARN"):
        private(kms_key_id="alias")
