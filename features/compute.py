"""Pure feature computation: validated MovieLens tables in, the definition's feature tables out.

Point-in-time correct: a feature row as of time t uses only ratings with timestamp strictly before t,
and carries t as its event time. No I/O here; `features.feast_repo` stores what these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.definition import (
    BAYESIAN_PRIOR_COUNT,
    EVENT_TIME_COLUMN,
    GENRES,
    feature_view,
    genre_affinity_feature,
)

USER_VIEW = feature_view("user_features")
MOVIE_VIEW = feature_view("movie_features")

_RATING_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")
_MOVIE_COLUMNS = ("movie_id", "genres", "year")
_SECONDS_PER_DAY = 86_400.0


def default_as_of(ratings: pd.DataFrame) -> pd.Timestamp:
    """One second after the last rating: the as-of time at which every rating counts."""
    _require_columns(ratings, _RATING_COLUMNS, "ratings")
    if ratings.empty:
        raise ValueError("the ratings table is empty: there is no last rating to take the as-of time from")
    return pd.Timestamp(int(ratings["timestamp"].max()) + 1, unit="s", tz="UTC")


def user_features(
    ratings: pd.DataFrame, movies: pd.DataFrame, as_of: pd.Timestamp | None = None
) -> pd.DataFrame:
    """One row per user with a rating before `as_of` (default: after the last rating), per the definition.

    With n the user's ratings before t = `as_of`:
    `user_rating_count` = n; `user_rating_mean` = mean; `user_rating_std` = population standard
    deviation (ddof=0, so 0.0 for n = 1); `user_days_since_last_rating` = (t - last rating time) in
    days; `user_genre_affinity_<g>` = (number of those ratings whose movie has genre g) / n, so a
    movie with three genres counts once for each and the shares may sum to more than 1.
    """
    prepared = _Prepared.of(ratings, movies)
    return prepared.users_at(_cutoff(ratings, as_of))


def movie_features(
    ratings: pd.DataFrame, movies: pd.DataFrame, as_of: pd.Timestamp | None = None
) -> pd.DataFrame:
    """One row per movie of `movies`, from ratings before `as_of` (default: after the last rating).

    With n the movie's ratings before t, s their sum, m the mean of all ratings before t and
    C = `BAYESIAN_PRIOR_COUNT`: `movie_rating_count` = n; `movie_rating_mean` = s / n (null when
    n = 0); `movie_bayesian_rating` = (C*m + s) / (C + n); `movie_genres` = the movies table's
    genres; `movie_release_year` = its year (null when unknown); `movie_popularity_rank` = position
    when sorted by n descending, then movie id ascending (1 = most rated; every rank is distinct).
    """
    prepared = _Prepared.of(ratings, movies)
    return prepared.movies_at(_cutoff(ratings, as_of))


def snapshot_times(ratings: pd.DataFrame, every_days: int = 7) -> list[pd.Timestamp]:
    """As-of times for the offline store: every `every_days` days at 00:00 UTC, then `default_as_of`.

    The first time is the first midnight `every_days` after the day of the first rating, so every
    snapshot has at least one rating before it.
    """
    if every_days < 1:
        raise ValueError(f"every_days must be at least 1, got {every_days}")
    last = default_as_of(ratings)
    first_day = pd.Timestamp(int(ratings["timestamp"].min()), unit="s", tz="UTC").floor("D")
    times = list(pd.date_range(first_day + pd.Timedelta(days=every_days), last, freq=f"{every_days}D"))
    if not times or times[-1] != last:
        times.append(last)
    return times


@dataclass(frozen=True)
class FeatureSnapshots:
    """Feature rows of every view at several as-of times: what the offline store holds."""

    users: pd.DataFrame
    movies: pd.DataFrame
    times: list[pd.Timestamp]


def feature_snapshots(ratings: pd.DataFrame, movies: pd.DataFrame, every_days: int = 7) -> FeatureSnapshots:
    """Both views' feature rows as of each of `snapshot_times(ratings, every_days)`, concatenated."""
    prepared = _Prepared.of(ratings, movies)
    times = snapshot_times(ratings, every_days)
    users = pd.concat([prepared.users_at(t) for t in times], ignore_index=True)
    movie_rows = pd.concat([prepared.movies_at(t) for t in times], ignore_index=True)
    return FeatureSnapshots(users=users, movies=movie_rows, times=times)


def genre_matrix(movies: pd.DataFrame) -> pd.DataFrame:
    """A 0/1 matrix (index movie_id, one column per genre of `GENRES`) from the movies' `genres` column."""
    _require_columns(movies, ("movie_id", "genres"), "movies")
    genres = movies["genres"].fillna("").astype(str)
    split = genres.str.split("|")
    known = set(GENRES)
    unknown: dict[str, int] = {}
    for movie_id, names in zip(movies["movie_id"], split, strict=True):
        for name in names:
            if name and name not in known:
                unknown.setdefault(name, int(movie_id))
    if unknown:
        examples = ", ".join(f"{name!r} (movie {mid})" for name, mid in sorted(unknown.items())[:5])
        raise ValueError(
            f"movies table: genre names not in features.definition.GENRES: {examples}; "
            f"fix the data or add the genre to the definition (known: {', '.join(GENRES)})"
        )
    matrix = np.zeros((len(movies), len(GENRES)), dtype=np.float64)
    index = {g: i for i, g in enumerate(GENRES)}
    for row, names in enumerate(split):
        for name in names:
            if name:
                matrix[row, index[name]] = 1.0
    return pd.DataFrame(
        matrix, index=pd.Index(movies["movie_id"].astype("int64"), name="movie_id"), columns=GENRES
    )


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], table: str) -> None:
    """Raise ValueError naming the columns of `table` that are missing."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{table} table lacks column(s) {missing} (has {list(frame.columns)}); "
            "pass the tables from dataset.tables.load_tables (docs/contracts.md section 1)"
        )


def _check_as_of(as_of: pd.Timestamp) -> None:
    """Refuse as-of times without a time zone: ratings are UTC and a naive time is ambiguous."""
    if not isinstance(as_of, pd.Timestamp):
        raise TypeError(f"as_of must be a pandas Timestamp, got {type(as_of).__name__}: {as_of!r}")
    if as_of.tzinfo is None:
        raise ValueError(f"as_of {as_of} has no time zone; give one, e.g. pd.Timestamp('{as_of}', tz='UTC')")


def _cutoff(ratings: pd.DataFrame, as_of: pd.Timestamp | None) -> pd.Timestamp:
    """The as-of time in UTC, defaulting to just after the last rating."""
    if as_of is None:
        return default_as_of(ratings)
    _check_as_of(as_of)
    return as_of.tz_convert("UTC")


def _event_times(t: pd.Timestamp, n: int) -> pd.DatetimeIndex:
    """n copies of t as a UTC datetime column, built without n Timestamp objects."""
    return pd.DatetimeIndex(np.full(n, t.tz_convert("UTC").value, dtype="datetime64[ns]")).tz_localize("UTC")


@dataclass(frozen=True)
class _Prepared:
    """Checked tables, with the ratings sorted by time and coded, computed once for many as-of times.

    Sorted by time, the ratings before any t are a prefix; per-entity sums over a prefix are
    `np.bincount`s, which keeps a hundred snapshots of ml-1m's million ratings quick.
    """

    timestamps: np.ndarray  # int64, ascending
    ratings: np.ndarray  # float64, in timestamp order
    user_codes: np.ndarray  # index into user_ids, in timestamp order
    user_ids: np.ndarray  # int64, ascending
    movie_rows: np.ndarray  # index into movies, in timestamp order
    genre_columns: np.ndarray  # float64 (genre, rating): 1 when the rated movie has the genre
    movies: pd.DataFrame  # movie_id, genres, year; sorted by movie_id

    @classmethod
    def of(cls, ratings: pd.DataFrame, movies: pd.DataFrame) -> _Prepared:
        _require_columns(ratings, _RATING_COLUMNS, "ratings")
        _require_columns(movies, _MOVIE_COLUMNS, "movies")
        if movies["movie_id"].duplicated().any():
            dups = movies.loc[movies["movie_id"].duplicated(), "movie_id"].head(5).tolist()
            raise ValueError(f"movies table has duplicate movie_id values, e.g. {dups}")
        bad_rating = ~ratings["rating"].between(1.0, 5.0)
        if bad_rating.any():
            row = ratings.loc[bad_rating].iloc[0]
            raise ValueError(
                f"ratings table: {int(bad_rating.sum())} rating(s) outside 1.0-5.0, e.g. {row.to_dict()}; "
                "validate the data with the data layer first"
            )
        movie_table = pd.DataFrame(
            {
                "movie_id": movies["movie_id"].astype("int64").to_numpy(),
                "genres": movies["genres"].fillna("").astype("string").to_numpy(),
                "year": movies["year"].astype("Int64").to_numpy(),
            }
        ).sort_values("movie_id", ignore_index=True)
        genres = genre_matrix(movie_table)
        movie_ids = ratings["movie_id"].astype("int64")
        unknown = ~movie_ids.isin(genres.index)
        if unknown.any():
            examples = sorted(set(movie_ids[unknown].tolist()))[:5]
            raise ValueError(
                f"ratings table: {int(unknown.sum())} rating(s) of movies missing from the movies table, "
                f"e.g. movie_id {examples}; the tables must come from the same dataset"
            )
        timestamps = ratings["timestamp"].to_numpy(dtype="int64")
        order = np.argsort(timestamps, kind="stable")
        movie_rows = genres.index.get_indexer(pd.Index(movie_ids))[order]
        user_ids, user_codes = np.unique(
            ratings["user_id"].to_numpy(dtype="int64")[order], return_inverse=True
        )
        return cls(
            timestamps=timestamps[order],
            ratings=ratings["rating"].to_numpy(dtype="float64")[order],
            user_codes=user_codes,
            user_ids=user_ids,
            movie_rows=movie_rows,
            genre_columns=np.ascontiguousarray(genres.to_numpy(dtype="float64")[movie_rows].T),
            movies=movie_table,
        )

    def _before(self, t: pd.Timestamp) -> int:
        """How many ratings lie strictly before t (timestamps are whole seconds)."""
        return int(np.searchsorted(self.timestamps, t.timestamp(), side="left"))

    def users_at(self, t: pd.Timestamp) -> pd.DataFrame:
        """User feature rows as of t."""
        k = self._before(t)
        codes, ratings = self.user_codes[:k], self.ratings[:k]
        size = len(self.user_ids)
        n_all = np.bincount(codes, minlength=size)
        mean_all = np.bincount(codes, weights=ratings, minlength=size) / np.maximum(n_all, 1)
        # Two passes (deviations from each user's mean) rather than E[x^2] - E[x]^2, which cancels badly.
        deviation = ratings - mean_all[codes]
        var_all = np.bincount(codes, weights=deviation * deviation, minlength=size) / np.maximum(n_all, 1)
        last_all = np.zeros(size, dtype="int64")
        np.maximum.at(last_all, codes, self.timestamps[:k])
        present = n_all > 0
        n = n_all[present]
        columns: dict[str, object] = {
            "user_id": self.user_ids[present],
            EVENT_TIME_COLUMN: _event_times(t, len(n)),
            "user_rating_count": n.astype("int64"),
            "user_rating_mean": mean_all[present],
            "user_rating_std": np.sqrt(var_all[present]),
            "user_days_since_last_rating": (t.timestamp() - last_all[present].astype("float64"))
            / _SECONDS_PER_DAY,
        }
        for i, g in enumerate(GENRES):
            counts = np.bincount(codes, weights=self.genre_columns[i, :k], minlength=size)[present]
            columns[genre_affinity_feature(g)] = counts / n
        out = pd.DataFrame(columns)
        return out[[USER_VIEW.join_key, EVENT_TIME_COLUMN, *USER_VIEW.feature_names]]

    def movies_at(self, t: pd.Timestamp) -> pd.DataFrame:
        """Movie feature rows as of t, for every movie of the movies table."""
        k = self._before(t)
        if k == 0:
            raise ValueError(
                f"no rating before as_of {t}: the Bayesian rating needs the global mean of earlier ratings; "
                "pick a later as_of"
            )
        rows, ratings = self.movie_rows[:k], self.ratings[:k]
        global_mean = float(ratings.mean())
        prior = float(BAYESIAN_PRIOR_COUNT)
        m = self.movies
        n = np.bincount(rows, minlength=len(m)).astype("int64")
        s = np.bincount(rows, weights=ratings, minlength=len(m))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, s / np.maximum(n, 1), np.nan)
        order = np.lexsort((m["movie_id"].to_numpy(), -n))
        rank = np.empty(len(m), dtype="int64")
        rank[order] = np.arange(1, len(m) + 1)
        out = pd.DataFrame(
            {
                "movie_id": m["movie_id"].to_numpy(dtype="int64"),
                EVENT_TIME_COLUMN: _event_times(t, len(m)),
                "movie_rating_count": n,
                "movie_rating_mean": mean,
                "movie_bayesian_rating": (prior * global_mean + s) / (prior + n),
                "movie_genres": m["genres"].astype("string"),
                "movie_release_year": m["year"].astype("Int64"),
                "movie_popularity_rank": rank,
            }
        )
        return out[[MOVIE_VIEW.join_key, EVENT_TIME_COLUMN, *MOVIE_VIEW.feature_names]]
