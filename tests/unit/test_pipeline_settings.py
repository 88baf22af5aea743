"""Pipeline settings: defaults are valid, bad values are refused with a message naming them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.settings import PipelineSettings, load_settings
from training.hyperparameters import Hyperparameters


def test_defaults_are_valid() -> None:
    s = PipelineSettings()
    assert s.default_input_uri == "s3://mlops-movielens-artifacts/raw/ml-100k/"
    assert not s.is_local


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("role_arn", "my-role", "not an IAM role ARN"),
        ("bucket", "s3://bucket", "not an S3 bucket name"),
        ("approval_status", "Maybe", "Maybe"),
        ("processing_instance_type", "m5.xlarge", "m5.xlarge"),
        ("input_data_uri", "/tmp/raw", "not an s3:// URI"),
        ("pipeline_name", "bad name!", "bad name!"),
        ("hyperparameters", {"dataset_version": "x"}, "DatasetVersion"),
        ("hyperparameters", {"epochs": 0}, "epochs"),
        ("unknown_field", 1, "unknown_field"),
    ],
)
def test_bad_values_are_named(field: str, value: object, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        PipelineSettings.model_validate({field: value})
    assert needle in str(info.value)


def test_cloudformation_placeholders_are_accepted() -> None:
    s = PipelineSettings(role_arn="${RoleArn}", bucket="${ArtifactBucket}")
    assert s.role_arn == "${RoleArn}"


def test_thresholds_are_bounded() -> None:
    with pytest.raises(ValidationError, match="min_hit_rate_at_10"):
        PipelineSettings.model_validate({"thresholds": {"min_hit_rate_at_10": 1.5}})


def test_local_and_cloud_instances_do_not_mix() -> None:
    with pytest.raises(ValidationError, match="mix 'local'"):
        PipelineSettings(processing_instance_type="local", feature_store="feast")


def test_sagemaker_feature_store_refused_locally() -> None:
    with pytest.raises(ValidationError, match="feast"):
        PipelineSettings(processing_instance_type="local", training_instance_type="local")


def test_load_settings_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"bucket": "Bad_Bucket"}))
    with pytest.raises(ValueError, match=r"s\.json.*bucket"):
        load_settings(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_settings(tmp_path / "missing.json")
    path.write_text("[1]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_settings(path)
    path.write_text(json.dumps({"bucket": "good-bucket"}))
    assert load_settings(path, pipeline_name="other").pipeline_name == "other"


def test_default_hyperparameters_are_trainings_defaults() -> None:
    assert PipelineSettings().hyperparameters == Hyperparameters()


def test_misspelt_hyperparameter_in_a_settings_file_is_named_with_the_valid_ones(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"hyperparameters": {"epochz": 3, "seed": 1}}))
    with pytest.raises(ValueError, match=r"s\.json") as info:
        load_settings(path)
    message = str(info.value)
    assert "'epochz'" in message and "'seed'" not in message
    assert all(name in message for name in Hyperparameters.allowed_keys())


def test_settings_survive_a_dump_and_reload() -> None:
    s = PipelineSettings.model_validate({"hyperparameters": {"epochs": 3}})
    again = PipelineSettings.model_validate(s.model_dump())
    assert again == s and again.hyperparameters.epochs == 3


def test_cli_refuses_a_misspelt_hyperparameter_before_building(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlops.pipeline_cli import app

    path = tmp_path / "s.json"
    path.write_text(json.dumps({"hyperparameters": {"learning_rat": 0.01}}))
    result = CliRunner().invoke(app, ["definition", "--settings", str(path)])
    assert result.exit_code == 2
    assert "'learning_rat'" in result.output and "learning_rate" in result.output


def test_a_run_cannot_register_a_package_as_approved() -> None:
    """Approval is the approver role's act in the registry, never a settings value or a start parameter."""
    from pipelines import control
    from pipelines.definition import parameters

    with pytest.raises(ValidationError, match="approve afterwards in the registry"):
        PipelineSettings.model_validate({"approval_status": "Approved"})
    approval = next(p for p in parameters(PipelineSettings()).all() if p.name == "ModelApprovalStatus")
    assert "Approved" not in approval.enum_values
    with pytest.raises(ValueError, match="ModelApprovalStatus='Approved' is not one of"):
        control.check_parameters(parameters(PipelineSettings()).all(), {"ModelApprovalStatus": "Approved"})
