"""Prepare's feature store ingestion: PutRecord for AWS, Feast's /push for local runs; the reuse key."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pandas as pd
import pytest
from botocore.stub import Stubber

from features.compute import movie_features, user_features
from features.definition import feature_view
from features.push import FeastPushError, push_body, push_features
from pipelines.local import host_user, local_settings, settings_version
from pipelines.steps import prepare


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    movies = pd.DataFrame(
        {
            "movie_id": [1, 2],
            "year": pd.array([1995, None], dtype="Int16"),
            "genres": ["Comedy", "Drama|War"],
        }
    )
    ratings = pd.DataFrame(
        {
            "user_id": [7, 7, 8],
            "movie_id": [1, 1, 2],
            "rating": [4.0, 3.0, 5.0],
            "timestamp": [1_000_000_000, 1_000_000_100, 1_000_000_050],
        }
    )
    return ratings, movies


def test_sagemaker_ingestion_puts_exactly_these_records() -> None:
    ratings, movies = _tables()
    frame = movie_features(ratings, movies)
    client = boto3.client(
        "sagemaker-featurestore-runtime",
        region_name="us-east-1",
        aws_access_key_id="stub",
        aws_secret_access_key="stub",
    )
    # Global mean 4.0, prior count 10: Bayesian ratings (40 + 7) / 12 and (40 + 5) / 11. The event
    # time is one second after the last rating. A null year is left out, as SageMaker stores nulls.
    expected = [
        [
            {"FeatureName": "movie_id", "ValueAsString": "1"},
            {"FeatureName": "event_timestamp", "ValueAsString": "1000000101.0"},
            {"FeatureName": "movie_rating_count", "ValueAsString": "2"},
            {"FeatureName": "movie_rating_mean", "ValueAsString": "3.5"},
            {"FeatureName": "movie_bayesian_rating", "ValueAsString": repr(47 / 12)},
            {"FeatureName": "movie_genres", "ValueAsString": "Comedy"},
            {"FeatureName": "movie_release_year", "ValueAsString": "1995"},
            {"FeatureName": "movie_popularity_rank", "ValueAsString": "1"},
        ],
        [
            {"FeatureName": "movie_id", "ValueAsString": "2"},
            {"FeatureName": "event_timestamp", "ValueAsString": "1000000101.0"},
            {"FeatureName": "movie_rating_count", "ValueAsString": "1"},
            {"FeatureName": "movie_rating_mean", "ValueAsString": "5.0"},
            {"FeatureName": "movie_bayesian_rating", "ValueAsString": repr(45 / 11)},
            {"FeatureName": "movie_genres", "ValueAsString": "Drama|War"},
            {"FeatureName": "movie_popularity_rank", "ValueAsString": "2"},
        ],
    ]
    with Stubber(client) as stub:
        for record in expected:
            stub.add_response("put_record", {}, {"FeatureGroupName": "prod-movies", "Record": record})
        out = prepare.ingest_sagemaker(
            {"movie_features": frame}, {"movie_features": "prod-movies"}, "us-east-1", client=client
        )
        stub.assert_no_pending_responses()
    assert out == {"store": "sagemaker", "records": {"prod-movies": 2}}


def test_push_body_has_the_definition_columns_and_json_nulls() -> None:
    ratings, movies = _tables()
    view = feature_view("movie_features")
    body = push_body(view, movie_features(ratings, movies))
    assert body["push_source_name"] == "movie_features_push" and body["to"] == "online"
    assert list(body["df"]) == [view.join_key, view.event_time_column, *view.feature_names]
    assert body["df"]["movie_id"] == [1, 2]
    assert body["df"]["event_timestamp"] == ["2001-09-09T01:48:21+00:00"] * 2
    assert body["df"]["movie_release_year"] == [1995, None]
    json.dumps(body, allow_nan=False)  # plain JSON: no NaN, no NumPy types
    with pytest.raises(ValueError, match=r"missing \['movie_genres'\]"):
        push_body(view, movie_features(ratings, movies).drop(columns="movie_genres"))
    with pytest.raises(ValueError, match="push target 'both'"):
        push_body(view, movie_features(ratings, movies), to="both")


class _FeatureServer(BaseHTTPRequestHandler):
    """Records /push bodies like Feast's server; answers 422 for an unknown push source."""

    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ok = self.path == "/push" and body["push_source_name"].endswith("_push")
        if ok:
            type(self).bodies.append(body)
        self.send_response(200 if ok else 422)
        self.end_headers()
        self.wfile.write(b"" if ok else b'{"detail": "no push source"}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def feature_server() -> Iterator[str]:
    _FeatureServer.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _FeatureServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_push_sends_every_row_in_batches(feature_server: str) -> None:
    ratings, movies = _tables()
    users = user_features(pd.concat([ratings] * 1, ignore_index=True), movies)
    frame = pd.concat([users, users.assign(user_id=users["user_id"] + 100)], ignore_index=True)
    assert push_features(feature_server, feature_view("user_features"), frame, batch_rows=3) == 4
    sent = [row for body in _FeatureServer.bodies for row in body["df"]["user_id"]]
    assert [len(body["df"]["user_id"]) for body in _FeatureServer.bodies] == [3, 1]
    assert sent == [7, 8, 107, 108]


def test_push_names_the_url_when_nobody_answers(feature_server: str) -> None:
    ratings, movies = _tables()
    frame = movie_features(ratings, movies)
    dead = "http://127.0.0.1:9"  # discard port: nothing listens there
    with pytest.raises(FeastPushError, match=r"http://127\.0\.0\.1:9/push did not answer"):
        push_features(dead, feature_view("movie_features"), frame, timeout=2)


def test_prepare_fails_naming_the_feast_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "input" / "raw"
    raw.mkdir(parents=True)
    genres = "|".join(["0"] * 18 + ["1"])
    (raw / "u.item").write_text(f"1|Toy Story (1995)|01-Jan-1995||http://x|{genres}\n")
    (raw / "u.user").write_text("1|24|M|technician|85711\n")
    (raw / "u.data").write_text("".join(f"1\t1\t{1 + i % 5}\t{881250949 + i}\n" for i in range(10)))
    args = argparse.Namespace(
        dataset="ml-100k",
        dataset_version="",
        split_seed=1,
        feature_store="feast",
        feast_url="http://127.0.0.1:9",
    )
    with pytest.raises(Exception, match=r"127\.0\.0\.1:9/push"):
        prepare.prepare(args, root=tmp_path)
    # Through the step's ending, the reason is what SageMaker shows as the failure.
    from pipelines.steps.runner import run_step

    no_url = argparse.Namespace(**{**vars(args), "feast_url": ""})
    assert run_step("Prepare", lambda: prepare.prepare(no_url, root=tmp_path)) == 1
    assert "Prepare failed: --feature-store feast needs --feast-url" in capsys.readouterr().err


def test_local_definition_passes_the_feast_url_to_prepare() -> None:
    from pipelines import definition

    settings = local_settings(feast_url="http://172.17.0.1:6566/")
    steps = json.loads(definition.build_pipeline(settings, register=False).definition())["Steps"]
    arguments = steps[0]["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--feature-store") + 1] == "feast"
    assert arguments[arguments.index("--feast-url") + 1] == "http://172.17.0.1:6566"
    with pytest.raises(ValueError, match="feature_store 'feast' needs feast_url"):
        definition.build_pipeline(local_settings(), register=False)
    with pytest.raises(ValueError, match="feast_url 'ftp://x'"):
        local_settings(feast_url="ftp://x")


def test_settings_version_ignores_where_stand_ins_listen() -> None:
    base = local_settings(hyperparameters={"epochs": "12", "seed": "42"})
    moved = local_settings(
        hyperparameters={"epochs": "12", "seed": "42"}, feast_url="http://10.0.0.1:1", mlflow_tracking_uri="x"
    )
    other = local_settings(hyperparameters={"epochs": "5", "seed": "42"})
    assert settings_version(base) == settings_version(moved)
    assert settings_version(base) != settings_version(other)


def test_local_containers_carry_the_run_labels() -> None:
    class Session:
        def __init__(self) -> None:
            self.config: dict[str, Any] | None = {"local": {"container_config": {"labels": {"a": "1"}}}}

    session = Session()
    host_user(session, {"io.mlops.run": "r1"})
    assert session.config is not None
    container = session.config["local"]["container_config"]
    assert container["labels"] == {"a": "1", "io.mlops.run": "r1"}
    assert container["user"].count(":") == 1


def test_approval_keeps_the_reuse_key_on_moto() -> None:
    """moto 5.2 erases customer metadata on update_model_package; approve() must keep it."""
    from moto import mock_aws

    from pipelines import registry

    request = {
        "ModelPackageGroupName": "g",
        "ModelApprovalStatus": "PendingManualApproval",
        "InferenceSpecification": {
            "Containers": [{"Image": "mlops-serving:latest", "ModelDataUrl": "s3://b/model.tar.gz"}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        "CustomerMetadataProperties": {"dataset_version": "d1", "code_version": "c1", "git_commit": "x"},
    }
    with mock_aws():
        sm = boto3.client("sagemaker", region_name="us-east-1")
        arn = registry.register(sm, request)
        registry.approve(sm, arn, "ok")
        package = sm.describe_model_package(ModelPackageName=arn)
        assert package["ModelApprovalStatus"] == "Approved"
        assert package["CustomerMetadataProperties"] == request["CustomerMetadataProperties"]
        assert registry.find(sm, "g", dataset_version="d1", code_version="c1")["ModelPackageArn"] == arn
        assert registry.find(sm, "g", dataset_version="d1", code_version="c2") is None
        assert registry.find(sm, "missing-group", dataset_version="d1") is None


@pytest.fixture
def sigint_default() -> Iterator[None]:
    """Python's own SIGINT handler for the test, whatever the launcher left (`nohup`, `&` ignore it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def sigint_ignored() -> Iterator[None]:
    """SIGINT ignored for the test, as in a process started in the background."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("sigint_default")
def test_ctrl_c_during_a_run_is_noted_and_still_interrupts() -> None:
    from pipelines.local.session import _interrupts_noted

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), _interrupts_noted() as noted:
        os.kill(os.getpid(), signal.SIGINT)
        signal.sigtimedwait([], 0.5)  # let the handler run
    assert noted.is_set()
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.usefixtures("sigint_ignored")
def test_a_run_started_with_ctrl_c_ignored_keeps_it_ignored() -> None:
    from pipelines.local.session import _interrupts_noted

    try:
        with _interrupts_noted() as noted:
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0.5)
    except KeyboardInterrupt:
        pytest.fail("a Ctrl-C the launcher asked to ignore interrupted the run")
    assert not noted.is_set()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
