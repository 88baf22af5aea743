"""A local run's settings and its reuse key: the dataset's, the code's and the settings' versions."""

from __future__ import annotations

import hashlib
import json
import subprocess
from typing import Any

from dataset.paths import ROOT
from pipelines.local.result import LocalRunError
from pipelines.settings import PipelineSettings

LOCAL_BUCKET = "mlops-local"
LOCAL_ROLE = "arn:aws:iam::123456789012:role/mlops-local-execution"
CODE_PATHS = ("pipelines", "training", "features", "dataset", "modeldir")


def local_settings(base: PipelineSettings | None = None, **overrides: Any) -> PipelineSettings:
    """Settings for a local run: local instances, local images, the moto bucket and role."""
    values = (base or PipelineSettings.model_validate({})).model_dump()
    values.update(
        processing_instance_type="local",
        training_instance_type="local",
        bucket=LOCAL_BUCKET,
        role_arn=LOCAL_ROLE,
        processing_role_arn=LOCAL_ROLE,
        training_role_arn=LOCAL_ROLE,
        # Locally the feature store is Feast; a settings file may still say "none" to skip ingestion.
        feature_store="none" if values["feature_store"] == "none" else "feast",
        training_image_uri="mlops-training:latest",
        serving_image_uri="mlops-serving:latest",
    )
    values.update(overrides)
    return PipelineSettings.model_validate(values)


def code_version() -> str:
    """Content hash of the code a run executes, as the working tree holds it (what the image is built from).

    Hashing HEAD's trees instead would give a dirty tree the same version whatever its edits (so a
    changed step could reuse an old model) and would change with commits that touch nothing here.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *CODE_PATHS],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        raise LocalRunError(
            f"`git ls-files` failed in {ROOT} ({listed.stderr.decode(errors='replace').strip()}): "
            "a local run keys reuse on the code's content, so it needs the git checkout"
        )
    digest = hashlib.sha256()
    for name in sorted(set(listed.stdout.decode().split("\0")) - {""}):
        path = ROOT / name
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def settings_version(settings: PipelineSettings) -> str:
    """Hash of the settings that shape the model (hyperparameters, split, thresholds), for the reuse key."""
    # Where the stand-ins listen changes from run to run and does not change the model.
    shaping = settings.model_dump(mode="json", exclude={"feast_url", "mlflow_tracking_uri"})
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]
