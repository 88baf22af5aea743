"""A SageMaker feature group with a KMS-encrypted online store and an Iceberg offline store in S3."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct


@dataclass(frozen=True)
class FeatureGroupSpec:
    """What a feature group needs from the feature definition."""

    name: str
    record_identifier: str
    event_time: str
    # [{"FeatureName": ..., "FeatureType": "Integral" | "Fractional" | "String"}, ...]
    features: Sequence[dict[str, str]]
    description: str


_TYPES = ("Integral", "Fractional", "String")


class FeatureGroup(Construct):
    """One SageMaker feature group per feature view."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FeatureGroupSpec,
        group_name: str,
        key: kms.IKey,
        offline_bucket: s3.IBucket,
        role_arn: str,
    ) -> None:
        """Create the feature group; refuse a definition SageMaker would refuse at deploy."""
        super().__init__(scope, construct_id)
        names = [f["FeatureName"] for f in spec.features]
        for required in (spec.record_identifier, spec.event_time):
            if required not in names:
                raise ValueError(
                    f"feature view {spec.name!r}: {required!r} is not among its features {names}; "
                    "the record identifier and event time must be features of the group"
                )
        for feature in spec.features:
            if feature["FeatureType"] not in _TYPES:
                raise ValueError(
                    f"feature view {spec.name!r}: feature {feature['FeatureName']!r} has type "
                    f"{feature['FeatureType']!r}; SageMaker allows {', '.join(_TYPES)}"
                )
        self.group_name = group_name
        self.resource = sagemaker.CfnFeatureGroup(
            self,
            "Resource",
            feature_group_name=group_name,
            description=spec.description[:128],
            record_identifier_feature_name=spec.record_identifier,
            event_time_feature_name=spec.event_time,
            feature_definitions=[
                sagemaker.CfnFeatureGroup.FeatureDefinitionProperty(
                    feature_name=f["FeatureName"], feature_type=f["FeatureType"]
                )
                for f in spec.features
            ],
            # Typed as plain JSON by the L1, so the keys are CloudFormation's own.
            online_store_config={"EnableOnlineStore": True, "SecurityConfig": {"KmsKeyId": key.key_arn}},
            offline_store_config={
                "S3StorageConfig": {
                    "S3Uri": offline_bucket.s3_url_for_object("feature-store"),
                    "KmsKeyId": key.key_arn,
                },
                "DisableGlueTableCreation": False,
                "TableFormat": "Iceberg",
            },
            role_arn=role_arn,
        )
