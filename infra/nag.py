"""cdk-nag AwsSolutions checks, and each acknowledged finding with the reason it is acceptable."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

if TYPE_CHECKING:
    from infra.constructs.job_role import JobRole
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


def _ack_role(job: JobRole, extra: dict[str, str] | None = None) -> None:
    """Acknowledge exactly the wildcards `job` recorded, on its default policy; `Resource::*` only on
    its separate policy of actions without resource-level permissions."""
    findings = {**job.wildcards, **(extra or {})}
    if findings:
        _ack(job.default_policy, findings)
    if job.no_resource_level is not None:
        _ack(job.no_resource_level, {"Resource::*": "; ".join(job.no_resource_level_reasons)})


def acknowledge_findings(stage: EnvironmentStage) -> None:
    """Acknowledge the findings this design accepts, each with its reason; any other finding fails synth."""
    s = stage.settings
    arn = f"arn:<AWS::Partition>:{{service}}:{s.region}:{s.account}:"
    glue_tables = f"{arn.format(service='glue')}table/sagemaker_featurestore/{s.prefix.replace('-', '_')}*"
    _ack(
        stage.features.offline_role.node.find_child("DefaultPolicy"),
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
    platform = stage.ml_platform
    for name, job in platform.roles.items():
        extra = {}
        if name == "training" and s.mlflow_enabled:
            extra["Action::sagemaker-mlflow:*"] = (
                "Logging runs uses many MLflow API actions; the statement names this environment's server"
            )
        _ack_role(job, extra)
    _ack_role(platform.approver_role)
    if s.studio_enabled:
        _ack_role(platform.studio_role)
    if s.mlflow_enabled:
        _ack(
            platform.mlflow_role.node.find_child("DefaultPolicy"),
            _grants(
                {f"{s.bucket_name('artifacts')}/mlflow/*": "MLflow stores run artifacts under mlflow/<run>/"}
            ),
        )
    cdk.Validations.of(platform.schedule_dlq.node.default_child).acknowledge(  # type: ignore[arg-type]
        cdk.Acknowledgment(
            id="AwsSolutions-SQS3",
            reason=(
                "It is the retraining schedule's own dead-letter queue (Target.DeadLetterConfig); "
                "cdk-nag only recognises queues that another queue's RedrivePolicy names"
            ),
        )
    )
