"""Fuzz: thousands of generated bodies against the ASGI app in-process; never a 5xx, 4xx always JSON."""

from __future__ import annotations

import asyncio
import io
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.app import ServingApp
from inference.config import ServerConfig
from inference.features import InMemoryFeatureStore
from tests.serving_model import FEATURES, write_model_dir, write_user_features

# One event loop for every call: a new loop per request would dominate the run time.
LOOP = asyncio.new_event_loop()
FUZZ = settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> ServingApp:
    d = tmp_path_factory.mktemp("fuzz")
    store = InMemoryFeatureStore.from_parquet(write_user_features(d / "u.parquet", [1, 2, 3]), FEATURES)
    a = ServingApp(
        ServerConfig(model_dir=write_model_dir(d / "model"), max_batch=8, max_body_bytes=4096), store
    )
    a._log_stream = io.StringIO()
    a.load()
    return a


def call(app: ServingApp, method: str, path: str, body: bytes, content_type: bytes) -> tuple[int, bytes]:
    """One request through the ASGI interface, as uvicorn would make it."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [(b"content-type", content_type)]}
    LOOP.run_until_complete(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def check(status: int, payload: bytes, content_type: bytes = b"application/json") -> None:
    assert status < 500, payload
    if status >= 400:
        doc = orjson.loads(payload)
        assert doc["error"]["code"] and doc["error"]["message"] and doc["request_id"]
    elif content_type == b"application/json":
        orjson.loads(payload)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
user_ids = st.one_of(
    st.integers(min_value=-5, max_value=30), st.integers(min_value=0, max_value=2**63 + 5), json_values
)
query = st.fixed_dictionaries(
    {"user_id": user_ids},
    optional={
        "k": st.one_of(st.integers(min_value=-2, max_value=60), json_values),
        "include_rated": st.one_of(st.booleans(), json_values),
        "genres": st.one_of(
            st.lists(st.sampled_from(["Action", "Drama", "Sci-Fi", "Western", ""]), max_size=4), json_values
        ),
        "movie_ids": st.one_of(st.lists(st.integers(min_value=-1, max_value=600), max_size=6), json_values),
        "extra": json_values,
    },
)
bodies = st.one_of(
    query, st.fixed_dictionaries({"instances": st.lists(query | json_values, max_size=10)}), json_values
)


@FUZZ
@given(body=bodies)
def test_generated_json_bodies_never_5xx(app, body):
    status, payload = call(app, "POST", "/invocations", json.dumps(body).encode(), b"application/json")
    check(status, payload)


@FUZZ
@given(
    raw=st.binary(max_size=300) | st.text(max_size=200).map(str.encode),
    content_type=st.sampled_from(
        [
            b"application/json",
            b"application/jsonlines",
            b"text/plain",
            b"",
            b"application/json; charset=utf-8",
            b"\xff",
        ]
    ),
)
def test_raw_bytes_and_content_types_never_5xx(app, raw, content_type):
    status, payload = call(app, "POST", "/invocations", raw, content_type)
    check(status, payload, b"other")


@FUZZ
@given(lines=st.lists(query | json_values, min_size=0, max_size=10))
def test_generated_jsonlines_never_5xx(app, lines):
    body = b"\n".join(json.dumps(x).encode() for x in lines)
    status, payload = call(app, "POST", "/invocations", body, b"application/jsonlines")
    check(status, payload, b"application/jsonlines")
    if status == 200:
        assert len(payload.splitlines()) == sum(1 for x in lines)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "inputs": st.lists(
                    json_values
                    | st.fixed_dictionaries(
                        {
                            "name": st.sampled_from(["user_id", "k", "movie_ids", "x"]),
                            "shape": json_values,
                            "data": json_values,
                        }
                    ),
                    max_size=3,
                )
            }
        ),
    ),
    path=st.sampled_from(
        ["/v2/models/movielens-recommender/infer", "/v2/models/x/infer", "/v2/models//infer"]
    ),
)
def test_open_inference_protocol_bodies_never_5xx(app, body, path):
    status, payload = call(app, "POST", path, json.dumps(body).encode(), b"application/json")
    check(status, payload)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]), path=st.text(max_size=40).map(lambda p: "/" + p)
)
def test_any_route_never_5xx(app, method, path):
    status, payload = call(app, method, path, b"", b"")
    check(status, payload, b"other")
