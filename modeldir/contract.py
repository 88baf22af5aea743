"""The saved model directory's keys, dtypes and shapes (docs/contracts.md section 3), and their checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

METADATA_FILE = "metadata.json"
TOWERS_FILE = "towers.npz"
RATED_FILE = "rated.npz"
CATALOG_FILE = "catalog.parquet"
KERAS_FILE = "keras/model.keras"

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
# The ranking tower: present when the model was trained with ranking_weight > 0; all four or none.
# Without it, top-K ranks by the rating score.
RANK_TOWER_DTYPES: dict[str, type[np.generic]] = {
    "rank_movie_vectors": np.float32,
    "rank_movie_bias": np.float32,
    "rank_user_id_vectors": np.float32,
    "rank_user_feature_weights": np.float32,
}
RATED_DTYPES: dict[str, type[np.generic]] = {
    "user_ids": np.int64,
    "indptr": np.int64,
    "movie_idx": np.int32,
}
CATALOG_COLUMNS = ("movie_id", "title", "year", "genres", "popularity_rank")
# Keys metadata.json must hold for the directory to be scored at all.
REQUIRED_METADATA = ("user_feature_names", "rating_range")

Arrays = dict[str, npt.NDArray[Any]]


class ModelDirError(ValueError):
    """The model directory breaks the contract; the message names the file and the problem."""


def check_metadata(meta: object, where: str) -> dict[str, Any]:
    """The metadata document, checked for the keys scoring needs (user_feature_names, rating_range)."""
    if not isinstance(meta, dict):
        raise ModelDirError(f"{where} must hold a JSON object, found {type(meta).__name__}")
    for key in REQUIRED_METADATA:
        if key not in meta:
            raise ModelDirError(f"{where} lacks the key {key!r} (contract section 3); re-export the model")
    names = meta["user_feature_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelDirError(f"{where}: user_feature_names must be a list of strings, found {names!r}")
    rr = meta["rating_range"]
    if not (
        isinstance(rr, list | tuple)
        and len(rr) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in rr)
        and rr[0] < rr[1]
    ):
        raise ModelDirError(f"{where}: rating_range must be [low, high] with low < high, found {rr!r}")
    return meta


def _expected_shapes(t: Arrays, n_features: int) -> tuple[dict[str, tuple[int, ...]], str]:
    n, d = t["movie_vectors"].shape if t["movie_vectors"].ndim == 2 else (-1, -1)
    u = t["user_ids"].shape[0] if t["user_ids"].ndim == 1 else -1
    f = n_features
    expected: dict[str, tuple[int, ...]] = {
        "movie_ids": (n,),
        "movie_vectors": (n, d),
        "movie_bias": (n,),
        "global_bias": (),
        "user_ids": (u,),
        "user_id_vectors": (u, d),
        "user_id_bias": (u,),
        "user_feature_weights": (f, d),
        "user_feature_bias_weights": (f,),
        "feature_mean": (f,),
        "feature_std": (f,),
    }
    if "rank_movie_vectors" in t:
        r = t["rank_movie_vectors"].shape[1] if t["rank_movie_vectors"].ndim == 2 else -1
        expected.update(
            rank_movie_vectors=(n, r),
            rank_movie_bias=(n,),
            rank_user_id_vectors=(u, r),
            rank_user_feature_weights=(f, r),
        )
    return expected, f"n={n} movies, d={d}, u={u} users, f={f} user features"


def check_towers(towers: Mapping[str, Any], n_features: int, where: str) -> Arrays:
    """The towers cast to their contract dtypes, after checking keys, shapes and values."""
    missing = [k for k in TOWER_DTYPES if k not in towers]
    if missing:
        raise ModelDirError(f"{where} lacks the arrays {missing} (contract section 3); re-export the model")
    rank = [k for k in RANK_TOWER_DTYPES if k in towers]
    if rank and len(rank) != len(RANK_TOWER_DTYPES):
        absent = [k for k in RANK_TOWER_DTYPES if k not in rank]
        raise ModelDirError(
            f"{where} holds the ranking arrays {rank} but lacks {absent}; a model has all of "
            f"{list(RANK_TOWER_DTYPES)} or none (contract section 3); re-export the model"
        )
    dtypes = {**TOWER_DTYPES, **{k: RANK_TOWER_DTYPES[k] for k in rank}}
    t: Arrays = {k: np.asarray(towers[k]).astype(dt) for k, dt in dtypes.items()}
    expected, sizes = _expected_shapes(t, n_features)
    for key, shape in expected.items():
        if t[key].shape != shape:
            raise ModelDirError(f"{where}: {key} has shape {t[key].shape}, expected {shape} ({sizes})")
    if t["movie_ids"].size == 0:
        raise ModelDirError(
            f"{where}: the catalog is empty (movie_vectors has shape {t['movie_vectors'].shape})"
        )
    if (
        np.unique(t["movie_ids"]).size != t["movie_ids"].size
        or np.unique(t["user_ids"]).size != t["user_ids"].size
    ):
        raise ModelDirError(f"{where}: movie_ids and user_ids must hold no duplicates")
    for key, arr in t.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ModelDirError(
                f"{where}: {key} holds NaN or infinite values; the model did not train cleanly "
                "(lower learning_rate and retrain)"
            )
    if (t["feature_std"] <= 0).any():
        raise ModelDirError(f"{where}: feature_std must be positive, found {t['feature_std'].tolist()}")
    return t


def check_rated(rated: Mapping[str, Any], n_movies: int, where: str) -> Arrays:
    """The user -> rated catalog rows CSR arrays, cast and checked against a catalog of `n_movies`."""
    missing = [k for k in RATED_DTYPES if k not in rated]
    if missing:
        raise ModelDirError(f"{where} lacks the arrays {missing} (contract section 3); re-export the model")
    users, indptr, idx = (np.asarray(rated[k]).astype(dt) for k, dt in RATED_DTYPES.items())
    if (
        users.ndim != 1
        or indptr.shape != (users.size + 1,)
        or indptr[0] != 0
        or indptr[-1] != idx.size
        or (np.diff(indptr) < 0).any()
    ):
        raise ModelDirError(
            f"{where}: indptr must have len(user_ids)+1={users.size + 1} non-decreasing entries from 0 to "
            f"len(movie_idx)={idx.size}; found {indptr.size} entries"
        )
    if users.size > 1 and (np.diff(users) <= 0).any():
        raise ModelDirError(f"{where}: user_ids must be strictly ascending")
    if idx.size and (idx.min() < 0 or idx.max() >= n_movies):
        raise ModelDirError(f"{where}: movie_idx must index the {n_movies} catalog rows of towers.npz")
    return {"user_ids": users, "indptr": indptr, "movie_idx": idx}


def catalog_order(
    catalog_movie_ids: Sequence[int], movie_ids: npt.NDArray[np.int64], where: str
) -> list[int]:
    """Catalog row of each towers movie, in towers order (row i of every array is then the same movie)."""
    row_of: dict[int, int] = {}
    for i, m in enumerate(catalog_movie_ids):
        row_of.setdefault(int(m), i)
    absent = [m for m in movie_ids.tolist() if m not in row_of]
    if absent:
        raise ModelDirError(f"{where} lacks {len(absent)} movies of towers.npz, e.g. {absent[:5]}")
    return [row_of[m] for m in movie_ids.tolist()]
