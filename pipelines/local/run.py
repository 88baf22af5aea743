"""`run_local`: a local pipeline run, phase by phase.

inputs (settings, raw data, reuse key) -> reuse check (a registered package with the same key) ->
run (upload, Feast server, the pipeline in Docker) -> results (steps, failure, model, evaluation) ->
registration (the same request as the AWS Register step, into the moto server's registry).
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from dataset.dataset_names import DatasetName
from dataset.versioning import dir_md5
from features.feast_repo import record_push
from pipelines import control, definition, registry
from pipelines.local.keys import code_version, local_settings, settings_version
from pipelines.local.result import LocalRunError, LocalRunResult
from pipelines.local.session import (
    RUN_LABEL,
    ContainerLog,
    _interrupts_noted,
    make_session,
    require_aws_endpoint,
)
from pipelines.settings import PipelineSettings, load_settings
from standins import servers
from standins.docker import remove_containers
from standins.git import git_commit


@dataclass
class Inputs:
    """What a run starts from: its settings, the raw data, the reuse key and the AWS clients."""

    dataset: str
    settings: PipelineSettings
    raw: Path
    version: str
    commit: str
    key: dict[str, str]
    s3: Any
    sm: Any
    started: float
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Execution:
    """A finished local execution, what its steps did and what their logs said."""

    execution: Any
    execution_id: str
    status: str
    steps: list[dict[str, Any]]
    failures: list[str]
    failure_reason: str | None


@dataclass
class Results:
    """What a succeeded run's Train and Evaluate steps left in S3."""

    model_data_url: str
    evaluation_uri: str
    report: dict[str, Any]


def run_local(
    *,
    dataset: str = DatasetName.ML_100K,
    settings_path: Path | None = None,
    parameter_overrides: dict[str, str] | None = None,
    console: Console | None = None,
    reuse: bool = True,
    settings_overrides: dict[str, Any] | None = None,
    container_labels: dict[str, str] | None = None,
) -> LocalRunResult:
    """Run Prepare, Train, Evaluate and the quality check in Docker, then register on moto.

    With `feature_store="feast"` (the local default) and no `feast_url` in the settings, a Feast
    feature server is started on the dataset's Feast repo for the run and stopped after it.
    """
    console = console or Console(stderr=True)
    inputs = gather_inputs(dataset, settings_path, settings_overrides)
    control.check_parameters(definition.parameters(inputs.settings).all(), parameter_overrides or {})
    if reuse:
        reused = find_reusable(inputs, console)
        if reused is not None:
            return reused
    parameters = upload_inputs(inputs, parameter_overrides)
    done = execute(inputs, parameters, console, container_labels)
    results = collect_results(inputs, done, console)
    return register(inputs, done, results, parameters)


def gather_inputs(
    dataset: str, settings_path: Path | None, settings_overrides: dict[str, Any] | None
) -> Inputs:
    """Inputs phase: the moto endpoint, the settings, the raw data's version and the reuse key."""
    import boto3  # noqa: PLC0415  heavy: loads boto3 only when called

    from dataset.tables import raw_dir  # noqa: PLC0415  heavy: loads pandas only when called

    started = time.monotonic()
    require_aws_endpoint()
    base = load_settings(settings_path) if settings_path else None
    settings = local_settings(base, dataset=dataset, **(settings_overrides or {}))
    dataset = settings.dataset.value
    raw = raw_dir(dataset)
    if not raw.is_dir():
        raise LocalRunError(f"{raw} does not exist: run `mlops data fetch --dataset {dataset}` first")
    version = dir_md5(raw)
    # Reuse key: the same raw data, the same code and the same model-shaping settings.
    key = {
        "dataset_version": version,
        "code_version": code_version(),
        "settings_version": settings_version(settings),
    }
    return Inputs(
        dataset=dataset,
        settings=settings,
        raw=raw,
        version=version,
        commit=git_commit(),
        key=key,
        s3=boto3.client("s3", region_name=settings.region),
        sm=boto3.client("sagemaker", region_name=settings.region),
        started=started,
    )


def find_reusable(inputs: Inputs, console: Console) -> LocalRunResult | None:
    """Reuse check phase: the registered package with the same reuse key, as this run's result."""
    found = registry.find(inputs.sm, inputs.settings.model_package_group_name, **inputs.key)
    if found is None:
        return None
    console.print(f"reusing {found['ModelPackageArn']}: same dataset version, code and settings")
    evaluation_uri = found["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    metadata = found.get("CustomerMetadataProperties", {})
    return LocalRunResult(
        status="Succeeded",
        execution=metadata.get("pipeline_execution", ""),
        dataset=inputs.dataset,
        dataset_version=inputs.version,
        git_commit=inputs.commit,
        steps=[],
        evaluation=_read_s3_json(inputs.s3, evaluation_uri),
        model_data_url=found["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
        evaluation_uri=evaluation_uri,
        model_package_arn=found["ModelPackageArn"],
        reused=True,
        seconds={"total": round(time.monotonic() - inputs.started, 1)},
    )


def execution_parameters(
    settings: PipelineSettings,
    input_uri: str,
    version: str,
    commit: str,
    overrides: dict[str, str] | None = None,
) -> dict[str, str]:
    """A local execution's parameters, every value a plain str (local mode refuses str subclasses)."""
    parameters = {
        "InputDataUri": input_uri,
        "DatasetName": settings.dataset.value,
        "DatasetVersion": version,
        "GitCommit": commit,
    }
    parameters.update(overrides or {})
    return parameters


def upload_inputs(inputs: Inputs, parameter_overrides: dict[str, str] | None) -> dict[str, str]:
    """Put the raw files on moto's S3 and return the execution's parameters."""
    _ensure_bucket(inputs.s3, inputs.settings.bucket)
    prefix = f"raw/{inputs.dataset}/{inputs.version}"
    input_uri = upload_raw(inputs.s3, inputs.settings.bucket, inputs.raw, prefix)
    return execution_parameters(
        inputs.settings, input_uri, inputs.version, inputs.commit, parameter_overrides
    )


def execute(
    inputs: Inputs, parameters: dict[str, str], console: Console, container_labels: dict[str, str] | None
) -> Execution:
    """Run phase: the pipeline in Docker (with a Feast server for Prepare when none is given).

    Whatever happens, also on Ctrl-C, no container of this run and no feature server it started
    outlives it.
    """
    labels = {**(container_labels or {}), RUN_LABEL: uuid.uuid4().hex}
    feast_started = False
    try:
        if inputs.settings.feature_store == "feast" and not inputs.settings.feast_url:
            inputs.settings = _with_feast_server(inputs, console)
            feast_started = True
        session = make_session(inputs.settings, labels)
        pipeline = definition.build_pipeline(inputs.settings, session=session, register=False)
        pipeline.create(role_arn=inputs.settings.role_arn, description="local run")
        console.print(
            f"running {inputs.settings.pipeline_name} locally on {inputs.dataset} ({inputs.version}) "
            "in Docker ..."
        )
        t0 = time.monotonic()
        log = ContainerLog(sys.stderr)
        with contextlib.redirect_stdout(log), _interrupts_noted() as interrupted:
            execution = pipeline.start(parameters=parameters)
        if interrupted.is_set():
            # The local executor turns Ctrl-C into a failed step and carries on; it was an interrupt.
            raise KeyboardInterrupt
        inputs.timings["pipeline"] = round(time.monotonic() - t0, 1)
    finally:
        remove_containers({RUN_LABEL: labels[RUN_LABEL]})
        if feast_started:
            servers.stop_recorded(["feast"])
    return _described(execution, inputs.settings, log)


def _with_feast_server(inputs: Inputs, console: Console) -> PipelineSettings:
    """Start the Feast feature server Prepare ingests into; return the settings pointing at it."""
    t0 = time.monotonic()
    try:
        server = servers.start_feast_server(inputs.dataset, console)
    except Exception as error:  # any reason; Ctrl-C (not an Exception) still propagates
        raise LocalRunError(
            f"cannot start the Feast feature server Prepare ingests into: {error}",
            step=definition.PREPARE,
            details={"dataset_version": inputs.version, "steps": []},
        ) from error
    inputs.timings["feast"] = round(time.monotonic() - t0, 1)
    return PipelineSettings.model_validate({**inputs.settings.model_dump(), "feast_url": server.url})


def _described(execution: Any, settings: PipelineSettings, log: ContainerLog) -> Execution:
    described = execution.describe()
    steps = [
        {
            "name": s["StepName"],
            "status": s["StepStatus"],
            "failure_reason": s.get("FailureReason"),
        }
        for s in execution.list_steps()["PipelineExecutionSteps"]
    ]
    return Execution(
        execution=execution,
        execution_id=f"local:{settings.pipeline_name}/{execution.pipeline_execution_name}",
        status=described["PipelineExecutionStatus"],
        steps=steps,
        failures=log.failures,
        failure_reason=described.get("FailureReason"),
    )


def collect_results(inputs: Inputs, done: Execution, console: Console) -> Results:
    """Results phase: record what Prepare pushed, fail with the steps' reason, read the evaluation."""
    for step in done.steps:
        console.print(f"  {step['name']}: {step['status']}")
    prepared = any(s["name"] == definition.PREPARE and s["status"] == "Succeeded" for s in done.steps)
    if inputs.settings.feature_store == "feast" and prepared:
        # Prepare's push reached the online store whatever the quality gate decides later.
        prefix = by_prepare_output(done.execution, "feature_store")
        _record_feast_push(inputs.s3, prefix, inputs.dataset, done.execution_id)
    if done.status != "Succeeded":
        failed = next((s for s in done.steps if s["status"] == "Failed"), None)
        raise LocalRunError(
            " | ".join(done.failures) or done.failure_reason or "the local pipeline failed",
            step=failed["name"] if failed else None,
            details={
                "steps": done.steps,
                "dataset_version": inputs.version,
                "execution_failure": done.failure_reason,
            },
        )
    properties = {
        name: done.execution.step_execution[name].properties
        for name in (definition.TRAIN, definition.EVALUATE)
    }
    evaluation_prefix = _outputs(properties[definition.EVALUATE])["evaluation"]["S3Output"]["S3Uri"]
    evaluation_uri = f"{evaluation_prefix.rstrip('/')}/{definition.EVALUATION_FILE}"
    return Results(
        model_data_url=properties[definition.TRAIN]["ModelArtifacts"]["S3ModelArtifacts"],
        evaluation_uri=evaluation_uri,
        report=_read_s3_json(inputs.s3, evaluation_uri),
    )


def register(inputs: Inputs, done: Execution, results: Results, parameters: dict[str, str]) -> LocalRunResult:
    """Registration phase: the AWS Register step's request, with the reuse key, into moto's registry."""
    settings = inputs.settings
    lineage = registry.Lineage(
        dataset=inputs.dataset,
        dataset_version=inputs.version,
        git_commit=inputs.commit,
        mlflow_run_id=str(registry.lookup(results.report, definition.MLFLOW_RUN_ID)),
        pipeline_execution=done.execution_id,
    )
    request = registry.model_package_request(
        group=settings.model_package_group_name,
        image_uri=settings.serving_image_uri,
        model_data_url=results.model_data_url,
        evaluation_uri=results.evaluation_uri,
        report=results.report,
        lineage=lineage,
        approval_status=parameters.get("ModelApprovalStatus", settings.approval_status),
        instance_type=settings.inference_instance_type,
    )
    request["CustomerMetadataProperties"].update(inputs.key)
    arn = registry.register(inputs.sm, request)
    inputs.timings["total"] = round(time.monotonic() - inputs.started, 1)
    return LocalRunResult(
        status=done.status,
        execution=lineage.pipeline_execution,
        dataset=inputs.dataset,
        dataset_version=inputs.version,
        git_commit=inputs.commit,
        steps=done.steps,
        evaluation=results.report,
        model_data_url=results.model_data_url,
        evaluation_uri=results.evaluation_uri,
        model_package_arn=arn,
        seconds=inputs.timings,
    )


def upload_raw(s3: Any, bucket: str, raw_dir: Path, prefix: str) -> str:
    """Upload the raw dataset files to s3://bucket/prefix/ (skipping unchanged ones)."""
    if not raw_dir.is_dir():
        raise LocalRunError(
            f"{raw_dir} does not exist: run `mlops data fetch --dataset {raw_dir.name}` first"
        )
    for path in sorted(p for p in raw_dir.iterdir() if p.is_file()):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.name}", Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}/"


def _ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        s3.create_bucket(Bucket=bucket)


def _read_s3_json(s3: Any, uri: str) -> dict[str, Any]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return registry.read_report(body, uri)


def _outputs(properties: Any) -> dict[str, Any]:
    """A processing step's outputs by name: the local executor keys them by name, AWS lists them."""
    outputs = properties["ProcessingOutputConfig"]["Outputs"]
    return outputs if isinstance(outputs, dict) else {o["OutputName"]: o for o in outputs}


def by_prepare_output(execution: Any, name: str) -> str:
    """The S3 prefix of one of Prepare's outputs in a finished local execution."""
    return str(_outputs(execution.step_execution[definition.PREPARE].properties)[name]["S3Output"]["S3Uri"])


def _record_feast_push(s3: Any, prefix: str, dataset: str, execution_id: str) -> None:
    """Note in the Feast repo's manifest what Prepare pushed (its ingestion.json), for `features show`."""

    ingestion = _read_s3_json(s3, f"{prefix.rstrip('/')}/ingestion.json")
    record_push(dataset, {**ingestion, "pipeline_execution": execution_id})
