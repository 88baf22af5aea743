"""The serving container's settings, read once from the environment and validated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A setting has a bad value; the message names the variable, the value and what is allowed."""


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not an integer; set it to a whole number in {low}..{high}"
        ) from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range; set it to a whole number in {low}..{high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to a number in {low}..{high}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range; set it to a number in {low}..{high}")
    return value


FEATURE_STORES = ("none", "memory", "feast", "sagemaker")


@dataclass(frozen=True)
class ServerConfig:
    """Limits and wiring of one server process; `from_env` is the only place that reads the environment."""

    model_dir: Path = Path("/opt/ml/model")
    host: str = "0.0.0.0"  # noqa: S104 - a container must listen on every interface for SageMaker to reach it
    port: int = 8080
    workers: int = 1
    max_batch: int = 100
    # A batch transform packs as many lines as fit in MaxPayloadInMB, so lines get their own, higher limit.
    max_lines: int = 50_000
    max_body_bytes: int = 6 * 1024 * 1024
    max_k: int = 1000
    max_movie_ids: int = 2000
    # Bounded work per request: the answer's items (sum of k and of movie_ids over every query) and
    # the request's items (queries plus movie ids), whatever the batch shape (docs/serving.md, Limits).
    max_output_items: int = 500_000
    max_input_items: int = 500_000
    # OIP tensor shapes: the rank is at most 2; each dimension and their product at most this.
    max_tensor_size: int = 500_000
    # The HTTP connection: request line plus headers, and the time a request may take to arrive whole.
    max_header_bytes: int = 64 * 1024
    request_timeout_s: float = 10.0
    feature_timeout_s: float = 0.05
    feature_store: str = "none"
    # memory: a Parquet file of user features; feast: the feature server URL; sagemaker: the group name.
    feature_source: str = ""
    feature_view: str = "user_features"
    access_log: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ServerConfig:
        """Read `MLOPS_SERVE_*` (and SageMaker's own `SAGEMAKER_*`) variables, with defaults."""
        e = os.environ if env is None else env
        store = e.get("MLOPS_SERVE_FEATURE_STORE", "none").strip().lower() or "none"
        if store not in FEATURE_STORES:
            raise ConfigError(
                f"MLOPS_SERVE_FEATURE_STORE={store!r} is not a known store; "
                f"use one of {', '.join(FEATURE_STORES)}"
            )
        source = e.get("MLOPS_SERVE_FEATURE_SOURCE", "")
        if store != "none" and not source:
            raise ConfigError(
                f"MLOPS_SERVE_FEATURE_STORE={store} needs MLOPS_SERVE_FEATURE_SOURCE: "
                "a Parquet file (memory), the feature server URL (feast) or the feature group (sagemaker)"
            )
        access_log = e.get("MLOPS_SERVE_ACCESS_LOG", "1").strip().lower()
        if access_log not in ("0", "1", "true", "false"):
            raise ConfigError(f"MLOPS_SERVE_ACCESS_LOG={access_log!r} must be 0, 1, true or false")
        values: dict[str, object] = {
            "model_dir": Path(e.get("SM_MODEL_DIR", e.get("MLOPS_SERVE_MODEL_DIR", "/opt/ml/model"))),
            "port": _int(e, "SAGEMAKER_BIND_TO_PORT", 8080, 1, 65535),
            "workers": _int(e, "SAGEMAKER_MODEL_SERVER_WORKERS", 1, 1, 64),
            "max_batch": _int(e, "MLOPS_SERVE_MAX_BATCH", 100, 1, 100_000),
            "max_lines": _int(e, "MLOPS_SERVE_MAX_LINES", 50_000, 1, 10_000_000),
            "max_body_bytes": _int(e, "MLOPS_SERVE_MAX_BODY_BYTES", 6 * 1024 * 1024, 1024, 1024**3),
            "max_k": _int(e, "MLOPS_SERVE_MAX_K", 1000, 1, 1_000_000),
            "max_movie_ids": _int(e, "MLOPS_SERVE_MAX_MOVIE_IDS", 2000, 1, 1_000_000),
            "max_output_items": _int(e, "MLOPS_SERVE_MAX_OUTPUT_ITEMS", 500_000, 1, 100_000_000),
            "max_input_items": _int(e, "MLOPS_SERVE_MAX_INPUT_ITEMS", 500_000, 1, 100_000_000),
            "max_tensor_size": _int(e, "MLOPS_SERVE_MAX_TENSOR_SIZE", 500_000, 1, 100_000_000),
            "max_header_bytes": _int(e, "MLOPS_SERVE_MAX_HEADER_BYTES", 64 * 1024, 1024, 16 * 1024**2),
            "request_timeout_s": _float(e, "MLOPS_SERVE_REQUEST_TIMEOUT_S", 10.0, 0.1, 3600.0),
            "feature_timeout_s": _float(e, "MLOPS_SERVE_FEATURE_TIMEOUT_S", 0.05, 0.001, 60.0),
            "feature_store": store,
            "feature_source": source,
            "feature_view": e.get("MLOPS_SERVE_FEATURE_VIEW", "user_features"),
            "access_log": access_log in ("1", "true"),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The environment that `from_env` reads back into this configuration (for worker processes)."""
        return {
            "SM_MODEL_DIR": str(self.model_dir),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(self.workers),
            "MLOPS_SERVE_MAX_BATCH": str(self.max_batch),
            "MLOPS_SERVE_MAX_LINES": str(self.max_lines),
            "MLOPS_SERVE_MAX_BODY_BYTES": str(self.max_body_bytes),
            "MLOPS_SERVE_MAX_K": str(self.max_k),
            "MLOPS_SERVE_MAX_MOVIE_IDS": str(self.max_movie_ids),
            "MLOPS_SERVE_MAX_OUTPUT_ITEMS": str(self.max_output_items),
            "MLOPS_SERVE_MAX_INPUT_ITEMS": str(self.max_input_items),
            "MLOPS_SERVE_MAX_TENSOR_SIZE": str(self.max_tensor_size),
            "MLOPS_SERVE_MAX_HEADER_BYTES": str(self.max_header_bytes),
            "MLOPS_SERVE_REQUEST_TIMEOUT_S": str(self.request_timeout_s),
            "MLOPS_SERVE_FEATURE_TIMEOUT_S": str(self.feature_timeout_s),
            "MLOPS_SERVE_FEATURE_STORE": self.feature_store,
            "MLOPS_SERVE_FEATURE_SOURCE": self.feature_source,
            "MLOPS_SERVE_FEATURE_VIEW": self.feature_view,
            "MLOPS_SERVE_ACCESS_LOG": "1" if self.access_log else "0",
        }
