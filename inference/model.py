"""Load and validate the saved model directory (docs/contracts.md section 3) into NumPy arrays."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger("inference.model")

TOWER_KEYS = (
    "movie_ids",
    "movie_vectors",
    "movie_bias",
    "global_bias",
    "user_ids",
    "user_id_vectors",
    "user_id_bias",
    "user_feature_weights",
    "user_feature_bias_weights",
    "feature_mean",
    "feature_std",
)
# The ranking tower (contract section 3): all four or none. Without it, top-K ranks by the rating score.
RANK_TOWER_KEYS = (
    "rank_movie_vectors",
    "rank_movie_bias",
    "rank_user_id_vectors",
    "rank_user_feature_weights",
)
CATALOG_COLUMNS = ("movie_id", "title", "year", "genres", "popularity_rank")

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class ModelDirError(ValueError):
    """The model directory breaks the contract; the message names the file and the problem."""


@dataclass(frozen=True)
class RatedMovies:
    """User -> catalog rows the user rated, as CSR arrays (contract section 3, `rated.npz`)."""

    user_ids: I64
    indptr: I64
    movie_idx: npt.NDArray[np.int32]

    @classmethod
    def empty(cls) -> RatedMovies:
        """No user has rated anything (used when the model directory has no `rated.npz`)."""
        return cls(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int32))

    def rows_of(self, user_id: int) -> npt.NDArray[np.int32]:
        """Catalog rows the user rated (empty for a user the model never saw)."""
        i = int(np.searchsorted(self.user_ids, user_id))
        if i >= len(self.user_ids) or self.user_ids[i] != user_id:
            return self.movie_idx[:0]
        return self.movie_idx[self.indptr[i] : self.indptr[i + 1]]


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
    # The ranking tower, when the model has one (see RANK_TOWER_KEYS).
    rank_movie_vectors: F32 | None = None
    rank_movie_bias: F32 | None = None
    rank_user_id_vectors: F32 | None = None
    rank_user_feature_weights: F32 | None = None

    @property
    def has_ranking_tower(self) -> bool:
        """Whether top-K ranks with the ranking tower (else with the rating score)."""
        return self.rank_movie_vectors is not None


def _read_metadata(path: Path) -> dict[str, Any]:
    file = path / "metadata.json"
    if not file.is_file():
        raise ModelDirError(
            f"{file} is missing; point the server at a model directory written by training.export"
        )
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ModelDirError(f"{file} is not valid JSON ({e}); re-export the model") from None
    if not isinstance(meta, dict):
        raise ModelDirError(f"{file} must hold a JSON object, found {type(meta).__name__}")
    for key in ("user_feature_names", "rating_range"):
        if key not in meta:
            raise ModelDirError(f"{file} lacks the key {key!r} (contract section 3); re-export the model")
    names = meta["user_feature_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelDirError(f"{file}: user_feature_names must be a list of strings, found {names!r}")
    rr = meta["rating_range"]
    if not (
        isinstance(rr, list)
        and len(rr) == 2
        and all(isinstance(x, int | float) for x in rr)
        and rr[0] < rr[1]
    ):
        raise ModelDirError(f"{file}: rating_range must be [low, high] with low < high, found {rr!r}")
    return meta


def _read_towers(path: Path, n_features: int) -> dict[str, np.ndarray]:  # type: ignore[type-arg]
    file = path / "towers.npz"
    if not file.is_file():
        raise ModelDirError(f"{file} is missing; re-export the model with training.export")
    with np.load(file, allow_pickle=False) as npz:
        missing = [k for k in TOWER_KEYS if k not in npz.files]
        if missing:
            raise ModelDirError(
                f"{file} lacks the arrays {missing} (contract section 3); re-export the model"
            )
        t = {k: npz[k] for k in TOWER_KEYS}
        rank = [k for k in RANK_TOWER_KEYS if k in npz.files]
        if rank and len(rank) != len(RANK_TOWER_KEYS):
            absent = [k for k in RANK_TOWER_KEYS if k not in rank]
            raise ModelDirError(
                f"{file} holds the ranking arrays {rank} but lacks {absent}; a model has all of "
                f"{list(RANK_TOWER_KEYS)} or none (contract section 3); re-export the model"
            )
        t.update({k: npz[k] for k in rank})
    n, d = t["movie_vectors"].shape if t["movie_vectors"].ndim == 2 else (-1, -1)
    u = len(t["user_ids"])
    expected = {
        "movie_ids": (n,),
        "movie_vectors": (n, d),
        "movie_bias": (n,),
        "global_bias": (),
        "user_ids": (u,),
        "user_id_vectors": (u, d),
        "user_id_bias": (u,),
        "user_feature_weights": (n_features, d),
        "user_feature_bias_weights": (n_features,),
        "feature_mean": (n_features,),
        "feature_std": (n_features,),
    }
    if "rank_movie_vectors" in t:
        r = t["rank_movie_vectors"].shape[1] if t["rank_movie_vectors"].ndim == 2 else -1
        expected.update(
            rank_movie_vectors=(n, r),
            rank_movie_bias=(n,),
            rank_user_id_vectors=(u, r),
            rank_user_feature_weights=(n_features, r),
        )
    for key, shape in expected.items():
        if t[key].shape != shape:
            raise ModelDirError(
                f"{file}: {key} has shape {t[key].shape}, expected {shape} "
                f"(n={n} movies, d={d}, u={u} users, f={n_features} user features in metadata.json)"
            )
    if n <= 0:
        raise ModelDirError(
            f"{file}: the catalog is empty (movie_vectors has shape {t['movie_vectors'].shape})"
        )
    if len(np.unique(t["movie_ids"])) != n or len(np.unique(t["user_ids"])) != u:
        raise ModelDirError(f"{file}: movie_ids and user_ids must hold no duplicates")
    for key in t:
        if t[key].dtype.kind == "f" and not np.all(np.isfinite(t[key])):
            raise ModelDirError(
                f"{file}: {key} holds NaN or infinite values; the model did not train cleanly"
            )
    if np.any(t["feature_std"] <= 0):
        raise ModelDirError(f"{file}: feature_std must be positive, found {t['feature_std'].tolist()}")
    return t


def _read_rated(path: Path, n_movies: int, warnings: list[str]) -> RatedMovies:
    file = path / "rated.npz"
    if not file.is_file():
        msg = f"{file} is missing: every user counts as having rated nothing (top-K may hold rated movies)"
        log.warning(msg)
        warnings.append(msg)
        return RatedMovies.empty()
    with np.load(file, allow_pickle=False) as npz:
        missing = [k for k in ("user_ids", "indptr", "movie_idx") if k not in npz.files]
        if missing:
            raise ModelDirError(
                f"{file} lacks the arrays {missing} (contract section 3); re-export the model"
            )
        users = npz["user_ids"].astype(np.int64)
        indptr = npz["indptr"].astype(np.int64)
        idx = npz["movie_idx"].astype(np.int32)
    if (
        len(indptr) != len(users) + 1
        or indptr[0] != 0
        or indptr[-1] != len(idx)
        or np.any(np.diff(indptr) < 0)
    ):
        raise ModelDirError(
            f"{file}: indptr must have len(user_ids)+1={len(users) + 1} non-decreasing entries from 0 to "
            f"len(movie_idx)={len(idx)}; found {len(indptr)} entries"
        )
    if len(users) > 1 and np.any(np.diff(users) <= 0):
        raise ModelDirError(f"{file}: user_ids must be strictly ascending")
    if len(idx) and (idx.min() < 0 or idx.max() >= n_movies):
        raise ModelDirError(f"{file}: movie_idx must index the {n_movies} catalog rows of towers.npz")
    return RatedMovies(users, indptr, idx)


def _read_catalog(path: Path, movie_ids: I64) -> dict[str, list[Any]]:
    # pyarrow, not pandas: importing pandas costs the container seconds of start-up for one small table.
    import pyarrow.parquet as pq

    file = path / "catalog.parquet"
    if not file.is_file():
        raise ModelDirError(f"{file} is missing; re-export the model with training.export")
    names = pq.read_schema(file).names
    missing = [c for c in CATALOG_COLUMNS if c not in names]
    if missing:
        raise ModelDirError(f"{file} lacks the columns {missing} (contract section 3)")
    cols = pq.read_table(file, columns=list(CATALOG_COLUMNS)).to_pydict()
    row_of: dict[int, int] = {}
    for i, m in enumerate(cols["movie_id"]):
        row_of.setdefault(int(m), i)
    absent = [m for m in movie_ids.tolist() if m not in row_of]
    if absent:
        raise ModelDirError(f"{file} lacks {len(absent)} movies of towers.npz, e.g. {absent[:5]}")
    # Reorder to the towers' row order so that row i of every array is the same movie.
    order = [row_of[m] for m in movie_ids.tolist()]
    return {c: [cols[c][i] for i in order] for c in CATALOG_COLUMNS}


def load_model_dir(path: Path) -> ModelArtifacts:
    """Read and check a model directory; raises ModelDirError naming the bad file."""
    path = Path(path)
    if not path.is_dir():
        raise ModelDirError(f"model directory {path} does not exist; train and export a model first")
    meta = _read_metadata(path)
    names = tuple(meta["user_feature_names"])
    t = _read_towers(path, len(names))
    warnings: list[str] = []
    cat = _read_catalog(path, t["movie_ids"])
    rated = _read_rated(path, len(t["movie_ids"]), warnings)
    genres = [tuple(g for g in str(s).split("|") if g) if isinstance(s, str) else () for s in cat["genres"]]
    return ModelArtifacts(
        path=path,
        metadata=meta,
        name=str(meta.get("model_name", meta.get("name", "movielens-recommender"))),
        version=str(meta.get("model_version") or meta.get("version") or "unversioned"),
        feature_names=names,
        rating_range=(float(meta["rating_range"][0]), float(meta["rating_range"][1])),
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
        rated=rated,
        warnings=warnings,
        **{k: np.ascontiguousarray(t[k], np.float32) for k in RANK_TOWER_KEYS if k in t},
    )
