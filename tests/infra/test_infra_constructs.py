"""Each construct of infra/constructs in a bare Stack, asserted on its template."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template

from infra.application import project_context
from infra.constructs.alarms import AlarmNames, MonitoringAlarms
from infra.constructs.encrypted_bucket import AccessLogBucket, EncryptedBucket
from infra.constructs.feature_group import FeatureGroup, FeatureGroupSpec
from infra.settings import parse_environment


def bare_stack() -> cdk.Stack:
    app = cdk.App(context={"@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True})
    return cdk.Stack(app, "Bare", env=cdk.Environment(account="123456789012", region="us-east-1"))


def test_encrypted_bucket_is_private_tls_only_logged_and_expiring() -> None:
    stack = bare_stack()
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    logs = AccessLogBucket(stack, "Logs", bucket_name="logs-bucket").bucket
    EncryptedBucket(
        stack,
        "Raw",
        bucket_name="raw-bucket",
        key=key,
        access_logs=logs,
        versioned=True,
        expire_after_days=None,
    )
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": "raw-bucket",
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {
                        "ServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": Match.any_value(),
                        },
                        "BucketKeyEnabled": True,
                    }
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "LoggingConfiguration": {"DestinationBucketName": Match.any_value(), "LogFilePrefix": "raw/"},
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {"Id": "expire-noncurrent", "NoncurrentVersionExpiration": {"NoncurrentDays": 90}}
                        )
                    ]
                )
            },
        },
    )
    # Both buckets deny plain HTTP.
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )
    assert (
        template.find_resources("AWS::S3::Bucket", {"DeletionPolicy": "Retain"}).keys()
        == template.find_resources("AWS::S3::Bucket").keys()
    )


def test_unversioned_bucket_with_expiry() -> None:
    stack = bare_stack()
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    logs = AccessLogBucket(stack, "Logs", bucket_name="logs-bucket").bucket
    EncryptedBucket(
        stack,
        "Capture",
        bucket_name="capture-bucket",
        key=key,
        access_logs=logs,
        versioned=False,
        expire_after_days=90,
    )
    bucket = Template.from_stack(stack).find_resources(
        "AWS::S3::Bucket", {"Properties": {"BucketName": "capture-bucket"}}
    )
    (props,) = (b["Properties"] for b in bucket.values())
    assert "VersioningConfiguration" not in props
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-current"]["ExpirationInDays"] == 90


SPEC = FeatureGroupSpec(
    name="user_features",
    record_identifier="user_id",
    event_time="event_timestamp",
    features=[
        {"FeatureName": "user_id", "FeatureType": "Integral"},
        {"FeatureName": "event_timestamp", "FeatureType": "Fractional"},
        {"FeatureName": "user_rating_mean", "FeatureType": "Fractional"},
    ],
    description="test",
)


def test_feature_group_online_kms_offline_iceberg() -> None:
    stack = bare_stack()
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    bucket = cdk.aws_s3.Bucket.from_bucket_name(stack, "Offline", "offline-bucket")
    FeatureGroup(
        stack,
        "Group",
        spec=SPEC,
        group_name="p-user-features",
        key=key,
        offline_bucket=bucket,
        role_arn="arn:aws:iam::123456789012:role/r",
    )
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::SageMaker::FeatureGroup",
        {
            "FeatureGroupName": "p-user-features",
            "RecordIdentifierFeatureName": "user_id",
            "EventTimeFeatureName": "event_timestamp",
            "FeatureDefinitions": [
                {"FeatureName": "user_id", "FeatureType": "Integral"},
                {"FeatureName": "event_timestamp", "FeatureType": "Fractional"},
                {"FeatureName": "user_rating_mean", "FeatureType": "Fractional"},
            ],
            "OnlineStoreConfig": {
                "EnableOnlineStore": True,
                "SecurityConfig": {"KmsKeyId": Match.any_value()},
            },
            "OfflineStoreConfig": {
                "S3StorageConfig": {"S3Uri": Match.any_value(), "KmsKeyId": Match.any_value()},
                "DisableGlueTableCreation": False,
                "TableFormat": "Iceberg",
            },
        },
    )


def test_feature_group_refuses_what_sagemaker_would_refuse() -> None:
    stack = bare_stack()
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    bucket = cdk.aws_s3.Bucket.from_bucket_name(stack, "Offline", "offline-bucket")
    bad_type = FeatureGroupSpec(
        **{**SPEC.__dict__, "features": [*SPEC.features, {"FeatureName": "x", "FeatureType": "Boolean"}]}
    )
    with pytest.raises(
        ValueError, match="feature 'x' has type 'Boolean'; SageMaker allows Integral, Fractional, String"
    ):
        FeatureGroup(
            stack, "Bad", spec=bad_type, group_name="g", key=key, offline_bucket=bucket, role_arn="r"
        )
    no_key = FeatureGroupSpec(**{**SPEC.__dict__, "record_identifier": "movie_id"})
    with pytest.raises(ValueError, match="'movie_id' is not among its features"):
        FeatureGroup(
            stack, "NoKey", spec=no_key, group_name="g", key=key, offline_bucket=bucket, role_arn="r"
        )


def test_alarms_have_actions_on_the_topic() -> None:
    stack = bare_stack()
    topic = sns.Topic(stack, "Topic")
    settings = parse_environment("dev", project_context()["environments"]["dev"])
    alarms = MonitoringAlarms(
        stack,
        "Alarms",
        names=AlarmNames("p"),
        thresholds=settings.alarms,
        endpoint_name="ep",
        pipeline_name="pl",
        topic=topic,
    )
    assert len(alarms.alarms) == 7
    template = Template.from_stack(stack)
    found = template.find_resources("AWS::CloudWatch::Alarm")
    assert len(found) == 7
    topic_ref = {"Ref": stack.get_logical_id(topic.node.default_child)}  # type: ignore[arg-type]
    for alarm in found.values():
        props = alarm["Properties"]
        assert props["ActionsEnabled"] is True
        assert props["AlarmActions"] == [topic_ref]
        assert props["OKActions"] == [topic_ref]
    p99 = next(
        a["Properties"] for a in found.values() if a["Properties"]["AlarmName"] == "p-endpoint-p99-latency"
    )
    assert p99["ExtendedStatistic"] == "p99"
    assert p99["Threshold"] == settings.alarms.p99_latency_ms * 1000
    rate = next(
        a["Properties"] for a in found.values() if a["Properties"]["AlarmName"] == "p-endpoint-4xx-rate"
    )
    assert any("100 * e4 / inv" in m.get("Expression", "") for m in rate["Metrics"])
    assert json.dumps(found).count('"EndpointName"') >= 6
