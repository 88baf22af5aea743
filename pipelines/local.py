"""Run the pipeline on this machine: SageMaker local mode in Docker, S3 and the registry on moto.

The same builder makes the definition as for AWS, without the Register ModelStep (local mode
cannot run one). After a run whose quality check passed, the model is registered with the same
request the AWS Register step sends (`pipelines.registry`), into the moto server's registry.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from pipelines.settings import PipelineSettings, load_settings

LOCAL_BUCKET = "mlops-local"
# What pipelines.steps.* print on failure, e.g. "Prepare failed: validation rejected 3 row(s) ...".
_STEP_FAILURE = re.compile(r"\b(Prepare|Evaluate|training) failed: .*|training: failed.*")
LOCAL_ROLE = "arn:aws:iam::123456789012:role/mlops-local-execution"


class LocalRunError(RuntimeError):
    """The local run failed; carries the failing step and its reason."""

    def __init__(
        self, message: str, *, step: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.step = step
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        """The failure as a JSON-ready dict."""
        return {"status": "Failed", "failed_step": self.step, "reason": str(self), **self.details}


@dataclass
class LocalRunResult:
    """What a local run produced."""

    status: str
    execution: str
    dataset: str
    dataset_version: str
    git_commit: str
    steps: list[dict[str, Any]]
    evaluation: dict[str, Any]
    model_data_url: str
    evaluation_uri: str
    model_package_arn: str
    reused: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return dict(self.__dict__)

    def summary(self) -> str:
        """A few human lines."""
        m = self.evaluation
        return (
            f"{self.status}: {self.model_package_arn}{' (reused)' if self.reused else ''}\n"
            f"  rmse {m['regression_metrics']['rmse']['value']:.4f} "
            f"(rating baseline {m['baselines']['rating']['rmse']:.4f}), "
            f"hit_rate@10 {m['ranking_metrics']['hit_rate_at_10']['value']:.4f} "
            f"(popularity {m['baselines']['popularity']['hit_rate_at_10']:.4f})"
        )


def local_settings(base: PipelineSettings | None = None, **overrides: Any) -> PipelineSettings:
    """Settings for a local run: local instances, local images, the moto bucket and role."""
    values = (base or PipelineSettings.model_validate({})).model_dump()
    values.update(
        processing_instance_type="local",
        training_instance_type="local",
        bucket=LOCAL_BUCKET,
        role_arn=LOCAL_ROLE,
        feature_store="none",
        training_image_uri="mlops-training:latest",
        serving_image_uri="mlops-serving:latest",
    )
    values.update(overrides)
    return PipelineSettings.model_validate(values)


def git_commit() -> str:
    """The project's current git commit, with '-dirty' when the work tree has changes."""
    from mlops.paths import ROOT

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "pipelines",
                "training",
                "features",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def code_version() -> str:
    """Git tree ids of the code a run executes: a commit elsewhere in the repo does not change it."""
    from mlops.paths import ROOT

    trees = []
    for path in ("pipelines", "training", "features", "mlops/data"):
        done = subprocess.run(
            ["git", "rev-parse", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        trees.append(done.stdout.strip() or "none")
    import hashlib

    digest = hashlib.sha256(" ".join(trees).encode()).hexdigest()[:16]
    return f"{digest}-dirty" if git_commit().endswith("-dirty") else digest


def _require_aws_endpoint() -> str:
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if not endpoint:
        raise LocalRunError(
            "AWS_ENDPOINT_URL is not set: a local run keeps S3 and the model registry on a moto server. "
            "Start one (`make demo` does, or `python -m moto.server -H 127.0.0.1 -p PORT`) and export "
            "AWS_ENDPOINT_URL=http://127.0.0.1:PORT with fake credentials"
        )
    return endpoint


def make_session(settings: PipelineSettings) -> Any:
    """A local pipeline session that captures step arguments like a PipelineSession."""
    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.mlops.local import LocalPipelineSession

    class LocalRunSession(LocalPipelineSession, PipelineSession):  # type: ignore[misc]
        """LocalPipelineSession runs pipelines; PipelineSession makes steps capture arguments."""

        def default_bucket(self) -> str:
            return settings.bucket

    session = LocalRunSession(
        boto_session=boto3.Session(region_name=settings.region),
        default_bucket=settings.bucket,
        s3_endpoint_url=os.environ["AWS_ENDPOINT_URL"],
    )
    host_user(session)
    # Pipeline.create/start call these on the session's client; the local client lacks them.
    client = session.sagemaker_client
    for name in (
        "create_pipeline",
        "update_pipeline",
        "describe_pipeline",
        "delete_pipeline",
        "start_pipeline_execution",
    ):
        setattr(client, name, getattr(session, name))
    return session


def host_user(session: Any) -> None:
    """Run local-mode containers as the host user.

    Local mode mounts directories it makes with mkdtemp (mode 0700, owned by the host user); our
    images run as a non-root user that could neither read the inputs nor write the outputs there.
    """
    config = dict(session.config or {})
    local = dict(config.get("local", {}))
    local["container_config"] = {**local.get("container_config", {}), "user": f"{os.getuid()}:{os.getgid()}"}
    config["local"] = local
    session.config = config


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
    from pipelines.registry import read_report

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return read_report(body, uri)


def prune_containers() -> int:
    """Remove the exited containers local mode leaves behind; return how many."""
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "status=exited", "--filter", "label=com.docker.compose.project"],
        capture_output=True,
        text=True,
        check=False,
    )
    ids = done.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", *ids], capture_output=True, check=False)
    return len(ids)


class ContainerLog(io.TextIOBase):
    """Stands in for stdout while local mode streams container logs: forwards them to stderr
    (stdout is reserved for --json) and keeps the steps' own failure lines for the error."""

    def __init__(self, sink: TextIO) -> None:
        self.sink = sink
        self.failures: list[str] = []
        self._partial = ""

    def write(self, text: str) -> int:
        """Forward text; remember lines where a step script reports its failure."""
        self.sink.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            match = _STEP_FAILURE.search(line)
            if match:
                self.failures.append(match.group(0).strip())
        return len(text)

    def flush(self) -> None:
        """Flush the sink."""
        self.sink.flush()


def run_local(
    *,
    dataset: str = "ml-100k",
    settings_path: Path | None = None,
    parameter_overrides: dict[str, str] | None = None,
    console: Console | None = None,
    reuse: bool = True,
    settings_overrides: dict[str, Any] | None = None,
) -> LocalRunResult:
    """Run Prepare, Train, Evaluate and the quality check in Docker, then register on moto."""
    import boto3

    from mlops.data.tables import raw_dir
    from mlops.data.versioning import dir_md5
    from pipelines import definition, registry

    console = console or Console(stderr=True)
    _require_aws_endpoint()
    base = load_settings(settings_path) if settings_path else None
    settings = local_settings(base, dataset=dataset, **(settings_overrides or {}))
    timings: dict[str, float] = {}
    started = time.monotonic()

    raw = raw_dir(dataset)
    if not raw.is_dir():
        raise LocalRunError(f"{raw} does not exist: run `mlops data fetch --dataset {dataset}` first")
    version = dir_md5(raw)
    commit = git_commit()
    code = code_version()
    s3 = boto3.client("s3", region_name=settings.region)
    sm = boto3.client("sagemaker", region_name=settings.region)

    if reuse:
        found = registry.find(
            sm, settings.model_package_group_name, dataset_version=version, code_version=code
        )
        if found is not None:
            console.print(f"reusing {found['ModelPackageArn']}: same dataset version and code")
            evaluation_uri = found["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
            metadata = found.get("CustomerMetadataProperties", {})
            return LocalRunResult(
                status="Succeeded",
                execution=metadata.get("pipeline_execution", ""),
                dataset=dataset,
                dataset_version=version,
                git_commit=commit,
                steps=[],
                evaluation=_read_s3_json(s3, evaluation_uri),
                model_data_url=found["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
                evaluation_uri=evaluation_uri,
                model_package_arn=found["ModelPackageArn"],
                reused=True,
                seconds={"total": round(time.monotonic() - started, 1)},
            )

    _ensure_bucket(s3, settings.bucket)
    input_uri = upload_raw(s3, settings.bucket, raw, f"raw/{dataset}/{version}")
    parameters = {
        "InputDataUri": input_uri,
        "DatasetName": dataset,
        "DatasetVersion": version,
        "GitCommit": commit,
    }
    parameters.update(parameter_overrides or {})

    session = make_session(settings)
    pipeline = definition.build_pipeline(settings, session=session, register=False)
    pipeline.create(role_arn=settings.role_arn, description="local run")
    console.print(f"running {settings.pipeline_name} locally on {dataset} ({version}) in Docker ...")
    t0 = time.monotonic()
    log = ContainerLog(sys.stderr)
    try:
        with contextlib.redirect_stdout(log):
            execution = pipeline.start(parameters=parameters)
    finally:
        prune_containers()
    timings["pipeline"] = round(time.monotonic() - t0, 1)
    described = execution.describe()
    steps = [
        {
            "name": s["StepName"],
            "status": s["StepStatus"],
            "failure_reason": s.get("FailureReason"),
        }
        for s in execution.list_steps()["PipelineExecutionSteps"]
    ]
    for step in steps:
        console.print(f"  {step['name']}: {step['status']}")
    status = described["PipelineExecutionStatus"]
    if status != "Succeeded":
        failed = next((s for s in steps if s["status"] == "Failed"), None)
        reason = " | ".join(log.failures) or described.get("FailureReason") or "the local pipeline failed"
        raise LocalRunError(
            reason,
            step=failed["name"] if failed else None,
            details={
                "steps": steps,
                "dataset_version": version,
                "execution_failure": described.get("FailureReason"),
            },
        )

    results = {
        name: execution.step_execution[name].properties for name in (definition.TRAIN, definition.EVALUATE)
    }
    model_data_url = results[definition.TRAIN]["ModelArtifacts"]["S3ModelArtifacts"]
    # The local executor keys processing outputs by name (AWS lists them).
    outputs = results[definition.EVALUATE]["ProcessingOutputConfig"]["Outputs"]
    by_name = outputs if isinstance(outputs, dict) else {o["OutputName"]: o for o in outputs}
    evaluation_prefix = by_name["evaluation"]["S3Output"]["S3Uri"]
    evaluation_uri = f"{evaluation_prefix.rstrip('/')}/{definition.EVALUATION_FILE}"
    report = _read_s3_json(s3, evaluation_uri)
    lineage = registry.Lineage(
        dataset=dataset,
        dataset_version=version,
        git_commit=commit,
        mlflow_run_id=str(registry.lookup(report, definition.MLFLOW_RUN_ID)),
        pipeline_execution=f"local:{settings.pipeline_name}/{execution.pipeline_execution_name}",
    )
    request = registry.model_package_request(
        group=settings.model_package_group_name,
        image_uri=settings.serving_image_uri,
        model_data_url=model_data_url,
        evaluation_uri=evaluation_uri,
        report=report,
        lineage=lineage,
        approval_status=parameters.get("ModelApprovalStatus", settings.approval_status),
        instance_type=settings.inference_instance_type,
    )
    # Reuse key of a later run: the same raw data and the same code.
    request["CustomerMetadataProperties"]["code_version"] = code
    arn = registry.register(sm, request)
    timings["total"] = round(time.monotonic() - started, 1)
    return LocalRunResult(
        status=status,
        execution=lineage.pipeline_execution,
        dataset=dataset,
        dataset_version=version,
        git_commit=commit,
        steps=steps,
        evaluation=report,
        model_data_url=model_data_url,
        evaluation_uri=evaluation_uri,
        model_package_arn=arn,
        seconds=timings,
    )


def describe_json(result: LocalRunResult) -> str:
    """The result as one line of JSON."""
    return json.dumps(result.as_dict(), sort_keys=True, default=str)
