"""The SageMaker Feature Store export of the definition."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.compute import movie_features, user_features
from features.definition import FEATURE_VIEWS, feature_view
from features.sagemaker import (
    EVENT_TIME_TYPE,
    feature_definitions,
    feature_group_spec,
    feature_group_specs,
    to_record,
)


def test_every_feature_is_exported_with_its_type():
    expected = {"int64": "Integral", "float64": "Fractional", "string": "String"}
    for view in FEATURE_VIEWS:
        defs = feature_definitions(view)
        names = [d["FeatureName"] for d in defs]
        assert names == [view.join_key, view.event_time_column, *view.feature_names]
        types = {d["FeatureName"]: d["FeatureType"] for d in defs}
        assert types[view.join_key] == "Integral"
        assert types[view.event_time_column] == EVENT_TIME_TYPE == "Fractional"
        for f in view.features:
            assert types[f.name] == expected[f.dtype]


def test_group_specs():
    specs = feature_group_specs()
    assert [s["FeatureGroupName"] for s in specs] == ["user_features", "movie_features"]
    user = feature_group_spec(feature_view("user_features"))
    assert user["RecordIdentifierFeatureName"] == "user_id"
    assert user["EventTimeFeatureName"] == "event_timestamp"
    assert len(user["FeatureDefinitions"]) == 2 + 23
    assert all(len(s["Description"]) <= 128 for s in specs)
    # SageMaker caps a feature group at 2,500 features.
    assert all(len(s["FeatureDefinitions"]) <= 2500 for s in specs)


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    movies = pd.DataFrame(
        {
            "movie_id": [1, 2],
            "year": pd.array([1995, None], dtype="Int16"),
            "genres": ["Comedy", "Drama|War"],
        }
    )
    ratings = pd.DataFrame(
        {
            "user_id": [7, 7],
            "movie_id": [1, 1],
            "rating": [4.0, 3.0],
            "timestamp": [1_000_000_000, 1_000_000_100],
        }
    )
    return ratings, movies


def test_records_from_computed_rows():
    ratings, movies = _tables()
    user_row = user_features(ratings, movies).iloc[0].to_dict()
    record = {
        v["FeatureName"]: v["ValueAsString"] for v in to_record(feature_view("user_features"), user_row)
    }
    assert record["user_id"] == "7"
    assert float(record["event_timestamp"]) == 1_000_000_101.0
    assert record["user_rating_count"] == "2"
    assert float(record["user_rating_mean"]) == 3.5
    assert float(record["user_genre_affinity_comedy"]) == 1.0

    movie_rows = movie_features(ratings, movies).to_dict("records")
    unrated = {
        v["FeatureName"]: v["ValueAsString"] for v in to_record(feature_view("movie_features"), movie_rows[1])
    }
    # Null year and null mean are left out of the record: that is how SageMaker stores a null.
    assert "movie_release_year" not in unrated
    assert "movie_rating_mean" not in unrated
    assert unrated["movie_genres"] == "Drama|War"
    assert unrated["movie_popularity_rank"] == "2"
    assert math.isclose(float(unrated["movie_bayesian_rating"]), 3.5)


def test_record_refuses_wrong_types_and_shapes():
    view = feature_view("movie_features")
    ratings, movies = _tables()
    good = movie_features(ratings, movies).iloc[0].to_dict()
    with pytest.raises(TypeError, match=r"movie_features.movie_rating_count is declared int64 but got '3'"):
        to_record(view, {**good, "movie_rating_count": "3"})
    with pytest.raises(ValueError, match=r"missing \['movie_genres'\], unexpected \['genres'\]"):
        to_record(view, {**{k: v for k, v in good.items() if k != "movie_genres"}, "genres": "x"})
    with pytest.raises(ValueError, match="has no time zone"):
        to_record(view, {**good, "event_timestamp": pd.Timestamp("2001-01-01")})
    with pytest.raises(ValueError, match="has no movie_id"):
        to_record(view, {**good, "movie_id": None})
    assert to_record(view, {**good, "movie_rating_count": np.int32(3)})[2]["ValueAsString"] == "3"
