"""The serving environment the CDK model and the registered package carry is what the serving image reads."""

from __future__ import annotations

import pytest

from inference.config import ServerConfig
from pipelines.serving_env import serving_environment


def test_sagemaker_environment_is_read_back_by_the_server() -> None:
    env = serving_environment(
        feature_store="sagemaker",
        user_feature_group="mlops-dev-user-features",
        region="eu-west-1",
        feature_timeout_s=0.08,
    )
    config = ServerConfig.from_env(env)
    assert config.feature_store == "sagemaker"
    assert config.feature_source == "mlops-dev-user-features"
    assert config.feature_timeout_s == pytest.approx(0.08)
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"


def test_feast_environment_is_read_back_by_the_server() -> None:
    config = ServerConfig.from_env(
        serving_environment(
            feature_store="feast",
            user_feature_group="",
            region="us-east-1",
            feast_url="http://172.17.0.1:6566",
        )
    )
    assert (config.feature_store, config.feature_source) == ("feast", "http://172.17.0.1:6566")


def test_none_environment_reads_no_store() -> None:
    env = serving_environment(feature_store="none", user_feature_group="g", region="us-east-1")
    assert ServerConfig.from_env(env).feature_store == "none"
    assert "MLOPS_SERVE_FEATURE_SOURCE" not in env


def test_sagemaker_without_group_is_refused() -> None:
    with pytest.raises(ValueError, match="user_feature_group"):
        serving_environment(feature_store="sagemaker", user_feature_group="", region="us-east-1")
