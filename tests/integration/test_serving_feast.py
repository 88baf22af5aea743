"""The Feast adapter against a real `feast serve` feature server over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from inference.features import FeastHttpFeatureStore, FeatureLookupError
from standins.ports import free_port

pytestmark = pytest.mark.slow
NAMES = ["user_rating_count", "user_rating_mean", "user_rating_std"]


@pytest.fixture(scope="module")
def feast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64

    repo = tmp_path_factory.mktemp("feast")
    (repo / "feature_store.yaml").write_text(
        "project: serving_it\nregistry: registry.db\nprovider: local\n"
        "online_store:\n  type: sqlite\n  path: online.db\n"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
    )
    rows = pd.DataFrame(
        {
            "user_id": [1, 2],
            "event_timestamp": pd.to_datetime(["2024-01-01", "2024-01-01"], utc=True),
            "user_rating_count": [12, 40],
            "user_rating_mean": [3.5, 4.25],
            "user_rating_std": [0.5, 1.0],
        }
    )
    rows.to_parquet(repo / "users.parquet")
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="user_features",
        entities=[user],
        schema=[
            Field(name="user_id", dtype=Int64),
            Field(name="user_rating_count", dtype=Int64),
            Field(name="user_rating_mean", dtype=Float64),
            Field(name="user_rating_std", dtype=Float64),
        ],
        source=FileSource(path=str(repo / "users.parquet"), timestamp_field="event_timestamp"),
        online=True,
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([user, view])
    store.write_to_online_store("user_features", rows)
    port = free_port()
    feast = str(Path(sys.executable).parent / "feast")
    proc = subprocess.Popen(
        [feast, "-c", str(repo), "serve", "-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            pytest.fail(f"feast serve exited with {proc.returncode}: {proc.stderr.read()[-2000:]!r}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("feast serve did not listen within 180 s")
            time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def test_feast_http_adapter_reads_a_users_online_features(feast_server):
    # A generous timeout: the first request warms the server's registry on a loaded machine.
    store = FeastHttpFeatureStore(feast_server, "user_features", NAMES, 10.0)
    assert store.get_user_features(2) == {
        "user_rating_count": 40.0,
        "user_rating_mean": 4.25,
        "user_rating_std": 1.0,
    }
    assert store.get_user_features(1)["user_rating_mean"] == 3.5


def test_feast_http_adapter_reports_an_unknown_user_as_none(feast_server):
    store = FeastHttpFeatureStore(feast_server, "user_features", NAMES, 10.0)
    assert store.get_user_features(999) is None


def test_feast_http_adapter_names_an_unknown_view(feast_server):
    store = FeastHttpFeatureStore(feast_server, "no_such_view", NAMES, 10.0)
    with pytest.raises(FeatureLookupError) as e:
        store.get_user_features(1)
    assert e.value.reason == "feature_store_error"
