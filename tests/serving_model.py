"""A model directory written per docs/contracts.md section 3 with random but valid towers.

A legitimate fixture for testing the server on its own; the integration tests and the benchmark use
a really trained model when `training.export` is available.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

GENRES = ("Action", "Comedy", "Drama", "Romance", "Sci-Fi")
FEATURES = ("user_rating_count", "user_rating_mean", "user_rating_std")


def write_model_dir(
    path: Path, n_movies: int = 50, n_users: int = 20, dim: int = 8, seed: int = 0, rated: bool = True
) -> Path:
    """Write a complete model directory and return its path."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    movie_ids = np.arange(1, n_movies + 1, dtype=np.int64) * 10  # ids are not row numbers
    user_ids = np.arange(1, n_users + 1, dtype=np.int64)
    f = len(FEATURES)
    np.savez(
        path / "towers.npz",
        movie_ids=movie_ids,
        movie_vectors=rng.normal(0, 0.3, (n_movies, dim)).astype(np.float32),
        movie_bias=rng.normal(0, 0.2, n_movies).astype(np.float32),
        global_bias=np.float32(3.5),
        user_ids=user_ids,
        user_id_vectors=rng.normal(0, 0.3, (n_users, dim)).astype(np.float32),
        user_id_bias=rng.normal(0, 0.2, n_users).astype(np.float32),
        user_feature_weights=rng.normal(0, 0.3, (f, dim)).astype(np.float32),
        user_feature_bias_weights=rng.normal(0, 0.1, f).astype(np.float32),
        feature_mean=np.array([50.0, 3.5, 1.0], np.float32),
        feature_std=np.array([30.0, 0.5, 0.3], np.float32),
    )
    genres = [
        "|".join(g for j, g in enumerate(GENRES) if (i >> j) & 1 or j == i % 5) for i in range(n_movies)
    ]
    pd.DataFrame(
        {
            "movie_id": movie_ids.astype(np.int32),
            "title": [f"Movie {m}" for m in movie_ids],
            "year": pd.array([1990 + i % 10 for i in range(n_movies)], dtype="Int16"),
            "genres": genres,
            "popularity_rank": np.arange(1, n_movies + 1, dtype=np.int64),
        }
    ).to_parquet(path / "catalog.parquet")
    if rated:
        # User u rated catalog rows u-1, u, u+1 (mod n): a known, checkable set.
        idx = [sorted({(u - 1) % n_movies, u % n_movies, (u + 1) % n_movies}) for u in range(1, n_users + 1)]
        np.savez(
            path / "rated.npz",
            user_ids=user_ids,
            indptr=np.concatenate([[0], np.cumsum([len(r) for r in idx])]).astype(np.int64),
            movie_idx=np.concatenate(idx).astype(np.int32),
        )
    (path / "metadata.json").write_text(
        json.dumps(
            {
                "model_name": "movielens-recommender",
                "model_version": "test-1",
                "user_feature_names": list(FEATURES),
                "embedding_dim": dim,
                "rating_range": [1.0, 5.0],
            }
        )
    )
    return path


def write_user_features(path: Path, user_ids: list[int]) -> Path:
    """A user-feature Parquet file (contract section 2 columns used by the fixture model)."""
    rng = np.random.default_rng(1)
    n = len(user_ids)
    pd.DataFrame(
        {
            "user_id": np.asarray(user_ids, np.int64),
            "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC"),
            "user_rating_count": rng.integers(1, 200, n).astype(np.int64),
            "user_rating_mean": rng.uniform(1, 5, n),
            "user_rating_std": rng.uniform(0.1, 1.5, n),
        }
    ).to_parquet(path)
    return path


def add_ranking_tower(d: Path, dim: int = 6, seed: int = 3) -> Path:
    """Add the contract's ranking arrays (random, valid) to a model directory written by write_model_dir."""
    t = dict(np.load(d / "towers.npz"))
    rng = np.random.default_rng(seed)
    n, u, f = len(t["movie_ids"]), len(t["user_ids"]), len(t["feature_mean"])
    t.update(
        rank_movie_vectors=rng.normal(0, 1.0, (n, dim)).astype(np.float32),
        rank_movie_bias=rng.normal(0, 1.0, n).astype(np.float32),
        rank_user_id_vectors=rng.normal(0, 1.0, (u, dim)).astype(np.float32),
        rank_user_feature_weights=rng.normal(0, 1.0, (f, dim)).astype(np.float32),
    )
    np.savez(d / "towers.npz", **t)
    return d


# Catalog rows whose rating score add_rating_extremes pushes out of [1, 5]: above, then below.
ABOVE_RANGE_ROWS = (0, 1)
BELOW_RANGE_ROWS = (2, 3)


def add_rating_extremes(d: Path, push: float = 10.0) -> Path:
    """Push the raw rating score of some catalog movies above 5 and of others below 1, for every user.

    The fixture's other scores lie inside [1, 5], so without this no test sees the clip at work.
    `push` dwarfs every user's term (|user bias + user . movie| < 3 in write_model_dir's towers).
    """
    t = dict(np.load(d / "towers.npz"))
    bias = t["movie_bias"].copy()
    bias[list(ABOVE_RANGE_ROWS)] = push
    bias[list(BELOW_RANGE_ROWS)] = -push
    t["movie_bias"] = bias.astype(np.float32)
    np.savez(d / "towers.npz", **t)
    return d
