"""One synthesized app for the whole infra test session (synth takes seconds; every test reads it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

IMAGES = {
    "training_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-training:1.0",
    "serving_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-serving:1.0",
}


def package_arn(env: str, account: str) -> str:
    """A model package ARN in the environment's own group."""
    return f"arn:aws:sagemaker:us-east-1:{account}:model-package/mlops-movielens-{env}-recommender/3"


@dataclass
class Synth:
    """The synthesized app: templates by stage and stack name, and where they are."""

    outdir: Path
    templates: dict[str, dict[str, dict]]  # type: ignore[type-arg]
    files: list[Path]

    def template(self, stage: str, stack: str) -> dict:  # type: ignore[type-arg]
        return self.templates[stage][stack]


def full_context() -> dict:  # type: ignore[type-arg]
    """cdk.json's context with image URIs and a model package per environment, so every stack exists."""
    from infra.application import project_context

    context = project_context()
    for env, raw in context["environments"].items():
        raw["images"] = dict(IMAGES)
        raw["model_package_arn"] = package_arn(env, raw["account"])
    return context


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    from infra.application import build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(full_context(), outdir=str(outdir))
    assembly = app.synth()
    templates: dict[str, dict[str, dict]] = {}  # type: ignore[type-arg]
    files: list[Path] = []
    for stage in ("Dev", "Staging", "Prod"):
        nested = assembly.get_nested_assembly(f"assembly-{stage}")
        templates[stage] = {}
        for stack in nested.stacks:
            templates[stage][stack.hierarchical_id.split("/")[-1]] = stack.template
            files.append(Path(stack.template_full_path))
    yield Synth(outdir=outdir, templates=templates, files=files)


@pytest.fixture(scope="session")
def validation_report(synth: Synth) -> dict:  # type: ignore[type-arg]
    return json.loads((synth.outdir / "validation-report.json").read_text())
