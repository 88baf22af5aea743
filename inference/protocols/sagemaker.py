"""SageMaker's serving contract: `/ping`, `/invocations` (JSON and JSON lines), `/execution-parameters`.

The body parsers sit beside the handlers that use them. `/invocations` takes one request object or
`{"instances": [...]}` as application/json (real-time endpoints), or one request object per line as
application/jsonlines (batch transform with SplitType=Line), and answers in the same shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from inference.queries import Budget, Limits, Query, RequestError, clip, parse_query, show
from inference.routes import Route
from inference.transport import Answer, Scope, parse_off_loop

if TYPE_CHECKING:
    from inference.app import ServingApp
    from inference.predictor import Predictor

JSONLINES_TYPES = frozenset({"application/jsonlines", "application/x-jsonlines", "application/jsonl"})


def _loads(data: bytes, where: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise RequestError(400, "malformed_json", f"{where} is not valid JSON: {e}", None) from None


def parse_json(body: bytes, limits: Limits) -> tuple[list[Query], bool]:
    """An application/json body: one query, or `{"instances": [...]}`; returns (queries, batched)."""
    if not body.strip():
        raise RequestError(400, "empty_body", "the request body is empty; send a JSON object", None)
    obj = _loads(body, "the body")
    if isinstance(obj, dict) and "instances" in obj:
        extra = sorted(set(obj) - {"instances"})
        if extra:
            raise RequestError(422, "unknown_field", f"{extra[0]} is not allowed beside instances", extra[0])
        items = obj["instances"]
        if not isinstance(items, list):
            raise RequestError(
                422, "wrong_type", f"instances must be an array, got {show(items)}", "instances"
            )
        if not items:
            raise RequestError(
                422, "out_of_range", "instances is empty; send 1 or more requests", "instances"
            )
        if len(items) > limits.max_batch:
            raise RequestError(
                413,
                "batch_too_large",
                f"instances has {len(items)} requests; the maximum is {limits.max_batch} "
                "(MLOPS_SERVE_MAX_BATCH); split the batch",
                "instances",
            )
        budget = Budget(limits)
        queries = []
        for i, item in enumerate(items):
            q = parse_query(item, limits, f"instances[{i}]")
            budget.add(q, f"instances[{i}]")
            queries.append(q)
        return queries, True
    q = parse_query(obj, limits)
    Budget(limits).add(q)
    return [q], False


def parse_jsonlines(body: bytes, limits: Limits) -> list[Query]:
    """An application/jsonlines body: one request object per non-empty line, answers in the same order."""
    lines = [ln for ln in body.split(b"\n") if ln.strip()]
    if not lines:
        raise RequestError(
            400, "empty_body", "the request body has no lines; send one JSON object per line", None
        )
    if len(lines) > limits.max_lines:
        raise RequestError(
            413,
            "batch_too_large",
            f"the body has {len(lines)} lines; the maximum is {limits.max_lines} (MLOPS_SERVE_MAX_LINES); "
            "lower the transform job's MaxPayloadInMB or raise the limit",
            None,
        )
    budget = Budget(limits)
    queries = []
    for i, ln in enumerate(lines):
        q = parse_query(_loads(ln, f"line {i + 1}"), limits, f"line[{i + 1}]")
        budget.add(q, f"line[{i + 1}]")
        queries.append(q)
    return queries


class SageMakerProtocol:
    """The handlers of SageMaker's contract, answering through the app's predictor and feature store."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app

    def routes(self) -> list[Route]:
        """This protocol's routes for the route table."""
        return [
            ("GET", "/ping", self.ping),
            ("POST", "/invocations", self.invocations),
            ("GET", "/execution-parameters", self.execution_parameters),
        ]

    async def ping(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        """200 once the model is loaded and self-checked, 503 with the reason before."""
        self.app.require_ready()
        return Answer(200, b'{"status":"ok"}')

    async def execution_parameters(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        """What batch transform asks before sending data: one payload at a time, within the body limit."""
        mb = max(1, self.app.config.max_body_bytes // (1024 * 1024))
        doc = {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": mb}
        return Answer(200, orjson.dumps(doc))

    async def invocations(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        """Answer a JSON or JSON-lines body of top-k and rating requests."""
        mime = ctype.split(b";", 1)[0].strip().lower().decode("latin-1")
        predictor, limits = self.app.require_ready()
        if mime in ("application/json", ""):
            queries, batched = await parse_off_loop(body, lambda: self._parse_json(body, limits))
            answers = await self.app.answer(predictor, queries)
            fb = sum(1 for a in answers if a.get("fallback"))
            if batched:
                doc = {"predictions": answers, "model_version": predictor.model.version}
                return Answer(200, orjson.dumps(doc), queries=len(answers), fallbacks=fb)
            return Answer(200, orjson.dumps(answers[0]), queries=1, fallbacks=fb)
        if mime in JSONLINES_TYPES:
            return await self._jsonlines(predictor, body, limits)
        raise RequestError(
            415,
            "unsupported_media_type",
            f"content type {clip(mime)!r} is not supported; send application/json or application/jsonlines",
            "content-type",
        )

    def _checked(self, queries: list[Query]) -> list[Query]:
        # Part of the parse (so off the loop for a large body): a 422 must come before any answer streams.
        predictor, _ = self.app.require_ready()
        self.app.check_movies(predictor, queries)
        return queries

    def _parse_json(self, body: bytes, limits: Limits) -> tuple[list[Query], bool]:
        queries, batched = parse_json(body, limits)
        return self._checked(queries), batched

    async def _jsonlines(self, predictor: Predictor, body: bytes, limits: Limits) -> Answer:
        queries = await parse_off_loop(body, lambda: self._checked(parse_jsonlines(body, limits)))
        answer = Answer(200, b"", b"application/jsonlines", queries=len(queries))

        async def lines() -> AsyncIterator[bytes]:
            first = True
            async for part in self.app.answer_chunks(predictor, queries):
                answer.fallbacks += sum(1 for a in part if a["fallback"])
                # No trailing newline: batch transform's AssembleWith=Line adds one after each response.
                text = b"\n".join(orjson.dumps(a) for a in part)
                yield text if first else b"\n" + text
                first = False

        answer.stream = lines()
        return answer
