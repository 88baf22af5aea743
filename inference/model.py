"""Serving's view of the saved model directory: modeldir's checked arrays plus the catalog (pyarrow)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import modeldir
from modeldir import (
    CATALOG_COLUMNS,
    CATALOG_FILE,
    RANK_TOWER_DTYPES,
    ModelDirError,
    RatedMovies,
    catalog_order,
)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

# Re-exported: the contract lives in modeldir; serving code and its tests name them from here.
__all__ = ["CATALOG_COLUMNS", "ModelArtifacts", "ModelDirError", "RatedMovies", "load_model_dir"]


@dataclass(frozen=True)
class ModelArtifacts:
    """Everything serving needs from the model directory, validated."""

    path: Path
    metadata: dict[str, Any]
    name: str
    version: str
    feature_names: tuple[str, ...]
    rating_range: tuple[float, float]
    movie_ids: I64
    movie_vectors: F32
    movie_bias: F32
    global_bias: float
    user_ids: I64
    user_id_vectors: F32
    user_id_bias: F32
    user_feature_weights: F32
    user_feature_bias_weights: F32
    feature_mean: F32
    feature_std: F32
    titles: list[str]
    genres: list[tuple[str, ...]]
    popularity_rank: npt.NDArray[np.int64]
    rated: RatedMovies
    warnings: list[str] = field(default_factory=list)
    # The ranking tower, when the model has one (modeldir.RANK_TOWER_DTYPES).
    rank_movie_vectors: F32 | None = None
    rank_movie_bias: F32 | None = None
    rank_user_id_vectors: F32 | None = None
    rank_user_feature_weights: F32 | None = None

    @property
    def has_ranking_tower(self) -> bool:
        """Whether top-K ranks with the ranking tower (else with the rating score)."""
        return self.rank_movie_vectors is not None


def _read_catalog(path: Path, movie_ids: I64) -> dict[str, list[Any]]:
    # pyarrow, not pandas: importing pandas costs the container seconds of start-up for one small table.
    import pyarrow.parquet as pq  # noqa: PLC0415  heavy: loads pyarrow only when called

    file = path / CATALOG_FILE
    if not file.is_file():
        raise ModelDirError(f"{file} is missing; re-export the model with training.export")
    names = pq.read_schema(file).names
    missing = [c for c in CATALOG_COLUMNS if c not in names]
    if missing:
        raise ModelDirError(f"{file} lacks the columns {missing} (contract section 3)")
    cols = pq.read_table(file, columns=list(CATALOG_COLUMNS)).to_pydict()
    order = catalog_order(cols["movie_id"], movie_ids, str(file))
    return {c: [cols[c][i] for i in order] for c in CATALOG_COLUMNS}


def load_model_dir(path: Path) -> ModelArtifacts:
    """Read and check a model directory; raises ModelDirError naming the bad file."""
    path = Path(path)
    saved = modeldir.load(path)
    meta, t = saved.metadata, saved.towers
    cat = _read_catalog(path, t["movie_ids"])
    genres = [tuple(g for g in str(s).split("|") if g) if isinstance(s, str) else () for s in cat["genres"]]
    return ModelArtifacts(
        path=path,
        metadata=meta,
        name=str(meta.get("model_name", meta.get("name", "movielens-recommender"))),
        version=str(meta.get("model_version") or meta.get("version") or "unversioned"),
        feature_names=saved.feature_names,
        rating_range=saved.rating_range,
        movie_ids=t["movie_ids"].astype(np.int64),
        movie_vectors=np.ascontiguousarray(t["movie_vectors"], np.float32),
        movie_bias=t["movie_bias"].astype(np.float32),
        global_bias=float(t["global_bias"]),
        user_ids=t["user_ids"].astype(np.int64),
        user_id_vectors=t["user_id_vectors"].astype(np.float32),
        user_id_bias=t["user_id_bias"].astype(np.float32),
        user_feature_weights=t["user_feature_weights"].astype(np.float32),
        user_feature_bias_weights=t["user_feature_bias_weights"].astype(np.float32),
        feature_mean=t["feature_mean"].astype(np.float32),
        feature_std=t["feature_std"].astype(np.float32),
        titles=[str(x) for x in cat["title"]],
        genres=genres,
        popularity_rank=np.array([-1 if r is None else r for r in cat["popularity_rank"]], np.int64),
        rated=saved.rated,
        warnings=saved.warnings,
        **{k: np.ascontiguousarray(t[k], np.float32) for k in RANK_TOWER_DTYPES if k in t},
    )
