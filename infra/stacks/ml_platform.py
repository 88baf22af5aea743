"""ML platform stack: images, execution role, model package group, pipeline, schedule, MLflow, Studio."""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, Fn, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from images.context import assemble_context
from images.spec import IMAGES
from infra.pipeline_body import (
    PLACEHOLDERS,
    execution_role_name,
    mlflow_tracking_server_name,
    placeholder_body,
)
from infra.settings import EnvironmentSettings
from infra.stacks.data import project_bucket

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTEXTS = REPO_ROOT / "build" / "cdk-image-contexts"


@functools.cache
def image_context(name: str) -> Path:
    """Assemble the image's build context (`mlops images build` layout) for a CDK image asset.

    The Dockerfiles expect the exported requirements and the host CA bundle at the context root, which
    the repository root is not; the images room's `assemble_context` writes exactly that layout.
    """

    dest = CONTEXTS / name
    shutil.rmtree(dest, ignore_errors=True)
    assemble_context(IMAGES[name], dest, REPO_ROOT)
    return dest


_ECR_URI = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com[^/]*/([^:@]+)")


class MlPlatformStack(Stack):
    """Everything that trains and registers models."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        key: kms.IKey,
        **kwargs: Any,
    ) -> None:
        """Create the platform; images come from settings.images or are built from the Dockerfiles."""
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        raw_bucket = project_bucket(self, settings, "raw")
        artifact_bucket = project_bucket(self, settings, "artifacts")
        capture_bucket = project_bucket(self, settings, "capture")
        self.role = iam.Role(
            self,
            "ExecutionRole",
            role_name=execution_role_name(settings),
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"{settings.prefix}: SageMaker jobs, pipeline and endpoint of this project only",
        )
        self.training_image, self.serving_image = self._images(settings)
        raw_bucket.grant_read(self.role)
        artifact_bucket.grant_read_write(self.role)
        capture_bucket.grant_read(self.role)
        key.grant_encrypt_decrypt(self.role)
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=settings.model_package_group_name,
            model_package_group_description=f"MovieLens recommender ({settings.name})",
        )
        self._role_policy(settings)
        self.pipeline = self._pipeline(settings, artifact_bucket)
        self._schedule(settings)
        if settings.mlflow_enabled:
            self._mlflow(settings, key, artifact_bucket)
        if settings.studio_enabled:
            self._studio(settings, key)

    def _images(self, settings: EnvironmentSettings) -> tuple[str, str]:
        if settings.images is not None:
            uris = (settings.images.training_uri, settings.images.serving_uri)
            for uri in uris:
                match = _ECR_URI.match(uri)
                if match:
                    account, region, repo = match.groups()
                    self.role.add_to_policy(
                        iam.PolicyStatement(
                            actions=[
                                "ecr:BatchGetImage",
                                "ecr:GetDownloadUrlForLayer",
                                "ecr:BatchCheckLayerAvailability",
                            ],
                            resources=[f"arn:aws:ecr:{region}:{account}:repository/{repo}"],
                        )
                    )
            return uris

        built: list[str] = []
        for name in ("training", "serving"):
            context = image_context(name)
            asset = ecr_assets.DockerImageAsset(
                self,
                f"{name.capitalize()}Image",
                directory=str(context),
                file=IMAGES[name].dockerfile,
                platform=ecr_assets.Platform.LINUX_AMD64,
            )
            asset.repository.grant_pull(self.role)
            built.append(asset.image_uri)
        return built[0], built[1]

    def _role_policy(self, settings: EnvironmentSettings) -> None:
        prefix = settings.prefix
        group = settings.model_package_group_name
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PipelineJobs",
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:AddTags",
                ],
                # Pipeline steps name their jobs "pipelines-<execution>-<step>-...".
                resources=[
                    self.format_arn(
                        service="sagemaker", resource="training-job", resource_name="pipelines-*"
                    ),
                    self.format_arn(
                        service="sagemaker", resource="processing-job", resource_name="pipelines-*"
                    ),
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="Registry",
                actions=[
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:ListModelPackages",
                    "sagemaker:UpdateModelPackage",
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:CreateModel",
                    "sagemaker:DescribeModel",
                    "sagemaker:AddTags",
                ],
                resources=[
                    self.format_arn(service="sagemaker", resource="model-package-group", resource_name=group),
                    self.format_arn(
                        service="sagemaker", resource="model-package", resource_name=f"{group}/*"
                    ),
                    self.format_arn(service="sagemaker", resource="model", resource_name="pipelines-*"),
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="FeatureStore",
                actions=["sagemaker:PutRecord", "sagemaker:GetRecord", "sagemaker:DescribeFeatureGroup"],
                resources=[
                    self.format_arn(
                        service="sagemaker", resource="feature-group", resource_name=f"{prefix}-*"
                    )
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PassOwnRole",
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="JobLogs",
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                resources=[
                    self.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws/sagemaker/*",
                        # CloudWatch Logs ARNs separate the resource type with a colon.
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="Metrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={
                    "StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "AWS/SageMaker", "mlops/*"]}
                },
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(sid="EcrToken", actions=["ecr:GetAuthorizationToken"], resources=["*"])
        )

    def _pipeline(self, settings: EnvironmentSettings, artifact_bucket: s3.IBucket) -> sagemaker.CfnPipeline:
        values = {
            "ArtifactBucket": artifact_bucket.bucket_name,
            "TrainingImage": self.training_image,
            "ServingImage": self.serving_image,
        }
        if set(values) != set(PLACEHOLDERS):
            raise RuntimeError(
                f"placeholders {sorted(PLACEHOLDERS)} and their values {sorted(values)} differ"
            )
        body = Fn.sub(placeholder_body(settings), values)
        pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=settings.pipeline_name,
            pipeline_display_name=settings.pipeline_name,
            pipeline_description="Prepare, train, evaluate and register the MovieLens recommender",
            role_arn=self.role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": body},
        )
        pipeline.node.add_dependency(self.role)
        return pipeline

    def _schedule(self, settings: EnvironmentSettings) -> None:
        pipeline_arn = self.format_arn(
            service="sagemaker", resource="pipeline", resource_name=settings.pipeline_name
        )
        role = iam.Role(
            self,
            "ScheduleRole",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
            description="EventBridge Scheduler starts the retraining pipeline, and nothing else",
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["sagemaker:StartPipelineExecution"], resources=[pipeline_arn])
        )
        self.schedule = scheduler.CfnSchedule(
            self,
            "RetrainingSchedule",
            name=f"{settings.prefix}-retraining",
            description="Starts the training pipeline on the environment's retraining schedule",
            schedule_expression=settings.retraining_schedule,
            schedule_expression_timezone="UTC",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=pipeline_arn,
                role_arn=role.role_arn,
                sage_maker_pipeline_parameters=scheduler.CfnSchedule.SageMakerPipelineParametersProperty(
                    pipeline_parameter_list=[]
                ),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=3),
            ),
        )
        self.schedule.node.add_dependency(self.pipeline)
        self.schedule.node.add_dependency(role)

    def _mlflow(self, settings: EnvironmentSettings, key: kms.IKey, artifact_bucket: s3.IBucket) -> None:
        self.mlflow_role = role = iam.Role(
            self,
            "MlflowRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="The managed MLflow tracking server stores artifacts under mlflow/ with this role",
        )
        artifact_bucket.grant_read_write(role, "mlflow/*")
        key.grant_encrypt_decrypt(role)
        self.mlflow = sagemaker.CfnMlflowTrackingServer(
            self,
            "MlflowTrackingServer",
            tracking_server_name=mlflow_tracking_server_name(settings),
            artifact_store_uri=artifact_bucket.s3_url_for_object("mlflow"),
            role_arn=role.role_arn,
            tracking_server_size=settings.mlflow_size,
            automatic_model_registration=False,
        )
        self.mlflow.node.add_dependency(role)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="MlflowTracking",
                actions=["sagemaker-mlflow:*"],
                resources=[self.mlflow.attr_tracking_server_arn],
            )
        )

    def _studio(self, settings: EnvironmentSettings, key: kms.IKey) -> None:
        assert settings.vpc is not None  # the settings refuse Studio without a VPC
        self.studio = sagemaker.CfnDomain(
            self,
            "StudioDomain",
            domain_name=f"{settings.prefix}-studio",
            auth_mode="IAM",
            vpc_id=settings.vpc.vpc_id,
            subnet_ids=settings.vpc.subnet_ids,
            app_network_access_type="VpcOnly",
            kms_key_id=key.key_arn,
            default_user_settings=sagemaker.CfnDomain.UserSettingsProperty(execution_role=self.role.role_arn),
        )
