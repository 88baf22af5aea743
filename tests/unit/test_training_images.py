"""`mlops images build`'s build context: locked requirements, CA bundle, only the code packages."""

from __future__ import annotations

import re

import pytest

from dataset.paths import ROOT
from images.context import ImageBuildError, assemble_context, host_ca_bundle
from images.spec import IMAGES, ImageSpec
from standins.git import git_commit


def test_training_context_holds_locked_requirements_ca_and_code(tmp_path):
    context = assemble_context(IMAGES["training"], tmp_path / "ctx")
    requirements = (context / "requirements-train.txt").read_text()
    assert re.search(r"^tensorflow-cpu==2\.21\.", requirements, re.MULTILINE)
    assert re.search(r"^mlflow==3\.17\.", requirements, re.MULTILINE)
    # Only the train group: no CDK, no test tools, none of the host-only ML tools.
    for absent in ("aws-cdk-lib==", "pytest==", "feast==", "moto==", "dvc=="):
        assert absent not in requirements
    assert (context / "host-ca.crt").read_bytes() == host_ca_bundle().read_bytes()
    assert (context / "training" / "Dockerfile").is_file() and (
        context / "training" / "entrypoint.py"
    ).is_file()
    assert {p.name for p in context.iterdir()} <= {
        "requirements-train.txt",
        "host-ca.crt",
        "dataset",
        "features",
        "pipelines",
        "training",
        "inference",
        "modeldir",
    }
    # The saved-model contract is in; the host-only benchmarks are not.
    assert (context / "modeldir" / "contract.py").is_file()
    assert not (context / "bench").exists()
    assert not list(context.rglob("__pycache__"))


@pytest.mark.parametrize("dockerfile", ["training/Dockerfile", "inference/Dockerfile"])
def test_both_images_copy_the_model_dir_contract(dockerfile):
    """Export (training image) and serving (serving image) both import modeldir: both copy it in."""
    text = (ROOT / dockerfile).read_text()
    assert re.search(r"^COPY .*\bmodeldir /opt/program/modeldir$", text, re.MULTILINE)
    assert not re.search(r"^COPY .*\bbench\b", text, re.MULTILINE)


def test_missing_dockerfile_is_named(tmp_path):
    spec = ImageSpec("ghost", "ghost/Dockerfile", "ghost:latest", "train")
    with pytest.raises(ImageBuildError, match="ghost/Dockerfile is missing"):
        assemble_context(spec, tmp_path)


def test_ca_bundle_comes_from_the_first_variable_naming_a_file(tmp_path, monkeypatch):
    bundle = tmp_path / "corp.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("PIP_CERT", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert host_ca_bundle() == bundle


def test_git_commit_names_the_checkout():
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", git_commit(ROOT))
