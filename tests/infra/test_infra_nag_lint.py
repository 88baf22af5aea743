"""Quality bars: zero unacknowledged cdk-nag AwsSolutions findings, zero cfn-lint errors on every template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from infra.nag import add_nag

from .conftest import Synth

CFN_LINT = Path(sys.executable).parent / "cfn-lint"


def test_no_unacknowledged_nag_findings(synth: Synth, validation_report: dict) -> None:  # type: ignore[type-arg]
    # The synth fixture would have raised on any unacknowledged finding; the report names none either.
    failing = [
        report
        for report in validation_report["pluginReports"]
        if report.get("summary", {}).get("status") != "success"
    ]
    assert failing == [], json.dumps(failing, indent=1)[:4000]
    assert len(synth.files) == 15  # five stacks in each of three environments


def test_nag_really_fails_an_insecure_stack(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path))
    add_nag(app)
    stack = cdk.Stack(app, "Insecure")
    s3.Bucket(stack, "Open")
    role = iam.Role(stack, "Wide", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    with pytest.raises(RuntimeError, match="ValidationFailed") as error:
        app.synth()
    for finding in ("AwsSolutions-S1'", "AwsSolutions-S10'", "AwsSolutions-IAM5[Action::s3:*]"):
        assert finding in str(error.value), finding


def test_cfn_lint_finds_no_errors(synth: Synth) -> None:
    assert CFN_LINT.exists(), f"{CFN_LINT} is missing: run `make setup-cdk`"
    proc = subprocess.run(
        [str(CFN_LINT), "--format", "json", *[str(f) for f in synth.files]],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    others = len(findings) - len(errors)
    print(f"cfn-lint: {len(synth.files)} templates, {len(errors)} errors, {others} other findings")
    assert errors == [], json.dumps(errors, indent=1)[:4000]
