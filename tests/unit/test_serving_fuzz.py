"""Fuzz: thousands of generated bodies against the ASGI app in-process; never a 5xx, 4xx always JSON.

Everything goes through the app's ASGI interface (scope, receive, send), as uvicorn drives it, so the
tests hold whatever module the app's parts live in. Covered: the plain model, a model with the
ranking tower, a feature store that times out, fails or crashes, and bodies whose content-length
header disagrees with what arrives.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inference.app import ServingApp
from inference.config import ServerConfig
from inference.features import FeatureLookupError, InMemoryFeatureStore
from tests.hypothesis_budget import examples
from tests.serving_model import FEATURES, add_ranking_tower, write_model_dir, write_user_features

# One event loop for every call: a new loop per request would dominate the run time.
LOOP = asyncio.new_event_loop()
FUZZ = settings(max_examples=examples(8), deadline=None, suppress_health_check=list(HealthCheck))


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


def call(
    app: ServingApp,
    method: str,
    path: str,
    body: bytes,
    content_type: bytes,
    *,
    chunks: list[bytes] | None = None,
    content_length: bytes | None = None,
) -> tuple[int, bytes]:
    """One request through the ASGI interface, as uvicorn would make it (the body in `chunks` if given)."""
    sent: list[dict] = []
    pending = list(chunks) if chunks is not None else [body]

    async def receive() -> dict:
        if not pending:
            return {"type": "http.disconnect"}
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"content-type", content_type)]
    if content_length is not None:
        headers.append((b"content-length", content_length))
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
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


@settings(max_examples=examples(4), deadline=None, suppress_health_check=list(HealthCheck))
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


@settings(max_examples=examples(2), deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]), path=st.text(max_size=40).map(lambda p: "/" + p)
)
def test_any_route_never_5xx(app, method, path):
    status, payload = call(app, method, path, b"", b"")
    check(status, payload, b"other")


# --- a model with the ranking tower, behind a feature store that misbehaves -------------------------

GOOD = {"user_rating_count": 10.0, "user_rating_mean": 3.0, "user_rating_std": 1.0}
# What a user gets, by user_id % 5 (kinds 0 and 1 answer features or None); the late user times out.
FALLBACK_BY_KIND = {
    0: None,
    2: "feature_store_timeout",
    3: "feature_store_error",
    4: "feature_store_error",
}
LATE_USER = 8


class FlakyStore:
    """A networked store that, by user id, answers, knows nothing, times out, fails, crashes or is late."""

    name = "flaky"
    blocking = True  # the server runs it in a thread under its feature timeout, like Feast or SageMaker

    def __init__(self, late_s: float) -> None:
        self.late_s = late_s

    def get_user_features(self, user_id: int) -> dict[str, float] | None:
        kind = user_id % 5
        if user_id == LATE_USER:
            time.sleep(self.late_s)
        elif kind == 1:
            return None
        elif kind == 2:
            raise FeatureLookupError("feature_store_timeout", "the store's own client gave up")
        elif kind == 3:
            raise FeatureLookupError("feature_store_error", "the store answered 500")
        elif kind == 4:
            raise RuntimeError("the store client crashed")
        return dict(GOOD)


def _ranked_app(d: Path, timeout_s: float, late_s: float) -> ServingApp:
    config = ServerConfig(model_dir=d, max_batch=8, max_body_bytes=4096, feature_timeout_s=timeout_s)
    a = ServingApp(config, FlakyStore(late_s))
    a._log_stream = io.StringIO()
    a.load()
    assert a.ready, a.load_error
    return a


@pytest.fixture(scope="module")
def ranked_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_ranking_tower(write_model_dir(tmp_path_factory.mktemp("ranked") / "model"))


@pytest.fixture(scope="module")
def ranked_app(ranked_dir: Path) -> ServingApp:
    # Short timeout and a short lateness: many examples, and only "never a 5xx" is asserted.
    return _ranked_app(ranked_dir, timeout_s=0.01, late_s=0.05)


@pytest.fixture(scope="module")
def patient_app(ranked_dir: Path) -> ServingApp:
    # A timeout no prompt lookup misses on a loaded machine, and one user far later than it.
    return _ranked_app(ranked_dir, timeout_s=0.5, late_s=1.0)


@FUZZ
@given(body=bodies)
def test_ranking_model_with_a_failing_store_never_5xx(ranked_app, body):
    status, payload = call(ranked_app, "POST", "/invocations", json.dumps(body).encode(), b"application/json")
    check(status, payload)


@settings(max_examples=examples(2), deadline=None, suppress_health_check=list(HealthCheck))
@given(
    user_id=st.integers(min_value=0, max_value=40),
    k=st.integers(min_value=1, max_value=20),
    ratings=st.booleans(),
)
@example(user_id=LATE_USER, k=3, ratings=False)
@example(user_id=LATE_USER, k=3, ratings=True)
def test_store_failures_fall_back_and_say_which(patient_app, user_id, k, ratings):
    body = {"user_id": user_id, "movie_ids": [10, 20]} if ratings else {"user_id": user_id, "k": k}
    raw = json.dumps(body).encode()
    status, payload = call(patient_app, "POST", "/invocations", raw, b"application/json")
    assert status == 200, payload
    answer = orjson.loads(payload)
    if user_id == LATE_USER:
        assert answer["fallback"] == "feature_store_timeout", answer
    elif user_id % 5 in FALLBACK_BY_KIND:
        assert answer["fallback"] == FALLBACK_BY_KIND[user_id % 5], answer
    results = answer["ratings"] if ratings else answer["recommendations"]
    assert len(results) == (2 if ratings else k)
    if ratings:
        assert all(1.0 <= r["rating"] <= 5.0 for r in results), results


# --- content-length that disagrees with the body ------------------------------------------------

LIMIT = 4096  # the fixtures' max_body_bytes


@FUZZ
@given(
    body=st.one_of(
        query.map(lambda q: json.dumps(q).encode()),
        st.binary(max_size=2 * LIMIT),
        st.integers(min_value=0, max_value=3 * LIMIT).map(lambda n: b" " * n + b"{}"),
    ),
    declared=st.one_of(
        st.none(),
        st.integers(min_value=0, max_value=3 * LIMIT).map(lambda n: str(n).encode()),
        st.sampled_from([b"", b"-1", b"abc", b"1e3", b" 12", b"99999999999999999999999"]),
    ),
    pieces=st.integers(min_value=1, max_value=4),
)
def test_content_length_mismatch_never_5xx_and_the_limit_holds(app, body, declared, pieces):
    step = max(1, -(-len(body) // pieces))
    chunks = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    status, payload = call(
        app, "POST", "/invocations", body, b"application/json", chunks=chunks, content_length=declared
    )
    check(status, payload)
    # The body that arrives counts, whatever the header claims; a header above the limit is refused at once.
    declared_too_big = declared is not None and declared.isdigit() and int(declared) > LIMIT
    if len(body) > LIMIT or declared_too_big:
        assert status == 413, (status, payload[:200])
    else:
        assert status != 413, (status, payload[:200])


# --- the work budget: huge k sums and huge shapes -------------------------------------------------

OUT_BUDGET, IN_BUDGET, TENSOR_BUDGET = 200, 120, 64


@pytest.fixture(scope="module")
def budget_app(tmp_path_factory: pytest.TempPathFactory) -> ServingApp:
    d = tmp_path_factory.mktemp("budget")
    config = ServerConfig(
        model_dir=write_model_dir(d / "model"),
        max_body_bytes=8 * 1024 * 1024,
        max_output_items=OUT_BUDGET,
        max_input_items=IN_BUDGET,
        max_tensor_size=TENSOR_BUDGET,
    )
    a = ServingApp(config)
    a._log_stream = io.StringIO()
    a.load()
    return a


valid_query = st.one_of(
    st.fixed_dictionaries({"user_id": st.integers(0, 30), "k": st.integers(1, 50)}),
    st.fixed_dictionaries(
        {
            "user_id": st.integers(0, 30),
            "movie_ids": st.lists(st.sampled_from(range(10, 510, 10)), min_size=1, max_size=40),
        }
    ),
)


def _expected_refusal(queries: list[dict]) -> str | None:
    """The budget a request passes first, line by line as the server counts, or None."""
    outputs = inputs = 0
    for q in queries:
        n = len(q.get("movie_ids", ()))
        outputs += q.get("k", n)
        inputs += 1 + n
        if outputs > OUT_BUDGET:
            return "output_too_large"
        if inputs > IN_BUDGET:
            return "input_too_large"
    return None


@FUZZ
@given(queries=st.lists(valid_query, min_size=1, max_size=40))
def test_k_and_movie_id_sums_are_held_to_the_budget(budget_app, queries):
    body = b"\n".join(orjson.dumps(q) for q in queries)
    status, payload = call(budget_app, "POST", "/invocations", body, b"application/jsonlines")
    check(status, payload, b"application/jsonlines")
    refusal = _expected_refusal(queries)
    if refusal is None:
        assert status == 200 and len(payload.split(b"\n")) == len(queries), payload[:200]
    else:
        assert status == 413 and orjson.loads(payload)["error"]["code"] == refusal, payload[:200]
        assert len(payload) < 1024


@settings(max_examples=examples(2), deadline=None, suppress_health_check=list(HealthCheck))
@given(
    entries=st.one_of(st.integers(0, 4), st.integers(0, 700_000)),
    dim=st.one_of(st.integers(-3, 100), st.integers(0, 2**64 - 1)),
    small=st.lists(st.integers(-2, 2**64 - 1), max_size=3),
    name=st.sampled_from(["user_id", "movie_ids", "k"]),
)
def test_huge_shape_lists_and_dimensions_are_refused_cheaply(budget_app, entries, dim, small, name):
    shape = small if entries < 5 and small else [dim] * entries
    doc = {"inputs": [{"name": name, "datatype": "INT64", "shape": shape, "data": [1]}]}
    t0 = time.perf_counter()
    status, payload = call(
        budget_app, "POST", "/v2/models/movielens-recommender/infer", orjson.dumps(doc), b"application/json"
    )
    check(status, payload)
    assert time.perf_counter() - t0 < 5, f"shape of {len(shape)} entries took too long"
    if status >= 400:
        assert len(payload) < 1024, payload[:200]
    # A shape passes only when it is rank 1 or 2 and holds few enough values.
    if len(shape) > 2 or any(s > TENSOR_BUDGET for s in shape):
        assert status in (413, 422), payload[:200]
