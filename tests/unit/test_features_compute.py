"""Feature computation on tiny hand-made tables, with every expected value worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.compute import (
    default_as_of,
    feature_snapshots,
    genre_matrix,
    movie_features,
    snapshot_times,
    user_features,
)
from features.definition import FEATURE_VIEWS, GENRES, feature_view
from tests.hypothesis_budget import examples

T0 = 1_000_000_000  # 2001-09-09 01:46:40 UTC
DAY = 86_400


def ts(seconds: int) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")


@pytest.fixture
def movies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "movie_id": pd.array([1, 2, 3, 4], dtype="int32"),
            "title": ["A", "B", "C", "D"],
            "year": pd.array([1995, None, 2000, 1980], dtype="Int16"),
            "genres": pd.array(["Action|Comedy", "Drama", "Sci-Fi", ""], dtype="string"),
        }
    )


@pytest.fixture
def ratings() -> pd.DataFrame:
    rows = [
        (1, 1, 4.0, T0 + 100),
        (2, 1, 5.0, T0 + 150),
        (1, 2, 2.0, T0 + 200),
        (1, 3, 3.0, T0 + 2 * DAY),
    ]
    return pd.DataFrame(
        {
            "user_id": pd.array([r[0] for r in rows], dtype="int32"),
            "movie_id": pd.array([r[1] for r in rows], dtype="int32"),
            "rating": pd.array([r[2] for r in rows], dtype="float32"),
            "timestamp": pd.array([r[3] for r in rows], dtype="int64"),
        }
    )


def row(frame: pd.DataFrame, key: str, value: int) -> pd.Series:
    matches = frame[frame[key] == value]
    assert len(matches) == 1, f"expected one row for {key}={value}, got {len(matches)}"
    return matches.iloc[0]


def test_rating_at_exactly_as_of_is_excluded(ratings, movies):
    out = user_features(ratings, movies, as_of=ts(T0 + 200))
    assert out["user_id"].tolist() == [1, 2]
    u1 = row(out, "user_id", 1)
    assert u1["user_rating_count"] == 1
    assert u1["user_rating_mean"] == 4.0
    assert u1["user_rating_std"] == 0.0
    assert u1["user_days_since_last_rating"] == pytest.approx(100 / DAY)
    assert u1["user_genre_affinity_action"] == 1.0
    assert u1["user_genre_affinity_comedy"] == 1.0
    assert u1["user_genre_affinity_drama"] == 0.0
    assert out["event_timestamp"].unique().tolist() == [ts(T0 + 200)]


def test_user_features_one_second_later(ratings, movies):
    u1 = row(user_features(ratings, movies, as_of=ts(T0 + 201)), "user_id", 1)
    assert u1["user_rating_count"] == 2
    assert u1["user_rating_mean"] == 3.0
    assert u1["user_rating_std"] == 1.0  # population std of {4, 2}
    assert u1["user_days_since_last_rating"] == pytest.approx(1 / DAY)
    assert u1["user_genre_affinity_action"] == 0.5
    assert u1["user_genre_affinity_drama"] == 0.5
    assert u1["user_genre_affinity_sci_fi"] == 0.0


def test_user_features_default_as_of_uses_every_rating(ratings, movies):
    out = user_features(ratings, movies)
    assert out["event_timestamp"].iloc[0] == ts(T0 + 2 * DAY + 1)
    u1 = row(out, "user_id", 1)
    assert u1["user_rating_count"] == 3
    assert u1["user_rating_mean"] == 3.0
    assert u1["user_rating_std"] == pytest.approx(math.sqrt(2 / 3))
    assert u1["user_genre_affinity_sci_fi"] == pytest.approx(1 / 3)
    assert u1["user_genre_affinity_unknown"] == 0.0
    u2 = row(out, "user_id", 2)
    assert u2["user_days_since_last_rating"] == pytest.approx((2 * DAY + 1 - 150) / DAY)


def test_user_without_earlier_ratings_has_no_row(ratings, movies):
    out = user_features(ratings, movies, as_of=ts(T0 + 120))
    assert out["user_id"].tolist() == [1]
    empty = user_features(ratings, movies, as_of=ts(T0))
    assert empty.empty
    assert list(empty.columns) == ["user_id", "event_timestamp", *feature_view("user_features").feature_names]


def test_movie_features_by_hand(ratings, movies):
    out = movie_features(ratings, movies, as_of=ts(T0 + 201))
    assert out["movie_id"].tolist() == [1, 2, 3, 4]
    m = 11 / 3  # mean of 4, 5, 2
    m1 = row(out, "movie_id", 1)
    assert m1["movie_rating_count"] == 2
    assert m1["movie_rating_mean"] == 4.5
    assert m1["movie_bayesian_rating"] == pytest.approx((10 * m + 9) / 12)
    assert m1["movie_genres"] == "Action|Comedy"
    assert m1["movie_release_year"] == 1995
    assert m1["movie_popularity_rank"] == 1
    m2 = row(out, "movie_id", 2)
    assert m2["movie_bayesian_rating"] == pytest.approx((10 * m + 2) / 11)
    assert pd.isna(m2["movie_release_year"])
    assert m2["movie_popularity_rank"] == 2
    m3 = row(out, "movie_id", 3)
    assert m3["movie_rating_count"] == 0
    assert math.isnan(m3["movie_rating_mean"])
    assert m3["movie_bayesian_rating"] == pytest.approx(m)
    # Movies 3 and 4 both have no rating yet: the lower id ranks first.
    assert m3["movie_popularity_rank"] == 3
    assert row(out, "movie_id", 4)["movie_popularity_rank"] == 4
    assert row(out, "movie_id", 4)["movie_genres"] == ""


def test_movie_rank_ties_go_to_lower_id(ratings, movies):
    out = movie_features(ratings, movies)  # movies 2 and 3 have one rating each
    assert out.set_index("movie_id")["movie_popularity_rank"].to_dict() == {1: 1, 2: 2, 3: 3, 4: 4}


def test_movie_features_need_an_earlier_rating(ratings, movies):
    with pytest.raises(ValueError, match="no rating before as_of"):
        movie_features(ratings, movies, as_of=ts(T0))


def test_columns_and_dtypes_follow_the_definition(ratings, movies):
    kinds = {"int64": "iu", "float64": "f", "string": "OSU"}
    for view, frame in (
        (feature_view("user_features"), user_features(ratings, movies)),
        (feature_view("movie_features"), movie_features(ratings, movies)),
    ):
        assert list(frame.columns) == [view.join_key, view.event_time_column, *view.feature_names]
        assert str(frame[view.event_time_column].dtype) == "datetime64[ns, UTC]"
        assert frame[view.join_key].dtype == np.int64
        for f in view.features:
            dtype = frame[f.name].dtype
            kind = "O" if isinstance(dtype, pd.StringDtype) else dtype.kind
            assert kind in kinds[f.dtype], f"{f.name}: dtype {dtype} does not carry {f.dtype}"


def test_naive_as_of_is_refused(ratings, movies):
    with pytest.raises(ValueError, match="has no time zone"):
        user_features(ratings, movies, as_of=pd.Timestamp("2001-09-10"))


def test_unknown_genre_is_named(ratings, movies):
    movies.loc[1, "genres"] = "Drama|Space Opera"
    with pytest.raises(ValueError, match=r"'Space Opera' \(movie 2\)"):
        user_features(ratings, movies)


def test_rating_of_missing_movie_is_named(ratings, movies):
    ratings.loc[0, "movie_id"] = 99
    with pytest.raises(ValueError, match=r"movie_id \[99\]"):
        movie_features(ratings, movies)


def test_rating_out_of_range_is_named(ratings, movies):
    ratings.loc[2, "rating"] = 7.0
    with pytest.raises(ValueError, match=r"outside 1\.0-5\.0"):
        user_features(ratings, movies)


def test_missing_column_is_named(ratings, movies):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['timestamp'\]"):
        user_features(ratings.drop(columns=["timestamp"]), movies)


def test_genre_matrix(movies):
    g = genre_matrix(movies)
    assert list(g.columns) == list(GENRES)
    assert g.loc[1, ["Action", "Comedy"]].tolist() == [1.0, 1.0]
    assert g.loc[1].sum() == 2.0
    assert g.loc[4].sum() == 0.0


def test_snapshot_times(ratings):
    times = snapshot_times(ratings, every_days=1)
    first_day = ts(T0).floor("D")
    assert times == [first_day + pd.Timedelta(days=1), first_day + pd.Timedelta(days=2), ts(T0 + 2 * DAY + 1)]
    assert snapshot_times(ratings, every_days=7) == [default_as_of(ratings)]
    with pytest.raises(ValueError, match="every_days must be at least 1, got 0"):
        snapshot_times(ratings, every_days=0)


def test_snapshots_equal_features_as_of_each_time(ratings, movies):
    snaps = feature_snapshots(ratings, movies, every_days=1)
    assert len(snaps.times) == 3
    for t in snaps.times:
        expected_users = user_features(ratings, movies, as_of=t)
        got_users = snaps.users[snaps.users["event_timestamp"] == t].reset_index(drop=True)
        pd.testing.assert_frame_equal(got_users, expected_users)
        expected_movies = movie_features(ratings, movies, as_of=t)
        got_movies = snaps.movies[snaps.movies["event_timestamp"] == t].reset_index(drop=True)
        pd.testing.assert_frame_equal(got_movies, expected_movies)


_GENRE_SETS = st.lists(st.sampled_from(GENRES[:6]), max_size=3, unique=True).map("|".join)


@settings(max_examples=examples(0.4), deadline=None)
@given(
    ratings_rows=st.lists(
        st.tuples(
            st.integers(1, 5),  # user
            st.integers(1, 4),  # movie
            st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0]),
            st.integers(0, 10 * DAY),
        ),
        min_size=1,
        max_size=40,
    ),
    genre_sets=st.lists(_GENRE_SETS, min_size=4, max_size=4),
    cut=st.integers(1, 10 * DAY),
)
def test_point_in_time_later_ratings_never_change_a_row(ratings_rows, genre_sets, cut):
    """Features as of t computed from all ratings equal those computed from the ratings before t."""
    movies = pd.DataFrame(
        {
            "movie_id": [1, 2, 3, 4],
            "year": pd.array([2000, None, 1990, 1999], dtype="Int16"),
            "genres": genre_sets,
        }
    )
    ratings = pd.DataFrame(ratings_rows, columns=["user_id", "movie_id", "rating", "timestamp"])
    ratings["timestamp"] = ratings["timestamp"] + T0
    t = ts(T0 + cut)
    before = ratings[ratings["timestamp"] < T0 + cut]
    full_users = user_features(ratings, movies, as_of=t)
    pd.testing.assert_frame_equal(full_users, user_features(before, movies, as_of=t))
    assert int(full_users["user_rating_count"].sum()) == len(before)
    shares = full_users[[c for c in full_users.columns if c.startswith("user_genre_affinity_")]]
    assert ((shares >= 0) & (shares <= 1)).all().all()
    if not before.empty:
        full_movies = movie_features(ratings, movies, as_of=t)
        pd.testing.assert_frame_equal(full_movies, movie_features(before, movies, as_of=t))
        assert sorted(full_movies["movie_popularity_rank"]) == [1, 2, 3, 4]
        rated = full_movies["movie_rating_count"] > 0
        bayes = full_movies["movie_bayesian_rating"]
        # Shrinkage: the Bayesian rating lies between the global mean and the movie's own mean.
        m = before["rating"].mean()
        own = full_movies["movie_rating_mean"]
        lo = np.minimum(own[rated], m) - 1e-9
        hi = np.maximum(own[rated], m) + 1e-9
        assert ((bayes[rated] >= lo) & (bayes[rated] <= hi)).all()


def test_every_view_is_computed():
    assert {v.name for v in FEATURE_VIEWS} == {"user_features", "movie_features"}
