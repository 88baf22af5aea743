"""User features at request time: one interface, adapters for Feast, SageMaker Feature Store and a file."""

from __future__ import annotations

import http.client
import json
import math
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


class FeatureLookupError(RuntimeError):
    """The store did not answer in time or answered with an error; `reason` is the fallback label."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class OnlineFeatureStore(Protocol):
    """Reads one user's features; None when the store has no record of the user."""

    name: str
    # True when a lookup blocks on the network: the server runs it in a thread, under its timeout.
    blocking: bool

    def get_user_features(self, user_id: int) -> dict[str, float] | None:
        """The user's features by name, None for an unknown user; raises FeatureLookupError on failure."""
        ...


def _number(value: object) -> float | None:
    """A finite float from a store's value, None for anything else (the feature then counts as missing)."""
    if isinstance(value, bool):
        return None
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class InMemoryFeatureStore:
    """Features from a Parquet snapshot held in memory: for development, tests and benchmarks."""

    name = "memory"
    blocking = False

    def __init__(
        self, columns: Mapping[str, Sequence[Any]], feature_names: Sequence[str], source: str = "<columns>"
    ) -> None:
        if "user_id" not in columns:
            raise ValueError(f"user features from {source} lack the user_id column; found {list(columns)}")
        names = [n for n in feature_names if n in columns]
        order = range(len(columns["user_id"]))
        if "event_timestamp" in columns:
            # Latest row per user when the snapshot holds several event times (later rows overwrite).
            ts = columns["event_timestamp"]
            order = sorted(order, key=lambda i: (ts[i] is not None, ts[i] if ts[i] is not None else 0))  # type: ignore[assignment]
        self._rows: dict[int, dict[str, float]] = {}
        for i in order:
            values = {n: f for n in names if (f := _number(columns[n][i])) is not None}
            self._rows[int(columns["user_id"][i])] = values

    @classmethod
    def from_parquet(cls, path: Path, feature_names: Sequence[str]) -> InMemoryFeatureStore:
        """Load a user-feature table (contract section 2 columns) from a Parquet file."""
        if not path.is_file():
            raise FileNotFoundError(
                f"user feature file {path} does not exist; point MLOPS_SERVE_FEATURE_SOURCE at a "
                "Parquet file of user features (e.g. the training job's features/user_features.parquet)"
            )
        import pyarrow.parquet as pq  # noqa: PLC0415  heavy: loads pyarrow only when called

        return cls(pq.read_table(path).to_pydict(), feature_names, str(path))

    def get_user_features(self, user_id: int) -> dict[str, float] | None:
        """The user's features, None for a user absent from the snapshot."""
        return self._rows.get(user_id)


class FeastHttpFeatureStore:
    """Talks to a Feast feature server (`feast serve`, POST /get-online-features) over HTTP.

    The serving image stays free of the Feast library (hundreds of MB and a slow import): one HTTP
    request per lookup, with a socket timeout, is all a container needs.
    """

    name = "feast"
    blocking = True

    def __init__(self, url: str, feature_view: str, feature_names: Sequence[str], timeout_s: float) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"Feast feature server URL {url!r} must look like http://host:6566")
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port or (443 if self._https else 80)
        self._path = parsed.path.rstrip("/") + "/get-online-features"
        self._refs = [f"{feature_view}:{n}" for n in feature_names]
        self._names = list(feature_names)
        self._timeout = timeout_s

    def get_user_features(self, user_id: int) -> dict[str, float] | None:
        """One POST /get-online-features for this user; None when Feast reports every feature NOT_FOUND."""
        body = json.dumps({"features": self._refs, "entities": {"user_id": [user_id]}})
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self._timeout)
        try:
            conn.request("POST", self._path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        except TimeoutError as e:
            raise FeatureLookupError(
                "feature_store_timeout", f"Feast at {self._host}:{self._port}: {e}"
            ) from e
        except OSError as e:
            raise FeatureLookupError("feature_store_error", f"Feast at {self._host}:{self._port}: {e}") from e
        finally:
            conn.close()
        if resp.status != 200:
            raise FeatureLookupError("feature_store_error", f"Feast answered {resp.status}: {raw[:200]!r}")
        try:
            return self._parse(json.loads(raw))
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise FeatureLookupError("feature_store_error", f"unexpected Feast response: {e}") from e

    def _parse(self, doc: dict[str, Any]) -> dict[str, float] | None:
        names = doc["metadata"]["feature_names"]
        out: dict[str, float] = {}
        found = False
        for name, result in zip(names, doc["results"], strict=True):
            if name not in self._names:
                continue  # the entity key column
            if result["statuses"][0] != "PRESENT":
                continue
            found = True
            value = _number(result["values"][0])
            if value is not None:
                out[name] = value
        return out if found else None


class SageMakerFeatureStore:
    """Reads a SageMaker Feature Store online record (`sagemaker-featurestore-runtime` GetRecord)."""

    name = "sagemaker"
    blocking = True

    def __init__(
        self,
        feature_group: str,
        feature_names: Sequence[str],
        timeout_s: float,
        client: Any = None,
        endpoint_url: str | None = None,
    ) -> None:
        if client is None:
            import boto3  # noqa: PLC0415  heavy: loads boto3 only when called
            from botocore.config import Config  # noqa: PLC0415  heavy: loads botocore only when called

            # No retries: a slow store must not hold the request past its budget; fallback answers instead.
            cfg = Config(connect_timeout=timeout_s, read_timeout=timeout_s, retries={"total_max_attempts": 1})
            client = boto3.client("sagemaker-featurestore-runtime", config=cfg, endpoint_url=endpoint_url)
        self._client = client
        self._group = feature_group
        self._names = list(feature_names)

    def get_user_features(self, user_id: int) -> dict[str, float] | None:
        """GetRecord by user id; None when the group holds no record for the user."""
        from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError  # noqa: PLC0415  heavy: loads botocore only when called

        try:
            resp = self._client.get_record(
                FeatureGroupName=self._group,
                RecordIdentifierValueAsString=str(user_id),
                FeatureNames=self._names,
            )
        except (ReadTimeoutError, ConnectTimeoutError) as e:
            raise FeatureLookupError("feature_store_timeout", f"feature group {self._group}: {e}") from e
        except ClientError as e:
            # A missing record is a 200 without `Record`; ResourceNotFound means the group itself is missing.
            raise FeatureLookupError("feature_store_error", f"feature group {self._group}: {e}") from e
        except BotoCoreError as e:
            raise FeatureLookupError("feature_store_error", f"feature group {self._group}: {e}") from e
        record = resp.get("Record") or []
        if not record:
            return None
        out: dict[str, float] = {}
        for item in record:
            value = _number(item.get("ValueAsString"))
            if value is not None:
                out[str(item["FeatureName"])] = value
        return out
