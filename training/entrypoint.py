"""The training container's entry point: parse the SageMaker contract, train, export, track, report.

SageMaker starts the container with the argument `train`; SDK 3.x local mode starts it with none.
Exit code 0 on success; otherwise 1 (2 for a bad argument) with the reason in /opt/ml/output/failure.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from training.contract import SageMakerEnv, split_container_keys
from training.distributed import strategy_for, wait_for_all_workers, weights_digest
from training.hyperparameters import Hyperparameters
from training.metrics import mae, rmse

# Tests and `mlops train` runs on the host point this at a directory laid out like /opt/ml.
ROOT_ENV = "MLOPS_SAGEMAKER_ROOT"
DEFAULT_ROOT = Path("/opt/ml")


def run(env: SageMakerEnv, extra_callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Run one training job against `env` and return its report; raises on any failure."""
    started = time.monotonic()
    raw = env.read_hyperparameters()
    container_keys, model_keys = split_container_keys(raw)
    resource = env.read_resource_config()

    from training.tracking import Tracker, resolve_settings  # noqa: PLC0415  heavy: loads tensorflow only when called

    hp = Hyperparameters.from_sagemaker(model_keys)
    settings = resolve_settings(container_keys, os.environ, env.output_data_dir / "mlflow")

    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any operation.

    strategy = strategy_for(resource)
    if strategy is not None:
        _log(
            f"distributed: MultiWorkerMirroredStrategy, worker {resource.worker_index} of "
            f"{len(resource.hosts)}, {strategy.num_replicas_in_sync} replicas in sync"
        )
    _log(f"host {resource.current_host} of {list(resource.hosts)}; hyperparameters {hp.model_dump()}")

    from training.checkpoints import CheckpointCallback, CheckpointStore  # noqa: PLC0415  heavy: loads tensorflow only when called
    from training.fit import TrainingData, fit  # noqa: PLC0415  heavy: loads tensorflow only when called

    data = TrainingData.from_channels(env.input_data_dir)
    # Every worker resumes from the same synced checkpoints; only the chief writes there (TF requires
    # the others to write too, so they write to a scratch directory).
    scratch = Path(tempfile.mkdtemp(prefix="mlops-worker-"))
    resume = _resume_point(CheckpointStore(env.checkpoints_dir), hp.epochs)
    store = CheckpointStore(env.checkpoints_dir if resource.is_chief else scratch / "checkpoints")
    initial_epoch = resume.epoch if resume else 0
    if resume:
        _log(f"resuming from checkpoint {resume.path.name}: epoch {initial_epoch + 1} of {hp.epochs} is next")

    tracker = Tracker(settings, enabled=resource.is_chief)
    job_name = os.environ.get("TRAINING_JOB_NAME", f"local-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    git_commit = os.environ.get("MLOPS_GIT_COMMIT", "unknown")
    tracker.start(
        job_name,
        {
            "training_job": job_name,
            "git_commit": git_commit,
            "dataset": hp.dataset,
            "dataset_version": hp.dataset_version,
        },
    )
    tracker.log_params(
        {**hp.model_dump(), "workers": len(resource.hosts), "resumed_from_epoch": initial_epoch}
    )
    checkpointing = CheckpointCallback(store, resume)
    try:
        result = fit(
            data,
            hp,
            callbacks=[checkpointing, tracker.epoch_callback(), *extra_callbacks],
            initial_epoch=initial_epoch,
            strategy=strategy,
            verbose=2,
        )
        report = _finish(
            env,
            data,
            result,
            hp,
            checkpointing.history,
            tracker,
            resource.is_chief,
            scratch,
            job_name=job_name,
            git_commit=git_commit,
            initial_epoch=initial_epoch,
            workers=len(resource.hosts),
            started=started,
        )
        if strategy is not None:
            wait_for_all_workers(strategy, len(resource.hosts))
    except BaseException:
        tracker.end("FAILED")
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def _finish(
    env: SageMakerEnv,
    data: Any,
    result: Any,
    hp: Any,
    history: dict[str, list[float]],
    tracker: Any,
    is_chief: bool,
    scratch: Path,
    *,
    job_name: str,
    git_commit: str,
    initial_epoch: int,
    workers: int,
    started: float,
) -> dict[str, Any]:
    from training.export import export_model_dir  # noqa: PLC0415  heavy: loads tensorflow only when called

    baselines = _baseline_scores(data)
    model_scores = {
        "rmse": result.metrics.get("val_rmse", float("nan")),
        "mae": result.metrics.get("val_mae", float("nan")),
    }
    metrics = {
        **result.metrics,
        **{f"{name}_val_{m}": v for name, s in baselines.items() for m, v in s.items()},
    }
    metadata = {
        "model_version": job_name,
        "dataset": hp.dataset,
        "dataset_version": hp.dataset_version,
        "metrics": metrics,
        "git_commit": git_commit,
        "mlflow_run_id": tracker.report.run_id,
        "created_at": datetime.now(UTC).isoformat(),
        "training": {
            "job_name": job_name,
            "epochs_run": len(next(iter(history.values()), [])),
            "resumed_from_epoch": initial_epoch,
            "workers": workers,
        },
        "tracking": tracker.report.as_dict(),
    }
    # Every worker exports (TF's rule for multi-worker saving); only the chief's copy is the model.
    model_dir = env.model_dir if is_chief else scratch / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    export_model_dir(result, model_dir, metadata=metadata)
    if is_chief:
        _track(tracker, result, history, metrics, {"model": model_scores, **baselines}, model_dir)
        # The tracking outcome is known only now: record it beside the model for lineage and for a
        # person wondering why the run is missing from MLflow.
        meta_path = model_dir / "metadata.json"
        stored = json.loads(meta_path.read_text())
        stored["tracking"] = tracker.report.as_dict()
        stored["mlflow_run_id"] = tracker.report.run_id
        meta_path.write_text(json.dumps(stored, indent=2, default=str))
    report = {
        "ok": True,
        "host_is_chief": is_chief,
        "model_dir": str(model_dir) if is_chief else None,
        "metrics": metrics,
        "epochs_run": metadata["training"]["epochs_run"],  # type: ignore[index]
        "resumed_from_epoch": initial_epoch,
        "workers": workers,
        # Every worker of a multi-worker job must end with the same weights; the digest shows it.
        "towers_sha256": weights_digest(result.towers),
        "tracking": tracker.report.as_dict(),
        "seconds": round(time.monotonic() - started, 1),
    }
    if is_chief:
        env.output_data_dir.mkdir(parents=True, exist_ok=True)
        (env.output_data_dir / "training_report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def _track(
    tracker: Any,
    result: Any,
    history: dict[str, list[float]],
    metrics: dict[str, float],
    scores: dict[str, dict[str, float]],
    model_dir: Path,
) -> None:
    from training.tracking import plot_against_baselines, plot_learning_curves, scratch_dir  # noqa: PLC0415  heavy: loads tensorflow only when called

    tracker.log_metrics(metrics)
    plots = scratch_dir()
    try:
        tracker.log_artifact(plot_learning_curves(history, plots / "learning_curves.png"), "plots")
        tracker.log_artifact(plot_against_baselines(scores, plots / "metrics_vs_baselines.png"), "plots")
        tracker.log_artifact(model_dir, "model_dir")
        tracker.log_keras_model(result.model, _model_example(result))
        tracker.end("FINISHED" if tracker.report.error is None else "FAILED")
    finally:
        shutil.rmtree(plots, ignore_errors=True)


def _model_example(result: Any) -> dict[str, Any]:

    towers = result.towers
    n = min(3, len(towers["user_ids"]), len(towers["movie_ids"]))
    return {
        "user_id": np.asarray(towers["user_ids"][:n], dtype=np.int64),
        "movie_id": np.asarray(towers["movie_ids"][:n], dtype=np.int64),
        "user_features": np.tile(np.asarray(towers["feature_mean"], dtype=np.float32), (n, 1)),
    }


def _baseline_scores(data: Any) -> dict[str, dict[str, float]]:
    """Validation RMSE and MAE of the baselines fitted on the same training ratings."""
    from training.baselines import BiasedBaseline, GlobalMean  # noqa: PLC0415  heavy: loads pandas only when called

    if data.validation is None or not len(data.validation):
        return {}
    val = data.validation
    out = {}
    for name, predictor in (("global_mean", GlobalMean()), ("biased_baseline", BiasedBaseline())):
        pred = predictor.fit(data.ratings).predict(val["user_id"].to_numpy(), val["movie_id"].to_numpy())
        out[name] = {"rmse": rmse(val["rating"], pred), "mae": mae(val["rating"], pred)}
    return out


def _resume_point(store: Any, epochs: int) -> Any:
    """The newest checkpoint this run can continue from (one with fewer epochs than the run's)."""
    usable = [c for c in store.all() if 0 < c.epoch < epochs]
    return usable[-1] if usable else None


def failure_reason(err: BaseException) -> str:
    """First line: the error, short and actionable (SageMaker's FailureReason); then the traceback."""
    first = f"{type(err).__name__}: {err}".strip().replace("\n", " ")
    return first + "\n\n" + "".join(traceback.format_exception(err))


def _log(message: str) -> None:
    print(f"training: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the training job; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = SageMakerEnv.from_root(Path(os.environ.get(ROOT_ENV, str(DEFAULT_ROOT))))
    if args not in ([], ["train"]):
        reason = (
            f"unknown container arguments {args!r}: this is the training image, start it with "
            "`train` or no argument (SageMaker and SDK local mode do)."
        )
        env.write_failure(reason)
        _log(reason)
        return 2
    try:
        report = run(env)
    except BaseException as err:  # every failure must reach output/failure
        reason = failure_reason(err)
        try:
            env.write_failure(reason)
        except OSError as write_err:
            _log(f"could not write {env.failure_path}: {write_err}")
        _log(reason)
        return 130 if isinstance(err, KeyboardInterrupt) else 1
    _log(f"done: {json.dumps(report, default=str)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
