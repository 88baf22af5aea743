"""The HTTP server as a bare ASGI application: SageMaker's contract, Open Inference Protocol v2, metrics.

A bare ASGI callable on uvicorn (httptools, uvloop) rather than a framework: routing is a dict lookup,
and the measured request rate is higher than the same handler under Starlette (docs/serving.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from inference.config import ServerConfig
from inference.features import (
    FeastHttpFeatureStore,
    FeatureLookupError,
    InMemoryFeatureStore,
    OnlineFeatureStore,
    SageMakerFeatureStore,
)
from inference.metrics import ServingMetrics
from inference.model import load_model_dir
from inference.predictor import Predictor, UserVector
from inference.protocol import (
    Limits,
    Query,
    RatingQuery,
    RequestError,
    TopKQuery,
    oip_queries,
    parse_json,
    parse_jsonlines,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("inference.app")

JSON = b"application/json"
JSONLINES_TYPES = frozenset({"application/jsonlines", "application/x-jsonlines", "application/jsonl"})
REQUEST_ID_HEADERS = (b"x-request-id", b"x-amzn-sagemaker-inference-id", b"x-amzn-requestid")


@dataclass
class Answer:
    """A response before it is sent."""

    status: int
    body: bytes
    content_type: bytes = JSON
    queries: int = 0
    fallbacks: int = 0


def build_store(config: ServerConfig, feature_names: tuple[str, ...]) -> OnlineFeatureStore | None:
    """The configured online feature store adapter, or None when serving without one."""
    from pathlib import Path

    if config.feature_store == "memory":
        return InMemoryFeatureStore.from_parquet(Path(config.feature_source), feature_names)
    if config.feature_store == "feast":
        return FeastHttpFeatureStore(
            config.feature_source, config.feature_view, feature_names, config.feature_timeout_s
        )
    if config.feature_store == "sagemaker":
        return SageMakerFeatureStore(config.feature_source, feature_names, config.feature_timeout_s)
    return None


class ServingApp:
    """One server process: loads the model (in a thread, so /ping can answer 503 meanwhile) and answers."""

    def __init__(
        self,
        config: ServerConfig,
        store: OnlineFeatureStore | None = None,
        use_configured_store: bool = True,
    ) -> None:
        self.config = config
        self.metrics = ServingMetrics()
        self.predictor: Predictor | None = None
        self.limits: Limits | None = None
        self.load_error: str | None = None
        self._store = store
        self._use_configured_store = use_configured_store and store is None
        self._log_stream = sys.stderr
        self._routes: dict[tuple[str, str], Callable[[Scope, bytes, bytes], Awaitable[Answer]]] = {
            ("GET", "/ping"): self._ping,
            ("POST", "/invocations"): self._invocations,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/v2/health/ready"): self._ready,
            ("GET", "/v2/health/live"): self._live,
            ("GET", "/v2"): self._server_metadata,
            ("GET", "/execution-parameters"): self._execution_parameters,
        }

    @property
    def ready(self) -> bool:
        """True once the model is loaded and its self-check prediction succeeded."""
        return self.predictor is not None

    def load(self) -> None:
        """Load the model directory and the feature store, then run a self-check prediction."""
        try:
            model = load_model_dir(self.config.model_dir)
            predictor = Predictor(model)
            if self._use_configured_store:
                self._store = build_store(self.config, model.feature_names)
            # Self-check: a cold-start top-10 and a rating must come out finite, else /ping stays 503.
            probe = predictor.user_vector(-1, None, "self_check")
            recs = predictor.top_k(-1, probe, 10, include_rated=True)
            ratings = predictor.predict(probe, [recs[0].movie_id])
            if not recs or not all(r.score == r.score for r in recs) or ratings[0] != ratings[0]:
                raise RuntimeError(f"self-check prediction is not finite: {recs[:3]}, {ratings}")
        except Exception as e:
            self.load_error = f"{type(e).__name__}: {e}"
            log.exception("model load failed: %s", self.load_error)
            raise
        self.limits = Limits(
            max_batch=self.config.max_batch,
            max_lines=self.config.max_lines,
            max_k=min(self.config.max_k, predictor.n_movies),
            max_movie_ids=self.config.max_movie_ids,
            genres=predictor.genres,
        )
        self.metrics.model_info.labels(model.name, model.version).set(1)
        self.metrics.ready.set(1)
        # The model's arrays and lookup tables live as long as the process: keep the cyclic garbage
        # collector from re-scanning them in every full collection (pauses that land in p99).
        gc.collect()
        gc.freeze()
        self.predictor = predictor
        log.info(
            "model %s version %s loaded from %s: %d movies, %d users, feature store %s",
            model.name,
            model.version,
            self.config.model_dir,
            predictor.n_movies,
            len(model.user_ids),
            self._store.name if self._store else "none",
        )

    def _load_quietly(self) -> None:
        # Already logged with its trace; /ping reports it.
        with contextlib.suppress(Exception):
            self.load()

    # --- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not self.ready and self.load_error is None:
                    threading.Thread(target=self._load_quietly, name="model-load", daemon=True).start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        request_id = ""
        content_type = b""
        length = -1
        for name, value in scope["headers"]:
            if name in REQUEST_ID_HEADERS and not request_id:
                request_id = value.decode("latin-1")[:128]
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
        if not request_id:
            request_id = os.urandom(8).hex()
        method: str = scope["method"]
        path: str = scope["path"]
        handler, route = self._route(method, path)
        try:
            if handler is None:
                raise route_error(method, path, route)
            body = await self._read_body(receive, length)
            answer = await handler(scope, body, content_type)
        except RequestError as e:
            answer = self._error(e.status, e.code, e.message, e.field, request_id)
        except Exception:
            log.error(
                "unexpected fault answering %s %s (request %s)\n%s",
                method,
                path,
                request_id,
                traceback.format_exc(),
            )
            answer = self._error(
                500,
                "internal_error",
                f"unexpected server fault; quote request id {request_id}",
                None,
                request_id,
            )
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-type", answer.content_type),
                    (b"content-length", str(len(answer.body)).encode()),
                    (b"x-request-id", request_id.encode("latin-1")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})
        seconds = time.perf_counter() - start
        self.metrics.observe_request(route, answer.status, seconds)
        if self.config.access_log:
            self._access_log(request_id, method, path, route, answer, seconds)

    def _route(
        self, method: str, path: str
    ) -> tuple[Callable[[Scope, bytes, bytes], Awaitable[Answer]] | None, str]:
        handler = self._routes.get((method, path))
        if handler is not None:
            return handler, path
        if path.startswith("/v2/models/"):
            parts = path[len("/v2/models/") :].split("/")
            if len(parts) == 1 and method == "GET":
                return self._model_metadata, "/v2/models/{name}"
            if len(parts) == 2 and parts[1] == "ready" and method == "GET":
                return self._model_ready, "/v2/models/{name}/ready"
            if len(parts) == 2 and parts[1] == "infer" and method == "POST":
                return self._infer, "/v2/models/{name}/infer"
            if len(parts) == 4 and parts[1] == "versions" and parts[3] == "infer" and method == "POST":
                return self._infer, "/v2/models/{name}/versions/{version}/infer"
        return None, "unmatched"

    async def _read_body(self, receive: Receive, length: int) -> bytes:
        limit = self.config.max_body_bytes
        if length > limit:
            raise self._too_big(length)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise self._too_big(size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_big(self, size: int) -> RequestError:
        return RequestError(
            413,
            "body_too_large",
            f"the body has at least {size} bytes; the limit is {self.config.max_body_bytes} "
            "(MLOPS_SERVE_MAX_BODY_BYTES); send smaller batches",
        )

    def _error(self, status: int, code: str, message: str, field: str | None, request_id: str) -> Answer:
        self.metrics.error(code)
        body = {"error": {"code": code, "message": message, "field": field}, "request_id": request_id}
        return Answer(status, orjson.dumps(body))

    def _access_log(
        self, request_id: str, method: str, path: str, route: str, a: Answer, seconds: float
    ) -> None:
        line = orjson.dumps(
            {
                "ts": round(time.time(), 6),
                "level": "info",
                "logger": "inference.access",
                "request_id": request_id,
                "method": method,
                "path": path[:256],
                "route": route,
                "status": a.status,
                "duration_ms": round(seconds * 1000, 3),
                "queries": a.queries,
                "fallbacks": a.fallbacks,
            }
        )
        self._log_stream.write(line.decode() + "\n")

    # --- handlers -----------------------------------------------------------------------------

    def _require_ready(self) -> tuple[Predictor, Limits]:
        if self.predictor is None or self.limits is None:
            why = self.load_error or "the model is still loading"
            raise RequestError(503, "not_ready", f"not ready: {why}")
        return self.predictor, self.limits

    async def _ping(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        self._require_ready()
        return Answer(200, b'{"status":"ok"}')

    async def _live(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        return Answer(200, b'{"live":true}')

    async def _ready(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        if self.ready:
            return Answer(200, b'{"ready":true}')
        return Answer(503, orjson.dumps({"ready": False, "reason": self.load_error or "loading"}))

    async def _metrics(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        return Answer(200, self.metrics.render(), b"text/plain; version=0.0.4; charset=utf-8")

    async def _execution_parameters(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        # Batch transform asks this before sending data: one payload at a time, within the body limit.
        mb = max(1, self.config.max_body_bytes // (1024 * 1024))
        doc = {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": mb}
        return Answer(200, orjson.dumps(doc))

    async def _server_metadata(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        return Answer(200, orjson.dumps({"name": "mlops-serving", "version": "1", "extensions": []}))

    def _model_name(self, scope: Scope) -> str:
        predictor, _ = self._require_ready()
        name: str = scope["path"][len("/v2/models/") :].split("/")[0]
        if name != predictor.model.name:
            raise RequestError(
                404,
                "unknown_model",
                f"model {name!r} is not served here; this server serves {predictor.model.name!r}",
            )
        return name

    async def _model_metadata(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        name = self._model_name(scope)
        assert self.predictor is not None
        return Answer(
            200,
            orjson.dumps(
                {
                    "name": name,
                    "versions": [self.predictor.model.version],
                    "platform": "numpy",
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
            ),
        )

    async def _model_ready(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        self._model_name(scope)
        return Answer(200, b'{"ready":true}')

    async def _invocations(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        mime = ctype.split(b";", 1)[0].strip().lower().decode("latin-1")
        predictor, limits = self._require_ready()
        if mime in ("application/json", ""):
            queries, batched = parse_json(body, limits)
            answers = await self._answer(predictor, queries)
            fb = sum(1 for a in answers if a.get("fallback"))
            if batched:
                doc = {"predictions": answers, "model_version": predictor.model.version}
                return Answer(200, orjson.dumps(doc), queries=len(answers), fallbacks=fb)
            return Answer(200, orjson.dumps(answers[0]), queries=1, fallbacks=fb)
        if mime in JSONLINES_TYPES:
            queries = parse_jsonlines(body, limits)
            answers = await self._answer(predictor, queries)
            fb = sum(1 for a in answers if a.get("fallback"))
            # No trailing newline: batch transform's AssembleWith=Line adds one after each response.
            out = b"\n".join(orjson.dumps(a) for a in answers)
            return Answer(200, out, b"application/jsonlines", queries=len(answers), fallbacks=fb)
        raise RequestError(
            415,
            "unsupported_media_type",
            f"content type {mime!r} is not supported; send application/json or application/jsonlines",
            "content-type",
        )

    async def _infer(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        name = self._model_name(scope)
        predictor, limits = self._require_ready()
        mime = ctype.split(b";", 1)[0].strip().lower()
        if mime not in (b"application/json", b""):
            raise RequestError(
                415,
                "unsupported_media_type",
                f"content type {mime.decode('latin-1')!r} is not supported; send application/json",
            )
        if not body.strip():
            raise RequestError(
                400, "empty_body", "the request body is empty; send an inference request object"
            )
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise RequestError(400, "malformed_json", f"the body is not valid JSON: {e}") from None
        queries = oip_queries(doc, limits)
        answers = await self._answer(predictor, queries)
        n = len(answers)
        outputs: list[dict[str, Any]]
        if isinstance(queries[0], RatingQuery):
            m = len(queries[0].movie_ids)
            outputs = [
                {
                    "name": "ratings",
                    "datatype": "FP32",
                    "shape": [n, m],
                    "data": [r["rating"] for a in answers for r in a["ratings"]],
                }
            ]
        else:
            k = max(len(a["recommendations"]) for a in answers)
            ids: list[int] = []
            scores: list[float] = []
            for a in answers:
                recs = a["recommendations"]
                # Rows shorter than k (every candidate filtered) are padded: movie id -1, score 0.
                ids += [r["movie_id"] for r in recs] + [-1] * (k - len(recs))
                scores += [r["score"] for r in recs] + [0.0] * (k - len(recs))
            outputs = [
                {"name": "movie_ids", "datatype": "INT64", "shape": [n, k], "data": ids},
                {"name": "scores", "datatype": "FP32", "shape": [n, k], "data": scores},
            ]
        result: dict[str, Any] = {
            "model_name": name,
            "model_version": predictor.model.version,
            "outputs": outputs,
        }
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            result["id"] = doc["id"]
        fallbacks = [a["fallback"] for a in answers if a.get("fallback")]
        if fallbacks:
            result["parameters"] = {"fallback": fallbacks}
        return Answer(200, orjson.dumps(result), queries=n, fallbacks=len(fallbacks))

    # --- the work -------------------------------------------------------------------------------

    async def _user(self, predictor: Predictor, user_id: int) -> UserVector:
        store = self._store
        if store is None:
            features, fallback = None, "no_feature_store"
        else:
            t0 = time.perf_counter()
            features, fallback = None, None
            try:
                if store.blocking:
                    features = await asyncio.wait_for(
                        asyncio.to_thread(store.get_user_features, user_id), self.config.feature_timeout_s
                    )
                else:
                    features = store.get_user_features(user_id)
                if features is None:
                    fallback = "unknown_user"
            except TimeoutError:
                fallback = "feature_store_timeout"
            except FeatureLookupError as e:
                fallback = e.reason
                log.warning("feature lookup for user %d fell back: %s", user_id, e)
            except Exception:
                fallback = "feature_store_error"
                log.exception("feature lookup for user %d failed", user_id)
            self.metrics.observe_features(store.name, time.perf_counter() - t0)
        user = predictor.user_vector(user_id, features, fallback)
        if user.fallback is not None:
            self.metrics.fallback(user.fallback)
        return user

    async def _answer(self, predictor: Predictor, queries: list[Query]) -> list[dict[str, Any]]:
        for q in queries:
            if isinstance(q, RatingQuery):
                unknown = predictor.unknown_movies(q.movie_ids)
                if unknown:
                    where = f"{q.where}.movie_ids" if q.where else "movie_ids"
                    raise RequestError(
                        422,
                        "unknown_movie",
                        f"movie ids not in this model's catalog: {unknown[:10]}; ask only for catalog movies",
                        where,
                    )
        if len(queries) == 1:
            users = [await self._user(predictor, queries[0].user_id)]
        else:
            users = list(await asyncio.gather(*(self._user(predictor, q.user_id) for q in queries)))
        t0 = time.perf_counter()
        out: list[dict[str, Any]] = []
        for q, user in zip(queries, users, strict=True):
            if isinstance(q, TopKQuery):
                recs = predictor.top_k(q.user_id, user, q.k, q.include_rated, q.genres)
                out.append(
                    {
                        "user_id": q.user_id,
                        "recommendations": [
                            {"movie_id": r.movie_id, "title": r.title, "score": r.score} for r in recs
                        ],
                        "fallback": user.fallback,
                    }
                )
            else:
                ratings = predictor.predict(user, q.movie_ids)
                out.append(
                    {
                        "user_id": q.user_id,
                        "ratings": [
                            {"movie_id": m, "rating": r} for m, r in zip(q.movie_ids, ratings, strict=True)
                        ],
                        "fallback": user.fallback,
                    }
                )
        self.metrics.model_latency.observe(time.perf_counter() - t0)
        return out


def route_error(method: str, path: str, route: str) -> RequestError:
    """404 for an unknown path, 405 for a known path asked with the wrong method."""
    known = {"/ping": "GET", "/invocations": "POST", "/metrics": "GET", "/v2/health/ready": "GET"}
    if path in known:
        return RequestError(
            405, "method_not_allowed", f"{method} {path} is not allowed; use {known[path]} {path}"
        )
    shown = path if len(path) <= 100 else path[:100] + "..."
    return RequestError(
        404,
        "not_found",
        f"no route {method} {shown}; routes: GET /ping, POST /invocations, GET /metrics, /v2/... (OIP v2)",
    )
