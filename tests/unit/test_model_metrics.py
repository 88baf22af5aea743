"""Metrics and baselines, on hand-checked figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.model import kfold_indices, leave_last_out
from training.baselines import BiasedBaseline, GlobalMean, Popularity
from training.metrics import held_out_ranks, hit_rate_at_k, mae, ndcg_at_k, rmse


def test_rmse_mae_by_hand():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)


def test_rating_metric_errors_name_the_problem():
    with pytest.raises(ValueError, match="3 values but y_pred has 2"):
        rmse([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="non-finite"):
        mae([1.0], [float("nan")])
    with pytest.raises(ValueError, match="empty"):
        rmse([], [])


def test_ranks_exclude_rated_and_count_ties_against():
    scores = np.array([[0.9, 0.8, 0.7, 0.8], [0.1, 0.2, 0.3, 0.4]])
    exclude = np.array([[True, False, False, False], [False, False, False, False]])
    ranks = held_out_ranks(scores, [1, 0], exclude)
    # Row 0: movie 0 excluded, movie 3 ties with the held-out movie 1 -> rank 2. Row 1: last of 4.
    assert ranks.tolist() == [2, 4]
    assert hit_rate_at_k(ranks, 2) == 0.5
    assert ndcg_at_k(ranks, 2) == pytest.approx((1 / math.log2(3)) / 2)
    assert ndcg_at_k([1, 1], 10) == 1.0


def test_rank_input_errors():
    with pytest.raises(ValueError, match="also excluded"):
        held_out_ranks(np.zeros((1, 3)), [1], np.array([[False, True, False]]))
    with pytest.raises(ValueError, match="1-based"):
        hit_rate_at_k([0, 1])


def _ratings():
    return pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 3],
            "movie_id": [10, 20, 10, 30, 10],
            "rating": [5.0, 3.0, 4.0, 1.0, 5.0],
            "timestamp": [1, 2, 3, 4, 5],
        }
    )


def test_baselines():
    r = _ratings()
    assert GlobalMean().fit(r).predict([1, 9], [10, 99]).tolist() == [3.6, 3.6]
    b = BiasedBaseline(reg_user=0.0, reg_movie=0.0, n_epochs=30).fit(r)
    pred = b.predict(r["user_id"], r["movie_id"])
    # Without regularisation the biases fit these ratings better than the mean does.
    assert rmse(r["rating"], pred) < rmse(r["rating"], np.full(5, 3.6))
    # Unknown user and movie: the global mean, clipped to the rating range.
    assert b.predict([99], [999]).tolist() == [pytest.approx(3.6)]
    pop = Popularity().fit(r)
    assert pop.score_movies([10, 20, 30, 40]).tolist() == [3.0, 1.0, 1.0, 0.0]


def test_baseline_fit_errors():
    with pytest.raises(ValueError, match="rating"):
        BiasedBaseline().fit(pd.DataFrame({"user_id": [1], "movie_id": [1]}))
    with pytest.raises(RuntimeError, match="before fit"):
        GlobalMean().predict([1], [1])


def test_leave_last_out_and_kfold():
    train, held = leave_last_out(_ratings())
    assert held.set_index("user_id")["movie_id"].to_dict() == {1: 20, 2: 30, 3: 10}
    assert len(train) == 2 and set(train["user_id"]) == {1, 2}
    parts = kfold_indices(103, 5, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))
    assert [p.size for p in parts] == [21, 21, 21, 20, 20]
    assert all(np.array_equal(a, b) for a, b in zip(parts, kfold_indices(103, 5, seed=0), strict=True))
