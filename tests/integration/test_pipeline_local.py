"""The local pipeline run through the real CLI: Docker local mode, S3 and the registry on moto."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest

from dataset.paths import ROOT
from standins import servers as standins

MLOPS = str(Path(sys.executable).with_name("mlops"))
GROUP = "mlops-movielens"


@pytest.fixture(scope="module")
def moto_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        server = standins.start_moto(record=False)  # raises (fails the test) when it cannot start
        try:
            yield {**os.environ, **standins.aws_environment(server)}
        finally:
            standins.stop(server)


@pytest.fixture(scope="module")
def images() -> None:
    # The step scripts are baked into the ML image: build it from this checkout (layer cache).
    done = subprocess.run([MLOPS, "images", "build", "--only", "training"], cwd=ROOT, check=False)
    assert done.returncode == 0, "`mlops images build --only training` failed; see its output"


@pytest.fixture(scope="module")
def quick_settings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("settings") / "settings.json"
    path.write_text(
        json.dumps(
            {
                # Training's defaults (two towers) must pass the gate as they are.
                "hyperparameters": {"epochs": "6", "seed": "42"}
            }
        )
    )
    return path


def _sagemaker(env: dict[str, str]):  # type: ignore[no-untyped-def]
    return boto3.client(
        "sagemaker", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def _run(env: dict[str, str], settings: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS, "pipeline", "run", "--local", "--dataset", "ml-100k", "--settings", str(settings), "--json"],
        env=env, capture_output=True, text=True, timeout=3600, cwd=ROOT,
    )  # fmt: skip


def test_corrupted_data_fails_at_prepare_and_registers_nothing(
    moto_env: dict[str, str], images: None, quick_settings: Path, tmp_path: Path
) -> None:
    fetched = subprocess.run(
        [MLOPS, "data", "fetch", "--dataset", "ml-100k", "--no-dvc"], env=moto_env, check=False
    )
    assert fetched.returncode == 0
    from dataset.tables import raw_dir

    corrupted = tmp_path / "data"
    shutil.copytree(raw_dir("ml-100k"), corrupted / "raw" / "ml-100k")
    ratings = corrupted / "raw" / "ml-100k" / "u.data"
    lines = ratings.read_text().splitlines()
    user, movie, _, stamp = lines[10].split("\t")
    lines[10] = "\t".join([user, movie, "9", stamp])  # a rating outside 1..5
    ratings.write_text("\n".join(lines) + "\n")

    # No feature store: the run must stop at validation, before anything is ingested anywhere.
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({**json.loads(quick_settings.read_text()), "feature_store": "none"}))
    done = _run({**moto_env, "MLOPS_DATA_DIR": str(corrupted)}, settings)
    assert done.returncode == 1, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["failed_step"] == "Prepare"
    assert "rating_out_of_range" in report["reason"], report["reason"]
    assert [s["name"] for s in report["steps"]] == ["Prepare"]
    packages = _sagemaker(moto_env).list_model_packages(ModelPackageGroupName=GROUP)
    assert packages["ModelPackageSummaryList"] == []


def test_model_missing_a_threshold_is_rejected_and_not_registered(
    moto_env: dict[str, str], images: None, tmp_path: Path
) -> None:
    """The quality gate's failing branch: Evaluate, then CheckQuality sends the run to RejectModel."""
    fetched = subprocess.run(
        [MLOPS, "data", "fetch", "--dataset", "ml-100k", "--no-dvc"], env=moto_env, check=False
    )
    assert fetched.returncode == 0
    settings = tmp_path / "settings.json"
    # One epoch, no feature store: as cheap as a full run gets. No model reaches RMSE 0.05 on ratings 1..5.
    settings.write_text(
        json.dumps(
            {
                "hyperparameters": {"epochs": "1", "seed": "42"},
                "feature_store": "none",
                "thresholds": {"max_rmse": 0.05},
            }
        )
    )
    client = _sagemaker(moto_env)
    before = client.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    done = _run(moto_env, settings)
    assert done.returncode == 1, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["status"] == "Failed" and report["failed_step"] == "RejectModel", report
    steps = {s["name"]: s for s in report["steps"]}
    assert [s["name"] for s in report["steps"]] == [
        "Prepare",
        "Train",
        "Evaluate",
        "CheckQuality",
        "RejectModel",
    ]
    assert all(
        steps[name]["status"] == "Succeeded" for name in ("Prepare", "Train", "Evaluate", "CheckQuality")
    )
    message = steps["RejectModel"]["failure_reason"]
    assert message.startswith("Model rejected: test rmse=") and "MaxRmse=0.05" in message, message
    assert "MaxRmse=0.05" in report["reason"], report["reason"]
    after = client.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    assert after == before


def test_local_run_registers_model_with_metrics_and_lineage(
    moto_env: dict[str, str], images: None, quick_settings: Path
) -> None:
    done = _run(moto_env, quick_settings)
    assert done.returncode == 0, done.stderr[-5000:]
    result = json.loads(done.stdout)
    assert [s["name"] for s in result["steps"]] == ["Prepare", "Train", "Evaluate", "CheckQuality"]
    assert all(s["status"] == "Succeeded" for s in result["steps"])

    package = _sagemaker(moto_env).describe_model_package(ModelPackageName=result["model_package_arn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    metadata = package["CustomerMetadataProperties"]
    from dataset.tables import raw_dir
    from dataset.versioning import dir_md5

    assert metadata["dataset_version"] == dir_md5(raw_dir("ml-100k"))
    assert metadata["git_commit"] == result["git_commit"] and len(result["git_commit"]) >= 40
    assert metadata["mlflow_run_id"] not in ("", "none")
    assert metadata["pipeline_execution"].startswith("local:mlops-movielens-training/")
    evaluation = result["evaluation"]
    assert float(metadata["metric_rmse"]) == pytest.approx(
        evaluation["regression_metrics"]["rmse"]["value"], abs=1e-6
    )
    assert evaluation["regression_metrics"]["rmse"]["value"] < evaluation["baselines"]["rating"]["rmse"]
    hit_rate = evaluation["ranking_metrics"]["hit_rate_at_10"]["value"]
    assert hit_rate > evaluation["baselines"]["popularity"]["hit_rate_at_10"]
    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    assert statistics == result["evaluation_uri"] and statistics.endswith("/evaluation.json")

    # Prepare pushed its features into Feast's online store through `feast serve`: the online
    # lookup answers exactly the rows Prepare computed (from the training split, not the full data).
    s3 = boto3.client(
        "s3", endpoint_url=moto_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    prefix = f"pipelines/mlops-movielens-training/ml-100k/{metadata['dataset_version']}/prepare"
    body = s3.get_object(Bucket="mlops-local", Key=f"{prefix}/features/user_features.parquet")["Body"]
    computed = pd.read_parquet(io.BytesIO(body.read())).set_index("user_id").loc[1]
    ingestion = json.loads(
        s3.get_object(Bucket="mlops-local", Key=f"{prefix}/feature_store/ingestion.json")["Body"].read()
    )
    assert ingestion["store"] == "feast" and ingestion["records"] == {
        "user_features": 943,
        "movie_features": 1682,
    }
    shown = subprocess.run(
        [MLOPS, "features", "show", "--user-id", "1", "--json"],
        env=moto_env, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-3000:]
    online = json.loads(shown.stdout)
    assert online["pushed"]["pipeline_execution"] == metadata["pipeline_execution"]
    for name, value in online["features"].items():
        assert value == pytest.approx(computed[name], rel=1e-12), name
    assert online["features"]["user_rating_count"] < 272  # user 1 rated 272 movies in the full data

    # No container of the run is left behind.
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=io.mlops.run"], capture_output=True, text=True, check=True
    )
    assert left.stdout.split() == [], "containers of the local run were left behind"

    # Approved (as the demo does), the same data, code and settings: the second run reuses the model
    # without running a step. moto erased the reuse key on approval before registry.approve kept it.
    from pipelines import registry

    registry.approve(_sagemaker(moto_env), result["model_package_arn"], "approved by the test")
    again = _run(moto_env, quick_settings)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(again.stdout)
    assert second["reused"] is True and second["model_package_arn"] == result["model_package_arn"]
    assert second["steps"] == [] and "in Docker" not in again.stderr
