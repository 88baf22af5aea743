"""The serving container's environment for a deployed model: one function for the CDK and both registries.

The variable names are the serving image's (`inference.config.ServerConfig.from_env` reads them);
`pipelines` may not import `inference` (docs/architecture.md), so a unit test holds the two together
by reading this function's output back through `ServerConfig.from_env`.
"""

from __future__ import annotations

from typing import Literal

FeatureStoreKind = Literal["none", "sagemaker", "feast"]


def serving_environment(
    *,
    feature_store: FeatureStoreKind,
    user_feature_group: str,
    region: str,
    feature_timeout_s: float = 0.05,
    feast_url: str = "",
) -> dict[str, str]:
    """The container Environment that makes the serving image read users' online features from the store."""
    env = {
        "MLOPS_SERVE_FEATURE_STORE": feature_store,
        "MLOPS_SERVE_FEATURE_TIMEOUT_S": f"{feature_timeout_s:g}",
        "AWS_DEFAULT_REGION": region,
    }
    if feature_store == "sagemaker":
        if not user_feature_group:
            raise ValueError(
                "feature_store 'sagemaker' needs user_feature_group, the online feature group to read"
            )
        env["MLOPS_SERVE_FEATURE_SOURCE"] = user_feature_group
    elif feature_store == "feast":
        if not feast_url:
            raise ValueError("feature_store 'feast' needs feast_url, the feature server the endpoint reads")
        env["MLOPS_SERVE_FEATURE_SOURCE"] = feast_url
    return env
