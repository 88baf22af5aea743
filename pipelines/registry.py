"""The model registry side of the pipeline: what a model package carries, for both paths.

In AWS the pipeline's Register ModelStep builds the request; a local run (which cannot run a
ModelStep) registers after the run with boto3's `create_model_package`. Both take the metrics
and lineage from here, so a package looks the same whichever path made it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sagemaker.client import SageMakerClient

CONTENT_TYPES = ("application/json",)
# Customer metadata key -> JSON path in evaluation.json. Evaluate writes these, as strings, under
# REGISTRY_SECTION, so the AWS Register step can copy them with JsonGet (metadata values are strings).
METRIC_KEYS = {
    "metric_rmse": "regression_metrics.rmse.value",
    "metric_mae": "regression_metrics.mae.value",
    "metric_hit_rate_at_10": "ranking_metrics.hit_rate_at_10.value",
    "metric_ndcg_at_10": "ranking_metrics.ndcg_at_10.value",
    "baseline_rating_rmse": "baselines.rating.rmse",
    "baseline_popularity_hit_rate_at_10": "baselines.popularity.hit_rate_at_10",
    "baseline_popularity_ndcg_at_10": "baselines.popularity.ndcg_at_10",
}
REGISTRY_SECTION = "registry_metadata"


@dataclass(frozen=True)
class Lineage:
    """Where a model came from: values, or pipeline expressions in the AWS definition."""

    dataset: Any
    dataset_version: Any
    git_commit: Any
    mlflow_run_id: Any
    pipeline_execution: Any

    def as_metadata(self) -> dict[str, Any]:
        """CustomerMetadataProperties entries (keys as the registry shows them)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def sdk_model_metrics(evaluation_uri: Any) -> Any:
    """The SDK's ModelMetrics pointing at evaluation.json (model quality statistics)."""
    from sagemaker.core.shapes import MetricsSource, ModelMetrics, ModelQuality  # noqa: PLC0415  heavy: loads sagemaker only when called

    return ModelMetrics(
        model_quality=ModelQuality(
            statistics=MetricsSource(content_type="application/json", s3_uri=evaluation_uri)
        )
    )


def sdk_metadata_properties(lineage: Lineage) -> Any:
    """The SDK's MetadataProperties: the git commit and the execution that generated the model."""
    from sagemaker.core.shapes import MetadataProperties  # noqa: PLC0415  heavy: loads sagemaker only when called

    return MetadataProperties(commit_id=lineage.git_commit, generated_by=lineage.pipeline_execution)


def lookup(report: dict[str, Any], path: str) -> Any:
    """The value at a dotted JSON path of evaluation.json, or a KeyError naming the path."""
    node: Any = report
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"evaluation.json has no {path!r} (missing {part!r})")
        node = node[part]
    return node


def metric_metadata(report: dict[str, Any]) -> dict[str, str]:
    """Metric values of evaluation.json as customer metadata (strings, as the registry stores)."""
    return {key: f"{float(lookup(report, path)):.6f}" for key, path in METRIC_KEYS.items()}


def model_package_request(
    *,
    group: str,
    image_uri: str,
    model_data_url: str,
    evaluation_uri: str,
    report: dict[str, Any],
    lineage: Lineage,
    approval_status: str,
    instance_type: str,
) -> dict[str, Any]:
    """The create_model_package request: the same fields the AWS Register step sends."""
    metadata = {key: str(value) for key, value in lineage.as_metadata().items()}
    metadata.update(lookup(report, REGISTRY_SECTION))
    return {
        "ModelPackageGroupName": group,
        "ModelApprovalStatus": approval_status,
        "ModelPackageDescription": (
            f"{lineage.dataset} {lineage.dataset_version} @ {lineage.git_commit}, "
            f"MLflow run {lineage.mlflow_run_id}"
        ),
        "InferenceSpecification": {
            "Containers": [{"Image": image_uri, "ModelDataUrl": model_data_url}],
            "SupportedContentTypes": list(CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(CONTENT_TYPES),
            "SupportedRealtimeInferenceInstanceTypes": [instance_type],
            "SupportedTransformInstanceTypes": [instance_type],
        },
        "ModelMetrics": {
            "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": evaluation_uri}}
        },
        "MetadataProperties": {
            "CommitId": str(lineage.git_commit),
            "GeneratedBy": str(lineage.pipeline_execution),
        },
        "CustomerMetadataProperties": metadata,
    }


def ensure_group(client: SageMakerClient, group: str) -> None:
    """Create the model package group unless it exists (the CDK stack creates it in AWS)."""
    try:
        client.describe_model_package_group(ModelPackageGroupName=group)
    except client.exceptions.ClientError as error:
        if "does not exist" not in str(error) and "ValidationException" not in str(error):
            raise
        client.create_model_package_group(
            ModelPackageGroupName=group,
            ModelPackageGroupDescription="MovieLens recommender models registered by the pipeline",
        )


def register(client: SageMakerClient, request: dict[str, Any]) -> str:
    """Create the model package; return its ARN."""
    ensure_group(client, request["ModelPackageGroupName"])
    response = client.create_model_package(**request)
    return response["ModelPackageArn"]


def packages(client: SageMakerClient, group: str) -> list[dict[str, Any]]:
    """Every model package of the group, described (newest first)."""
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
    }
    while True:
        page = client.list_model_packages(**kwargs)
        for summary in page["ModelPackageSummaryList"]:
            described = client.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            out.append(dict(described))
        if not page.get("NextToken"):
            return out
        kwargs["NextToken"] = page["NextToken"]


def find(client: SageMakerClient, group: str, **key: str) -> dict[str, Any] | None:
    """The newest package of the group whose customer metadata holds every `key` value, if any."""
    if not key:
        raise ValueError("find needs at least one metadata key to match, e.g. dataset_version=...")
    try:
        candidates = packages(client, group)
    except client.exceptions.ResourceNotFound:
        return None
    except client.exceptions.ClientError as error:
        # moto and AWS say ValidationException for a group that does not exist yet; anything else is
        # a real failure and must not pass for "nothing to reuse".
        if "does not exist" in str(error):
            return None
        raise
    for package in candidates:
        metadata = package.get("CustomerMetadataProperties", {})
        if all(metadata.get(name) == value for name, value in key.items()):
            return package
    return None


def approve(client: SageMakerClient, package_arn: str, note: str) -> None:
    """Set a package's approval status to Approved, keeping its customer metadata."""
    metadata = client.describe_model_package(ModelPackageName=package_arn).get(
        "CustomerMetadataProperties", {}
    )
    # AWS keeps metadata an update leaves out, moto 5.2 erases it (and with it the reuse key and the
    # lineage); sending it back unchanged is a no-op on AWS and keeps it on moto.
    extra: dict[str, Any] = {"CustomerMetadataProperties": metadata} if metadata else {}
    client.update_model_package(
        ModelPackageArn=package_arn, ModelApprovalStatus="Approved", ApprovalDescription=note, **extra
    )


def read_report(text: str, source: str) -> dict[str, Any]:
    """Parse evaluation.json, naming the source on failure."""
    try:
        report = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source} is not valid JSON ({error}); re-run the Evaluate step") from error
    if not isinstance(report, dict):
        raise ValueError(f"{source} holds {type(report).__name__}, expected a JSON object")
    return report
