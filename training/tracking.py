"""MLflow tracking of a training run: parameters, per-epoch and final metrics, plots, the model.

Tracking never costs the model: a store or server that fails is reported (stderr and the returned
report, which goes into the model's metadata) and the run carries on without it.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from training.fit import metric_name

DEFAULT_EXPERIMENT = "movielens-recommender"
DEFAULT_TIMEOUT_SECONDS = 10.0
# SageMaker's managed MLflow: the tracking URI is the tracking server's ARN (sagemaker-mlflow plugin).
_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:mlflow-(tracking-server|app)/.+$")


class TrackingConfigError(ValueError):
    """The tracking configuration is malformed; the message names the value and where it came from."""


@dataclass(frozen=True)
class TrackingSettings:
    """Where and how a run is tracked."""

    uri: str
    experiment: str = DEFAULT_EXPERIMENT
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    # Only for a local store: where its experiment keeps artifacts.
    artifact_location: str | None = None
    source: str = "default"

    @property
    def kind(self) -> str:
        """`sagemaker` (managed server ARN), `http` (a server) or `local` (a file or database store)."""
        if self.uri.startswith("arn:"):
            return "sagemaker"
        if self.uri.startswith(("http://", "https://")):
            return "http"
        return "local"


def local_store(directory: Path) -> tuple[str, str]:
    """(tracking URI, artifact location) of a SQLite store with artifacts beside it in `directory`."""
    directory = Path(directory).resolve()
    return f"sqlite:///{directory / 'mlflow.db'}", (directory / "mlartifacts").as_uri()


def resolve_settings(
    hyperparameters: Mapping[str, str], environ: Mapping[str, str], default_store: Path
) -> TrackingSettings:
    """Tracking settings from the job's hyperparameters, then MLFLOW_TRACKING_URI, then a local store."""
    uri, source = hyperparameters.get("mlflow_tracking_uri"), "hyperparameter mlflow_tracking_uri"
    if not uri:
        uri, source = environ.get("MLFLOW_TRACKING_URI"), "environment variable MLFLOW_TRACKING_URI"
    artifact_location = None
    if not uri:
        uri, artifact_location = local_store(default_store)
        source = f"default local store in {default_store}"
    if uri.startswith("arn:") and not _ARN.match(uri):
        raise TrackingConfigError(
            f"MLflow tracking URI {uri!r} (from {source}) looks like an ARN but not a SageMaker MLflow "
            "tracking server's (arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME)."
        )
    experiment = (
        hyperparameters.get("mlflow_experiment")
        or environ.get("MLFLOW_EXPERIMENT_NAME")
        or DEFAULT_EXPERIMENT
    )
    raw_timeout = hyperparameters.get("mlflow_timeout_seconds", str(DEFAULT_TIMEOUT_SECONDS))
    try:
        timeout = float(raw_timeout)
    except ValueError:
        timeout = math.nan
    if not timeout > 0:
        raise TrackingConfigError(
            f"hyperparameter mlflow_timeout_seconds={raw_timeout!r} is not a positive number of seconds."
        )
    return TrackingSettings(uri, experiment, timeout, artifact_location, source)


@dataclass
class TrackingReport:
    """What tracking achieved: the run id, or the error that stopped it."""

    uri: str
    experiment: str
    run_id: str | None = None
    model_uri: str | None = None
    error: str | None = None
    logged: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form, for metadata.json and the entry point's report."""
        return {
            "uri": self.uri,
            "experiment": self.experiment,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "ok": self.error is None,
            "error": self.error,
            "logged": self.logged,
        }


class _NotAnArnNoise(logging.Filter):
    """Drop the sagemaker-mlflow plugin's failure, at every request, on a tracking URI that is no ARN.

    Its request-header plugin is active whatever the URI and fails parsing any URI but a SageMaker
    managed MLflow ARN (an IndexError for http://host:port); MLflow logs each failure as "Encountered
    unexpected error during resolving request headers" and sends the request anyway. Only errors raised
    inside that plugin are dropped, and the filter is installed only for URIs that are not ARNs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for an error raised inside sagemaker_mlflow, True for everything else."""
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, BaseException) and _raised_in_plugin(arg) for arg in args)


def _raised_in_plugin(error: BaseException) -> bool:
    frame = error.__traceback__
    while frame is not None:
        if "sagemaker_mlflow" in frame.tb_frame.f_code.co_filename:
            return True
        frame = frame.tb_next
    return False


def quiet_arn_header_noise() -> None:
    """Install the filter on MLflow's request-header logger (once)."""
    logger = logging.getLogger("mlflow.tracking.request_header.registry")
    if not any(isinstance(f, _NotAnArnNoise) for f in logger.filters):
        logger.addFilter(_NotAnArnNoise())


class Tracker:
    """One MLflow run. Every call is guarded: the first failure disables tracking and is reported."""

    def __init__(self, settings: TrackingSettings, enabled: bool = True) -> None:
        """Track into `settings`; a disabled tracker (a non-chief worker) logs nothing."""
        self.settings = settings
        self.enabled = enabled
        self.report = TrackingReport(settings.uri, settings.experiment)

    @property
    def active(self) -> bool:
        """True while a run is open and nothing has failed."""
        return self.enabled and self.report.error is None and self.report.run_id is not None

    def _fail(self, what: str, err: BaseException) -> None:
        detail = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        self.report.error = (
            f"MLflow tracking at {self.settings.uri} (from {self.settings.source}) failed while {what}: "
            f"{detail}. The model is still written to the model directory; check that the tracking "
            "server runs and is reachable from the job, or set mlflow_tracking_uri."
        )
        print(f"tracking: {self.report.error}", file=sys.stderr, flush=True)

    def start(self, run_name: str, tags: Mapping[str, str]) -> None:
        """Open the run, after checking that a tracking server answers within the timeout."""
        if not self.enabled:
            return
        if self.settings.kind != "sagemaker":
            quiet_arn_header_noise()
        timeout = self.settings.timeout_seconds
        # MLflow's own defaults retry for minutes; a server that is down must not stall the job.
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = os.environ.get(
            "MLFLOW_HTTP_REQUEST_TIMEOUT", str(math.ceil(timeout))
        )
        try:
            if self.settings.kind == "http":
                _probe(self.settings.uri, timeout)
            import mlflow  # noqa: PLC0415  optional: the code runs without it

            mlflow.set_tracking_uri(self.settings.uri)
            client = mlflow.MlflowClient()
            experiment = client.get_experiment_by_name(self.settings.experiment)
            if experiment is None:
                experiment_id = client.create_experiment(
                    self.settings.experiment, artifact_location=self.settings.artifact_location
                )
            else:
                experiment_id = experiment.experiment_id
            run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags))
            self.report.run_id = run.info.run_id
        except Exception as err:  # any tracking failure is reported, never fatal
            self._fail("starting the run", err)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log the run's parameters (hyperparameters, dataset, image)."""
        self._guard("logging parameters", lambda m: m.log_params({k: str(v) for k, v in params.items()}))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics, per epoch when `step` is given."""
        finite = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
        self._guard("logging metrics", lambda m: m.log_metrics(finite, step=step))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Log one file or a whole directory as artifacts."""

        def log(m: Any) -> None:
            if path.is_dir():
                m.log_artifacts(str(path), artifact_path)
            else:
                m.log_artifact(str(path), artifact_path)
            name = artifact_path or "" if path.is_dir() else f"{artifact_path or ''}/{path.name}"
            self.report.logged.append(name.lstrip("/") or ".")

        self._guard(f"logging artifact {path.name}", log)

    def log_keras_model(self, model: keras.Model, example: dict[str, Any]) -> None:
        """Log the serving-form Keras model (MLflow's Keras flavour) with a signature from `example`."""

        def log(m: Any) -> None:
            from mlflow.models import infer_signature  # noqa: PLC0415  heavy: loads mlflow only when called

            signature = infer_signature(example, model.predict(example, verbose=0))
            # Explicit requirements: MLflow would otherwise import the model in a subprocess to guess them.
            info = m.keras.log_model(
                model,
                name="model",
                signature=signature,
                pip_requirements=[f"tensorflow-cpu=={tf.__version__}", f"keras=={keras.__version__}"],
            )
            self.report.model_uri = info.model_uri
            self.report.logged.append("model")

        self._guard("logging the model", log)

    def end(self, status: str = "FINISHED") -> None:
        """Close the run with `status` (FINISHED or FAILED)."""
        if self.enabled and self.report.run_id is not None:
            try:
                import mlflow  # noqa: PLC0415  optional: the code runs without it

                mlflow.end_run(status=status)
            except Exception as err:
                self._fail("closing the run", err)

    def epoch_callback(self) -> keras.callbacks.Callback:
        """A Keras callback that logs every epoch's metrics with the epoch as the step."""
        return _EpochMetrics(self)

    def _guard(self, what: str, action: Any) -> None:
        if not self.active:
            return
        try:
            import mlflow  # noqa: PLC0415  optional: the code runs without it

            action(mlflow)
        except Exception as err:
            self._fail(what, err)


class _EpochMetrics(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:

        # Under "epoch/" so the learning curves never mix with the job's final figures of the same name.
        named = {f"epoch/{metric_name(k)}": float(v) for k, v in (logs or {}).items()}
        self.tracker.log_metrics(named, step=epoch + 1)


def _probe(uri: str, timeout: float) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only
            response.read(64)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConnectionError(
            f"the tracking server did not answer GET {url} within {timeout:g} s ({reason})"
        ) from err


def plot_learning_curves(history: Mapping[str, list[float]], out: Path) -> Path:
    """One panel per metric, training beside validation, against the epoch: a PNG."""
    import matplotlib  # noqa: PLC0415  matplotlib: the Agg backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415  matplotlib: the Agg backend is chosen before pyplot loads

    names = sorted({k.removeprefix("val_") for k in history if history[k]})
    if not names:
        raise ValueError("no per-epoch history to plot")
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for key, label in ((name, "training"), (f"val_{name}", "validation")):
            values = history.get(key) or []
            if values:
                ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Learning curves")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_against_baselines(scores: Mapping[str, Mapping[str, float]], out: Path) -> Path:
    """Grouped bars: each metric (e.g. val RMSE, MAE) for the model and every baseline: a PNG."""
    import matplotlib  # noqa: PLC0415  matplotlib: the Agg backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415  matplotlib: the Agg backend is chosen before pyplot loads

    predictors = list(scores)
    metrics = sorted({m for s in scores.values() for m in s})
    if not predictors or not metrics:
        raise ValueError("no scores to plot")
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(metrics) * len(predictors) / 2, 3.8))
    width = 0.8 / len(predictors)
    for i, predictor in enumerate(predictors):
        xs = [j + i * width for j in range(len(metrics))]
        ys = [scores[predictor].get(m, math.nan) for m in metrics]
        bars = ax.bar(xs, ys, width, label=predictor)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks([j + width * (len(predictors) - 1) / 2 for j in range(len(metrics))], metrics)
    ax.set_ylabel("validation error (lower is better)")
    ax.set_title("Model vs baselines on the validation ratings")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def scratch_dir() -> Path:
    """A fresh directory for files that are only made to be logged."""
    return Path(tempfile.mkdtemp(prefix="mlops-tracking-"))
