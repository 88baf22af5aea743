"""Write a trained model as the saved model directory of docs/contracts.md section 3 (through modeldir)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import modeldir
from features.definition import DEFINITION_VERSION
from modeldir import CATALOG_COLUMNS, CATALOG_FILE, KERAS_FILE
from training.fit import FitResult
from training.model import RATING_RANGE

MODEL_NAME = "movielens-recommender"

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
    missing = [c for c in CATALOG_COLUMNS if c not in result.catalog.columns]
    if missing:
        raise ValueError(f"FitResult.catalog lacks the columns {missing} (docs/contracts.md section 3)")
    modeldir.write(out, doc, result.towers, result.rated)
    result.catalog.to_parquet(out / CATALOG_FILE, index=False)
    (out / KERAS_FILE).parent.mkdir(exist_ok=True)
    result.model.save(out / KERAS_FILE)
    return out
