"""The queries both wire protocols parse into, their validation, and the client error they raise.

A request object (`{"user_id": .., "k": ..}` or `{"user_id": .., "movie_ids": [..]}`) becomes a typed
query here, whichever protocol carried it: SageMaker's `/invocations` (inference/protocols/sagemaker.py)
and the Open Inference Protocol v2 (inference/protocols/oip.py) each parse their own envelope and hand
every row to `parse_query`, so a field is checked, and an error worded, the same way in both.

Hand-rolled instead of pydantic: the whole request path is a few microseconds this way, and each
error says exactly which field (e.g. `instances[3].k`) is wrong and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

INT64_MAX = 2**63 - 1


class RequestError(Exception):
    """A client error: HTTP status, a stable code, a message naming the problem, and the field."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        # Response headers the error needs besides the usual ones (405's `Allow`).
        self.headers = headers
        super().__init__(message)


@dataclass(frozen=True)
class Limits:
    """What a request may ask for."""

    max_batch: int
    max_lines: int
    max_k: int
    max_movie_ids: int
    genres: tuple[str, ...]
    max_output_items: int = 500_000
    max_input_items: int = 500_000
    max_tensor_size: int = 500_000


@dataclass(frozen=True)
class TopKQuery:
    """Top-k movies for a user."""

    user_id: int
    k: int
    include_rated: bool
    genres: tuple[str, ...]


@dataclass(frozen=True)
class RatingQuery:
    """Predicted ratings of given movies for a user."""

    user_id: int
    movie_ids: tuple[int, ...]
    # Where the query sat in the body (e.g. `instances[2]`), so later errors can name the field.
    where: str = ""


Query = TopKQuery | RatingQuery

_TOPK_KEYS = frozenset({"user_id", "k", "include_rated", "genres"})
_RATING_KEYS = frozenset({"user_id", "movie_ids"})


class Budget:
    """A request's running totals against its work budget; `add` raises 413 the moment one is passed.

    Output items are what the answer will hold (k recommendations, or one rating a movie id); input
    items are queries plus movie ids. Both are counted while parsing, so an oversized request is
    refused before any feature lookup or scoring, however its items are spread over lines or instances.
    """

    __slots__ = ("inputs", "limits", "outputs")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.outputs = 0
        self.inputs = 0

    def add(self, query: Query, where: str = "") -> None:
        """Count one parsed query; raise RequestError 413 if the request now exceeds a budget."""
        if isinstance(query, TopKQuery):
            self.outputs += query.k
            self.inputs += 1
        else:
            self.outputs += len(query.movie_ids)
            self.inputs += 1 + len(query.movie_ids)
        self.check(where)

    def check(self, where: str = "") -> None:
        """Raise RequestError 413 if the totals so far exceed a budget."""
        at = f" (passed at {where})" if where else ""
        if self.outputs > self.limits.max_output_items:
            raise RequestError(
                413,
                "output_too_large",
                f"the answer would hold more than {self.limits.max_output_items} items{at}: the sum of k "
                "and of movie_ids over the request's queries is over the budget "
                "(MLOPS_SERVE_MAX_OUTPUT_ITEMS); split the request or ask for a smaller k",
                where or None,
            )
        if self.inputs > self.limits.max_input_items:
            raise RequestError(
                413,
                "input_too_large",
                f"the request holds more than {self.limits.max_input_items} items{at}: queries plus "
                "movie_ids over the budget (MLOPS_SERVE_MAX_INPUT_ITEMS); split the request",
                where or None,
            )


def clip(text: str, limit: int = 60) -> str:
    """Text from a request as an error message may quote it: at most `limit` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _int_field(value: object, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(422, "wrong_type", f"{field} must be an integer, got {show(value)}", field)
    if not low <= value <= high:
        raise RequestError(
            422, "out_of_range", f"{field}={value} is out of range; allowed {low}..{high}", field
        )
    return value


def show(value: object) -> str:
    """A value as the error messages quote it: its JSON kind and its JSON text, cut at 60 characters."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode() if _jsonable(value) else repr(value)
    kind = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), "null" if value is None else type(value).__name__)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


def _jsonable(value: object) -> bool:
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return False
    return True


def parse_query(obj: object, limits: Limits, prefix: str = "") -> Query:
    """One request object (`{"user_id": .., "k": ..}` or `{"user_id": .., "movie_ids": [..]}`) to a query."""
    if not isinstance(obj, dict):
        raise RequestError(
            422,
            "wrong_type",
            f"{prefix or 'the body'} must be a JSON object, got {show(obj)}",
            prefix or None,
        )
    if "user_id" not in obj:
        raise RequestError(
            422, "missing_field", f"{_where(prefix, 'user_id')} is required", _where(prefix, "user_id")
        )
    user_id = _int_field(obj["user_id"], _where(prefix, "user_id"), 0, INT64_MAX)
    if "movie_ids" in obj:
        return _rating_query(obj, user_id, limits, prefix)
    return _top_k_query(obj, user_id, limits, prefix)


def _rating_query(obj: dict[str, Any], user_id: int, limits: Limits, prefix: str) -> RatingQuery:
    extra = sorted(set(obj) - _RATING_KEYS)
    if extra:
        f = _where(prefix, extra[0])
        raise RequestError(
            422,
            "unknown_field",
            f"{f} is not allowed with movie_ids; a rating request has user_id and movie_ids",
            f,
        )
    f = _where(prefix, "movie_ids")
    ids = obj["movie_ids"]
    if not isinstance(ids, list):
        raise RequestError(422, "wrong_type", f"{f} must be an array of integers, got {show(ids)}", f)
    if not 1 <= len(ids) <= limits.max_movie_ids:
        raise RequestError(
            422, "out_of_range", f"{f} has {len(ids)} ids; allowed 1..{limits.max_movie_ids}", f
        )
    for i, m in enumerate(ids):
        _int_field(m, f"{f}[{i}]", 0, INT64_MAX)
    return RatingQuery(user_id, tuple(ids), prefix)


def _top_k_query(obj: dict[str, Any], user_id: int, limits: Limits, prefix: str) -> TopKQuery:
    extra = sorted(set(obj) - _TOPK_KEYS)
    if extra:
        f = _where(prefix, extra[0])
        raise RequestError(
            422,
            "unknown_field",
            f"{f} is not a known field; allowed: {', '.join(sorted(_TOPK_KEYS | _RATING_KEYS))}",
            f,
        )
    k = _int_field(obj.get("k", 10), _where(prefix, "k"), 1, limits.max_k)
    include_rated = obj.get("include_rated", False)
    if not isinstance(include_rated, bool):
        f = _where(prefix, "include_rated")
        raise RequestError(422, "wrong_type", f"{f} must be true or false, got {show(include_rated)}", f)
    return TopKQuery(user_id, k, include_rated, _genres(obj.get("genres", []), limits, prefix))


def _genres(genres: object, limits: Limits, prefix: str) -> tuple[str, ...]:
    f = _where(prefix, "genres")
    if isinstance(genres, str):
        genres = [genres]
    if not isinstance(genres, list):
        raise RequestError(422, "wrong_type", f"{f} must be an array of genre names, got {show(genres)}", f)
    for i, g in enumerate(genres):
        if not isinstance(g, str) or g not in limits.genres:
            raise RequestError(
                422,
                "unknown_genre",
                f"{f}[{i}]={show(g)} is not a genre of this model; known: {', '.join(limits.genres)}",
                f"{f}[{i}]",
            )
    return tuple(dict.fromkeys(genres))
