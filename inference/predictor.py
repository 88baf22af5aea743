"""The in-process predictor: top-K and rating prediction in NumPy from the saved towers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.model import ModelArtifacts


@dataclass(frozen=True)
class UserVector:
    """A user's side of the score, and why it fell back to cold start (None when it did not)."""

    vector: npt.NDArray[np.float32]
    bias: float
    fallback: str | None
    # [vector, bias]: scores come out of one matrix-vector product with [movie_vectors, 1].
    augmented: npt.NDArray[np.float32]
    # [ranking vector, 1] when the model has a ranking tower: top-K scores are one product with
    # [rank_movie_vectors, rank_movie_bias].
    rank_augmented: npt.NDArray[np.float32] | None = None


@dataclass(frozen=True)
class Recommendation:
    """One recommended movie."""

    movie_id: int
    title: str
    score: float


class UnknownMovieError(ValueError):
    """Movie ids that are not in the model's catalog."""

    def __init__(self, movie_ids: list[int]) -> None:
        self.movie_ids = movie_ids
        super().__init__(f"movie ids not in the model's catalog: {movie_ids[:10]}")


class Predictor:
    """Scores users against the whole catalog; one instance per process, read-only after construction."""

    def __init__(self, model: ModelArtifacts) -> None:
        self.model = model
        self.n_movies = len(model.movie_ids)
        self._user_row = {int(u): i for i, u in enumerate(model.user_ids)}
        self._movie_row = {int(m): i for i, m in enumerate(model.movie_ids)}
        # score = [movie_vector, 1] @ [user_vector, user_bias] + (movie_bias + global_bias), and the
        # user side is affine in the raw features x: [vec, bias] = x @ A + c (+ the id part), with
        # A = [W, w] / std and c = -(mean / std) @ [W, w]. Folding it all here leaves two products a call.
        n, d = model.movie_vectors.shape
        self._d = d
        self._movie_vectors = model.movie_vectors
        self._movie_aug = np.ascontiguousarray(np.hstack([model.movie_vectors, np.ones((n, 1), np.float32)]))
        self._movie_bias = (model.movie_bias + np.float32(model.global_bias)).astype(np.float32)
        inv_std = 1.0 / model.feature_std.astype(np.float64)
        w_aug = np.hstack([model.user_feature_weights, model.user_feature_bias_weights[:, None]]).astype(
            np.float64
        )
        self._feat_aug = (w_aug * inv_std[:, None]).astype(np.float32)
        self._feat_offset = (-(model.feature_mean * inv_std) @ w_aug).astype(np.float32)
        self._id_aug = np.hstack([model.user_id_vectors, model.user_id_bias[:, None]]).astype(np.float32)
        self._cold_aug = np.zeros(d + 1, np.float32)
        self._feature_mean = model.feature_mean
        self._feature_names = model.feature_names
        self._movie_id_list = [int(m) for m in model.movie_ids]
        # The ranking tower, folded alike: [rank vec, 1] = x @ [Wr / std, 0] + [-(mean / std) @ Wr, 1]
        # (+ [id vec, 0]); top-K is then one product with [rank_movie_vectors, rank_movie_bias].
        self._rank_movie_aug: npt.NDArray[np.float32] | None = None
        if (
            model.rank_movie_vectors is not None
            and model.rank_movie_bias is not None
            and model.rank_user_id_vectors is not None
            and model.rank_user_feature_weights is not None
        ):
            r = model.rank_movie_vectors.shape[1]
            self._rank_movie_aug = np.ascontiguousarray(
                np.hstack([model.rank_movie_vectors, model.rank_movie_bias[:, None]]), np.float32
            )
            wr = model.rank_user_feature_weights.astype(np.float64)
            self._rank_feat_aug = np.hstack([wr * inv_std[:, None], np.zeros((wr.shape[0], 1))]).astype(
                np.float32
            )
            self._rank_feat_offset = np.append(-(model.feature_mean * inv_std) @ wr, 1.0).astype(np.float32)
            # The trailing 1 comes from the feature offset (features given) or the cold row (not given).
            self._rank_id_aug = np.hstack(
                [model.rank_user_id_vectors, np.zeros((len(model.user_ids), 1), np.float32)]
            ).astype(np.float32)
            self._rank_cold_aug = np.zeros(r + 1, np.float32)
            self._rank_cold_aug[r] = 1.0
        names = sorted({g for gs in model.genres for g in gs})
        self.genres: tuple[str, ...] = tuple(names)
        self._genre_mask = {g: np.array([g in gs for gs in model.genres], dtype=bool) for g in names}
        # Rated catalog rows per user, sliced once: a dict lookup per request instead of a search.
        r = model.rated
        self._rated = {
            int(u): r.movie_idx[r.indptr[i] : r.indptr[i + 1]] for i, u in enumerate(r.user_ids.tolist())
        }
        self._no_rows = np.zeros(0, np.int32)

    def known_user(self, user_id: int) -> bool:
        """Whether the model has an id embedding for this user."""
        return user_id in self._user_row

    def user_vector(
        self, user_id: int, features: Mapping[str, object] | None, fallback: str | None
    ) -> UserVector:
        """The user's vector and bias from the id part and standardized features (missing: at the mean)."""
        row = self._user_row.get(user_id)
        rank: npt.NDArray[np.float32] | None = None
        if features is None:
            # z = 0 (every feature at its mean): the feature part of the user side vanishes.
            aug = self._cold_aug if row is None else self._id_aug[row]
            if self._rank_movie_aug is not None:
                rank = self._rank_cold_aug if row is None else self._rank_id_aug[row] + self._rank_cold_aug
        else:
            x, complete = self._feature_row(features)
            if not complete and fallback is None:
                fallback = "missing_feature"
            aug = x @ self._feat_aug + self._feat_offset
            if row is not None:
                aug += self._id_aug[row]
            if self._rank_movie_aug is not None:
                rank = x @ self._rank_feat_aug
                rank += self._rank_feat_offset
                if row is not None:
                    rank += self._rank_id_aug[row]
        d = self._d
        return UserVector(aug[:d], float(aug[d]), fallback, aug, rank)

    def _feature_row(self, features: Mapping[str, object]) -> tuple[npt.NDArray[np.float32], bool]:
        """Raw features in the model's order; a missing or non-numeric one sits at its training mean."""
        try:
            x = np.array([features[n] for n in self._feature_names], dtype=np.float32)
            if np.isfinite(x).all():
                return x, True
        except (KeyError, TypeError, ValueError):
            pass
        x = self._feature_mean.copy()
        for i, name in enumerate(self._feature_names):
            v = features.get(name)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                x[i] = v
        return x, False

    def scores(self, user: UserVector) -> npt.NDArray[np.float32]:
        """Raw model scores of every catalog movie for this user, in catalog row order."""
        out: npt.NDArray[np.float32] = self._movie_aug @ user.augmented
        out += self._movie_bias
        return out

    def ranking_scores(self, user: UserVector) -> npt.NDArray[np.float32]:
        """Top-K scores of every catalog movie, in catalog row order: the ranking tower's score when
        the model has one, else the rating score (whose order is the same as the ranking would be)."""
        if self._rank_movie_aug is None or user.rank_augmented is None:
            return self.scores(user)
        out: npt.NDArray[np.float32] = self._rank_movie_aug @ user.rank_augmented
        return out

    def top_k(
        self,
        user_id: int,
        user: UserVector,
        k: int,
        include_rated: bool = False,
        genres: Sequence[str] = (),
    ) -> list[Recommendation]:
        """The k best-scoring movies (ranking score), best first; rated excluded unless asked; any of
        `genres` if given."""
        s = self.ranking_scores(user)
        if genres:
            mask = self._genre_mask[genres[0]]
            for g in genres[1:]:
                mask = mask | self._genre_mask[g]
            s[~mask] = -np.inf
        if not include_rated:
            s[self._rated.get(user_id, self._no_rows)] = -np.inf
        n = self.n_movies
        k = min(k, n)
        if k < n:
            part = np.argpartition(s, n - k)[n - k :]
            best = part[np.argsort(s[part])[::-1]]
        else:
            best = np.argsort(s)[::-1]
        titles, ids = self.model.titles, self._movie_id_list
        out = []
        for i, v in zip(best.tolist(), s[best].tolist(), strict=True):
            if v == -math.inf:
                break  # fewer candidates than k after filtering: return what there is
            out.append(Recommendation(ids[i], titles[i], v))
        return out

    def predict(self, user: UserVector, movie_ids: Sequence[int]) -> list[float]:
        """Predicted ratings, clipped to the model's rating range, in the order asked."""
        rows = []
        unknown = []
        for mid in movie_ids:
            r = self._movie_row.get(mid)
            if r is None:
                unknown.append(mid)
            else:
                rows.append(r)
        if unknown:
            raise UnknownMovieError(unknown)
        idx = np.asarray(rows, dtype=np.int64)
        raw = self._movie_aug[idx] @ user.augmented + self._movie_bias[idx]
        lo, hi = self.model.rating_range
        return [float(x) for x in np.clip(raw, lo, hi)]

    def unknown_movies(self, movie_ids: Sequence[int]) -> list[int]:
        """The ids among `movie_ids` that are not in the catalog (empty when all are known)."""
        return [m for m in movie_ids if m not in self._movie_row]
