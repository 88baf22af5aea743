"""The unit suite runs the same however it is launched: the caller's AWS set-up never reaches it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _no_aws_from_the_caller() -> Iterator[None]:
    """Hide the caller's AWS profile, region, keys, endpoint and files; tests that need some set them.

    A launcher's AWS_PROFILE naming a profile this machine lacks made every boto3 client fail with
    ProfileNotFound, even under moto; a region or endpoint would send moto's calls elsewhere.
    Session-scoped, so module-scoped fixtures see the same clean environment as the tests.
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                patch.delenv(name)
        # The suite's region, as `make` exports it (the SageMaker SDK makes a client at import).
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        # No instance metadata service to ask for credentials here; asking costs seconds per client.
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield
