"""ML platform stack: images, one role per job, model package group, pipeline, schedule, MLflow, Studio."""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path
from typing import Any

from aws_cdk import Duration, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from images.context import assemble_context
from images.spec import IMAGES
from infra.constructs.job_role import JobRole
from infra.constructs.security_group import https_to_vpc_only
from infra.pipeline_body import mlflow_tracking_server_name, placeholder_body, placeholders
from infra.settings import EnvironmentSettings
from infra.stacks.data import project_bucket
from infra.stacks.ml_roles import approver_role, configure_job_roles, studio_user_role

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
    """Everything that trains and registers models, and the role each part runs with."""

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
        self.key = key
        self.raw_bucket = project_bucket(self, settings, "raw")
        self.artifact_bucket = project_bucket(self, settings, "artifacts")
        self.capture_bucket = project_bucket(self, settings, "capture")
        self.training_image, self.serving_image = self._images(settings)
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=settings.model_package_group_name,
            model_package_group_description=f"MovieLens recommender ({settings.name})",
        )
        self.job_security_group = self._job_security_group(settings)
        self.roles: dict[str, JobRole] = {}
        self._job_roles()
        self.pipeline = self._pipeline(settings)
        self._schedule(settings)
        if settings.mlflow_enabled:
            self._mlflow(settings, key)
        self._approver(settings)
        if settings.studio_enabled:
            self._studio(settings, key)

    def _images(self, settings: EnvironmentSettings) -> tuple[str, str]:
        # Image -> its ECR repository (ARN or asset repository), for the roles that pull it.
        self.image_pulls: dict[str, str | ecr.IRepository] = {}
        if settings.images is not None:
            uris = (settings.images.training_uri, settings.images.serving_uri)
            for name, uri in zip(("training", "serving"), uris, strict=True):
                match = _ECR_URI.match(uri)
                if match:
                    account, region, repo = match.groups()
                    self.image_pulls[name] = f"arn:aws:ecr:{region}:{account}:repository/{repo}"
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
            self.image_pulls[name] = asset.repository
            built.append(asset.image_uri)
        return built[0], built[1]

    def _job_security_group(self, settings: EnvironmentSettings) -> ec2.CfnSecurityGroup | None:
        """The jobs' security group in the environment's VPC: no ingress but from itself, HTTPS out."""
        if settings.vpc is None:
            return None
        group = https_to_vpc_only(
            self,
            "JobSecurityGroup",
            vpc=settings.vpc,
            description=(
                f"{settings.prefix} pipeline jobs: no inbound except between the instances of one job, "
                "HTTPS out to VPC endpoints"
            ),
            egress_description="HTTPS to interface VPC endpoints",
        )
        # Distributed training: the instances of one job talk to each other (and, with inter-container
        # traffic encryption, over IPsec), so members of this group may reach each other, and no one else.
        ec2.CfnSecurityGroupIngress(
            self,
            "JobPeersIn",
            group_id=group.attr_group_id,
            ip_protocol="-1",
            source_security_group_id=group.attr_group_id,
            description="Between the instances of one multi-instance job",
        )
        ec2.CfnSecurityGroupEgress(
            self,
            "JobPeersOut",
            group_id=group.attr_group_id,
            ip_protocol="-1",
            destination_security_group_id=group.attr_group_id,
            description="Between the instances of one multi-instance job",
        )
        return group

    def _job_roles(self) -> None:
        """The processing, training, model and pipeline roles, each with its own grants (docs/security.md)."""
        configure_job_roles(self)

    def _pipeline(self, settings: EnvironmentSettings) -> sagemaker.CfnPipeline:
        values = {
            "ArtifactBucket": self.artifact_bucket.bucket_name,
            "TrainingImage": self.training_image,
            "ServingImage": self.serving_image,
            "JobKmsKey": self.key.key_arn,
        }
        if self.job_security_group is not None:
            values["JobSecurityGroup"] = self.job_security_group.attr_group_id
        expected = placeholders(settings)
        if set(values) != set(expected):
            raise RuntimeError(f"placeholders {sorted(expected)} and their values {sorted(values)} differ")
        body = Fn.sub(placeholder_body(settings), values)
        pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=settings.pipeline_name,
            pipeline_display_name=settings.pipeline_name,
            pipeline_description="Prepare, train, evaluate and register the MovieLens recommender",
            role_arn=self.roles["pipeline"].role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": body},
        )
        # The definition names the job roles by ARN: they and their policies must exist first.
        for role in self.roles.values():
            pipeline.node.add_dependency(role)
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
        # A start that still fails after the retries (throttled, pipeline missing, role broken) lands here
        # instead of vanishing: 14 days to see and replay it.
        self.schedule_dlq = sqs.Queue(
            self,
            "RetrainingScheduleDlq",
            queue_name=f"{settings.prefix}-retraining-dlq",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.schedule_dlq.queue_arn])
        )
        # Sending to a KMS-encrypted queue also takes a data key from the queue's key (named actions, so
        # no wildcard to acknowledge).
        role.add_to_policy(
            iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.key.key_arn])
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
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                    arn=self.schedule_dlq.queue_arn
                ),
            ),
        )
        self.schedule.node.add_dependency(self.pipeline)
        self.schedule.node.add_dependency(role)

    def _mlflow(self, settings: EnvironmentSettings, key: kms.IKey) -> None:
        artifact_bucket = self.artifact_bucket
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
        # Training logs runs to the server and uploads run artifacts under mlflow/ itself.
        training = self.roles["training"]
        training.allow("MlflowTracking", ["sagemaker-mlflow:*"], [self.mlflow.attr_tracking_server_arn])
        training.write(
            "MlflowArtifacts",
            artifact_bucket,
            "mlflow/*",
            "MLflow run artifacts go under mlflow/<experiment>/<run>/",
        )

    def _approver(self, settings: EnvironmentSettings) -> None:
        self.approver_role = approver_role(self, settings)

    def _studio(self, settings: EnvironmentSettings, key: kms.IKey) -> None:
        assert settings.vpc is not None  # the settings refuse Studio without a VPC
        self.studio_role = studio_user_role(self, settings)
        self.studio = sagemaker.CfnDomain(
            self,
            "StudioDomain",
            domain_name=f"{settings.prefix}-studio",
            auth_mode="IAM",
            vpc_id=settings.vpc.vpc_id,
            subnet_ids=settings.vpc.subnet_ids,
            app_network_access_type="VpcOnly",
            kms_key_id=key.key_arn,
            default_user_settings=sagemaker.CfnDomain.UserSettingsProperty(
                execution_role=self.studio_role.role.role_arn
            ),
        )
        self.studio.node.add_dependency(self.studio_role)
