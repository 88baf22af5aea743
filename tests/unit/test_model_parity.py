"""One top-K rule for every consumer: serving, the pipeline's Evaluate step and the benchmark rank alike.

docs/contracts.md section 3: with the ranking tower's arrays, top-K ranks by
rank_movie_bias + rank_user_vector . rank_movie_vector; without them, by the rating score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inference.model import load_model_dir
from inference.predictor import Predictor
from pipelines.steps.evaluate import Towers
from tests.serving_model import FEATURES, add_ranking_tower, write_model_dir
from training.fit import ranking_scores

USERS = np.array([1, 4, 9, 20, 777], dtype=np.int64)  # 777 is not a training user: cold start


def features() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    return pd.DataFrame(
        {
            "user_id": USERS,
            "user_rating_count": rng.uniform(10, 200, USERS.size),
            "user_rating_mean": rng.uniform(2.5, 4.5, USERS.size),
            "user_rating_std": rng.uniform(0.5, 1.5, USERS.size),
        }
    )


def three_ways(model_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user, the top-K scores of every catalog movie from serving, Evaluate and the benchmark."""
    feats = features()
    raw = feats[list(FEATURES)].to_numpy(np.float64)
    towers = {k: v for k, v in np.load(model_dir / "towers.npz").items()}
    bench = ranking_scores(towers, USERS, raw)
    evaluate = Towers(model_dir, feats).score_all(USERS)
    p = Predictor(load_model_dir(model_dir))
    serving = np.vstack(
        [
            p.ranking_scores(p.user_vector(int(u), dict(zip(FEATURES, row, strict=True)), None))
            for u, row in zip(USERS, raw, strict=True)
        ]
    )
    return serving, evaluate, bench


def orders(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :10]


@pytest.mark.parametrize("with_ranking_tower", [True, False])
def test_serving_evaluate_and_bench_rank_alike(tmp_path: Path, with_ranking_tower: bool):
    d = write_model_dir(tmp_path / "m")
    if with_ranking_tower:
        add_ranking_tower(d, dim=5, seed=11)
    serving, evaluate, bench = three_ways(d)
    # Ranking scores are equal up to a per-user constant (the rating score's user terms cancel in an
    # order), so compare each row's differences and the top-10 orders.
    for other in (evaluate, bench):
        np.testing.assert_allclose(serving - serving[:, :1], other - other[:, :1], rtol=1e-4, atol=1e-4)
        assert (orders(serving) == orders(other)).all()


def test_the_ranking_tower_changes_the_order(tmp_path: Path):
    """The check above would hold trivially if all three ignored the ranking tower: they must not."""
    plain = three_ways(write_model_dir(tmp_path / "plain"))[0]
    ranked = three_ways(add_ranking_tower(write_model_dir(tmp_path / "ranked"), dim=5, seed=11))[0]
    assert (orders(plain) != orders(ranked)).any(axis=1).all()
