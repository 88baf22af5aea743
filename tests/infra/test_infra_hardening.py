"""Smaller hardening on the synthesized templates: conditioned service grants, log versioning, VPC egress."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from infra.settings import EnvironmentSettings, SettingsError, parse_environment

from .conftest import Synth, full_context

STAGES = ("Dev", "Staging", "Prod")


def settings_of(stage: str) -> EnvironmentSettings:
    env = stage.lower()
    return parse_environment(env, full_context()["environments"][env])


def resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def service_statements(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The Allow statements of a policy document whose principal is an AWS service, by service."""
    found: dict[str, list[dict[str, Any]]] = {}
    for statement in document["Statement"]:
        service = (
            statement.get("Principal", {}).get("Service")
            if isinstance(statement.get("Principal"), dict)
            else None
        )
        if service and statement["Effect"] == "Allow":
            found.setdefault(service, []).append(statement)
    return found


def assert_alarm_conditions(statement: dict[str, Any], s: EnvironmentSettings) -> None:
    condition = statement["Condition"]
    assert condition["StringEquals"] == {"aws:SourceAccount": s.account}
    arn = json.dumps(condition["ArnLike"]["aws:SourceArn"])
    assert f":cloudwatch:{s.region}:{s.account}:alarm:{s.prefix}-*" in arn, arn


@pytest.mark.parametrize("stage", STAGES)
def test_key_policy_service_grants_carry_source_conditions(synth: Synth, stage: str) -> None:
    s = settings_of(stage)
    (key,) = resources(synth.template(stage, "Data"), "AWS::KMS::Key")
    grants = service_statements(key["KeyPolicy"])
    assert set(grants) == {"cloudwatch.amazonaws.com", "events.amazonaws.com"}
    (cloudwatch,) = grants["cloudwatch.amazonaws.com"]
    assert_alarm_conditions(cloudwatch, s)
    # The one documented exception: EventBridge's KMS requests for an encrypted topic carry no
    # aws:SourceArn/SourceAccount, so the topic policy (below) is where EventBridge is narrowed.
    (events,) = grants["events.amazonaws.com"]
    assert "Condition" not in events
    assert sorted(events["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


@pytest.mark.parametrize("stage", STAGES)
def test_topic_policy_service_grants_carry_source_conditions(synth: Synth, stage: str) -> None:
    s = settings_of(stage)
    raw = synth.template(stage, "Observability")
    (policy,) = resources(raw, "AWS::SNS::TopicPolicy")
    grants = service_statements(policy["PolicyDocument"])
    assert set(grants) == {"cloudwatch.amazonaws.com", "events.amazonaws.com"}
    (cloudwatch,) = grants["cloudwatch.amazonaws.com"]
    assert cloudwatch["Action"] == "sns:Publish"
    assert_alarm_conditions(cloudwatch, s)
    (events,) = grants["events.amazonaws.com"]
    assert events["Action"] == "sns:Publish"
    assert events["Condition"]["StringEquals"] == {"aws:SourceAccount": s.account}
    (rule_id,) = [lid for lid, r in raw["Resources"].items() if r["Type"] == "AWS::Events::Rule"]
    assert events["Condition"]["ArnEquals"] == {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}
    # The rule still sends to the topic.
    (rule,) = resources(raw, "AWS::Events::Rule")
    (topic_id,) = [lid for lid, r in raw["Resources"].items() if r["Type"] == "AWS::SNS::Topic"]
    assert [t["Arn"] for t in rule["Targets"]] == [{"Ref": topic_id}]


@pytest.mark.parametrize("stage", STAGES)
def test_access_log_bucket_is_versioned_and_expires_old_versions(synth: Synth, stage: str) -> None:
    s = settings_of(stage)
    (logs,) = [
        b
        for b in resources(synth.template(stage, "Data"), "AWS::S3::Bucket")
        if b["BucketName"] == s.bucket_name("access-logs")
    ]
    assert logs["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {r["Id"]: r for r in logs["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-logs"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert rules["expire-logs"]["ExpirationInDays"] == 365
    assert rules["remove-expired-delete-markers"]["ExpiredObjectDeleteMarker"] is True
    assert all(r["Status"] == "Enabled" for r in rules.values())


def test_endpoint_egress_is_the_vpcs_own_cidr(synth: Synth) -> None:
    prod = settings_of("Prod")
    assert prod.vpc is not None
    (group,) = resources(synth.template("Prod", "Serving"), "AWS::EC2::SecurityGroup")
    assert [
        (e["CidrIp"], e["FromPort"], e["ToPort"], e["IpProtocol"]) for e in group["SecurityGroupEgress"]
    ] == [(prod.vpc.cidr, 443, 443, "tcp")]
    for stage in STAGES:
        for stack, template in synth.templates[stage].items():
            assert "10.0.0.0/8" not in json.dumps(template), f"{stage}/{stack} still names 10.0.0.0/8"


@pytest.mark.parametrize(
    ("cidr", "expected"),
    [
        (
            "10.20.0.1/16",
            "'10.20.0.1/16' is not an IPv4 network in CIDR form (10.20.0.1/16 has host bits set)",
        ),
        ("vpc", "'vpc' is not an IPv4 network in CIDR form"),
        ("10.0.0.0/8", "'10.0.0.0/8' is not a VPC-sized CIDR: a VPC's IPv4 block is /16 to /28"),
        (None, "context.environments.prod.vpc.cidr = None: Field required"),
    ],
)
def test_a_bad_vpc_cidr_is_refused_naming_it(cidr: str | None, expected: str) -> None:
    raw = copy.deepcopy(full_context()["environments"]["prod"])
    if cidr is None:
        del raw["vpc"]["cidr"]
    else:
        raw["vpc"]["cidr"] = cidr
    with pytest.raises(SettingsError) as error:
        parse_environment("prod", raw)
    assert expected in str(error.value)
    assert "context.environments.prod.vpc.cidr" in str(error.value)


RESOURCE_POLICIES = {
    "AWS::KMS::Key": "KeyPolicy",
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
}


def test_every_service_grant_in_a_resource_policy_names_its_source_account(synth: Synth) -> None:
    """Across all 15 templates: a resource policy's grant to an AWS service is held to this account."""
    unconditioned = []
    for stage in STAGES:
        for stack, template in synth.templates[stage].items():
            for logical_id, resource in template["Resources"].items():
                key = RESOURCE_POLICIES.get(resource["Type"])
                if key is None:
                    continue
                for service, statements in service_statements(resource["Properties"][key]).items():
                    # The documented exception (see the key policy test above).
                    if resource["Type"] == "AWS::KMS::Key" and service == "events.amazonaws.com":
                        continue
                    for statement in statements:
                        if "aws:SourceAccount" not in json.dumps(statement.get("Condition", {})):
                            unconditioned.append(f"{stage}/{stack} {logical_id}: {service}")
    assert unconditioned == []
