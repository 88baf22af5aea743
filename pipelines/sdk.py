"""The SageMaker SDK's process set-up, in one place: every path that builds or runs a definition calls it.

The SDK reads some settings from the environment (at import time for the region: several of its
modules make boto clients when imported) and the rest from its "intelligent defaults" config, which
we hand to every Session we make instead of relying on files in the user's home.
"""

from __future__ import annotations

import copy
import os
from typing import Any

# "1" lets the SageMaker SDK send its usage telemetry to AWS, as it does by default (docs/pipeline.md).
TELEMETRY_ENV = "MLOPS_SAGEMAKER_TELEMETRY"
# The SDK's defaults config (schema 1.0) with telemetry off: otherwise every decorated SDK call, even
# an offline definition build or a CDK synth, asks STS for the account id and reports to AWS.
SDK_CONFIG: dict[str, Any] = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


def configure_sdk(region: str) -> dict[str, Any] | None:
    """Set what the SDK reads from the environment; return the config to pass as `sagemaker_config`.

    Call it before the first `import sagemaker...` of the process. Values already in the
    environment win, so a user's AWS_DEFAULT_REGION or SAGEMAKER_VALIDATE_ROLE=true is kept. With
    MLOPS_SAGEMAKER_TELEMETRY=1 it returns None: the SDK then loads its own defaults (telemetry on,
    or what the user's config file says).
    """
    # ModelTrainer asks IAM to simulate the role unless told not to; the settings check the ARN's
    # form, and building a definition (or a CDK synth) must make no AWS call.
    os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")
    # Imported modules such as sagemaker.mlops.local build boto clients and need a region then.
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    if os.environ.get(TELEMETRY_ENV, "").strip() == "1":
        return None
    # A copy: the SDK merges its own defaults into the dict it is given.
    return copy.deepcopy(SDK_CONFIG)


def endpoint_url() -> str | None:
    """The AWS endpoint override (a moto server for local runs), or None for AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL") or None
