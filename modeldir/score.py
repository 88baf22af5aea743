"""The reference scorer: contract section 3's formulas written out plainly, in float64.

Evaluate and the benchmarks score with it; serving's folded fast path is tested against it.
Features come as raw values in the model's `user_feature_names` order, one row per user; a missing
value (NaN), or no features at all (None), stands for the training mean (z = 0). A user the model
never saw has no id part; a movie outside the catalog has no movie part (the rating is then
global bias + user bias).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from modeldir.files import SavedModel

F64 = npt.NDArray[np.float64]


def rows_of(keys: npt.NDArray[np.int64], query: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Position of each queried id in `keys` (ids without duplicates), -1 where absent."""
    q = np.asarray(query, dtype=np.int64).ravel()
    if keys.size == 0:
        return np.full(q.size, -1, np.int64)
    order = np.argsort(keys, kind="stable")
    pos = np.minimum(np.searchsorted(keys[order], q), keys.size - 1)
    found = keys[order][pos] == q
    return np.where(found, order[pos], -1).astype(np.int64)


class ReferenceScorer:
    """Rating and top-K scores of a saved model by the contract's formulas."""

    def __init__(self, model: SavedModel) -> None:
        self.model = model
        self.towers = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in model.towers.items()}
        self.movie_ids: npt.NDArray[np.int64] = model.towers["movie_ids"]
        self.user_ids: npt.NDArray[np.int64] = model.towers["user_ids"]
        self.rating_range = model.rating_range

    def standardized(self, n_users: int, features: npt.ArrayLike | None) -> F64:
        """z = (x - feature_mean) / feature_std per user, with a missing value at the mean (z = 0)."""
        t = self.towers
        f = t["feature_mean"].size
        if features is None:
            return np.zeros((n_users, f))
        x = np.asarray(features, dtype=np.float64)
        if x.shape != (n_users, f):
            raise ValueError(
                f"features have shape {x.shape}; expected ({n_users}, {f}): one row per user, columns "
                f"in the model's user_feature_names order {list(self.model.feature_names)}"
            )
        x = np.where(np.isnan(x), t["feature_mean"], x)
        return np.asarray((x - t["feature_mean"]) / t["feature_std"], dtype=np.float64)

    def _id_part(self, table: F64, rows: npt.NDArray[np.int64]) -> F64:
        out: F64 = np.where(
            (rows >= 0).reshape(-1, *([1] * (table.ndim - 1))), table[np.maximum(rows, 0)], 0.0
        )
        return out

    def user_side(self, user_ids: npt.ArrayLike, features: npt.ArrayLike | None) -> tuple[F64, F64]:
        """(user vectors, user biases) of the rating score."""
        t = self.towers
        rows = rows_of(self.user_ids, user_ids)
        z = self.standardized(rows.size, features)
        vec = self._id_part(t["user_id_vectors"], rows) + z @ t["user_feature_weights"]
        bias = self._id_part(t["user_id_bias"], rows) + z @ t["user_feature_bias_weights"]
        return vec, bias

    def rating_scores(
        self, user_ids: npt.ArrayLike, movie_ids: npt.ArrayLike, features: npt.ArrayLike | None
    ) -> F64:
        """Unclipped rating scores of (user, movie) pairs."""
        t = self.towers
        uv, ub = self.user_side(user_ids, features)
        cols = rows_of(self.movie_ids, movie_ids)
        if cols.size != ub.size:
            raise ValueError(f"{ub.size} users for {cols.size} movies: pass one user per (user, movie) pair")
        mv = self._id_part(t["movie_vectors"], cols)
        mb = self._id_part(t["movie_bias"], cols)
        out: F64 = t["global_bias"] + ub + mb + np.einsum("ij,ij->i", uv, mv)
        return out

    def predict(
        self, user_ids: npt.ArrayLike, movie_ids: npt.ArrayLike, features: npt.ArrayLike | None
    ) -> F64:
        """Predicted ratings of (user, movie) pairs, clipped to the rating range."""
        out: F64 = np.clip(self.rating_scores(user_ids, movie_ids, features), *self.rating_range)
        return out

    def rating_scores_all(self, user_ids: npt.ArrayLike, features: npt.ArrayLike | None) -> F64:
        """Unclipped rating score of every catalog movie (columns in `movie_ids` order) per user."""
        t = self.towers
        uv, ub = self.user_side(user_ids, features)
        out: F64 = t["global_bias"] + ub[:, None] + t["movie_bias"][None, :] + uv @ t["movie_vectors"].T
        return out

    def ranking_scores(self, user_ids: npt.ArrayLike, features: npt.ArrayLike | None) -> F64:
        """Top-K score of every catalog movie (columns in `movie_ids` order) per user: the ranking
        tower's when the model has one, else the rating score."""
        if not self.model.has_ranking_tower:
            return self.rating_scores_all(user_ids, features)
        t = self.towers
        rows = rows_of(self.user_ids, user_ids)
        z = self.standardized(rows.size, features)
        vec = self._id_part(t["rank_user_id_vectors"], rows) + z @ t["rank_user_feature_weights"]
        out: F64 = vec @ t["rank_movie_vectors"].T + t["rank_movie_bias"][None, :]
        return out
