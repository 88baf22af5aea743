"""The pipeline definition the CfnPipeline embeds: the pipeline room's builder, with Fn::Sub placeholders."""

from __future__ import annotations

from dataclasses import dataclass

from infra.settings import EnvironmentSettings
from pipelines.definition import definition_json
from pipelines.settings import PipelineSettings

# Values only known at deploy time; the definition is built with these placeholders and Fn::Sub fills them.
# The roles are not among them: the SDK resolves a role that is not an ARN through IAM, so every role the
# definition names has a fixed name and its ARN is known at synth.
PLACEHOLDERS = {
    "ArtifactBucket": "${ArtifactBucket}",
    "TrainingImage": "${TrainingImage}",
    "ServingImage": "${ServingImage}",
    "JobKmsKey": "${JobKmsKey}",
}
# Only in an environment with a VPC: the jobs' security group, created by the MlPlatform stack.
SECURITY_GROUP_PLACEHOLDER = {"JobSecurityGroup": "${JobSecurityGroup}"}

# The roles of the training pipeline, each with one job (see docs/security.md).
ROLES = ("pipeline", "processing", "training", "model")


def placeholders(settings: EnvironmentSettings) -> dict[str, str]:
    """The placeholders this environment's definition carries."""
    return {**PLACEHOLDERS, **(SECURITY_GROUP_PLACEHOLDER if settings.vpc is not None else {})}


@dataclass(frozen=True)
class DeployValues:
    """The deploy-time values that replace the placeholders."""

    artifact_bucket: str
    training_image: str
    serving_image: str
    kms_key: str
    security_group: str = ""


def role_name(settings: EnvironmentSettings, job: str) -> str:
    """The fixed name of one of the pipeline's roles (`ROLES`)."""
    if job not in ROLES:
        raise ValueError(f"role {job!r} is not one of {', '.join(ROLES)}")
    return f"{settings.prefix}-sagemaker-{job}"


def role_arn(settings: EnvironmentSettings, job: str) -> str:
    """The ARN of one of the pipeline's roles, known at synth time."""
    return f"arn:aws:iam::{settings.account}:role/{role_name(settings, job)}"


def mlflow_tracking_server_name(settings: EnvironmentSettings) -> str:
    """The managed MLflow tracking server's fixed name, so its ARN is known at synth."""
    return f"{settings.prefix}-mlflow"


def mlflow_tracking_server_arn(settings: EnvironmentSettings) -> str:
    """The managed MLflow tracking server's ARN (training logs to it through the sagemaker-mlflow plugin)."""
    return (
        f"arn:aws:sagemaker:{settings.region}:{settings.account}:"
        f"mlflow-tracking-server/{mlflow_tracking_server_name(settings)}"
    )


def pipeline_settings(settings: EnvironmentSettings, values: DeployValues) -> PipelineSettings:
    """The pipeline room's typed settings for this environment (hyperparameters: training's defaults)."""
    return PipelineSettings(
        pipeline_name=settings.pipeline_name,
        region=settings.region,
        role_arn=role_arn(settings, "pipeline"),
        processing_role_arn=role_arn(settings, "processing"),
        training_role_arn=role_arn(settings, "training"),
        bucket=values.artifact_bucket,
        training_image_uri=values.training_image,
        serving_image_uri=values.serving_image,
        model_package_group_name=settings.model_package_group_name,
        processing_instance_type=settings.processing_instance_type,
        training_instance_type=settings.training_instance_type,
        training_instance_count=settings.training_instance_count,
        inference_instance_type=settings.endpoint_instance_type,
        feature_store="sagemaker",
        user_feature_group=settings.feature_group_name("user_features"),
        movie_feature_group=settings.feature_group_name("movie_features"),
        # Without a managed server, training tracks to a local store inside the job (training.tracking).
        mlflow_tracking_uri=mlflow_tracking_server_arn(settings) if settings.mlflow_enabled else "",
        kms_key_id=values.kms_key,
        subnet_ids=list(settings.vpc.subnet_ids) if settings.vpc is not None else [],
        security_group_ids=[values.security_group] if settings.vpc is not None else [],
        max_processing_seconds=settings.max_processing_seconds,
        max_training_seconds=settings.max_training_seconds,
    )


def definition_body(settings: EnvironmentSettings, values: DeployValues) -> str:
    """The pipeline definition JSON the pipeline room's builder makes for these values."""
    # The builder sets the SDK up itself (pipelines.sdk): synth makes no AWS call.

    return definition_json(pipeline_settings(settings, values))


def placeholder_body(settings: EnvironmentSettings) -> str:
    """The definition with CloudFormation placeholders for the deploy-time values."""
    body = definition_body(
        settings,
        DeployValues(
            artifact_bucket=PLACEHOLDERS["ArtifactBucket"],
            training_image=PLACEHOLDERS["TrainingImage"],
            serving_image=PLACEHOLDERS["ServingImage"],
            kms_key=PLACEHOLDERS["JobKmsKey"],
            security_group=SECURITY_GROUP_PLACEHOLDER["JobSecurityGroup"],
        ),
    )
    stray = body
    for token in placeholders(settings).values():
        stray = stray.replace(token, "")
    if "${" in stray:
        # Fn::Sub would read any other ${...} as a reference and fail the deploy with a cryptic error.
        at = stray.index("${")
        raise ValueError(
            f"the pipeline definition contains {stray[at : at + 40]!r}, which Fn::Sub would take for a "
            "reference; the pipeline builder must not emit '${' outside the infra placeholders"
        )
    return body
