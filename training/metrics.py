"""Rating and ranking metrics, as pure NumPy functions."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating]


def _pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(
            f"y_true has {t.size} values but y_pred has {p.size}; pass one prediction per rating"
        )
    if t.size == 0:
        raise ValueError("no ratings to score: y_true is empty")
    if not np.isfinite(p).all():
        raise ValueError(f"y_pred holds {int((~np.isfinite(p)).sum())} non-finite value(s) (NaN or inf)")
    return t, p


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute error."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def held_out_ranks(
    scores: npt.ArrayLike, held_out: npt.ArrayLike, exclude: npt.ArrayLike | None = None
) -> npt.NDArray[np.int64]:
    """1-based rank of each row's held-out column among its non-excluded columns (ties count against it)."""
    s = np.asarray(scores, dtype=np.float64)
    h = np.asarray(held_out, dtype=np.int64).ravel()
    if s.ndim != 2 or s.shape[0] != h.size:
        raise ValueError(
            f"scores must be (n_users, n_movies) with one held-out column per row; got {s.shape}"
        )
    if h.size and (h.min() < 0 or h.max() >= s.shape[1]):
        raise ValueError(f"held-out column out of range 0..{s.shape[1] - 1}: {h.min()}..{h.max()}")
    rows = np.arange(h.size)
    target = s[rows, h]
    beats = s >= target[:, None]
    if exclude is not None:
        ex = np.asarray(exclude, dtype=bool)
        if ex.shape != s.shape:
            raise ValueError(f"exclude mask shape {ex.shape} differs from scores shape {s.shape}")
        if ex[rows, h].any():
            raise ValueError("a held-out movie is also excluded; the held-out rating must not be in training")
        beats &= ~ex
    # The held-out column always "beats" itself; a tie with another movie is counted as losing to it.
    ranks: npt.NDArray[np.int64] = beats.sum(axis=1).astype(np.int64)
    return ranks


def hit_rate_at_k(ranks: npt.ArrayLike, k: int = 10) -> float:
    """Share of users whose held-out movie ranks in the top k (ranks are 1-based)."""
    r = _ranks(ranks, k)
    return float(np.mean(r <= k))


def ndcg_at_k(ranks: npt.ArrayLike, k: int = 10) -> float:
    """Mean NDCG@k with one relevant movie per user: 1/log2(rank+1) inside the top k, else 0."""
    r = _ranks(ranks, k)
    gains = np.where(r <= k, 1.0 / np.log2(r.astype(np.float64) + 1.0), 0.0)
    return float(np.mean(gains))


def _ranks(ranks: npt.ArrayLike, k: int) -> npt.NDArray[np.int64]:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    r = np.asarray(ranks, dtype=np.int64).ravel()
    if r.size == 0:
        raise ValueError("no ranks to score: the list of held-out ranks is empty")
    if r.min() < 1:
        raise ValueError(f"ranks are 1-based; got a rank of {r.min()}")
    return r
