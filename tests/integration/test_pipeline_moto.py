"""The AWS path of the pipeline (upsert, start, status) through the real CLI against a moto server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from standins import servers as standins

MLOPS = str(Path(sys.executable).with_name("mlops"))


@pytest.fixture(scope="module")
def moto_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        server = standins.start_moto(record=False)  # raises (fails the test) when it cannot start
        try:
            yield {**os.environ, **standins.aws_environment(server)}
        finally:
            standins.stop(server)


def _cli(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([MLOPS, "pipeline", *args], env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_upsert_twice_is_idempotent_and_start_status(moto_env: dict[str, str]) -> None:
    first = json.loads(_cli(moto_env, "upsert", "--json").stdout)
    second = json.loads(_cli(moto_env, "upsert", "--json").stdout)
    assert first["created"] is True and second["created"] is False
    assert first["pipeline_arn"] == second["pipeline_arn"]
    assert first["definition_sha256"] == second["definition_sha256"]

    client = boto3.client(
        "sagemaker", endpoint_url=moto_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    stored = client.describe_pipeline(PipelineName="mlops-movielens-training")["PipelineDefinition"]
    assert stored == _cli(moto_env, "definition").stdout
    pipelines = client.list_pipelines()["PipelineSummaries"]
    assert [p["PipelineName"] for p in pipelines] == ["mlops-movielens-training"]

    started = json.loads(_cli(moto_env, "start", "--json", "--param", "DatasetVersion=abc.dir").stdout)
    assert started["execution_arn"].startswith(first["pipeline_arn"] + "/execution/")
    execution = client.describe_pipeline_execution(PipelineExecutionArn=started["execution_arn"])
    assert execution["PipelineArn"] == first["pipeline_arn"]

    # Plumbing only: moto runs no step and reports every execution "Succeeded" at once, so the status
    # proves that `status` finds the latest execution and passes the server's answer through, not that
    # a pipeline ran. What we control: the execution found, the status as the server gives it, and
    # saying that moto lists no steps.
    status = json.loads(_cli(moto_env, "status", "--json").stdout)
    assert status["execution_arn"] == started["execution_arn"]
    assert status["status"] == execution["PipelineExecutionStatus"]
    assert "steps_unavailable" in status


def test_start_refuses_unknown_parameter(moto_env: dict[str, str]) -> None:
    done = _cli(moto_env, "start", "--param", "MaxRmsee=1", ok=False)
    assert done.returncode == 2
    assert "MaxRmsee" in done.stderr and "MaxRmse" in done.stderr


def test_bad_settings_file_is_named(moto_env: dict[str, str], tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"role_arn": "not-a-role"}))
    done = _cli(moto_env, "upsert", "--settings", str(settings), ok=False)
    assert done.returncode == 2
    assert "settings.json" in done.stderr and "not-a-role" in done.stderr
