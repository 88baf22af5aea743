"""An S3 bucket that is secure by default: KMS, TLS only, no public access, access logs, lifecycle."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct


class EncryptedBucket(Construct):
    """A KMS-encrypted, TLS-only, private bucket that logs its access and expires what it should."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket_name: str,
        key: kms.IKey,
        access_logs: s3.IBucket,
        versioned: bool,
        expire_after_days: int | None,
        noncurrent_expire_after_days: int = 90,
    ) -> None:
        """Create the bucket; `expire_after_days` None keeps current objects forever."""
        super().__init__(scope, construct_id)
        rules = [
            s3.LifecycleRule(
                id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(7)
            ),
        ]
        if expire_after_days is not None:
            rules.append(s3.LifecycleRule(id="expire-current", expiration=Duration.days(expire_after_days)))
        if versioned:
            rules.append(
                s3.LifecycleRule(
                    id="expire-noncurrent",
                    noncurrent_version_expiration=Duration.days(noncurrent_expire_after_days),
                    noncurrent_version_transitions=[
                        s3.NoncurrentVersionTransition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(30),
                        )
                    ],
                )
            )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            # Bucket keys cut KMS request costs by orders of magnitude on chatty writers (data capture).
            bucket_key_enabled=True,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=versioned,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix=f"{construct_id.lower()}/",
            lifecycle_rules=rules,
            # Data and models outlive a stack: deleting a stack must never delete them.
            removal_policy=RemovalPolicy.RETAIN,
        )


class AccessLogBucket(Construct):
    """The bucket that receives every other bucket's server access logs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket_name: str,
        expire_after_days: int = 365,
        noncurrent_expire_after_days: int = 30,
    ) -> None:
        """Create the log bucket (SSE-S3: S3 server access logging cannot write to SSE-KMS buckets).

        Versioned, so an overwrite or delete of a log object (by a person or a compromised role) leaves
        the old version for `noncurrent_expire_after_days`: long enough to notice, short enough that
        the logs' storage stays bounded.
        """
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-logs",
                    expiration=Duration.days(expire_after_days),
                    noncurrent_version_expiration=Duration.days(noncurrent_expire_after_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
                # Expiring a current version leaves a delete marker; remove it once nothing is under it.
                s3.LifecycleRule(id="remove-expired-delete-markers", expired_object_delete_marker=True),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
