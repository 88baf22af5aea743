"""Data stack: the project's KMS key and its buckets (raw data, pipeline artifacts, data capture, logs)."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constructs.encrypted_bucket import AccessLogBucket, EncryptedBucket
from infra.settings import EnvironmentSettings


def project_bucket(scope: Construct, settings: EnvironmentSettings, purpose: str) -> s3.IBucket:
    """One of the Data stack's buckets, referred to by its fixed name.

    By name rather than by cross-stack token: policies then read as plain ARNs (and cdk-nag findings are
    stable and acknowledgeable), and the stacks stay deployable one at a time.
    """
    return s3.Bucket.from_bucket_name(scope, f"{purpose.capitalize()}Bucket", settings.bucket_name(purpose))


def alarm_source_conditions(scope: Construct, settings: EnvironmentSettings) -> dict[str, Any]:
    """Policy conditions: the request comes from one of this environment's alarms, in its account."""
    alarms = Stack.of(scope).format_arn(
        service="cloudwatch",
        resource="alarm",
        resource_name=f"{settings.prefix}-*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
        region=settings.region,
        account=settings.account,
    )
    return {
        "StringEquals": {"aws:SourceAccount": settings.account},
        "ArnLike": {"aws:SourceArn": alarms},
    }


class DataStack(Stack):
    """The KMS key every other stack encrypts with, and the four buckets."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, **kwargs: Any
    ) -> None:
        """Create the key and the buckets."""
        super().__init__(scope, construct_id, **kwargs)
        self.key = kms.Key(
            self,
            "Key",
            alias=f"alias/{settings.prefix}",
            description=f"{settings.prefix}: data, features, capture, artifacts, notifications",
            enable_key_rotation=True,
            rotation_period=Duration.days(365),
            removal_policy=RemovalPolicy.RETAIN,
        )
        # CloudWatch alarms publish to the KMS-encrypted topic: the service must be able to use the key,
        # but only for this project's alarms in this account (aws:SourceArn/SourceAccount: no confused
        # deputy, another account's alarm cannot borrow the grant).
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions=alarm_source_conditions(self, settings),
            )
        )
        # EventBridge publishes registry events to the same topic. No aws:SourceArn/SourceAccount here:
        # EventBridge's KMS requests for an encrypted topic do not carry them (AWS documents them as
        # unsupported in this key policy), so conditioning would drop every notification silently.
        # The topic's own policy carries both (infra/stacks/observability.py).
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        self.access_logs = AccessLogBucket(
            self, "AccessLogs", bucket_name=settings.bucket_name("access-logs")
        ).bucket
        self.raw = EncryptedBucket(
            self,
            "Raw",
            bucket_name=settings.bucket_name("raw"),
            key=self.key,
            access_logs=self.access_logs,
            versioned=True,
            expire_after_days=None,
        ).bucket
        self.artifacts = EncryptedBucket(
            self,
            "Artifacts",
            bucket_name=settings.bucket_name("artifacts"),
            key=self.key,
            access_logs=self.access_logs,
            versioned=True,
            expire_after_days=365,
        ).bucket
        self.capture = EncryptedBucket(
            self,
            "Capture",
            bucket_name=settings.bucket_name("capture"),
            key=self.key,
            access_logs=self.access_logs,
            versioned=False,
            expire_after_days=90,
        ).bucket
