"""The Open Inference Protocol v2 (KServe, Triton): health, metadata and `infer` under `/v2`.

The tensor parser sits beside the handlers that use it. An infer request carries `user_id` [n] and
either `k` [1] (top-k: answers `movie_ids` and `scores` [n, k]) or `movie_ids` [n, m] (ratings [n, m]).
Every row becomes the same typed query as a SageMaker request (inference/queries.py), so validation
and error wording are shared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from inference.queries import Budget, Limits, Query, RatingQuery, RequestError, clip, parse_query, show
from inference.routes import Route
from inference.transport import Answer, Scope, parse_off_loop

if TYPE_CHECKING:
    from inference.app import ServingApp

PREFIX = "/v2/models/"
_INPUTS = ("user_id", "k", "movie_ids")
# A tensor as sent: its shape and its data flattened in row-major order.
Tensor = tuple[list[int], list[Any]]


def oip_queries(doc: object, limits: Limits) -> list[Query]:
    """An Open Inference Protocol v2 infer body: `user_id` [n], optionally `k` [1] or `movie_ids` [n, m]."""
    if not isinstance(doc, dict):
        raise RequestError(422, "wrong_type", f"the body must be a JSON object, got {show(doc)}", None)
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(422, "missing_field", "inputs must be a non-empty array of tensors", "inputs")
    if len(inputs) > len(_INPUTS):
        raise RequestError(
            422,
            "out_of_range",
            f"inputs has {len(inputs)} tensors; send at most {len(_INPUTS)}: user_id, k, movie_ids",
            "inputs",
        )
    tensors = dict(_tensor(i, t, limits) for i, t in enumerate(inputs))
    extra = sorted(set(tensors) - set(_INPUTS))
    if extra:
        raise RequestError(
            422,
            "unknown_field",
            f"input {clip(extra[0])!r} is not known; inputs are user_id, k, movie_ids",
            clip(extra[0]),
        )
    users = _users(tensors, limits)
    if "movie_ids" in tensors:
        if "k" in tensors:
            raise RequestError(422, "unknown_field", "send either k or movie_ids, not both", "k")
        mshape, mids = tensors["movie_ids"]
        if len(mshape) != 2 or mshape[0] != len(users):
            raise RequestError(
                422,
                "shape_mismatch",
                f"movie_ids must have shape [{len(users)}, m], got {mshape}",
                "movie_ids",
            )
        m = mshape[1]
        return _budgeted(
            (
                parse_query({"user_id": u, "movie_ids": mids[r * m : (r + 1) * m]}, limits, f"row[{r}]")
                for r, u in enumerate(users)
            ),
            limits,
        )
    k: object = 10
    if "k" in tensors:
        kshape, kdata = tensors["k"]
        if len(kdata) != 1:
            raise RequestError(422, "shape_mismatch", f"k must have shape [1], got {kshape}", "k")
        k = kdata[0]
    return _budgeted(
        (parse_query({"user_id": u, "k": k}, limits, f"row[{r}]") for r, u in enumerate(users)), limits
    )


def _budgeted(queries: Iterable[Query], limits: Limits) -> list[Query]:
    """The queries, counted against the request's budget as they are parsed (413 once it is passed)."""
    budget = Budget(limits)
    out: list[Query] = []
    for r, q in enumerate(queries):
        budget.add(q, f"row[{r}]")
        out.append(q)
    return out


def _shape(i: int, shape: object, limits: Limits) -> list[int]:
    """A tensor's shape checked before any arithmetic: rank 1 or 2, each dimension and the product bounded."""
    f = f"inputs[{i}].shape"
    if not isinstance(shape, list):
        raise RequestError(422, "wrong_type", f"{f} must be an array of integers, got {show(shape)}", f)
    # The rank first: a shape of a million entries must cost a length check, not a million multiplications.
    if not 1 <= len(shape) <= 2:
        raise RequestError(
            422, "shape_mismatch", f"{f} has {len(shape)} dimensions; the inputs have 1 or 2", f
        )
    top = limits.max_tensor_size
    for d, s in enumerate(shape):
        if not isinstance(s, int) or isinstance(s, bool):
            raise RequestError(422, "wrong_type", f"{f}[{d}] must be an integer, got {show(s)}", f"{f}[{d}]")
        if s < 0:
            raise RequestError(
                422, "out_of_range", f"{f}[{d}]={s} is negative; dimensions are >= 0", f"{f}[{d}]"
            )
        if s > top:
            raise _too_large(f"{f}[{d}]", f"{s} values", top)
    size = shape[0] * shape[-1] if len(shape) == 2 else shape[0]
    if size > top:
        raise _too_large(f, f"{size} values", top)
    return shape


def _too_large(field: str, what: str, top: int) -> RequestError:
    return RequestError(
        413,
        "tensor_too_large",
        f"{field} asks for {what}; a tensor holds at most {top} (MLOPS_SERVE_MAX_TENSOR_SIZE); "
        "split the request",
        field,
    )


def _tensor(i: int, t: object, limits: Limits) -> tuple[str, Tensor]:
    if not isinstance(t, dict) or not isinstance(t.get("name"), str):
        raise RequestError(422, "wrong_type", f"inputs[{i}] must be an object with a name", f"inputs[{i}]")
    shape = _shape(i, t.get("shape"), limits)
    data = t.get("data")
    if not isinstance(data, list):
        raise RequestError(422, "wrong_type", f"inputs[{i}].data must be an array", f"inputs[{i}].data")
    flat = _flatten(data)
    size = shape[0] * shape[-1] if len(shape) == 2 else shape[0]
    if size != len(flat):
        raise RequestError(
            422,
            "shape_mismatch",
            f"inputs[{i}] has shape {shape} but {len(flat)} values",
            f"inputs[{i}].shape",
        )
    return t["name"], (shape, flat)


def _users(tensors: dict[str, Tensor], limits: Limits) -> list[Any]:
    if "user_id" not in tensors:
        raise RequestError(
            422, "missing_field", "the input user_id (INT64, shape [n]) is required", "user_id"
        )
    shape, users = tensors["user_id"]
    if len(shape) != 1 or not users:
        raise RequestError(
            422, "shape_mismatch", f"user_id must have shape [n] with n >= 1, got {shape}", "user_id"
        )
    if len(users) > limits.max_batch:
        raise RequestError(
            413,
            "batch_too_large",
            f"user_id has {len(users)} rows; the maximum is {limits.max_batch}",
            "user_id",
        )
    return users


def _flatten(data: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def infer_outputs(queries: list[Query], answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The output tensors of answered queries: `ratings` [n, m], or `movie_ids` and `scores` [n, k]."""
    n = len(answers)
    if isinstance(queries[0], RatingQuery):
        m = len(queries[0].movie_ids)
        data = [r["rating"] for a in answers for r in a["ratings"]]
        return [{"name": "ratings", "datatype": "FP32", "shape": [n, m], "data": data}]
    k = max(len(a["recommendations"]) for a in answers)
    ids: list[int] = []
    scores: list[float] = []
    for a in answers:
        recs = a["recommendations"]
        # Rows shorter than k (every candidate filtered) are padded: movie id -1, score 0.
        ids += [r["movie_id"] for r in recs] + [-1] * (k - len(recs))
        scores += [r["score"] for r in recs] + [0.0] * (k - len(recs))
    return [
        {"name": "movie_ids", "datatype": "INT64", "shape": [n, k], "data": ids},
        {"name": "scores", "datatype": "FP32", "shape": [n, k], "data": scores},
    ]


MODEL_METADATA_TENSORS = {
    "inputs": [
        {"name": "user_id", "datatype": "INT64", "shape": [-1]},
        {"name": "k", "datatype": "INT64", "shape": [1]},
        {"name": "movie_ids", "datatype": "INT64", "shape": [-1, -1]},
    ],
    "outputs": [
        {"name": "movie_ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "scores", "datatype": "FP32", "shape": [-1, -1]},
        {"name": "ratings", "datatype": "FP32", "shape": [-1, -1]},
    ],
}


class OpenInferenceProtocol:
    """The handlers of the Open Inference Protocol v2, answering through the app's predictor."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app

    def routes(self) -> list[Route]:
        """This protocol's routes for the route table."""
        return [
            ("GET", "/v2/health/live", self.live),
            ("GET", "/v2/health/ready", self.ready),
            ("GET", "/v2", self.server_metadata),
            ("GET", PREFIX + "{name}", self.model_metadata),
            ("GET", PREFIX + "{name}/ready", self.model_ready),
            ("POST", PREFIX + "{name}/infer", self.infer),
            ("POST", PREFIX + "{name}/versions/{version}/infer", self.infer),
        ]

    async def live(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        """The process answers: always 200."""
        return Answer(200, b'{"live":true}')

    async def ready(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        """200 once the model is loaded, else 503 with the reason."""
        if self.app.ready:
            return Answer(200, b'{"ready":true}')
        return Answer(503, orjson.dumps({"ready": False, "reason": self.app.load_error or "loading"}))

    async def server_metadata(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        """The server's name, version and extensions."""
        return Answer(200, orjson.dumps({"name": "mlops-serving", "version": "1", "extensions": []}))

    def _model_name(self, scope: Scope) -> str:
        predictor, _ = self.app.require_ready()
        name: str = scope["path"][len(PREFIX) :].split("/")[0]
        if name != predictor.model.name:
            raise RequestError(
                404,
                "unknown_model",
                # The served model's name is not told: an unauthenticated caller learns nothing from a miss.
                f"model {clip(name)!r} is not served here; check the model name in the request path",
            )
        return name

    async def model_metadata(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        """The served model's name, version and tensors."""
        name = self._model_name(scope)
        predictor, _ = self.app.require_ready()
        doc = {"name": name, "versions": [predictor.model.version], "platform": "numpy"}
        return Answer(200, orjson.dumps({**doc, **MODEL_METADATA_TENSORS}))

    async def model_ready(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        """200 when the named model is the one served and it is loaded."""
        self._model_name(scope)
        return Answer(200, b'{"ready":true}')

    def _parse(self, body: bytes, limits: Limits) -> tuple[object, list[Query]]:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise RequestError(400, "malformed_json", f"the body is not valid JSON: {e}") from None
        queries = oip_queries(doc, limits)
        predictor, _ = self.app.require_ready()
        self.app.check_movies(predictor, queries)
        return doc, queries

    async def infer(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        """Answer an infer request: top-k or ratings for each row of `user_id`."""
        name = self._model_name(scope)
        predictor, limits = self.app.require_ready()
        mime = ctype.split(b";", 1)[0].strip().lower()
        if mime not in (b"application/json", b""):
            raise RequestError(
                415,
                "unsupported_media_type",
                f"content type {clip(mime.decode('latin-1'))!r} is not supported; send application/json",
            )
        if not body.strip():
            raise RequestError(
                400, "empty_body", "the request body is empty; send an inference request object"
            )
        doc, queries = await parse_off_loop(body, lambda: self._parse(body, limits))
        answers = await self.app.answer(predictor, queries)
        result: dict[str, Any] = {
            "model_name": name,
            "model_version": predictor.model.version,
            "outputs": infer_outputs(queries, answers),
        }
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            result["id"] = doc["id"]
        fallbacks = [a["fallback"] for a in answers if a.get("fallback")]
        if fallbacks:
            result["parameters"] = {"fallback": fallbacks}
        return Answer(200, orjson.dumps(result), queries=len(answers), fallbacks=len(fallbacks))
