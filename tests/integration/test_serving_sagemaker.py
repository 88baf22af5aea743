"""The serving image under SageMaker local mode: a real endpoint and a real batch transform job."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.serve_model import prepare
from dataset.paths import ROOT, state_dir

IMAGE = "mlops-serving:latest"
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _require_docker() -> None:
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        up = subprocess.run(["bash", str(ROOT / "scripts" / "docker-up.sh")], check=False)
        if up.returncode != 0:
            pytest.fail("no Docker engine answers and scripts/docker-up.sh could not start one")


def _wait_for_port_8080_free(limit_s: float = 300) -> None:
    """SageMaker local mode serves endpoints on 8080 only (by design): wait a while for whoever holds it
    (another test run on a shared machine), then fail saying what to free."""
    deadline = time.monotonic() + limit_s
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", 8080))
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"port 8080 stayed busy for {limit_s:.0f} s; SageMaker local mode serves endpoints "
                        "only there: stop what listens on it (`ss -ltnp 'sport = :8080'`) and rerun"
                    )
        time.sleep(2)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    """A really trained small model (trained once by the training entry point, shared with the bench)."""
    return prepare(state_dir() / "bench-serve").model_dir


@pytest.fixture(scope="module")
def image() -> str:
    _require_docker()
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False).returncode:
        build = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "mlops"), "images", "build", "--only", "serving"], check=False
        )
        assert build.returncode == 0, "mlops images build --only serving failed"
    return IMAGE


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    import sagemaker.core.local.entities as local_entities

    from pipelines.local import RUN_LABEL
    from standins.docker import remove_containers

    with pytest.MonkeyPatch.context() as patch:
        for name, value in (
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ):
            patch.setenv(name, os.environ.get(name, value))
        # The SDK's local config schema has no health-check setting; its 120 s default is too short for a
        # container starting on a loaded shared machine, which made the batch test flaky.
        patch.setattr(local_entities, "HEALTH_CHECK_TIMEOUT_LIMIT", 300)
        import boto3
        from sagemaker.core.local import LocalSession

        root = tmp_path_factory.mktemp("local-mode")
        sess = LocalSession(
            boto_session=boto3.Session(region_name="us-east-1"), default_bucket="unused-local-bucket"
        )
        # Local mode leaves its exited containers behind; the label lets teardown remove exactly these.
        labels = {RUN_LABEL: f"serving-it-{uuid.uuid4().hex}"}
        sess.config = {
            "local": {"local_code": True, "container_root": str(root), "container_config": {"labels": labels}}
        }
        try:
            yield sess
        finally:
            remove_containers(labels)


def _model(session, image: str, model_dir: Path) -> str:
    name = f"serving-it-{uuid.uuid4().hex[:8]}"
    session.sagemaker_client.create_model(
        ModelName=name,
        PrimaryContainer={
            "Image": image,
            "ModelDataUrl": model_dir.resolve().as_uri(),
            "Environment": {"MLOPS_SERVE_MAX_BATCH": "50"},
        },
    )
    return name


def test_endpoint_answers_through_invoke_endpoint(session, image, model_dir):
    _wait_for_port_8080_free()
    model = _model(session, image, model_dir)
    config, endpoint = f"{model}-config", f"{model}-endpoint"
    client = session.sagemaker_client
    client.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "local",
            }
        ],
    )
    client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    try:
        runtime = session.sagemaker_runtime_client

        def call(body: object, content_type: str = "application/json") -> tuple[int, dict]:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            resp = runtime.invoke_endpoint(Body=raw, EndpointName=endpoint, ContentType=content_type)
            return resp["ResponseMetadata"]["HTTPStatusCode"], json.loads(resp["Body"].read())

        def invoke(body: object) -> dict:
            status, answer = call(body)
            assert status == 200, answer
            return answer

        catalog = json.loads((model_dir / "metadata.json").read_text())
        top = invoke({"user_id": 1, "k": 10})
        assert len(top["recommendations"]) == 10 and top["user_id"] == 1
        assert all(r["title"] for r in top["recommendations"])
        # The model was trained on ml-100k: user 1 has rated movies, none may come back.
        import numpy as np

        rated = np.load(model_dir / "rated.npz")
        towers = np.load(model_dir / "towers.npz")
        row = int(np.searchsorted(rated["user_ids"], 1))
        rated_ids = set(
            towers["movie_ids"][rated["movie_idx"][rated["indptr"][row] : rated["indptr"][row + 1]]].tolist()
        )
        assert rated_ids and rated_ids.isdisjoint(r["movie_id"] for r in top["recommendations"])
        ratings = invoke({"user_id": 1, "movie_ids": [1, 50, 100]})
        lo, hi = catalog["rating_range"]
        assert [r["movie_id"] for r in ratings["ratings"]] == [1, 50, 100]
        assert all(lo <= r["rating"] <= hi for r in ratings["ratings"])
        batch = invoke({"instances": [{"user_id": 2, "k": 3}, {"user_id": 10**9, "k": 3}]})
        assert batch["predictions"][1]["fallback"] in ("unknown_user", "no_feature_store")
        # Bad input through the same path. Real SageMaker raises ModelError carrying this body and the
        # container's status; the local runtime client hands both back as they are.
        status, answer = call({"user_id": 1, "k": 0})
        assert status == 422, answer
        error = answer["error"]
        assert error["code"] == "out_of_range" and error["field"] == "k"
    finally:
        client.delete_endpoint(EndpointName=endpoint)
        client.delete_endpoint_config(EndpointConfigName=config)
        # delete_endpoint returns while docker-compose still stops the container; remove it now (it
        # carries this module's labels) so that the next local-mode container finds port 8080 released.
        from standins.docker import remove_containers

        remove_containers(session.config["local"]["container_config"]["labels"])


def test_batch_transform_answers_each_jsonlines_record_in_order(session, image, model_dir, tmp_path):
    _wait_for_port_8080_free()
    model = _model(session, image, model_dir)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    requests = [{"user_id": u, "k": 5} for u in range(1, 40)] + [{"user_id": 3, "movie_ids": [1, 2]}]
    (src / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    session.sagemaker_client.create_transform_job(
        TransformJobName=f"{model}-transform",
        ModelName=model,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": src.as_uri()}},
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        TransformOutput={
            "S3OutputPath": out.as_uri(),
            "Accept": "application/jsonlines",
            "AssembleWith": "Line",
        },
        TransformResources={"InstanceType": "local", "InstanceCount": 1},
        BatchStrategy="MultiRecord",
        MaxPayloadInMB=1,
    )
    lines = [json.loads(x) for x in (out / "requests.jsonl.out").read_text().splitlines() if x.strip()]
    assert [x["user_id"] for x in lines] == [r["user_id"] for r in requests]
    assert all(len(x["recommendations"]) == 5 for x in lines[:-1])
    assert [r["movie_id"] for r in lines[-1]["ratings"]] == [1, 2]
    shutil.rmtree(out, ignore_errors=True)
