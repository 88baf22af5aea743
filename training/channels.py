"""Write the training job's channels (docs/contracts.md section 5) from the normalized tables.

One writer for both producers; only the split policy differs:
- `RANDOM_80_10_10` (the pipeline's Prepare step): a seeded random 80/10/10 split of all ratings
  into train, validation and test (the test split is Evaluate's, not a training channel).
- `LAST_PER_USER` (`mlops train local`): each user's last rating (by time, then movie id) held out
  for validation, the rest trains; no test split.
Features are computed from the training ratings only, so nothing held out leaks into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from dataset.tables import TABLE_NAMES, write_table
from features.compute import movie_features, user_features

RANDOM_FRACTIONS = (0.8, 0.1, 0.1)


class SplitPolicy(StrEnum):
    """How the ratings are split into the train, validation (and test) channels."""

    RANDOM_80_10_10 = "random-80-10-10"
    LAST_PER_USER = "last-per-user"


@dataclass(frozen=True)
class Channels:
    """What `write_channels` wrote: a directory per channel, the splits and the features."""

    paths: dict[str, Path]
    splits: dict[str, pd.DataFrame]
    features: dict[str, pd.DataFrame]


def split_ratings(ratings: pd.DataFrame, policy: SplitPolicy, seed: int = 42) -> dict[str, pd.DataFrame]:
    """Split the ratings by `policy` into train, validation and (random policy only) test."""
    if policy is SplitPolicy.LAST_PER_USER:
        ordered = ratings.sort_values(["user_id", "timestamp", "movie_id"], kind="stable")
        last = ordered.groupby("user_id").tail(1).index
        return {
            "train": ordered.drop(index=last).reset_index(drop=True),
            "validation": ordered.loc[last].reset_index(drop=True),
        }
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ratings))
    n_train = int(len(ratings) * RANDOM_FRACTIONS[0])
    n_validation = int(len(ratings) * RANDOM_FRACTIONS[1])
    parts = {
        "train": order[:n_train],
        "validation": order[n_train : n_train + n_validation],
        "test": order[n_train + n_validation :],
    }
    return {name: ratings.iloc[np.sort(idx)].reset_index(drop=True) for name, idx in parts.items()}


def write_parquet(table: str, frame: pd.DataFrame, path: Path) -> None:
    """Write one table as Parquet, with the contract's types for the data layer's tables."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if table in TABLE_NAMES:
        write_table(table, frame, path)
    else:
        frame.to_parquet(path, index=False)


def write_channels(
    ratings: pd.DataFrame,
    movies: pd.DataFrame,
    users: pd.DataFrame | None,
    dest: Path,
    policy: SplitPolicy,
    seed: int = 42,
) -> Channels:
    """Split the ratings by `policy` and write every channel under `dest` (users only when given)."""
    splits = split_ratings(ratings, policy, seed)
    paths = {name: dest / name for name in (*splits, "catalog", "features")}
    for name, frame in splits.items():
        write_parquet("ratings", frame, paths[name] / "ratings.parquet")
    write_parquet("movies", movies, paths["catalog"] / "movies.parquet")
    if users is not None:
        write_parquet("users", users, paths["catalog"] / "users.parquet")
    # Features as of the split: computed from the training ratings only, so nothing held out leaks.
    features = {
        "user_features": user_features(splits["train"], movies),
        "movie_features": movie_features(splits["train"], movies),
    }
    for name, frame in features.items():
        write_parquet(name, frame, paths["features"] / f"{name}.parquet")
    return Channels(paths=paths, splits=splits, features=features)
