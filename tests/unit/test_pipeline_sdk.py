"""pipelines.sdk.configure_sdk: the one SDK set-up, used by every path that builds or runs a definition."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pipelines import definition as d
from pipelines import local, sdk
from pipelines.settings import PipelineSettings

SDK_VARIABLES = ("SAGEMAKER_VALIDATE_ROLE", "AWS_DEFAULT_REGION")


def _opted_out(config: dict[str, Any]) -> bool:
    return config["SageMaker"]["PythonSDK"]["Modules"]["TelemetryOptOut"] is True


def test_configure_sets_the_sdk_environment_without_overriding_the_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in SDK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    config = sdk.configure_sdk("eu-west-1")
    assert _opted_out(config)
    assert (
        os.environ["SAGEMAKER_VALIDATE_ROLE"] == "false" and os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"
    )
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "true")
    sdk.configure_sdk("eu-west-1")
    assert (
        os.environ["AWS_DEFAULT_REGION"] == "ap-south-1" and os.environ["SAGEMAKER_VALIDATE_ROLE"] == "true"
    )


def test_configure_hands_out_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    sdk.configure_sdk("us-east-1")["SageMaker"]["PythonSDK"]["Modules"]["TelemetryOptOut"] = False
    assert _opted_out(sdk.configure_sdk("us-east-1"))


def test_parameters_configure_the_sdk_first(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SDK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    d.parameters(PipelineSettings(region="eu-west-1"))
    assert os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"


def test_a_definition_build_sends_no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    from sagemaker.core.telemetry import telemetry_logging

    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(telemetry_logging, "_send_telemetry_request", lambda *args: sent.append(args))
    assert _opted_out(d.offline_session(PipelineSettings()).sagemaker_config)
    d.definition_json(PipelineSettings(pipeline_name="telemetry-probe"))
    assert sent == [], f"the SDK reported {len(sent)} call(s) to AWS telemetry during an offline build"


def test_the_local_session_is_configured_and_needs_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = local.local_settings()
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(local.LocalRunError, match="AWS_ENDPOINT_URL is not set"):
        local.make_session(settings)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    session = local.make_session(settings)
    assert session.s3_endpoint_url == "http://127.0.0.1:9"
    assert _opted_out(session.sagemaker_config)


def test_a_local_training_job_configures_the_sdk_before_using_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlops.train

    class ConfiguredError(Exception):
        pass

    def configure(region: str) -> dict[str, Any]:
        raise ConfiguredError(region)

    def trainer(*args: object, **kwargs: object) -> None:
        raise AssertionError("the SDK was used before configure_sdk")

    import sagemaker.train

    monkeypatch.setattr(mlops.train, "configure_sdk", configure)
    monkeypatch.setattr(sagemaker.train, "ModelTrainer", trainer)
    with pytest.raises(ConfiguredError):
        mlops.train.run_local_job({}, {}, tmp_path)
