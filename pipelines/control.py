"""Create or update, start and watch the pipeline in SageMaker (or a moto server standing in)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.definition import parameters as pipeline_parameters
from pipelines.settings import PipelineSettings

if TYPE_CHECKING:
    from mypy_boto3_sagemaker.client import SageMakerClient


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert did."""

    pipeline_arn: str
    created: bool
    definition_sha256: str


def sagemaker_client(settings: PipelineSettings) -> SageMakerClient:
    """A boto3 SageMaker client for the settings' region (AWS_ENDPOINT_URL is honoured by boto3)."""
    import boto3  # noqa: PLC0415  heavy: loads boto3 only when called

    return boto3.client("sagemaker", region_name=settings.region)


def upsert(client: SageMakerClient, settings: PipelineSettings, definition: str) -> UpsertResult:
    """Create the pipeline, or update it in place when it exists: running it twice is a no-op."""

    common: dict[str, Any] = {
        "PipelineName": settings.pipeline_name,
        "PipelineDisplayName": settings.pipeline_name,
        "PipelineDefinition": definition,
        "PipelineDescription": "MovieLens recommender: prepare, train, evaluate, register.",
        "RoleArn": settings.role_arn,
    }
    digest = hashlib.sha256(definition.encode()).hexdigest()
    try:
        client.describe_pipeline(PipelineName=settings.pipeline_name)
    except client.exceptions.ClientError as error:
        if not _not_found(error):
            raise
        arn = client.create_pipeline(**common)["PipelineArn"]
        return UpsertResult(pipeline_arn=arn, created=True, definition_sha256=digest)
    arn = client.update_pipeline(**common)["PipelineArn"]
    return UpsertResult(pipeline_arn=arn, created=False, definition_sha256=digest)


def _not_found(error: Exception) -> bool:
    """AWS answers ResourceNotFound for a missing pipeline; moto a ValidationException."""
    response = getattr(error, "response", {})
    code = response.get("Error", {}).get("Code", "")
    message = response.get("Error", {}).get("Message", "")
    return code == "ResourceNotFound" or "Could not find" in message or "does not exist" in message


def check_parameters(declared: list[Any], given: dict[str, str]) -> None:
    """Refuse an override the pipeline does not declare, or a value outside a parameter's enum."""
    known = {p.name for p in declared}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"unknown pipeline parameter(s) {unknown}; the pipeline takes {sorted(known)}")
    for parameter in declared:
        allowed = getattr(parameter, "enum_values", None)
        if allowed and parameter.name in given and given[parameter.name] not in allowed:
            raise ValueError(
                f"pipeline parameter {parameter.name}={given[parameter.name]!r} is not one of "
                f"{', '.join(allowed)}"
            )


def start(client: SageMakerClient, settings: PipelineSettings, parameters: dict[str, str]) -> str:
    """Start an execution with the given parameter overrides; return its ARN."""

    check_parameters(pipeline_parameters(settings).all(), parameters)

    display = f"{settings.pipeline_name}-{parameters.get('DatasetName', settings.dataset)}"
    response = client.start_pipeline_execution(
        PipelineName=settings.pipeline_name,
        ClientRequestToken=str(uuid.uuid4()),
        PipelineExecutionDisplayName=display[:82],
        PipelineParameters=[{"Name": k, "Value": v} for k, v in sorted(parameters.items())],
    )
    return response["PipelineExecutionArn"]


def status(client: SageMakerClient, execution_arn: str) -> dict[str, Any]:
    """The execution's status, with its steps when the service lists them."""
    described = client.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
    out: dict[str, Any] = {
        "execution_arn": execution_arn,
        "status": described["PipelineExecutionStatus"],
        "failure_reason": described.get("FailureReason"),
        "steps": [],
    }
    # A single attempt: moto answers 500 (not implemented), and retrying that only adds minutes.
    lister = _one_attempt(client)
    try:
        steps = lister.list_pipeline_execution_steps(PipelineExecutionArn=execution_arn)
    except (client.exceptions.ClientError, NotImplementedError) as error:
        # moto does not implement ListPipelineExecutionSteps; say so instead of showing no steps.
        out["steps_unavailable"] = str(error).splitlines()[0]
        return out
    out["steps"] = [
        {
            "name": step["StepName"],
            "status": step["StepStatus"],
            "failure_reason": step.get("FailureReason"),
        }
        for step in steps["PipelineExecutionSteps"]
    ]
    return out


def _one_attempt(client: SageMakerClient) -> SageMakerClient:
    """A copy of the client that does not retry."""
    import boto3  # noqa: PLC0415  heavy: loads boto3 only when called
    from botocore.config import Config  # noqa: PLC0415  heavy: loads botocore only when called

    return boto3.client(
        "sagemaker",
        region_name=client.meta.region_name,
        endpoint_url=client.meta.endpoint_url,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def latest_execution(client: SageMakerClient, settings: PipelineSettings) -> str:
    """The ARN of the pipeline's most recent execution, or a LookupError saying to start one."""
    response = client.list_pipeline_executions(
        PipelineName=settings.pipeline_name, SortBy="CreationTime", SortOrder="Descending", MaxResults=1
    )
    summaries = response["PipelineExecutionSummaries"]
    if not summaries:
        raise LookupError(
            f"pipeline {settings.pipeline_name!r} has no execution yet; run `mlops pipeline start`"
        )
    return summaries[0]["PipelineExecutionArn"]
