"""Quality bars: zero unacknowledged cdk-nag AwsSolutions findings, zero cfn-lint errors on every template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from infra.application import build_app, stage_id
from infra.nag import add_nag

from .conftest import Synth, full_context

CFN_LINT = Path(sys.executable).parent / "cfn-lint"
# cfn-lint ORs 2 (error), 4 (warning) and 8 (informational) into its exit code; 1 means it could not run.
CFN_LINT_CLEAN_CODES = (0, 8)
# Rules we switch off, each with why. CDK's node.add_dependency(role) depends on the Role and its
# DefaultPolicy: the Role half repeats the GetAtt (W3005), the policy half is the point (the resource
# must not start before its role may act).
CFN_LINT_IGNORED = {"W3005": "redundant DependsOn on a Role whose DefaultPolicy must come first"}


def cfn_lint(*args: str) -> list[dict[str, Any]]:
    """cfn-lint's findings (JSON); fails unless it ran and found nothing above informational."""
    assert CFN_LINT.exists(), f"{CFN_LINT} is missing: run `make setup-cdk`"
    proc = subprocess.run(
        [str(CFN_LINT), "--ignore-checks", *CFN_LINT_IGNORED, "--format", "json", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode in CFN_LINT_CLEAN_CODES, (
        f"cfn-lint exited {proc.returncode} (2 error, 4 warning, 1 could not run): "
        f"{proc.stdout[:3000]} {proc.stderr[-2000:]}"
    )
    findings: list[dict[str, Any]] = json.loads(proc.stdout)
    above = [f for f in findings if f["Level"] != "Informational"]
    assert above == [], json.dumps(above, indent=1)[:4000]
    return findings


def test_no_unacknowledged_nag_findings(synth: Synth, validation_report: dict) -> None:  # type: ignore[type-arg]
    # The synth fixture would have raised on any unacknowledged finding. A clean synth writes
    # "pluginReports": [] whether or not nag is attached: test_nag_runs_on_the_real_app proves it is.
    failing = [
        report
        for report in validation_report["pluginReports"]
        if report["conclusion"] != "success" or report.get("violations")
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


def test_nag_runs_on_the_real_app(tmp_path: Path) -> None:
    """One insecure bucket added to the real app's Dev Data stack fails synth, and only it is reported."""
    context = {**full_context(), "env": "dev"}
    app = build_app(context, outdir=str(tmp_path))
    data = app.node.find_child(stage_id("dev")).node.find_child("Data")
    s3.Bucket(data, "NagProbe")  # no TLS-only policy, no access log
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    [plugin] = report["pluginReports"]
    assert plugin["pluginName"] == "AwsSolutions" and plugin["conclusion"] == "failure"
    rules = {v["ruleName"] for v in plugin["violations"]}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules, rules
    paths = {c["constructPath"] for v in plugin["violations"] for c in v["violatingConstructs"]}
    # The real stacks' own findings are all acknowledged: the probe is the only offender.
    assert paths == {"Dev/Data/NagProbe/Resource"}, paths


# What the security review injected into the old single role without a finding: each on every resource.
INJECTED = ("iam:PassRole", "s3:GetObject", "sagemaker:UpdateModelPackage")


def _violations(outdir: Path) -> set[tuple[str, str]]:
    report = json.loads((outdir / "validation-report.json").read_text())
    return {
        (v["ruleName"], c["constructPath"])
        for plugin in report["pluginReports"]
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    }


def test_a_wildcard_injected_into_any_role_fails_synth(tmp_path: Path) -> None:
    """Every role of the real Prod stage (all roles exist there), given one more statement on `*`, fails
    cdk-nag: acknowledgements name exact resources on exact policies, never a whole role."""
    context = {**full_context(), "env": "prod"}
    app = build_app(context, outdir=str(tmp_path))
    stage = app.node.find_child(stage_id("prod"))
    roles = [c for c in stage.node.find_all() if isinstance(c, iam.Role)]
    names = {role.node.path for role in roles}
    # The job roles, approver, Studio users, MLflow server, schedule, feature store offline store.
    assert len(roles) >= 9, names
    for role in roles:
        for action in INJECTED:
            role.add_to_policy(iam.PolicyStatement(actions=[action], resources=["*"]))
    # And a wider prefix than granted: the model role reading the whole artifacts bucket.
    platform = stage.node.find_child("MlPlatform")
    artifacts = platform.settings.bucket_name("artifacts")
    platform.roles["model"].role.add_to_policy(
        iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"arn:aws:s3:::{artifacts}/*"])
    )
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    found = _violations(tmp_path)
    policies = {f"{path}/DefaultPolicy/Resource" for path in names}
    model_policy = f"{platform.roles['model'].role.node.path}/DefaultPolicy/Resource"
    assert found == {("AwsSolutions-IAM5[Resource::*]", policy) for policy in policies} | {
        (f"AwsSolutions-IAM5[Resource::arn:aws:s3:::{artifacts}/*]", model_policy)
    }


def test_cfn_lint_finds_no_errors(synth: Synth) -> None:
    findings = cfn_lint(*[str(f) for f in synth.files])
    print(f"cfn-lint: {len(synth.files)} templates, {len(findings)} informational findings")


def test_cfn_lint_check_fails_when_cfn_lint_cannot_run() -> None:
    # cfn-lint given an option it does not know prints nothing on stdout and exits 1: not clean.
    with pytest.raises(AssertionError, match="cfn-lint exited 1"):
        cfn_lint("--no-such-option")


def test_cfn_lint_check_fails_on_a_warning(tmp_path: Path) -> None:
    template = tmp_path / "warning.json"
    template.write_text(
        json.dumps(
            {
                "Parameters": {"Unused": {"Type": "String"}},  # W2001: parameter not used
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            }
        )
    )
    with pytest.raises(AssertionError, match="cfn-lint exited 4"):
        cfn_lint(str(template))
