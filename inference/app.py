"""The serving app: the model and feature store of one server process, and the work of answering queries.

`ServingApp` is the ASGI application uvicorn runs. It joins the pieces, each in its own module:
the HTTP transport it inherits (inference/transport.py: body limits, errors, metrics, access log),
the one route table (inference/routes.py), and the two wire protocols whose handlers fill that table
(inference/protocols/: SageMaker's `/invocations`, the Open Inference Protocol v2). What stays here is
what both protocols share: loading the model in a thread (so `/ping` answers 503 meanwhile), the
readiness check, the feature lookups with their fallbacks, and turning typed queries into answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

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
from inference.protocols.oip import OpenInferenceProtocol
from inference.protocols.sagemaker import SageMakerProtocol
from inference.queries import Limits, Query, RatingQuery, RequestError, TopKQuery
from inference.routes import RouteTable
from inference.transport import Answer, AsgiTransport, Scope

log = logging.getLogger("inference.app")


def build_store(config: ServerConfig, feature_names: tuple[str, ...]) -> OnlineFeatureStore | None:
    """The configured online feature store adapter, or None when serving without one."""
    if config.feature_store == "memory":
        return InMemoryFeatureStore.from_parquet(Path(config.feature_source), feature_names)
    if config.feature_store == "feast":
        return FeastHttpFeatureStore(
            config.feature_source, config.feature_view, feature_names, config.feature_timeout_s
        )
    if config.feature_store == "sagemaker":
        return SageMakerFeatureStore(config.feature_source, feature_names, config.feature_timeout_s)
    return None


class ServingApp(AsgiTransport):
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
        self.sagemaker = SageMakerProtocol(self)
        self.oip = OpenInferenceProtocol(self)
        self.routes = RouteTable(
            [*self.sagemaker.routes(), ("GET", "/metrics", self._metrics), *self.oip.routes()]
        )

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
            max_output_items=self.config.max_output_items,
            max_input_items=self.config.max_input_items,
            max_tensor_size=self.config.max_tensor_size,
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

    def on_startup(self) -> None:
        """Start loading the model in a thread: the server answers (/ping 503) while it loads."""
        if not self.ready and self.load_error is None:
            threading.Thread(target=self._load_quietly, name="model-load", daemon=True).start()

    def require_ready(self) -> tuple[Predictor, Limits]:
        """The predictor and the request limits, or a 503 saying why the model is not ready."""
        if self.predictor is None or self.limits is None:
            why = self.load_error or "the model is still loading"
            raise RequestError(503, "not_ready", f"not ready: {why}")
        return self.predictor, self.limits

    async def _metrics(self, scope: Scope, body: bytes, ctype: bytes) -> Answer:
        return Answer(200, self.metrics.render(), b"text/plain; version=0.0.4; charset=utf-8")

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

    def check_movies(self, predictor: Predictor, queries: list[Query]) -> None:
        """Raise RequestError 422 naming the first rating query that asks for a movie not in the catalog."""
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

    async def answer(self, predictor: Predictor, queries: list[Query]) -> list[dict[str, Any]]:
        """Answer typed queries in order: the users' features looked up concurrently, then the predictor.

        The caller has checked the movies (`check_movies`, in the parse, off the loop for large bodies).
        """
        if len(queries) == 1:
            # The hot path (one real-time request): no chunking, no extra await.
            user = await self._user(predictor, queries[0].user_id)
            t0 = time.perf_counter()
            one = _answer_one(predictor, queries[0], user)
            self.metrics.model_latency.observe(time.perf_counter() - t0)
            return [one]
        out: list[dict[str, Any]] = []
        async for part in self.answer_chunks(predictor, queries):
            out += part
        return out

    async def answer_chunks(
        self, predictor: Predictor, queries: list[Query]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Answers in order, a chunk of bounded work at a time, yielding to the event loop between chunks.

        So a batch at the budget's limit never holds the only event loop for longer than one chunk:
        `/ping` and other requests are served between chunks. The caller checks the movies first
        (`check_movies`): once an answer streams, it cannot turn into an error.
        """
        for chunk in _chunks(queries):
            users = await asyncio.gather(*(self._user(predictor, q.user_id) for q in chunk))
            t0 = time.perf_counter()
            part = [_answer_one(predictor, q, u) for q, u in zip(chunk, users, strict=True)]
            self.metrics.model_latency.observe(time.perf_counter() - t0)
            yield part
            await asyncio.sleep(0)


# Work in one chunk of a batch's answers: a query costs QUERY_COST plus its k or number of movie ids.
# About 10 ms of scoring and serialising on the 2-core build machine: the longest `/ping` waits.
CHUNK_COST = 10_000
QUERY_COST = 50


def _cost(q: Query) -> int:
    return QUERY_COST + (q.k if isinstance(q, TopKQuery) else len(q.movie_ids))


def _chunks(queries: list[Query]) -> Iterator[list[Query]]:
    chunk: list[Query] = []
    cost = 0
    for q in queries:
        chunk.append(q)
        cost += _cost(q)
        if cost >= CHUNK_COST:
            yield chunk
            chunk, cost = [], 0
    if chunk:
        yield chunk


def _answer_one(predictor: Predictor, q: Query, user: UserVector) -> dict[str, Any]:
    if isinstance(q, TopKQuery):
        recs = predictor.top_k(q.user_id, user, q.k, q.include_rated, q.genres)
        return {
            "user_id": q.user_id,
            "recommendations": [{"movie_id": r.movie_id, "title": r.title, "score": r.score} for r in recs],
            "fallback": user.fallback,
        }
    ratings = predictor.predict(user, q.movie_ids)
    return {
        "user_id": q.user_id,
        "ratings": [{"movie_id": m, "rating": r} for m, r in zip(q.movie_ids, ratings, strict=True)],
        "fallback": user.fallback,
    }
