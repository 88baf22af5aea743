"""cdk-nag AwsSolutions checks, and each acknowledged finding with the reason it is acceptable."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

if TYPE_CHECKING:
    from infra.stage import EnvironmentStage

# CDK's grant_read/grant_read_write emit these action groups; each is limited to the resources granted.
_S3_GRANT_ACTIONS = ("s3:Abort*", "s3:DeleteObject*", "s3:GetBucket*", "s3:GetObject*", "s3:List*")
_S3_GRANT_REASON = (
    "CDK's bucket grant (grant_read/grant_read_write): the wildcard only groups S3 object actions, "
    "and the statement is limited to this project's bucket"
)
_KMS_GRANT_ACTIONS = ("kms:GenerateDataKey*", "kms:ReEncrypt*")
_KMS_GRANT_REASON = (
    "CDK's key grant (grant_encrypt_decrypt): the wildcard only groups the data-key and re-encrypt "
    "variants, and the statement is limited to the project's one KMS key"
)


def add_nag(app: cdk.App) -> None:
    """Run the AwsSolutions pack on every stack of the app at synth."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))


def _ack(construct: IConstruct, findings: dict[str, str]) -> None:
    for finding, reason in findings.items():
        cdk.Validations.of(construct).acknowledge(
            cdk.Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason)
        )


def _grants(objects: dict[str, str]) -> dict[str, str]:
    out = {f"Action::{action}": _S3_GRANT_REASON for action in _S3_GRANT_ACTIONS}
    out.update({f"Action::{action}": _KMS_GRANT_REASON for action in _KMS_GRANT_ACTIONS})
    out.update({f"Resource::arn:<AWS::Partition>:s3:::{path}": reason for path, reason in objects.items()})
    return out


def acknowledge_findings(stage: EnvironmentStage) -> None:
    """Acknowledge the findings this design accepts, each with its reason; any other finding fails synth."""
    s = stage.settings
    arn = f"arn:<AWS::Partition>:{{service}}:{s.region}:{s.account}:"
    sagemaker = arn.format(service="sagemaker")
    glue_tables = f"{arn.format(service='glue')}table/sagemaker_featurestore/{s.prefix.replace('-', '_')}*"
    jobs = "Pipeline steps name their jobs and models pipelines-<execution>-..."
    _ack(
        stage.features.offline_role,
        {
            **_grants(
                {
                    f"{s.bucket_name('artifacts')}/feature-store/*": (
                        "The offline store writes Iceberg files under any key of the feature-store/ prefix"
                    )
                }
            ),
            f"Resource::{glue_tables}": (
                "Feature Store names Glue tables <group>_<creation time>; the prefix keeps them ours"
            ),
        },
    )
    execution = {
        **_grants(
            {
                f"{s.bucket_name('raw')}/*": "Training reads any raw data version it is pointed at",
                f"{s.bucket_name('artifacts')}/*": "Pipeline steps write under per-execution prefixes",
                f"{s.bucket_name('capture')}/*": "The drift job reads captured requests under dated prefixes",
            }
        ),
        "Resource::*": (
            "ecr:GetAuthorizationToken has no resource-level permission; cloudwatch:PutMetricData has none "
            "and is limited by a cloudwatch:namespace condition"
        ),
        f"Resource::{arn.format(service='logs')}log-group:/aws/sagemaker/*": (
            "SageMaker jobs log to /aws/sagemaker/<job type> groups whose streams are named per job"
        ),
        f"Resource::{sagemaker}training-job/pipelines-*": jobs,
        f"Resource::{sagemaker}processing-job/pipelines-*": jobs,
        f"Resource::{sagemaker}model/pipelines-*": jobs,
        f"Resource::{sagemaker}model-package/{s.model_package_group_name}/*": (
            "Every version of this project's one model package group"
        ),
        f"Resource::{sagemaker}feature-group/{s.prefix}-*": "Feature groups of this project and environment",
    }
    if s.mlflow_enabled:
        execution["Action::sagemaker-mlflow:*"] = (
            "Logging runs uses many MLflow API actions; the statement names this environment's server only"
        )
    _ack(stage.ml_platform.role, execution)
    if s.mlflow_enabled:
        _ack(
            stage.ml_platform.mlflow_role,
            _grants(
                {f"{s.bucket_name('artifacts')}/mlflow/*": "MLflow stores run artifacts under mlflow/<run>/"}
            ),
        )
