"""Ingest feature rows into Feast through its feature server's `POST /push`, over plain HTTP.

The ML image has no Feast: the pipeline's Prepare step sends its feature tables to a `feast serve`
process (a local stand-in on the host) in batches. Standard library and pandas only.

Body of one request, as Feast 0.67's feature server takes it (`PushFeaturesRequest`):
`{"push_source_name": "<view>_push", "df": {column: [values...]}, "to": "online"}`.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from features.definition import FeatureView
from features.feast_repo import push_source_name

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_BATCH_ROWS = 500
DEFAULT_TIMEOUT_S = 60.0
PUSH_TARGETS = ("online", "offline", "online_and_offline")


class FeastPushError(RuntimeError):
    """The feature server refused a batch or did not answer; the message names the URL."""


def _json_value(value: Any) -> Any:
    """One cell as JSON: NaN/NA become null, NumPy scalars plain numbers, times ISO-8601 strings."""
    if value is None:
        return None
    if type(value).__name__ in {"NAType", "NaTType"}:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # NumPy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def push_body(view: FeatureView, frame: pd.DataFrame, to: str = "online") -> dict[str, Any]:
    """The `/push` request body for one batch of a view's rows (exactly the definition's columns)."""

    if to not in PUSH_TARGETS:
        raise ValueError(f"push target {to!r} is not one of {PUSH_TARGETS}")
    columns = [view.join_key, view.event_time_column, *view.feature_names]
    missing = [c for c in columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in columns]
    if missing or extra:
        raise ValueError(
            f"rows for feature view {view.name!r}: missing {missing}, unexpected {extra}; "
            f"compute them with features.compute, which follows the definition"
        )
    if frame[view.join_key].isna().any():
        raise ValueError(f"rows for feature view {view.name!r} have a null {view.join_key}")
    return {
        "push_source_name": push_source_name(view),
        "df": {c: [_json_value(v) for v in frame[c].tolist()] for c in columns},
        "to": to,
    }


def post_push(url: str, body: dict[str, Any], timeout: float = DEFAULT_TIMEOUT_S) -> int:
    """POST one body to `<url>/push`; return the HTTP status, or FeastPushError naming the URL."""
    target = f"{url.rstrip('/')}/push"
    request = urllib.request.Request(  # noqa: S310 (a feature server URL given by the pipeline's settings)
        target, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:500]
        raise FeastPushError(
            f"the Feast feature server at {target} refused {body['push_source_name']} rows "
            f"(HTTP {error.code}: {detail}); check that its repo was built with push sources "
            "(`mlops features build`)"
        ) from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise FeastPushError(
            f"the Feast feature server at {target} did not answer within {timeout:.0f}s ({reason}); "
            "start it (`feast -c <repo> serve`, which `mlops pipeline run --local` does) or fix the "
            "feast URL the pipeline was given"
        ) from error


def push_features(
    url: str,
    view: FeatureView,
    frame: pd.DataFrame,
    *,
    to: str = "online",
    batch_rows: int = DEFAULT_BATCH_ROWS,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> int:
    """Push every row of a view to the feature server in batches; return how many rows were sent."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    for start in range(0, len(frame), batch_rows):
        post_push(url, push_body(view, frame.iloc[start : start + batch_rows], to), timeout)
    return len(frame)
