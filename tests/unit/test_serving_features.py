"""The online feature store adapters: request/response shapes and timeouts against real sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import boto3
import pandas as pd
import pytest
from botocore.stub import Stubber

from inference.features import (
    FeastHttpFeatureStore,
    FeatureLookupError,
    InMemoryFeatureStore,
    SageMakerFeatureStore,
)

NAMES = ["user_rating_count", "user_rating_mean"]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers: a store that hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                held.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield sock.getsockname()[1]
    stop.set()
    t.join()
    for c in held:
        c.close()
    sock.close()


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_sagemaker_get_record_request_and_response_shapes():
    client = boto3.client("sagemaker-featurestore-runtime", region_name="us-east-1")
    store = SageMakerFeatureStore("users-fg", NAMES, 0.5, client=client)
    with Stubber(client) as stub:
        stub.add_response(
            "get_record",
            {
                "Record": [
                    {"FeatureName": "user_rating_count", "ValueAsString": "12"},
                    {"FeatureName": "user_rating_mean", "ValueAsString": "not-a-number"},
                ]
            },
            {"FeatureGroupName": "users-fg", "RecordIdentifierValueAsString": "42", "FeatureNames": NAMES},
        )
        stub.add_response(
            "get_record",
            {},
            {"FeatureGroupName": "users-fg", "RecordIdentifierValueAsString": "7", "FeatureNames": NAMES},
        )
        stub.add_client_error("get_record", "ResourceNotFound", "Resource users-fg not found", 400)
        # An unparsable value counts as missing (the predictor imputes it), never as an error.
        assert store.get_user_features(42) == {"user_rating_count": 12.0}
        assert store.get_user_features(7) is None
        with pytest.raises(FeatureLookupError) as e:
            store.get_user_features(1)
        assert e.value.reason == "feature_store_error" and "users-fg" in str(e.value)
        stub.assert_no_pending_responses()


def test_sagemaker_store_that_never_answers_times_out(silent_server):
    store = SageMakerFeatureStore("users-fg", NAMES, 0.2, endpoint_url=f"http://127.0.0.1:{silent_server}")
    with pytest.raises(FeatureLookupError) as e:
        store.get_user_features(42)
    assert e.value.reason == "feature_store_timeout"


def test_sagemaker_store_that_refuses_connections_is_an_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    store = SageMakerFeatureStore("users-fg", NAMES, 0.2, endpoint_url=f"http://127.0.0.1:{port}")
    with pytest.raises(FeatureLookupError) as e:
        store.get_user_features(42)
    assert e.value.reason == "feature_store_error"


def test_feast_server_that_never_answers_times_out(silent_server):
    store = FeastHttpFeatureStore(f"http://127.0.0.1:{silent_server}", "user_features", NAMES, 0.2)
    with pytest.raises(FeatureLookupError) as e:
        store.get_user_features(42)
    assert e.value.reason == "feature_store_timeout"


def test_feast_url_must_be_http():
    with pytest.raises(ValueError, match="must look like http://host:6566"):
        FeastHttpFeatureStore("localhost:6566", "user_features", NAMES, 0.1)


def test_in_memory_store_keeps_the_latest_row_per_user_and_drops_non_numbers():
    table = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "event_timestamp": pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-01"], utc=True),
            "user_rating_count": [5, 3, 9],
            "user_rating_mean": [4.0, 2.0, float("nan")],
        }
    )
    store = InMemoryFeatureStore(table.to_dict("list"), NAMES)
    assert store.get_user_features(1) == {"user_rating_count": 5.0, "user_rating_mean": 4.0}
    assert store.get_user_features(2) == {"user_rating_count": 9.0}
    assert store.get_user_features(3) is None


def test_in_memory_store_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="MLOPS_SERVE_FEATURE_SOURCE"):
        InMemoryFeatureStore.from_parquet(tmp_path / "nope.parquet", NAMES)
