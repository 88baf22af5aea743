"""Settings: cdk.json validates; a bad value fails with a sentence naming the key, the value, the rule."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.settings import SettingsError, parse_all, parse_environment

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]


def dev() -> dict[str, Any]:
    return copy.deepcopy(CONTEXT["environments"]["dev"])


def test_every_environment_in_cdk_json_is_valid() -> None:
    settings = parse_all(CONTEXT)
    assert set(settings) == {"dev", "staging", "prod"}
    assert settings["prod"].vpc is not None and settings["prod"].studio_enabled
    assert not settings["dev"].mlflow_enabled and settings["staging"].mlflow_enabled
    assert settings["dev"].bucket_name("raw") == "mlops-movielens-dev-raw-123456789012-us-east-1"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("canary_percent", 80, "context.environments.dev.canary_percent = 80"),
        ("training_instance_type", "m5.large", "'m5.large' is not a SageMaker instance type"),
        ("data_capture_percent", 120, "context.environments.dev.data_capture_percent = 120"),
        ("retraining_schedule", "every week", "'every week' is not an EventBridge Scheduler expression"),
        ("notification_email", "oncall", "'oncall' is not an e-mail address"),
        ("account", "12345", "context.environments.dev.account = '12345'"),
        # SageMaker refuses MaxRuntimeInSeconds over 28 days (training) and 7 days (processing).
        ("max_training_seconds", 29 * 86400, "context.environments.dev.max_training_seconds = 2505600"),
        ("max_processing_seconds", 8 * 86400, "context.environments.dev.max_processing_seconds = 691200"),
        ("surprise", 1, "context.environments.dev.surprise = 1"),
    ],
)
def test_bad_value_names_key_value_and_rule(key: str, value: Any, expected: str) -> None:
    raw = dev()
    raw[key] = value
    with pytest.raises(SettingsError) as error:
        parse_environment("dev", raw)
    assert expected in str(error.value)
    assert "Fix the value in cdk.json" in str(error.value)


def test_nested_bad_value_names_the_full_key() -> None:
    raw = dev()
    raw["alarms"]["p99_latency_ms"] = 0
    with pytest.raises(SettingsError, match=r"context\.environments\.dev\.alarms\.p99_latency_ms = 0"):
        parse_environment("dev", raw)


def test_min_above_max_is_refused_with_a_sentence() -> None:
    raw = dev()
    raw["endpoint_min_instances"] = 3
    with pytest.raises(
        SettingsError, match=r"endpoint_min_instances \(3\) is above endpoint_max_instances \(2\)"
    ):
        parse_environment("dev", raw)


def test_studio_without_vpc_is_refused() -> None:
    raw = dev()
    raw["studio_enabled"] = True
    with pytest.raises(SettingsError, match="a Studio domain needs vpc_id and subnet_ids"):
        parse_environment("dev", raw)


def test_overrides_set_images_and_package_and_refuse_unknown_keys() -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-movielens-dev-recommender/7"
    settings = parse_environment(
        "dev",
        dev(),
        {"training_image_uri": "repo/train:1", "serving_image_uri": "repo/serve:1", "model_package_arn": arn},
    )
    assert settings.images is not None and settings.images.training_uri == "repo/train:1"
    assert settings.model_package_arn == arn
    with pytest.raises(SettingsError, match="context override 'instance' is not one of"):
        parse_environment("dev", dev(), {"instance": "x"})
    with pytest.raises(SettingsError, match="is not a versioned model package ARN"):
        parse_environment("dev", dev(), {"model_package_arn": "arn:aws:sagemaker:us-east-1:1:model/x"})


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(SettingsError, match="environment 'qa' is not one of dev, staging, prod"):
        parse_environment("qa", dev())


def test_synth_with_a_bad_context_value_stops_with_the_sentence() -> None:
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps({**CONTEXT, "env": "dev", "model_package_arn": "nope"}),
    }
    proc = subprocess.run(
        [str(ROOT / ".venv-cdk" / "bin" / "python"), "app.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2
    assert "cdk.json context.environments.dev.model_package_arn = 'nope'" in proc.stderr
