"""The one channel writer (docs/contracts.md section 5) under both split policies."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from dataset.tables import TABLE_SCHEMAS
from tests.unit.test_training_checkpoints import synthetic_data
from training.channels import SplitPolicy, write_channels


def _all_ratings() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = synthetic_data()
    return pd.concat([data.ratings, data.validation], ignore_index=True), data.movies


def _key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["user_id", "movie_id"]).reset_index(drop=True)


def test_last_per_user_holds_out_each_users_latest_rating(tmp_path):
    ratings, movies = _all_ratings()
    written = write_channels(ratings, movies, None, tmp_path, SplitPolicy.LAST_PER_USER)
    assert set(written.paths) == {"train", "validation", "catalog", "features"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog", "features", "train", "validation"]
    validation = pd.read_parquet(written.paths["validation"] / "ratings.parquet")
    latest = ratings.loc[ratings.groupby("user_id")["timestamp"].idxmax()]
    pd.testing.assert_frame_equal(_key(validation), _key(latest))
    train = pd.read_parquet(written.paths["train"] / "ratings.parquet")
    assert len(train) + len(validation) == len(ratings)
    # No users table given, none written.
    assert [p.name for p in written.paths["catalog"].iterdir()] == ["movies.parquet"]


def test_random_split_writes_a_test_split_and_features_from_train_only(tmp_path):
    ratings, movies = _all_ratings()
    written = write_channels(ratings, movies, None, tmp_path, SplitPolicy.RANDOM_80_10_10, seed=3)
    sizes = {name: len(pd.read_parquet(written.paths[name] / "ratings.parquet")) for name in written.splits}
    n = len(ratings)
    assert sizes == {
        "train": int(n * 0.8),
        "validation": int(n * 0.1),
        "test": n - int(n * 0.8) - int(n * 0.1),
    }
    users = pd.read_parquet(written.paths["features"] / "user_features.parquet")
    assert int(users["user_rating_count"].sum()) == sizes["train"]


def test_ratings_are_written_with_the_contract_schema(tmp_path):
    ratings, movies = _all_ratings()
    # pandas' default integer width, which the contract narrows to int32.
    ratings = ratings.astype({"user_id": "int64", "movie_id": "int64"})
    written = write_channels(ratings, movies, None, tmp_path, SplitPolicy.LAST_PER_USER)
    schema = pq.read_schema(written.paths["train"] / "ratings.parquet")
    assert schema.remove_metadata().equals(TABLE_SCHEMAS["ratings"].remove_metadata())
