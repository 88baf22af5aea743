"""One scoring of the saved model: serving's fast path, the pipeline's Evaluate step and the benchmark all
give modeldir's reference scorer's figures (docs/contracts.md section 3).

Serving folds the formulas into two float32 products (inference.predictor); Evaluate and the benchmark
call the reference scorer itself. A missing feature value, or no features at all, stands for the
training mean everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modeldir
from inference.model import load_model_dir
from inference.predictor import Predictor
from modeldir import ReferenceScorer
from pipelines.steps.evaluate import Towers
from tests.serving_model import FEATURES, add_ranking_tower, write_model_dir

USERS = np.array([1, 4, 9, 20, 777, 778], dtype=np.int64)  # 777 and 778 are not training users
# Per user: every feature, one missing (user 4, 777), or none at all (user 9, 778).
MISSING = {4: "user_rating_std", 777: "user_rating_mean"}
NO_FEATURES = {9, 778}


def raw_features() -> np.ndarray:
    rng = np.random.default_rng(2)
    raw = np.column_stack(
        [
            rng.uniform(10, 200, USERS.size),
            rng.uniform(2.5, 4.5, USERS.size),
            rng.uniform(0.5, 1.5, USERS.size),
        ]
    )
    for i, u in enumerate(USERS.tolist()):
        if u in MISSING:
            raw[i, FEATURES.index(MISSING[u])] = np.nan
        if u in NO_FEATURES:
            raw[i] = np.nan
    return raw


def served(model_dir: Path) -> tuple[Predictor, list]:
    """The predictor and each user's vector as a request would build it (absent keys, or no features)."""
    p = Predictor(load_model_dir(model_dir))
    users = []
    for u, row in zip(USERS.tolist(), raw_features(), strict=True):
        feats = (
            None
            if u in NO_FEATURES
            else {n: v for n, v in zip(FEATURES, row, strict=True) if not np.isnan(v)}
        )
        users.append(p.user_vector(u, feats, None))
    return p, users


def feature_table() -> pd.DataFrame:
    """Evaluate's user-feature table: NaN for a missing value, no row at all for users without features."""
    frame = pd.DataFrame(raw_features(), columns=list(FEATURES)).assign(user_id=USERS)
    return frame[~frame["user_id"].isin(NO_FEATURES)]


@pytest.fixture(params=[True, False], ids=["ranking-tower", "rating-only"])
def model_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    d = write_model_dir(tmp_path / "m")
    return add_ranking_tower(d, dim=5, seed=11) if request.param else d


def orders(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :10]


def test_serving_fast_path_equals_the_reference_scorer(model_dir: Path):
    p, users = served(model_dir)
    ref = ReferenceScorer(modeldir.load(model_dir))
    raw = raw_features()
    rating = np.vstack([p.scores(u) for u in users])
    np.testing.assert_allclose(rating, ref.rating_scores_all(USERS, raw), rtol=1e-5, atol=1e-4)
    ranking = np.vstack([p.ranking_scores(u) for u in users])
    want = ref.ranking_scores(USERS, raw)
    np.testing.assert_allclose(ranking, want, rtol=1e-5, atol=1e-4)
    assert (orders(ranking) == orders(want)).all()
    movies = p.model.movie_ids[[0, 7, 30, 49]]
    predicted = np.array([p.predict(u, movies.tolist()) for u in users])
    pairs = ref.predict(
        np.repeat(USERS, movies.size), np.tile(movies, USERS.size), np.repeat(raw, movies.size, 0)
    )
    np.testing.assert_allclose(predicted.ravel(), pairs, rtol=1e-5, atol=1e-4)


def test_evaluate_scores_by_the_reference_scorer_and_agrees_with_serving(model_dir: Path):
    """Evaluate joins its feature table by user id; a NaN value and a user without a row sit at the
    training mean, as serving puts them (not at a raw 0)."""
    p, users = served(model_dir)
    evaluate = Towers(model_dir, feature_table())
    np.testing.assert_allclose(
        evaluate.score_all(USERS), np.vstack([p.ranking_scores(u) for u in users]), rtol=1e-5, atol=1e-4
    )
    movies = p.model.movie_ids[[0, 7, 30, 49]]
    got = evaluate.predict(np.repeat(USERS, movies.size), np.tile(movies, USERS.size))
    want = np.array([p.predict(u, movies.tolist()) for u in users]).ravel()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_a_missing_feature_is_not_a_raw_zero(model_dir: Path):
    """The check above would hold trivially if the fixture's means were 0: they are not, so a raw-0 fill
    scores differently."""
    ref = ReferenceScorer(modeldir.load(model_dir))
    raw = raw_features()
    zero_filled = np.nan_to_num(raw, nan=0.0)
    assert not np.allclose(ref.ranking_scores(USERS, raw), ref.ranking_scores(USERS, zero_filled), atol=1e-3)


def test_the_ranking_tower_changes_the_order(tmp_path: Path):
    """The checks above would hold trivially if serving and the reference ignored the ranking tower."""
    plain = write_model_dir(tmp_path / "plain")
    ranked = add_ranking_tower(write_model_dir(tmp_path / "ranked"), dim=5, seed=11)

    def reference(d: Path) -> np.ndarray:
        return ReferenceScorer(modeldir.load(d)).ranking_scores(USERS, raw_features())

    def serving(d: Path) -> np.ndarray:
        p, users = served(d)
        return np.vstack([p.ranking_scores(u) for u in users])

    for scores in (reference, serving):
        assert (orders(scores(plain)) != orders(scores(ranked))).any(axis=1).all()
