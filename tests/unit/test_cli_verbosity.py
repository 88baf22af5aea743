"""Quiet by default: the real `mlops` CLI prints its answer and nothing else unless `--verbose`."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mlops import verbosity
from mlops.verbosity import hoist_verbose
from pipelines.definition import offline_session
from pipelines.sdk import TELEMETRY_ENV, configure_sdk
from pipelines.settings import PipelineSettings

MLOPS = str(Path(sys.executable).with_name("mlops"))


def _definition(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # From another directory, stdin closed: the command must not depend on how it is launched.
    return subprocess.run(
        [MLOPS, "pipeline", "definition", *extra],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.mark.slow
def test_pipeline_definition_prints_nothing_on_stderr(tmp_path: Path) -> None:
    done = _definition(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("{")
    assert done.stderr == ""


@pytest.mark.slow
def test_verbose_anywhere_shows_the_sdks_logs(tmp_path: Path) -> None:
    done = _definition(tmp_path, "--verbose")
    assert done.returncode == 0, done.stderr
    assert "sagemaker" in done.stderr
    # Telemetry is off even when verbose, so the SDK's opt-out notice never shows.
    assert "will collect telemetry" not in done.stderr


def test_hoist_verbose() -> None:
    assert hoist_verbose(["pipeline", "definition", "--verbose"]) == ["--verbose", "pipeline", "definition"]
    assert hoist_verbose(["pipeline", "definition"]) == ["pipeline", "definition"]
    # After `--`, it is an argument, not our option.
    assert hoist_verbose(["x", "--", "--verbose"]) == ["x", "--", "--verbose"]


def test_sagemaker_telemetry_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TELEMETRY_ENV, raising=False)
    config = configure_sdk("us-east-1")
    assert config is not None and config["SageMaker"]["PythonSDK"]["Modules"]["TelemetryOptOut"] is True
    session = offline_session(PipelineSettings())
    assert session.sagemaker_config["SageMaker"]["PythonSDK"]["Modules"]["TelemetryOptOut"] is True
    monkeypatch.setenv(TELEMETRY_ENV, "1")
    assert configure_sdk("us-east-1") is None  # the SDK's default, or the user's config file, decides


def test_quiet_keeps_our_warnings_and_everyones_errors(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    shown: list[str] = []
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(warnings, "showwarning", lambda message, *args, **kwargs: shown.append(str(message)))
    verbosity.configure(False)
    logging.getLogger("sagemaker.config").warning("library warning")
    logging.getLogger("urllib3.connectionpool").error("library error")
    logging.getLogger("pipelines.local").warning("our warning")
    logging.getLogger("pipelines.local").info("our info")
    lib = "/x/lib/python3.11/site-packages/sagemaker/core/workflow/pipeline_context.py"
    warnings.showwarning(UserWarning("Running within a PipelineSession"), UserWarning, lib, 341)
    warnings.showwarning(UserWarning("ours"), UserWarning, "/repo/pipelines/local.py", 7)
    err = capsys.readouterr().err
    assert "library error" in err and "our warning" in err
    assert "library warning" not in err and "our info" not in err
    assert shown == ["ours"]
