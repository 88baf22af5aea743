"""The route table, route by route: the right method answers, a wrong one is a 405 with `Allow`, else 404."""

from __future__ import annotations

import io

import pytest
from starlette.testclient import TestClient

from inference.app import ServingApp
from inference.config import ServerConfig
from inference.routes import RouteTable
from tests.serving_model import write_model_dir

MODEL = "movielens-recommender"
TOP_K = {"user_id": 1, "k": 2}
INFER = {"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]}]}

# Every route of the table: (method, template, a path it matches, a JSON body for the right method).
ROUTES = [
    ("GET", "/ping", "/ping", None),
    ("POST", "/invocations", "/invocations", TOP_K),
    ("GET", "/execution-parameters", "/execution-parameters", None),
    ("GET", "/metrics", "/metrics", None),
    ("GET", "/v2/health/live", "/v2/health/live", None),
    ("GET", "/v2/health/ready", "/v2/health/ready", None),
    ("GET", "/v2", "/v2", None),
    ("GET", "/v2/models/{name}", f"/v2/models/{MODEL}", None),
    ("GET", "/v2/models/{name}/ready", f"/v2/models/{MODEL}/ready", None),
    ("POST", "/v2/models/{name}/infer", f"/v2/models/{MODEL}/infer", INFER),
    (
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        f"/v2/models/{MODEL}/versions/test-1/infer",
        INFER,
    ),
]
WRONG = {"GET": "POST", "POST": "GET"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> ServingApp:
    a = ServingApp(ServerConfig(model_dir=write_model_dir(tmp_path_factory.mktemp("model"))))
    a._log_stream = io.StringIO()
    a.load()
    return a


@pytest.fixture(scope="module")
def client(app: ServingApp) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def test_every_route_of_the_table_is_tested_here(app):
    assert sorted(app.routes.listing) == sorted((m, t) for m, t, _, _ in ROUTES)


@pytest.mark.parametrize(
    ("method", "template", "path", "body"), ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES]
)
def test_the_right_method_answers_200(client, method, template, path, body):
    r = client.request(method, path, json=body)
    assert r.status_code == 200, r.text
    assert "allow" not in r.headers


@pytest.mark.parametrize(
    ("method", "template", "path", "body"), ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES]
)
def test_a_wrong_method_is_405_with_allow(client, app, method, template, path, body):
    for wrong in (WRONG[method], "PUT", "DELETE"):
        r = client.request(wrong, path)
        assert r.status_code == 405, (wrong, r.text)
        assert r.headers["allow"] == method
        error = r.json()["error"]
        assert error["code"] == "method_not_allowed"
        assert f"use {method} {template}" in error["message"]
        assert r.json()["request_id"] == r.headers["x-request-id"]
    text = client.get("/metrics").text
    assert 'mlops_serving_errors_total{code="method_not_allowed"}' in text


@pytest.mark.parametrize(
    "path",
    [
        "/nowhere",
        "/",
        "/ping/",
        "/invocations/x",
        "/v2/health",
        "/v2/health/dead",
        "/v2/models",
        f"/v2/models/{MODEL}/infer/more",
        f"/v2/models/{MODEL}/versions/1",
        f"/v2/models/{MODEL}/explain",
    ],
)
def test_an_unknown_path_is_404_naming_the_routes_under_any_method(client, path):
    for method in ("GET", "POST", "PUT"):
        r = client.request(method, path)
        assert r.status_code == 404, (method, r.text)
        assert "allow" not in r.headers
        error = r.json()["error"]
        assert error["code"] == "not_found"
        assert f"no route {method} {path}" in error["message"]
        assert "POST /invocations" in error["message"] and "GET /ping" in error["message"]


def test_a_placeholder_matches_any_model_name_and_the_handler_checks_it(client):
    r = client.post("/v2/models/other/infer", json=INFER)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_model"
    assert client.get("/v2/models/other/infer").status_code == 405


def test_a_route_declared_twice_is_refused(app):
    handler = app.sagemaker.ping
    with pytest.raises(ValueError, match="GET /ping is declared twice"):
        RouteTable([("GET", "/ping", handler), ("GET", "/ping", handler)])


def test_a_long_path_is_cut_in_the_message(client):
    r = client.get("/" + "x" * 500)
    message = r.json()["error"]["message"]
    assert r.status_code == 404 and "GET /" + "x" * 99 + "...;" in message
