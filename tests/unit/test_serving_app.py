"""The ASGI app in-process: every route, every error with its exact status, metrics and logs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from dataset.paths import ROOT
from inference.app import ServingApp
from inference.config import ServerConfig
from inference.features import FeatureLookupError, InMemoryFeatureStore
from tests.serving_model import FEATURES, add_rating_extremes, write_model_dir, write_user_features

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("model"))


def make_app(model_dir: Path, store=None, **overrides) -> tuple[ServingApp, TestClient, io.StringIO]:
    config = ServerConfig(
        model_dir=model_dir, max_batch=5, max_lines=7, max_body_bytes=2048, max_k=20, **overrides
    )
    app = ServingApp(config, store=store)
    logs = io.StringIO()
    app._log_stream = logs
    app.load()
    return app, TestClient(app, raise_server_exceptions=False), logs


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> InMemoryFeatureStore:
    path = write_user_features(tmp_path_factory.mktemp("f") / "users.parquet", list(range(1, 11)))
    return InMemoryFeatureStore.from_parquet(path, FEATURES)


@pytest.fixture
def client(model_dir, features) -> TestClient:
    return make_app(model_dir, features)[1]


def test_ping_is_503_until_the_model_is_loaded_then_200(model_dir):
    app = ServingApp(ServerConfig(model_dir=model_dir))
    c = TestClient(app, raise_server_exceptions=False)
    r = c.get("/ping")
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
    app.load()
    assert c.get("/ping").status_code == 200


def test_ping_stays_503_with_the_reason_when_the_model_is_broken(tmp_path):
    app = ServingApp(ServerConfig(model_dir=tmp_path / "absent"))
    with pytest.raises(Exception, match="does not exist"):
        app.load()
    r = TestClient(app).get("/ping")
    assert r.status_code == 503 and "does not exist" in r.json()["error"]["message"]


def test_top_k_for_a_known_user_uses_features_and_names_titles(client):
    r = client.post("/invocations", json={"user_id": 3, "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == 3 and body["fallback"] is None
    recs = body["recommendations"]
    assert len(recs) == 4 and all(set(x) == {"movie_id", "title", "score"} for x in recs)
    assert [x["score"] for x in recs] == sorted((x["score"] for x in recs), reverse=True)
    assert recs[0]["title"] == f"Movie {recs[0]['movie_id']}"
    assert {30, 40, 50}.isdisjoint(x["movie_id"] for x in recs)  # user 3's rated movies


def test_unknown_user_falls_back_to_cold_start_and_counts_it(model_dir, features):
    _, c, _ = make_app(model_dir, features)
    body = c.post("/invocations", json={"user_id": 777, "k": 3}).json()
    assert body["fallback"] == "unknown_user" and len(body["recommendations"]) == 3
    assert 'mlops_serving_fallbacks_total{reason="unknown_user"} 1.0' in c.get("/metrics").text


def test_a_failing_store_falls_back_never_errors(model_dir):
    class Broken:
        name = "broken"
        blocking = False

        def get_user_features(self, user_id: int):
            raise FeatureLookupError("feature_store_error", "connection refused")

    _, c, _ = make_app(model_dir, Broken())
    r = c.post("/invocations", json={"user_id": 3})
    assert r.status_code == 200 and r.json()["fallback"] == "feature_store_error"
    assert len(r.json()["recommendations"]) == 10


def test_a_slow_blocking_store_times_out_into_a_fallback(model_dir):
    import time

    class Slow:
        name = "slow"
        blocking = True

        def get_user_features(self, user_id: int):
            time.sleep(1.0)
            return {}

    _, c, _ = make_app(model_dir, Slow(), feature_timeout_s=0.05)
    r = c.post("/invocations", json={"user_id": 3, "k": 2})
    assert r.status_code == 200 and r.json()["fallback"] == "feature_store_timeout"


def test_genre_filter_and_include_rated(client):
    body = client.post("/invocations", json={"user_id": 3, "k": 20, "genres": ["Sci-Fi"]}).json()
    assert body["recommendations"], "the fixture has Sci-Fi movies"
    assert all("Sci-Fi" in g for g in _genres_of(client, body["recommendations"]))
    with_rated = client.post("/invocations", json={"user_id": 3, "k": 20, "include_rated": True}).json()
    without = client.post("/invocations", json={"user_id": 3, "k": 20}).json()
    ids_with = [x["movie_id"] for x in with_rated["recommendations"]]
    ids_without = [x["movie_id"] for x in without["recommendations"]]
    assert {30, 40, 50}.isdisjoint(ids_without)
    # Same ranking: dropping the rated movies from the include_rated list gives a prefix of the other.
    kept = [m for m in ids_with if m not in {30, 40, 50}]
    assert ids_without[: len(kept)] == kept


def _genres_of(client: TestClient, recs: list[dict]) -> list[tuple[str, ...]]:
    app: ServingApp = client.app  # type: ignore[assignment]
    assert app.predictor is not None
    by_id = dict(zip(app.predictor.model.movie_ids.tolist(), app.predictor.model.genres, strict=True))
    return [by_id[x["movie_id"]] for x in recs]


def test_ratings_and_batches(client):
    r = client.post("/invocations", json={"user_id": 2, "movie_ids": [10, 20]}).json()
    assert [x["movie_id"] for x in r["ratings"]] == [10, 20]
    assert all(1.0 <= x["rating"] <= 5.0 for x in r["ratings"])
    b = client.post(
        "/invocations", json={"instances": [{"user_id": 2, "movie_ids": [10, 20]}, {"user_id": 4, "k": 2}]}
    ).json()
    assert b["predictions"][0]["ratings"] == r["ratings"]
    assert len(b["predictions"][1]["recommendations"]) == 2


def test_served_ratings_are_clipped_to_the_rating_range_on_both_sides(tmp_path, features):
    """The fixture's movies 10 and 20 score above 5, 30 and 40 below 1, for every user (raw)."""
    d = add_rating_extremes(write_model_dir(tmp_path / "m"))
    _, c, _ = make_app(d, features)
    ids = [10, 30, 20, 40, 110]
    for user_id in (2, 777):
        r = c.post("/invocations", json={"user_id": user_id, "movie_ids": ids})
        assert r.status_code == 200, r.text
        ratings = [x["rating"] for x in r.json()["ratings"]]
        assert ratings[:4] == [5.0, 1.0, 5.0, 1.0] and 1.0 < ratings[4] < 5.0
    v2 = c.post(
        "/v2/models/movielens-recommender/infer",
        json={
            "inputs": [
                {"name": "user_id", "shape": [1], "datatype": "INT64", "data": [2]},
                {"name": "movie_ids", "shape": [1, 2], "datatype": "INT64", "data": [[10, 30]]},
            ]
        },
    ).json()
    assert v2["outputs"][0]["data"] == [5.0, 1.0]


def test_jsonlines_answers_one_line_per_line_in_order(client):
    body = b'{"user_id": 1, "k": 2}\n{"user_id": 2, "movie_ids": [10]}\n\n{"user_id": 999, "k": 1}\n'
    r = client.post("/invocations", content=body, headers={"content-type": "application/jsonlines"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/jsonlines"
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["user_id"] for x in lines] == [1, 2, 999]
    assert "ratings" in lines[1] and lines[2]["fallback"] == "unknown_user"


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "field"),
    [
        (b"{not json", JSON, 400, "malformed_json", None),
        (b"", JSON, 400, "empty_body", None),
        (b"[1, 2]", JSON, 422, "wrong_type", None),
        (b'{"k": 3}', JSON, 422, "missing_field", "user_id"),
        (b'{"user_id": "42"}', JSON, 422, "wrong_type", "user_id"),
        (b'{"user_id": true}', JSON, 422, "wrong_type", "user_id"),
        (b'{"user_id": -1}', JSON, 422, "out_of_range", "user_id"),
        (b'{"user_id": 1, "k": 0}', JSON, 422, "out_of_range", "k"),
        (b'{"user_id": 1, "k": 21}', JSON, 422, "out_of_range", "k"),
        (b'{"user_id": 1, "k": 2.5}', JSON, 422, "wrong_type", "k"),
        (b'{"user_id": 1, "genres": ["Western"]}', JSON, 422, "unknown_genre", "genres[0]"),
        (b'{"user_id": 1, "include_rated": "yes"}', JSON, 422, "wrong_type", "include_rated"),
        (b'{"user_id": 1, "kk": 3}', JSON, 422, "unknown_field", "kk"),
        (b'{"user_id": 1, "movie_ids": []}', JSON, 422, "out_of_range", "movie_ids"),
        (b'{"user_id": 1, "movie_ids": [10, "x"]}', JSON, 422, "wrong_type", "movie_ids[1]"),
        (b'{"user_id": 1, "movie_ids": [10, 11]}', JSON, 422, "unknown_movie", "movie_ids"),
        (b'{"user_id": 1, "movie_ids": [10], "k": 2}', JSON, 422, "unknown_field", "k"),
        (b'{"instances": {}}', JSON, 422, "wrong_type", "instances"),
        (
            b'{"instances": [{"user_id": 1, "k": 2}, {"user_id": 1, "movie_ids": [15]}]}',
            JSON,
            422,
            "unknown_movie",
            "instances[1].movie_ids",
        ),
        (b'{"instances": []}', JSON, 422, "out_of_range", "instances"),
        (
            b'{"instances": [{"user_id": 1}, {"user_id": "a"}]}',
            JSON,
            422,
            "wrong_type",
            "instances[1].user_id",
        ),
        (
            b'{"instances": [' + b",".join([b'{"user_id": 1}'] * 6) + b"]}",
            JSON,
            413,
            "batch_too_large",
            "instances",
        ),
        (b'{"user_id": 1, "pad": "' + b"x" * 3000 + b'"}', JSON, 413, "body_too_large", None),
        (b'{"user_id": 1}', {"content-type": "text/csv"}, 415, "unsupported_media_type", "content-type"),
        (
            b'{"user_id": 1}\n{"user_id": []}',
            {"content-type": "application/jsonlines"},
            422,
            "wrong_type",
            None,
        ),
        (b"{}\n" * 8, {"content-type": "application/jsonlines"}, 413, "batch_too_large", None),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_problem(client, body, headers, status, code, field):
    r = client.post("/invocations", content=body, headers=headers)
    assert r.status_code == status, r.text
    doc = r.json()
    assert doc["error"]["code"] == code and doc["error"]["message"]
    if field is not None:
        assert doc["error"]["field"] == field
    assert doc["request_id"] == r.headers["x-request-id"]


def test_unknown_route_404_and_wrong_method_405(client):
    r = client.get("/nowhere")
    assert r.status_code == 404 and "/nowhere" in r.json()["error"]["message"]
    assert client.get("/invocations").status_code == 405
    assert client.post("/ping").status_code == 405


def test_request_id_is_taken_from_the_header_and_echoed(client):
    r = client.post("/invocations", json={"user_id": 1}, headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = client.post("/invocations", json={"user_id": 1}, headers={"X-Amzn-SageMaker-Inference-Id": "sm-9"})
    assert r.headers["x-request-id"] == "sm-9"


def test_an_unexpected_fault_is_a_500_with_the_request_id_and_a_logged_trace(model_dir, caplog):
    app, c, _ = make_app(model_dir)

    def explode(*args, **kwargs):
        raise ZeroDivisionError("boom")

    app.predictor.top_k = explode  # type: ignore[method-assign]
    r = c.post("/invocations", json={"user_id": 1}, headers={"X-Request-Id": "req-500"})
    assert r.status_code == 500
    assert r.json()["request_id"] == "req-500" and "req-500" in r.json()["error"]["message"]
    assert any(
        "ZeroDivisionError" in rec.getMessage() and "req-500" in rec.getMessage() for rec in caplog.records
    )


def test_one_json_access_log_line_per_request_with_its_id(model_dir):
    _, c, logs = make_app(model_dir)
    c.post("/invocations", json={"user_id": 1}, headers={"X-Request-Id": "log-1"})
    c.get("/nowhere", headers={"X-Request-Id": "log-2"})
    lines = [orjson.loads(x) for x in logs.getvalue().splitlines()]
    assert [(x["request_id"], x["status"], x["route"]) for x in lines] == [
        ("log-1", 200, "/invocations"),
        ("log-2", 404, "unmatched"),
    ]
    assert all(x["duration_ms"] >= 0 for x in lines)


def test_metrics_expose_requests_latency_model_features_errors_and_version(model_dir, features):
    _, c, _ = make_app(model_dir, features)
    c.post("/invocations", json={"user_id": 1})
    c.post("/invocations", content=b"{", headers=JSON)
    text = c.get("/metrics").text
    for needle in (
        'mlops_serving_requests_total{route="/invocations",status="200"} 1.0',
        'mlops_serving_requests_total{route="/invocations",status="400"} 1.0',
        'mlops_serving_request_seconds_bucket{le="0.005",route="/invocations"}',
        "mlops_serving_model_seconds_count 1.0",
        'mlops_serving_feature_lookup_seconds_count{store="memory"} 1.0',
        'mlops_serving_errors_total{code="malformed_json"} 1.0',
        'mlops_serving_model_info{name="movielens-recommender",version="test-1"} 1.0',
    ):
        assert needle in text, needle


def test_open_inference_protocol_routes(client):
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/health/live").status_code == 200
    meta = client.get("/v2/models/movielens-recommender").json()
    assert meta["name"] == "movielens-recommender" and meta["versions"] == ["test-1"]
    assert client.get("/v2/models/other").status_code == 404
    r = client.post(
        "/v2/models/movielens-recommender/infer",
        json={
            "id": "q1",
            "inputs": [
                {"name": "user_id", "shape": [2], "datatype": "INT64", "data": [1, 2]},
                {"name": "k", "shape": [1], "datatype": "INT64", "data": [3]},
            ],
        },
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["id"] == "q1" and doc["model_name"] == "movielens-recommender"
    ids, scores = doc["outputs"]
    assert scores["name"] == "scores" and scores["shape"] == [2, 3]
    assert ids["name"] == "movie_ids" and ids["shape"] == [2, 3] and len(ids["data"]) == 6
    single = client.post("/invocations", json={"user_id": 2, "k": 3}).json()
    assert ids["data"][3:] == [x["movie_id"] for x in single["recommendations"]]
    r = client.post(
        "/v2/models/movielens-recommender/infer",
        json={
            "inputs": [
                {"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]},
                {"name": "movie_ids", "shape": [1, 2], "datatype": "INT64", "data": [[10, 20]]},
            ]
        },
    )
    assert r.json()["outputs"][0]["name"] == "ratings" and r.json()["outputs"][0]["shape"] == [1, 2]
    bad = client.post(
        "/v2/models/movielens-recommender/infer",
        json={"inputs": [{"name": "user_id", "shape": [3], "datatype": "INT64", "data": [1]}]},
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "shape_mismatch"


def test_execution_parameters_for_batch_transform(client):
    doc = client.get("/execution-parameters").json()
    assert doc == {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1}


def test_the_server_imports_without_starlette_which_the_image_does_not_install():
    code = (
        "import sys; sys.modules['starlette'] = None; "
        "import inference.server, inference.app; "
        "assert not any(m.startswith('starlette.') for m in sys.modules), sorted(sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
