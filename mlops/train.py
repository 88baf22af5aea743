"""`mlops train local`: a real SageMaker local-mode training job (SDK 3.x ModelTrainer) with the ML image."""

from __future__ import annotations

import json
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console

from dataset.dataset_names import DatasetName
from dataset.paths import state_dir
from dataset.tables import dataset_version, load_tables
from pipelines.sdk import configure_sdk
from standins.docker import docker_bridge_ip, remove_exited
from standins.git import git_commit
from standins.servers import mlflow_server
from training import channels

app = typer.Typer(help="Run training jobs with the ML image.", no_args_is_help=True)

TRAINING_IMAGE = "mlops-training:latest"
ROLE_ARN = "arn:aws:iam::123456789012:role/mlops-local-training"
# Local mode makes no AWS call; the SDK still wants a region to build its clients.
LOCAL_REGION = "us-east-1"


class LocalTrainingError(RuntimeError):
    """A local training job could not run or failed; the message says why and what to do."""


def write_channels(
    ratings: pd.DataFrame, movies: pd.DataFrame, users: pd.DataFrame | None, dest: Path
) -> dict[str, Path]:
    """Write docs/contracts.md section 5 channels: each user's last rating held out for validation."""
    return channels.write_channels(ratings, movies, users, dest, channels.SplitPolicy.LAST_PER_USER).paths


@dataclass(frozen=True)
class LocalJob:
    """What a local-mode training job left behind."""

    job_name: str
    model_artifact: Path
    output_artifact: Path
    model_dir: Path
    seconds: float
    failure: str | None


def run_local_job(
    channels: dict[str, Path],
    hyperparameters: dict[str, str],
    workdir: Path,
    *,
    image: str = TRAINING_IMAGE,
    environment: dict[str, str] | None = None,
    instance_count: int = 1,
) -> LocalJob:
    """Run a SageMaker local-mode training job (ModelTrainer, LOCAL_CONTAINER) and unpack its model."""
    configure_sdk(LOCAL_REGION)
    from sagemaker.core.training.configs import Compute, InputData  # noqa: PLC0415  heavy: loads sagemaker only when called
    from sagemaker.train import ModelTrainer  # noqa: PLC0415  heavy: loads sagemaker only when called
    from sagemaker.train.model_trainer import Mode  # noqa: PLC0415  heavy: loads sagemaker only when called

    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # The container runs as a non-root user: the directories local mode mounts for it to write must
    # be writable by that user (SDK-created ones are root-owned 0755).
    job_name = f"mlops-train-{time.strftime('%Y%m%d-%H%M%S')}"
    for sub in [
        "model",
        *(f"algo-{i}/{d}" for i in range(1, instance_count + 1) for d in ("output", "output/data")),
    ]:
        (workdir / sub).mkdir(parents=True, exist_ok=True)
        (workdir / sub).chmod(0o777)
    trainer = ModelTrainer(
        training_mode=Mode.LOCAL_CONTAINER,
        training_image=image,
        compute=Compute(instance_type="local", instance_count=instance_count),
        hyperparameters=hyperparameters,
        environment=environment or {},
        base_job_name="mlops-train",
        role=ROLE_ARN,
        local_container_root=str(workdir),
    )
    inputs = [
        InputData(channel_name=name, data_source=str(path.resolve())) for name, path in channels.items()
    ]
    started = time.monotonic()
    failure = None
    try:
        trainer.train(input_data_config=inputs, wait=True)
    except Exception as err:  # the container's own reason is in output/failure, read below
        failure = f"{type(err).__name__}: {err}"
    seconds = round(time.monotonic() - started, 1)
    artifacts = workdir / "compressed_artifacts"
    model_tar, output_tar = artifacts / "model.tar.gz", artifacts / "output.tar.gz"
    model_dir = workdir / "unpacked-model"
    if model_tar.is_file():
        with tarfile.open(model_tar) as tar:
            tar.extractall(model_dir, filter="data")
    if output_tar.is_file():
        with tarfile.open(output_tar) as tar:
            names = tar.getnames()
            if "failure" in names:
                member = tar.extractfile("failure")
                failure = member.read().decode() if member else failure
    # Local mode leaves its exited containers behind; remove this image's.
    remove_exited(image)
    return LocalJob(job_name, model_tar, output_tar, model_dir, seconds, failure)


@app.command("local")
def train_local(
    dataset: Annotated[DatasetName, typer.Option(help="Dataset fetched by `mlops data fetch`.")] = (
        DatasetName.ML_100K
    ),
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 3,
    image: Annotated[str, typer.Option(help="Training image.")] = TRAINING_IMAGE,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking URI reachable from the container; default: an MLflow "
            "server started for the job over the state dir's store."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Train on a dataset in SageMaker local mode with the ML image and report the model's metrics."""

    console = Console(stderr=True)
    tables = load_tables(dataset)
    run_dir = state_dir() / "local-training" / time.strftime("%Y%m%d-%H%M%S")
    with console.status("writing channels"):
        channels = write_channels(tables.ratings, tables.movies, tables.users, run_dir / "channels")
    # Plain strings: the SDK's local mode checks types exactly and would refuse the enum member.
    hp = {"epochs": str(epochs), "dataset": dataset.value, "dataset_version": dataset_version(dataset)}
    env = {"MLOPS_GIT_COMMIT": git_commit()}

    def go(uri: str) -> LocalJob:
        hp["mlflow_tracking_uri"] = uri
        with console.status(f"local-mode training job in {image} (tracking: {uri})"):
            return run_local_job(channels, hp, run_dir / "job", image=image, environment=env)

    if tracking_uri:
        job = go(tracking_uri)
    else:
        with mlflow_server(state_dir() / "mlflow-server", docker_bridge_ip()) as uri:
            job = go(uri)
    if job.failure or not (job.model_dir / "metadata.json").is_file():
        console.print(f"[red]train: the job failed: {job.failure or 'no model was written'}[/]")
        raise typer.Exit(1)
    metadata = json.loads((job.model_dir / "metadata.json").read_text())
    summary: dict[str, Any] = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()},
        "metrics": metadata.get("metrics", {}),
        "tracking": metadata.get("tracking", {}),
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        for key, value in summary["metrics"].items():
            typer.echo(f"{key}\t{value:.4f}")
        typer.echo(f"model\t{job.model_artifact}\nmlflow run\t{summary['tracking'].get('run_id')}")
