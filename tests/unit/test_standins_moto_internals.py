"""The CloudFormation handlers' moto internals are where they expect, and the table makes resources."""

from __future__ import annotations

import pytest

from standins import cfn_handlers, moto_internals
from standins.cfn_handlers import HANDLERS, RESOURCE_CLASSES
from standins.moto_internals import missing_moto_internals


def test_every_moto_internal_the_handlers_use_is_still_there():
    problems = missing_moto_internals()
    assert not problems, "moto moved what the CloudFormation handlers rely on:\n" + "\n".join(problems)


def test_a_moved_internal_is_named_with_what_to_do(monkeypatch):
    monkeypatch.setattr(
        moto_internals,
        "MOTO_INTERNALS",
        (
            ("moto.s3.models", "FakeBucket.no_such_method", ()),
            ("moto.sns.models", "SNSBackend.subscribe", ()),
            ("moto.cloudwatch.models", "Metric", ("metric_name", "no_such_keyword")),
            ("moto.no_such_service", "backends", ()),
        ),
    )
    problems = missing_moto_internals()
    assert len(problems) == 3
    assert "moto.s3.models.FakeBucket.no_such_method is gone" in problems[0]
    assert "moto.cloudwatch.models.Metric lost the parameter(s) no_such_keyword" in problems[1]
    assert "moto.no_such_service cannot be imported" in problems[2]
    assert all("pyproject.toml" in p and "MOTO_INTERNALS" in p for p in problems)


def test_register_refuses_a_moto_whose_internals_moved(monkeypatch):
    monkeypatch.setattr(cfn_handlers, "missing_moto_internals", lambda: ["moto 9.9: x.y is gone; pin moto"])
    with pytest.raises(RuntimeError, match=r"x\.y is gone; pin moto"):
        cfn_handlers.register()


def test_one_model_class_per_table_row_with_its_attributes():
    assert [cls.cloudformation_type() for cls in RESOURCE_CLASSES] == list(HANDLERS)
    alarm = RESOURCE_CLASSES[list(HANDLERS).index("AWS::CloudWatch::Alarm")]
    assert alarm.has_cfn_attr("Arn") and not alarm.has_cfn_attr("Name")


def test_a_row_creates_its_resource_through_motos_backend():
    from moto.sagemaker.models import sagemaker_backends

    account, region = "000000000042", "us-east-1"
    group = RESOURCE_CLASSES[list(HANDLERS).index("AWS::SageMaker::ModelPackageGroup")]
    made = group.create_from_cloudformation_json(
        "Group", {"Properties": {"ModelPackageGroupName": "layout-test"}}, account, region
    )
    try:
        assert made.physical_resource_id.endswith(":model-package-group/layout-test")
        assert made.get_cfn_attribute("ModelPackageGroupArn") == made.physical_resource_id
        assert "layout-test" in sagemaker_backends[account][region].model_package_groups
    finally:
        sagemaker_backends[account][region].reset()
