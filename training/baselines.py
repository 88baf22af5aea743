"""Baselines the model must beat, computed on the same splits: global mean, biased baseline, popularity."""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt
import pandas as pd

RATING_RANGE = (1.0, 5.0)


def _check_ratings(ratings: pd.DataFrame, who: str) -> None:
    missing = {"user_id", "movie_id", "rating"} - set(ratings.columns)
    if missing:
        raise ValueError(f"{who}.fit: ratings lack column(s) {sorted(missing)}; expected contract table 1")
    if ratings.empty:
        raise ValueError(f"{who}.fit: the ratings table is empty")


class GlobalMean:
    """Predicts the training ratings' mean for every pair."""

    def __init__(self) -> None:
        self.mean_: float | None = None

    def fit(self, ratings: pd.DataFrame) -> Self:
        """Learn the mean rating."""
        _check_ratings(ratings, "GlobalMean")
        self.mean_ = float(ratings["rating"].mean())
        return self

    def predict(self, user_ids: npt.ArrayLike, movie_ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """One prediction per (user, movie) pair."""
        if self.mean_ is None:
            raise RuntimeError("GlobalMean.predict called before fit")
        return np.full(np.asarray(user_ids).shape, self.mean_, dtype=np.float64)


class BiasedBaseline:
    """mean + user bias + movie bias, fitted by alternating least squares like Surprise's BaselineOnly."""

    def __init__(self, reg_user: float = 15.0, reg_movie: float = 10.0, n_epochs: int = 10) -> None:
        self.reg_user = reg_user
        self.reg_movie = reg_movie
        self.n_epochs = n_epochs
        self.mean_ = 0.0
        self.user_bias_: pd.Series | None = None
        self.movie_bias_: pd.Series | None = None

    def fit(self, ratings: pd.DataFrame) -> Self:
        """Fit the biases with Surprise's default regularisation (reg_u=15, reg_i=10, 10 sweeps)."""
        _check_ratings(ratings, "BiasedBaseline")
        users, u = np.unique(ratings["user_id"].to_numpy(), return_inverse=True)
        movies, m = np.unique(ratings["movie_id"].to_numpy(), return_inverse=True)
        r = ratings["rating"].to_numpy(dtype=np.float64)
        self.mean_ = float(r.mean())
        bu = np.zeros(users.size)
        bm = np.zeros(movies.size)
        n_u = np.bincount(u, minlength=users.size)
        n_m = np.bincount(m, minlength=movies.size)
        for _ in range(self.n_epochs):
            bu = np.bincount(u, weights=r - self.mean_ - bm[m], minlength=users.size) / (self.reg_user + n_u)
            bm = np.bincount(m, weights=r - self.mean_ - bu[u], minlength=movies.size) / (
                self.reg_movie + n_m
            )
        self.user_bias_ = pd.Series(bu, index=users)
        self.movie_bias_ = pd.Series(bm, index=movies)
        return self

    def predict(self, user_ids: npt.ArrayLike, movie_ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """One clipped prediction per pair; an unknown user or movie contributes a zero bias."""
        if self.user_bias_ is None or self.movie_bias_ is None:
            raise RuntimeError("BiasedBaseline.predict called before fit")
        bu = self.user_bias_.reindex(np.asarray(user_ids)).fillna(0.0).to_numpy(dtype=np.float64)
        bm = self.movie_bias_.reindex(np.asarray(movie_ids)).fillna(0.0).to_numpy(dtype=np.float64)
        out: npt.NDArray[np.float64] = np.clip(self.mean_ + bu + bm, *RATING_RANGE)
        return out


class Popularity:
    """Ranks movies by how many training ratings they have (the same list for every user)."""

    def __init__(self) -> None:
        self.counts_: pd.Series | None = None

    def fit(self, ratings: pd.DataFrame) -> Self:
        """Count ratings per movie."""
        _check_ratings(ratings, "Popularity")
        self.counts_ = ratings["movie_id"].value_counts()
        return self

    def score_movies(self, movie_ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """A score per movie: its training rating count (0 for a movie nobody rated)."""
        if self.counts_ is None:
            raise RuntimeError("Popularity.score_movies called before fit")
        scores: npt.NDArray[np.float64] = (
            self.counts_.reindex(np.asarray(movie_ids)).fillna(0.0).to_numpy(dtype=np.float64)
        )
        return scores
