"""The ML platform's roles, one per job, each granted only what its job does (docs/security.md).

pipeline: SageMaker runs the pipeline with it (start its jobs, pass the two job roles, register).
processing: Prepare and Evaluate. training: Train. model: the endpoint's model (its artifact, capture).
None may delete an object (the raw and artifacts buckets are versioned: a delete would hide history)
or approve a model package; that is the approver role's one job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import aws_iam as iam

from infra.constructs.job_role import JobRole
from infra.pipeline_body import role_name
from infra.settings import EnvironmentSettings

if TYPE_CHECKING:
    from infra.stacks.ml_platform import MlPlatformStack

SAGEMAKER = iam.ServicePrincipal("sagemaker.amazonaws.com")
_JOBS_REASON = "Pipeline steps name their jobs pipelines-<execution id>-<step>-..., unknown before a run"
_PIPELINE_OUTPUTS = "pipelines/*"
_PIPELINE_OUTPUTS_REASON = (
    "Step outputs go under pipelines/<pipeline>/<dataset>/<version>/<step>/..., one prefix per run's inputs"
)
_METRIC_NAMESPACES = ["/aws/sagemaker/*", "AWS/SageMaker", "mlops/*"]


def _arn(stack: MlPlatformStack, resource: str, name: str) -> str:
    return stack.format_arn(service="sagemaker", resource=resource, resource_name=name)


def _job_basics(stack: MlPlatformStack, job: JobRole, image: str, log_group: str) -> None:
    """What every job's container needs: its image, its log group, metrics, the key, the VPC's ENIs."""
    pull = stack.image_pulls.get(image)
    if pull is not None:
        # Not repository.grant_pull: it adds ecr:GetAuthorizationToken on * to the default policy.
        job.allow(
            "PullImage",
            ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            [pull if isinstance(pull, str) else pull.repository_arn],
        )
    job.resourceless(
        "EcrToken",
        ["ecr:GetAuthorizationToken"],
        "ecr:GetAuthorizationToken has no resource-level permission",
    )
    job.resourceless(
        "Metrics",
        ["cloudwatch:PutMetricData"],
        "No resource-level permission; a cloudwatch:namespace condition limits it to SageMaker's and ours",
        StringLike={"cloudwatch:namespace": _METRIC_NAMESPACES},
    )
    job.logs(log_group, f"SageMaker writes one log stream per job and instance in {log_group}")
    job.use_key(stack.key)
    settings = stack.settings
    if settings.vpc is None:
        return
    job.resourceless(
        "DescribeNetwork",
        [
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeVpcs",
            "ec2:DescribeDhcpOptions",
            "ec2:DescribeSubnets",
            "ec2:DescribeSecurityGroups",
        ],
        "EC2 Describe* have no resource-level permission; SageMaker reads the job's subnets and groups",
    )
    reason = (
        "The network interfaces SageMaker creates for the job in the environment's VPC (ec2:Vpc condition)"
    )
    kinds = ("network-interface", "subnet", "security-group")
    vpc_arn = stack.format_arn(service="ec2", resource="vpc", resource_name=settings.vpc.vpc_id)
    for kind in kinds:
        job.record(stack.format_arn(service="ec2", resource=kind, resource_name="*"), reason)
    job.allow(
        "NetworkInterfaces",
        [
            "ec2:CreateNetworkInterface",
            "ec2:CreateNetworkInterfacePermission",
            "ec2:DeleteNetworkInterface",
            "ec2:DeleteNetworkInterfacePermission",
        ],
        [stack.format_arn(service="ec2", resource=kind, resource_name="*") for kind in kinds],
        ArnEquals={"ec2:Vpc": vpc_arn},
    )


def _role(stack: MlPlatformStack, job: str, description: str) -> JobRole:
    out = JobRole(
        stack,
        f"{job.capitalize()}Role",
        role_name=role_name(stack.settings, job),
        assumed_by=SAGEMAKER,
        description=f"{stack.settings.prefix}: {description}",
    )
    stack.roles[job] = out
    return out


def _processing(stack: MlPlatformStack) -> None:
    settings = stack.settings
    job = _role(stack, "processing", "Prepare and Evaluate processing jobs of the training pipeline")
    _job_basics(stack, job, "training", "/aws/sagemaker/ProcessingJobs")
    job.read(
        "Raw", stack.raw_bucket, "*", "Prepare reads whichever raw data version an execution points it at"
    )
    # The pipeline's default InputDataUri is s3://<artifacts>/raw/<dataset>/ (pipelines.settings).
    job.read(
        "RawCopy", stack.artifact_bucket, "raw/*", "The pipeline's default input is artifacts/raw/<dataset>/"
    )
    job.read("Outputs", stack.artifact_bucket, _PIPELINE_OUTPUTS, _PIPELINE_OUTPUTS_REASON)
    job.write("WriteOutputs", stack.artifact_bucket, _PIPELINE_OUTPUTS, _PIPELINE_OUTPUTS_REASON)
    groups = stack.format_arn(
        service="sagemaker", resource="feature-group", resource_name=f"{settings.prefix}-*"
    )
    job.allow_wildcard(
        "FeatureStore",
        ["sagemaker:PutRecord", "sagemaker:DescribeFeatureGroup"],
        groups,
        "Prepare ingests into this project's feature groups, named <project>-<env>-<view>",
    )


def _training(stack: MlPlatformStack) -> None:
    job = _role(stack, "training", "the training job of the training pipeline")
    _job_basics(stack, job, "training", "/aws/sagemaker/TrainingJobs")
    job.read("Channels", stack.artifact_bucket, _PIPELINE_OUTPUTS, _PIPELINE_OUTPUTS_REASON)
    job.write("ModelOutput", stack.artifact_bucket, _PIPELINE_OUTPUTS, _PIPELINE_OUTPUTS_REASON)


def _model(stack: MlPlatformStack) -> None:
    settings = stack.settings
    job = _role(stack, "model", "the endpoint's model: its artifact, its data capture")
    _job_basics(stack, job, "serving", f"/aws/sagemaker/Endpoints/{settings.endpoint_name}")
    job.read(
        "ModelArtifact",
        stack.artifact_bucket,
        f"{_PIPELINE_OUTPUTS[:-2]}/{settings.pipeline_name}/models/*",
        "Model artifacts are written per training job under pipelines/<pipeline>/models/<job>/",
    )
    # SageMaker writes data capture with the model's role (DataCaptureConfig.DestinationS3Uri).
    job.write(
        "Capture",
        stack.capture_bucket,
        "capture/*",
        "Data capture writes under capture/<endpoint>/<variant>/<date>/",
    )


def _pipeline_role(stack: MlPlatformStack) -> None:
    settings = stack.settings
    group = settings.model_package_group_name
    job = _role(stack, "pipeline", "runs the training pipeline: starts its jobs with the job roles")
    for kind in ("training-job", "processing-job"):
        api = kind.title().replace("-", "")  # TrainingJob, ProcessingJob
        job.allow_wildcard(
            f"{api}s",
            [
                f"sagemaker:Create{api}",
                f"sagemaker:Describe{api}",
                f"sagemaker:Stop{api}",
                "sagemaker:AddTags",
            ],
            _arn(stack, kind, "pipelines-*"),
            _JOBS_REASON,
        )
    job.allow(
        "PassJobRoles",
        ["iam:PassRole"],
        [stack.roles["processing"].role.role_arn, stack.roles["training"].role.role_arn],
        StringEquals={"iam:PassedToService": "sagemaker.amazonaws.com"},
    )
    # A versioned package is created in its group: the group's ARN is authorized too.
    job.allow(
        "RegistryGroup",
        ["sagemaker:DescribeModelPackageGroup", "sagemaker:CreateModelPackage"],
        [_arn(stack, "model-package-group", group)],
    )
    job.allow_wildcard(
        "Register",
        ["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage", "sagemaker:AddTags"],
        _arn(stack, "model-package", f"{group}/*"),
        "Register creates the next version of this project's one model package group",
    )
    # The Condition step reads evaluation.json (a PropertyFile) from Evaluate's output.
    job.read("StepOutputs", stack.artifact_bucket, _PIPELINE_OUTPUTS, _PIPELINE_OUTPUTS_REASON)
    job.allow("KeyDecrypt", ["kms:Decrypt", "kms:DescribeKey"], [stack.key.key_arn])


def configure_job_roles(stack: MlPlatformStack) -> None:
    """Create the processing, training, model and pipeline roles on the stack (`stack.roles`)."""
    _processing(stack)
    _training(stack)
    _model(stack)
    _pipeline_role(stack)


def approver_role(stack: MlPlatformStack, settings: EnvironmentSettings) -> JobRole:
    """The one role that may approve (UpdateModelPackage) this group's packages; people assume it."""
    group = settings.model_package_group_name
    # Anyone in the account whose own policy allows sts:AssumeRole on it: the account grants approvers.
    job = JobRole(
        stack,
        "ApproverRole",
        role_name=f"{settings.prefix}-model-approver",
        assumed_by=iam.AccountPrincipal(stack.account),
        description=f"{settings.prefix}: approves or rejects this environment's model packages, nothing else",
    )
    job.allow(
        "ReadGroup", ["sagemaker:DescribeModelPackageGroup"], [_arn(stack, "model-package-group", group)]
    )
    job.allow_wildcard(
        "Approve",
        ["sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"],
        _arn(stack, "model-package", f"{group}/*"),
        "An approver decides on any version of this project's one model package group",
    )
    job.resourceless(
        "ListPackages",
        ["sagemaker:ListModelPackages"],
        "sagemaker:ListModelPackages has no resource-level permission (lists names and statuses only)",
    )
    return job


def studio_user_role(stack: MlPlatformStack, settings: EnvironmentSettings) -> JobRole:
    """Studio users: start and follow the pipeline, read the registry; never approve."""
    group = settings.model_package_group_name
    job = JobRole(
        stack,
        "StudioRole",
        role_name=f"{settings.prefix}-sagemaker-studio",
        assumed_by=SAGEMAKER,
        description=f"{settings.prefix}: Studio users start the pipeline and read the registry",
    )
    pipeline = _arn(stack, "pipeline", settings.pipeline_name)
    job.allow(
        "RunPipeline",
        [
            "sagemaker:StartPipelineExecution",
            "sagemaker:DescribePipeline",
            "sagemaker:ListPipelineExecutions",
            "sagemaker:DescribePipelineDefinitionForExecution",
        ],
        [pipeline],
    )
    job.allow_wildcard(
        "FollowExecutions",
        [
            "sagemaker:DescribePipelineExecution",
            "sagemaker:ListPipelineExecutionSteps",
            "sagemaker:StopPipelineExecution",
        ],
        f"{pipeline}/execution/*",
        "Executions of this pipeline are named by SageMaker at start",
    )
    job.allow(
        "ReadGroup", ["sagemaker:DescribeModelPackageGroup"], [_arn(stack, "model-package-group", group)]
    )
    job.allow_wildcard(
        "ReadPackages",
        ["sagemaker:DescribeModelPackage"],
        _arn(stack, "model-package", f"{group}/*"),
        "Studio users read every version of this project's one model package group",
    )
    job.resourceless(
        "ListPackages",
        ["sagemaker:ListModelPackages"],
        "sagemaker:ListModelPackages has no resource-level permission (lists names and statuses only)",
    )
    job.read(
        "Reports", stack.artifact_bucket, _PIPELINE_OUTPUTS, "Users read step outputs and evaluation reports"
    )
    job.allow("KeyDecrypt", ["kms:Decrypt", "kms:DescribeKey"], [stack.key.key_arn])
    return job
