"""Write a trained model as the saved model directory of docs/contracts.md section 3."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from features.definition import DEFINITION_VERSION
from training.fit import FitResult
from training.model import RATING_RANGE

MODEL_NAME = "movielens-recommender"

TOWER_DTYPES: dict[str, type[np.generic]] = {
    "movie_ids": np.int64,
    "movie_vectors": np.float32,
    "movie_bias": np.float32,
    "global_bias": np.float32,
    "user_ids": np.int64,
    "user_id_vectors": np.float32,
    "user_id_bias": np.float32,
    "user_feature_weights": np.float32,
    "user_feature_bias_weights": np.float32,
    "feature_mean": np.float32,
    "feature_std": np.float32,
}

# The ranking tower (docs/contracts.md section 3): present when the model was trained with
# ranking_weight > 0; all four or none.
RANK_TOWER_DTYPES: dict[str, type[np.generic]] = {
    "rank_movie_vectors": np.float32,
    "rank_movie_bias": np.float32,
    "rank_user_id_vectors": np.float32,
    "rank_user_feature_weights": np.float32,
}

# Written from the model itself; a caller's metadata may not contradict them.
_DERIVED_KEYS = (
    "user_feature_names",
    "embedding_dim",
    "ranking_dim",
    "rating_range",
    "hyperparameters",
    "feature_definition_version",
)


def export_model_dir(result: FitResult, out_dir: Path, *, metadata: dict[str, Any]) -> Path:
    """Write metadata.json, catalog.parquet, towers.npz, rated.npz and keras/model.keras into `out_dir`.

    `metadata` carries what only the caller knows (git_commit, mlflow_run_id, model_version, metrics
    computed elsewhere, lineage); keys the model determines itself are refused if they disagree.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hp = result.hyperparameters
    derived: dict[str, Any] = {
        "user_feature_names": list(result.user_feature_names),
        "embedding_dim": int(result.towers["movie_vectors"].shape[1]),
        "ranking_dim": (
            int(result.towers["rank_movie_vectors"].shape[1])
            if "rank_movie_vectors" in result.towers
            else None
        ),
        "rating_range": [float(RATING_RANGE[0]), float(RATING_RANGE[1])],
        "hyperparameters": hp.model_dump(),
        "feature_definition_version": DEFINITION_VERSION,
    }
    for key in _DERIVED_KEYS:
        if key in metadata and metadata[key] != derived[key]:
            raise ValueError(
                f"metadata[{key!r}] = {metadata[key]!r} contradicts the trained model's {derived[key]!r}; "
                "leave it out: export_model_dir writes it from the model"
            )
    caller_metrics = metadata.get("metrics", {})
    if not isinstance(caller_metrics, dict):
        raise ValueError(f"metadata['metrics'] must be a dict of name -> number, got {caller_metrics!r}")
    doc: dict[str, Any] = {
        "model_name": MODEL_NAME,
        "model_version": None,
        "dataset": hp.dataset,
        "dataset_version": hp.dataset_version,
        "git_commit": None,
        "mlflow_run_id": None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **{k: v for k, v in metadata.items() if k != "metrics"},
        **derived,
        "metrics": {**result.metrics, **caller_metrics},
        "epochs_run": result.epochs_run,
    }
    towers = _checked_towers(result)
    np.savez(out / "towers.npz", **towers)  # type: ignore[arg-type]
    np.savez(out / "rated.npz", **_checked_rated(result, towers))  # type: ignore[arg-type]
    result.catalog.to_parquet(out / "catalog.parquet", index=False)
    (out / "keras").mkdir(exist_ok=True)
    result.model.save(out / "keras" / "model.keras")
    (out / "metadata.json").write_text(
        json.dumps(doc, indent=2, sort_keys=True, default=_json_default) + "\n"
    )
    return out


def _json_default(value: object) -> object:
    # NumPy scalars in metrics or lineage values from the caller.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"metadata value {value!r} of type {type(value).__name__} is not JSON serializable")


def _checked_towers(result: FitResult) -> dict[str, np.ndarray]:
    towers = result.towers
    missing = sorted(set(TOWER_DTYPES) - set(towers))
    if missing:
        raise ValueError(
            f"FitResult.towers lacks {missing}; it must hold every key of docs/contracts.md section 3"
        )
    out = {k: np.asarray(towers[k]).astype(dt) for k, dt in TOWER_DTYPES.items()}
    rank_present = sorted(set(RANK_TOWER_DTYPES) & set(towers))
    if rank_present and len(rank_present) != len(RANK_TOWER_DTYPES):
        raise ValueError(
            f"FitResult.towers holds only {rank_present} of the ranking tower's "
            f"{sorted(RANK_TOWER_DTYPES)}; a model has all of them or none"
        )
    if rank_present:
        out.update({k: np.asarray(towers[k]).astype(dt) for k, dt in RANK_TOWER_DTYPES.items()})
    n, d = out["movie_vectors"].shape
    u = out["user_ids"].shape[0]
    f = out["feature_mean"].shape[0]
    expected = {
        "movie_ids": (n,),
        "movie_bias": (n,),
        "global_bias": (),
        "user_id_vectors": (u, d),
        "user_id_bias": (u,),
        "user_feature_weights": (f, d),
        "user_feature_bias_weights": (f,),
        "feature_std": (f,),
    }
    if rank_present:
        r = out["rank_movie_vectors"].shape[1] if out["rank_movie_vectors"].ndim == 2 else -1
        expected.update(
            rank_movie_vectors=(n, r),
            rank_movie_bias=(n,),
            rank_user_id_vectors=(u, r),
            rank_user_feature_weights=(f, r),
        )
    for key, shape in expected.items():
        if out[key].shape != shape:
            raise ValueError(f"towers[{key!r}] has shape {out[key].shape}, expected {shape}")
    if len(result.user_feature_names) != f:
        raise ValueError(f"{len(result.user_feature_names)} user feature names for {f} feature weights")
    for key, arr in out.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(
                f"towers[{key!r}] holds non-finite values: training diverged, lower learning_rate"
            )
    return out


def _checked_rated(result: FitResult, towers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ids = np.asarray(result.rated["user_ids"], dtype=np.int64)
    ptr = np.asarray(result.rated["indptr"], dtype=np.int64)
    idx = np.asarray(result.rated["movie_idx"], dtype=np.int32)
    if ids.size > 1 and not (np.diff(ids) > 0).all():
        raise ValueError("rated.user_ids must be strictly ascending")
    if ptr.shape != (ids.size + 1,) or ptr[0] != 0 or ptr[-1] != idx.size or (np.diff(ptr) < 0).any():
        raise ValueError("rated.indptr is not a valid CSR row pointer for rated.user_ids")
    if idx.size and (idx.min() < 0 or idx.max() >= towers["movie_ids"].size):
        raise ValueError("rated.movie_idx points outside the catalog")
    return {"user_ids": ids, "indptr": ptr, "movie_idx": idx}
