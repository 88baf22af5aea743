"""Run the pipeline on this machine: SageMaker local mode in Docker, S3 and the registry on moto.

The same builder makes the definition as for AWS, without the Register ModelStep (local mode
cannot run one). After a run whose quality check passed, the model is registered with the same
request the AWS Register step sends (`pipelines.registry`), into the moto server's registry.

`run.run_local` reads as its phases; `keys` holds the settings and the reuse key, `session` the
local-mode session and its container plumbing, `result` what a run returns or raises.
"""

from __future__ import annotations

from pipelines.local.keys import LOCAL_BUCKET, LOCAL_ROLE, code_version, local_settings, settings_version
from pipelines.local.result import LocalRunError, LocalRunResult, describe_json
from pipelines.local.run import execution_parameters, run_local
from pipelines.local.session import RUN_LABEL, host_user, make_session

__all__ = [
    "LOCAL_BUCKET",
    "LOCAL_ROLE",
    "RUN_LABEL",
    "LocalRunError",
    "LocalRunResult",
    "code_version",
    "describe_json",
    "execution_parameters",
    "host_user",
    "local_settings",
    "make_session",
    "run_local",
    "settings_version",
]
