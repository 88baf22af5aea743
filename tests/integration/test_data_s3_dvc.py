"""S3 through a moto server: the s3:// source, and DVC push/pull of a dataset to a bucket remote."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml

from dataset.tables import dataset_version, load_tables
from standins.ports import free_port
from tests.integration.test_data_http import grouplens_zip, run

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """A real moto server on a free 127.0.0.1 port; the test fails if it does not come up."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"moto_server exited with {proc.returncode}")
                time.sleep(0.2)
        else:
            pytest.fail(f"moto_server did not answer on {url}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def s3(moto: str, monkeypatch: pytest.MonkeyPatch):
    for k, v in {**FAKE_AWS, "AWS_ENDPOINT_URL": moto}.items():
        monkeypatch.setenv(k, v)
    return boto3.client("s3", endpoint_url=moto)


def test_fetch_from_s3_zip_and_prefix(s3, moto, tmp_path):
    s3.create_bucket(Bucket="raw-data")
    s3.put_object(Bucket="raw-data", Key="movielens/ml-100k.zip", Body=grouplens_zip())
    env = {**FAKE_AWS, "AWS_ENDPOINT_URL": moto}
    uri = "s3://raw-data/movielens/ml-100k.zip"
    r = run(["data", "fetch", "--dataset", "ml-100k", "--source", uri, "--json"], tmp_path / "a", **env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["source"], out["accepted"], out["rejected"]) == ("s3://raw-data/movielens/ml-100k.zip", 4, 0)

    for name in ("u.data", "u.item", "u.user"):
        s3.put_object(
            Bucket="raw-data",
            Key=f"layout/{name}",
            Body=(tmp_path / "a" / "raw" / "ml-100k" / name).read_bytes(),
        )
    r = run(
        ["data", "fetch", "--dataset", "ml-100k", "--source", "s3://raw-data/layout/", "--json"],
        tmp_path / "b",
        **env,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accepted"] == 4
    # Same files from another source: same tables, different provenance (SOURCE.json is part of the version).
    assert load_tables("ml-100k", tmp_path / "a").ratings.equals(
        load_tables("ml-100k", tmp_path / "b").ratings
    )

    r = run(
        ["data", "fetch", "--dataset", "ml-100k", "--source", "s3://raw-data/nope.zip"], tmp_path / "c", **env
    )
    assert r.returncode == 1 and "s3://raw-data/nope.zip" in r.stderr and "NoSuchKey" in r.stderr


def _dvc_repo(tmp_path: Path) -> Path:
    """A fresh DVC repository holding the project's own dvc.yaml and .dvcignore."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=repo, check=True)
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    return repo


def test_dvc_commit_status_push_pull_against_moto(s3, moto, tmp_path):
    s3.create_bucket(Bucket="platform-raw-data")
    repo = _dvc_repo(tmp_path)
    data = repo / "data"
    zip_path = tmp_path / "ml-100k.zip"
    zip_path.write_bytes(grouplens_zip())
    env = {**FAKE_AWS, "MLOPS_DVC_ROOT": str(repo)}

    r = run(["data", "fetch", "--dataset", "ml-100k", "--source", str(zip_path), "--json"], data, **env)
    assert r.returncode == 0, r.stderr
    version = json.loads(r.stdout)["version"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["fetch@ml-100k"]["outs"][0]["md5"] == version == dataset_version("ml-100k", data)
    status = subprocess.run(
        [str(BIN / "dvc"), "status", "fetch@ml-100k", "validate@ml-100k"],
        cwd=repo, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "up to date" in status.stdout, status.stdout

    r = run(["data", "remote", "--name", "aws", "--url", "s3://platform-raw-data/dvc", "--endpoint-url", moto,
             "--default"], data, **env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "endpointurl" in (repo / ".dvc" / "config.local").read_text()
    r = run(["data", "push", "--dataset", "ml-100k", "--json"], data, **env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pushed"] > 0
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="platform-raw-data")["Contents"]]
    assert any(k.endswith(version.removesuffix(".dir")[2:] + ".dir") for k in keys), keys

    # Lose the workspace and the local cache: only the S3 remote holds the data now.
    shutil.rmtree(data)
    shutil.rmtree(repo / ".dvc" / "cache")
    r = run(["data", "pull", "--dataset", "ml-100k", "--json"], data, **env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["fetched"] > 0
    assert dataset_version("ml-100k", data) == version
    assert len(load_tables("ml-100k", data).ratings) == 4
