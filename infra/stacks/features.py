"""Features stack: one SageMaker feature group per feature view of the feature definition."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.constructs.feature_group import FeatureGroup, FeatureGroupSpec
from infra.feature_specs import feature_group_specs
from infra.settings import EnvironmentSettings
from infra.stacks.data import project_bucket


class FeaturesStack(Stack):
    """Feature groups and the role their offline store writes with."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        key: kms.IKey,
        specs: list[FeatureGroupSpec] | None = None,
        **kwargs: Any,
    ) -> None:
        """Create a group per feature view (from the feature definition unless `specs` is given)."""
        super().__init__(scope, construct_id, **kwargs)
        offline_bucket = project_bucket(self, settings, "artifacts")
        glue_prefix = settings.prefix.replace("-", "_")
        self.offline_role = iam.Role(
            self,
            "OfflineStoreRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker Feature Store writes the offline store (S3, Glue) with this role",
        )
        offline_bucket.grant_read_write(self.offline_role, "feature-store/*")
        key.grant_encrypt_decrypt(self.offline_role)
        self.offline_role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetBucketAcl", "s3:ListBucket"],
                resources=[offline_bucket.bucket_arn],
            )
        )
        self.offline_role.add_to_policy(
            iam.PolicyStatement(
                actions=["glue:GetTable", "glue:CreateTable", "glue:UpdateTable", "glue:GetDatabase"],
                resources=[
                    self.format_arn(service="glue", resource="catalog"),
                    self.format_arn(
                        service="glue", resource="database", resource_name="sagemaker_featurestore"
                    ),
                    self.format_arn(
                        service="glue",
                        resource="table",
                        resource_name=f"sagemaker_featurestore/{glue_prefix}*",
                    ),
                ],
            )
        )
        self.groups: list[FeatureGroup] = []
        for spec in specs if specs is not None else feature_group_specs():
            group = FeatureGroup(
                self,
                spec.name,
                spec=spec,
                group_name=settings.feature_group_name(spec.name),
                key=key,
                offline_bucket=offline_bucket,
                role_arn=self.offline_role.role_arn,
            )
            group.resource.node.add_dependency(self.offline_role)
            self.groups.append(group)
