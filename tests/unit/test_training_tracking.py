"""MLflow tracking: configuration, a real local store, a server that does not answer, the plots."""

from __future__ import annotations

import socket
from pathlib import Path

import mlflow
import pytest

from training.tracking import (
    Tracker,
    TrackingConfigError,
    TrackingSettings,
    local_store,
    plot_against_baselines,
    plot_learning_curves,
    resolve_settings,
)

PNG = b"\x89PNG\r\n\x1a\n"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_hyperparameter_beats_environment_beats_default(tmp_path):
    env = {"MLFLOW_TRACKING_URI": "http://env:5001"}
    assert resolve_settings({"mlflow_tracking_uri": ARN}, env, tmp_path).uri == ARN
    from_env = resolve_settings({}, env, tmp_path)
    assert from_env.uri == "http://env:5001" and from_env.kind == "http"
    default = resolve_settings({}, {}, tmp_path)
    assert default.uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db" and default.kind == "local"
    assert default.artifact_location == (tmp_path.resolve() / "mlartifacts").as_uri()


def test_arn_is_the_sagemaker_kind(tmp_path):
    assert resolve_settings({"mlflow_tracking_uri": ARN}, {}, tmp_path).kind == "sagemaker"


def test_malformed_arn_is_named(tmp_path):
    with pytest.raises(TrackingConfigError, match=r"arn:aws:sagemaker:us-east-1:1:bucket/x.*hyperparameter"):
        resolve_settings({"mlflow_tracking_uri": "arn:aws:sagemaker:us-east-1:1:bucket/x"}, {}, tmp_path)


@pytest.mark.parametrize("value", ["soon", "0", "-3"])
def test_bad_timeout_is_named(tmp_path, value):
    with pytest.raises(TrackingConfigError, match=f"mlflow_timeout_seconds='{value}'"):
        resolve_settings({"mlflow_timeout_seconds": value}, {}, tmp_path)


def test_server_that_does_not_answer_is_reported_not_fatal(tmp_path):
    port = _closed_port()
    tracker = Tracker(TrackingSettings(f"http://127.0.0.1:{port}", timeout_seconds=2, source="test"))
    tracker.start("run", {})
    tracker.log_params({"epochs": 2})
    tracker.log_metrics({"rmse": 1.0}, step=1)
    tracker.end()
    report = tracker.report.as_dict()
    assert report["ok"] is False and report["run_id"] is None
    assert f"127.0.0.1:{port}" in report["error"] and "did not answer" in report["error"]
    assert "model is still written" in report["error"]


def test_local_store_run_is_logged_and_readable(tmp_path):
    uri, artifacts = local_store(tmp_path / "store")
    tracker = Tracker(TrackingSettings(uri, "unit", artifact_location=artifacts))
    tracker.start("unit-run", {"dataset": "synthetic"})
    tracker.log_params({"epochs": 3, "seed": 7})
    for step, value in enumerate([1.2, 1.0, 0.9], start=1):
        tracker.log_metrics({"val_rmse": value}, step=step)
    note = tmp_path / "note.txt"
    note.write_text("hello")
    tracker.log_artifact(note, "notes")
    tracker.end()
    assert tracker.report.error is None
    client = mlflow.MlflowClient(uri)
    run = client.get_run(tracker.report.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"epochs": "3", "seed": "7"}
    assert run.data.tags["dataset"] == "synthetic"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "val_rmse")] == [1.2, 1.0, 0.9]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "notes")] == ["notes/note.txt"]


def test_disabled_tracker_logs_nothing(tmp_path):
    uri, artifacts = local_store(tmp_path / "store")
    tracker = Tracker(TrackingSettings(uri, "unit", artifact_location=artifacts), enabled=False)
    tracker.start("worker", {})
    tracker.log_params({"a": 1})
    assert tracker.report.run_id is None and tracker.report.error is None
    assert not (tmp_path / "store").exists()


def test_plots_are_pngs(tmp_path: Path):
    curves = plot_learning_curves(
        {"loss": [2.0, 1.5, 1.2], "val_loss": [2.1, 1.7, 1.4], "rmse": [1.1, 1.0, 0.95]}, tmp_path / "c.png"
    )
    bars = plot_against_baselines(
        {"model": {"rmse": 0.92, "mae": 0.72}, "global_mean": {"rmse": 1.12, "mae": 0.94}}, tmp_path / "b.png"
    )
    for path in (curves, bars):
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000


def test_empty_history_cannot_be_plotted(tmp_path):
    with pytest.raises(ValueError, match="no per-epoch history"):
        plot_learning_curves({}, tmp_path / "c.png")


def test_a_plain_server_uri_does_not_log_the_arn_plugins_error(tmp_path, monkeypatch, caplog):
    # sagemaker-mlflow's header plugin fails on every request to a server that is not SageMaker's.
    import logging

    from mlflow.tracking.request_header.registry import resolve_request_headers

    monkeypatch.setattr(logging.getLogger("mlflow.tracking.request_header.registry"), "filters", [])
    port = _closed_port()
    Tracker(TrackingSettings(f"http://127.0.0.1:{port}", timeout_seconds=2, source="test")).start("r", {})
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", f"http://127.0.0.1:{port}")
    with caplog.at_level("WARNING", logger="mlflow.tracking.request_header.registry"):
        headers = resolve_request_headers()
    assert "User-Agent" in headers
    assert "resolving request headers" not in caplog.text
