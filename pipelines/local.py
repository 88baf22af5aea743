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
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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
        # Locally the feature store is Feast; a settings file may still say "none" to skip ingestion.
        feature_store="none" if values["feature_store"] == "none" else "feast",
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


CODE_PATHS = ("pipelines", "training", "features", "mlops/data")


def code_version() -> str:
    """Content hash of the code a run executes, as the working tree holds it (what the image is built from).

    Hashing HEAD's trees instead would give a dirty tree the same version whatever its edits (so a
    changed step could reuse an old model) and would change with commits that touch nothing here.
    """
    import hashlib

    from mlops.paths import ROOT

    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *CODE_PATHS],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        raise LocalRunError(
            f"`git ls-files` failed in {ROOT} ({listed.stderr.decode(errors='replace').strip()}): "
            "a local run keys reuse on the code's content, so it needs the git checkout"
        )
    digest = hashlib.sha256()
    for name in sorted(set(listed.stdout.decode().split("\0")) - {""}):
        path = ROOT / name
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def settings_version(settings: PipelineSettings) -> str:
    """Hash of the settings that shape the model (hyperparameters, split, thresholds), for the reuse key."""
    import hashlib

    # Where the stand-ins listen changes from run to run and does not change the model.
    shaping = settings.model_dump(mode="json", exclude={"feast_url", "mlflow_tracking_uri"})
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def _require_aws_endpoint() -> str:
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if not endpoint:
        raise LocalRunError(
            "AWS_ENDPOINT_URL is not set: a local run keeps S3 and the model registry on a moto server. "
            "Start one (`make demo` does, or `python -m moto.server -H 127.0.0.1 -p PORT`) and export "
            "AWS_ENDPOINT_URL=http://127.0.0.1:PORT with fake credentials"
        )
    return endpoint


def make_session(settings: PipelineSettings, labels: dict[str, str] | None = None) -> Any:
    """A local pipeline session that captures step arguments like a PipelineSession."""
    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.mlops.local import LocalPipelineSession

    class LocalRunSession(LocalPipelineSession, PipelineSession):  # type: ignore[misc]
        """LocalPipelineSession runs pipelines; PipelineSession makes steps capture arguments."""

        def default_bucket(self) -> str:
            return settings.bucket

    from pipelines.definition import sdk_config

    session = LocalRunSession(
        boto_session=boto3.Session(region_name=settings.region),
        default_bucket=settings.bucket,
        s3_endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        sagemaker_config=sdk_config(),
    )
    host_user(session, labels)
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


def host_user(session: Any, labels: dict[str, str] | None = None) -> None:
    """Run local-mode containers as the host user, with our labels.

    Local mode mounts directories it makes with mkdtemp (mode 0700, owned by the host user); our
    images run as a non-root user that could neither read the inputs nor write the outputs there.
    The labels (merged into each docker-compose service) let a clean-up remove exactly the
    containers this run started, never another user's local-mode jobs.
    """
    config = dict(session.config or {})
    local = dict(config.get("local", {}))
    container = {**local.get("container_config", {}), "user": f"{os.getuid()}:{os.getgid()}"}
    if labels:
        container["labels"] = {**container.get("labels", {}), **labels}
    local["container_config"] = container
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


RUN_LABEL = "io.mlops.run"


def remove_containers(labels: dict[str, str]) -> int:
    """Remove every container (running or exited) carrying all these labels; return how many."""
    if not labels:
        raise ValueError("remove_containers needs at least one label: it never removes unlabelled containers")
    filters = [arg for key, value in labels.items() for arg in ("--filter", f"label={key}={value}")]
    done = subprocess.run(["docker", "ps", "-aq", *filters], capture_output=True, text=True, check=False)
    ids = done.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
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
    container_labels: dict[str, str] | None = None,
) -> LocalRunResult:
    """Run Prepare, Train, Evaluate and the quality check in Docker, then register on moto.

    With `feature_store="feast"` (the local default) and no `feast_url` in the settings, a Feast
    feature server is started on the dataset's Feast repo for the run and stopped after it.
    """
    import uuid

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
    # Reuse key: the same raw data, the same code and the same model-shaping settings.
    key = {
        "dataset_version": version,
        "code_version": code_version(),
        "settings_version": settings_version(settings),
    }
    s3 = boto3.client("s3", region_name=settings.region)
    sm = boto3.client("sagemaker", region_name=settings.region)

    if reuse:
        found = registry.find(sm, settings.model_package_group_name, **key)
        if found is not None:
            console.print(f"reusing {found['ModelPackageArn']}: same dataset version, code and settings")
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

    labels = {**(container_labels or {}), RUN_LABEL: uuid.uuid4().hex}
    feast_server = None
    try:
        if settings.feature_store == "feast" and not settings.feast_url:
            t0 = time.monotonic()
            try:
                feast_server = start_feast_server(dataset, console)
            except Exception as error:  # any reason; Ctrl-C (not an Exception) still propagates
                raise LocalRunError(
                    f"cannot start the Feast feature server Prepare ingests into: {error}",
                    step=definition.PREPARE,
                    details={"dataset_version": version, "steps": []},
                ) from error
            settings = PipelineSettings.model_validate(
                {**settings.model_dump(), "feast_url": feast_server.url}
            )
            timings["feast"] = round(time.monotonic() - t0, 1)
        session = make_session(settings, labels)
        pipeline = definition.build_pipeline(settings, session=session, register=False)
        pipeline.create(role_arn=settings.role_arn, description="local run")
        console.print(f"running {settings.pipeline_name} locally on {dataset} ({version}) in Docker ...")
        t0 = time.monotonic()
        log = ContainerLog(sys.stderr)
        with contextlib.redirect_stdout(log), _interrupts_noted() as interrupted:
            execution = pipeline.start(parameters=parameters)
        if interrupted.is_set():
            # The local executor turns Ctrl-C into a failed step and carries on; it was an interrupt.
            raise KeyboardInterrupt
        timings["pipeline"] = round(time.monotonic() - t0, 1)
    finally:
        # Also on Ctrl-C: no container of this run, and no feature server it started, outlives it.
        remove_containers({RUN_LABEL: labels[RUN_LABEL]})
        if feast_server is not None:
            from mlops import standins

            standins.stop_recorded(["feast"])
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
    execution_id = f"local:{settings.pipeline_name}/{execution.pipeline_execution_name}"
    prepared = any(s["name"] == definition.PREPARE and s["status"] == "Succeeded" for s in steps)
    if settings.feature_store == "feast" and prepared:
        # Prepare's push reached the online store whatever the quality gate decides later.
        _record_feast_push(s3, by_prepare_output(execution, "feature_store"), dataset, execution_id)
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
        pipeline_execution=execution_id,
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
    request["CustomerMetadataProperties"].update(key)
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


@contextlib.contextmanager
def _interrupts_noted() -> Iterator[threading.Event]:
    """Note a Ctrl-C (SIGINT) while the block runs, still raising KeyboardInterrupt where it lands."""
    noted = threading.Event()
    # Handlers can only be set from the main thread; a process started with SIGINT ignored keeps it so.
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        yield noted
        return

    def handler(signum: int, frame: Any) -> None:
        noted.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def start_feast_server(dataset: str, console: Console) -> Any:
    """Build the dataset's Feast repo if needed and start `feast serve` where containers reach it."""
    from features.feast_repo import ensure_built
    from mlops import standins

    with console.status(f"Feast repo and feature server for {dataset}"):
        repo = ensure_built(dataset, log=lambda line: console.print(f"  feast: {line}"))
        host = standins.docker_bridge_ip()
        server = standins.start_feast(repo.path, host=host)
    console.print(f"Feast feature server {server.url} (Prepare pushes features there)")
    return server


def by_prepare_output(execution: Any, name: str) -> str:
    """The S3 prefix of one of Prepare's outputs in a finished local execution."""
    from pipelines import definition

    outputs = execution.step_execution[definition.PREPARE].properties["ProcessingOutputConfig"]["Outputs"]
    by_name = outputs if isinstance(outputs, dict) else {o["OutputName"]: o for o in outputs}
    return str(by_name[name]["S3Output"]["S3Uri"])


def _record_feast_push(s3: Any, prefix: str, dataset: str, execution_id: str) -> None:
    """Note in the Feast repo's manifest what Prepare pushed (its ingestion.json), for `features show`."""
    from features.feast_repo import record_push

    ingestion = _read_s3_json(s3, f"{prefix.rstrip('/')}/ingestion.json")
    record_push(dataset, {**ingestion, "pipeline_execution": execution_id})


def describe_json(result: LocalRunResult) -> str:
    """The result as one line of JSON."""
    return json.dumps(result.as_dict(), sort_keys=True, default=str)
