"""The NumPy predictor and the model-directory loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.model import ModelDirError, load_model_dir
from inference.predictor import Predictor, UnknownMovieError
from tests.serving_model import (
    ABOVE_RANGE_ROWS,
    BELOW_RANGE_ROWS,
    add_ranking_tower,
    add_rating_extremes,
    write_model_dir,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    return Predictor(load_model_dir(model_dir))


def brute_force(model_dir: Path, user_id: int, features: dict[str, float] | None) -> np.ndarray:
    """The contract's formula, written out independently of the predictor."""
    t = np.load(model_dir / "towers.npz")
    meta = json.loads((model_dir / "metadata.json").read_text())
    if features is None:
        z = np.zeros(len(meta["user_feature_names"]))
    else:
        x = np.array([features[n] for n in meta["user_feature_names"]])
        z = (x - t["feature_mean"]) / t["feature_std"]
    uvec = z @ t["user_feature_weights"]
    ubias = z @ t["user_feature_bias_weights"]
    rows = np.flatnonzero(t["user_ids"] == user_id)
    if len(rows):
        uvec = uvec + t["user_id_vectors"][rows[0]]
        ubias = ubias + t["user_id_bias"][rows[0]]
    return t["global_bias"] + ubias + t["movie_bias"] + t["movie_vectors"] @ uvec


FEATS = {"user_rating_count": 80.0, "user_rating_mean": 4.1, "user_rating_std": 0.7}


@pytest.mark.parametrize("features", [None, FEATS])
def test_top_k_matches_the_contract_formula_and_excludes_rated(model_dir, predictor, features):
    user = predictor.user_vector(5, features, None)
    recs = predictor.top_k(5, user, 10)
    expected = brute_force(model_dir, 5, features)
    movie_ids = np.load(model_dir / "towers.npz")["movie_ids"]
    rated_rows = {4, 5, 6}  # tests/serving_model.py: user u rated rows u-1, u, u+1
    order = [i for i in np.argsort(-expected) if i not in rated_rows][:10]
    assert [r.movie_id for r in recs] == movie_ids[order].tolist()
    np.testing.assert_allclose([r.score for r in recs], expected[order], rtol=1e-5, atol=1e-5)


def test_include_rated_returns_rated_movies_too(predictor):
    user = predictor.user_vector(5, None, None)
    all_ids = {r.movie_id for r in predictor.top_k(5, user, 50, include_rated=True)}
    unrated = {r.movie_id for r in predictor.top_k(5, user, 50)}
    assert len(all_ids) == 50 and len(unrated) == 47
    assert all_ids - unrated == {50, 60, 70}


def test_genre_filter_keeps_only_movies_of_any_asked_genre(predictor):
    user = predictor.user_vector(2, None, None)
    recs = predictor.top_k(2, user, 50, genres=["Sci-Fi", "Romance"])
    genres = dict(zip(predictor.model.movie_ids.tolist(), predictor.model.genres, strict=True))
    assert recs, "the fixture has Sci-Fi and Romance movies"
    assert all({"Sci-Fi", "Romance"} & set(genres[r.movie_id]) for r in recs)
    expected = sum(1 for g in predictor.model.genres if {"Sci-Fi", "Romance"} & set(g))
    assert len(recs) == expected - sum(
        1 for row in (1, 2, 3) if {"Sci-Fi", "Romance"} & set(predictor.model.genres[row])
    )


def test_predict_clips_to_the_rating_range_and_keeps_order(model_dir, predictor):
    user = predictor.user_vector(7, FEATS, None)
    ids = [500, 10, 250]
    got = predictor.predict(user, ids)
    raw = brute_force(model_dir, 7, FEATS)
    rows = [49, 0, 24]
    np.testing.assert_allclose(got, np.clip(raw[rows], 1.0, 5.0), rtol=1e-5)


@pytest.mark.parametrize("features", [None, FEATS])
@pytest.mark.parametrize("user_id", [7, 99_999])
def test_predicted_ratings_outside_the_range_are_clipped_on_both_sides(tmp_path, user_id, features):
    d = add_rating_extremes(write_model_dir(tmp_path / "m"))
    p = Predictor(load_model_dir(d))
    user = p.user_vector(user_id, features, None)
    rows = [*ABOVE_RANGE_ROWS, *BELOW_RANGE_ROWS, 10]
    ids = p.model.movie_ids[rows].tolist()
    raw = p.scores(user)[rows]
    # The fixture leaves the range on both sides (else the clip would go untested) ...
    assert (raw[:2] > 5.5).all() and (raw[2:4] < 0.5).all() and 1.0 < raw[4] < 5.0
    # ... and the served ratings do not.
    got = p.predict(user, ids)
    assert got[:4] == [5.0, 5.0, 1.0, 1.0]
    assert got[4] == pytest.approx(float(raw[4]), rel=1e-6)


def test_predict_names_unknown_movies(predictor):
    with pytest.raises(UnknownMovieError) as e:
        predictor.predict(predictor.user_vector(1, None, None), [10, 11, 12])
    assert e.value.movie_ids == [11, 12]


def test_cold_start_and_missing_feature_are_recorded(predictor):
    unknown = predictor.user_vector(99_999, None, "unknown_user")
    assert unknown.fallback == "unknown_user" and not unknown.vector.any() and unknown.bias == 0.0
    partial = predictor.user_vector(3, {"user_rating_count": 10.0}, None)
    assert partial.fallback == "missing_feature"
    assert predictor.user_vector(3, FEATS, None).fallback is None


def test_missing_rated_file_serves_with_a_warning(tmp_path):
    d = write_model_dir(tmp_path / "m", rated=False)
    model = load_model_dir(d)
    assert any("rated.npz is missing" in w for w in model.warnings)
    p = Predictor(model)
    assert len(p.top_k(5, p.user_vector(5, None, None), 50)) == 50


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: (d / "metadata.json").unlink(), "metadata.json is missing"),
        (lambda d: (d / "metadata.json").write_text("{nope"), "not valid JSON"),
        (lambda d: (d / "catalog.parquet").unlink(), "catalog.parquet is missing"),
        (lambda d: np.savez(d / "towers.npz", movie_ids=np.arange(3)), "lacks the arrays"),
        (
            lambda d: np.savez(
                d / "rated.npz", user_ids=np.array([1]), indptr=np.array([0, 5]), movie_idx=np.arange(2)
            ),
            "indptr must have",
        ),
        (
            lambda d: (d / "metadata.json").write_text(
                json.dumps({"user_feature_names": ["a"], "rating_range": [1, 5]})
            ),
            "user_feature_weights has shape",
        ),
    ],
)
def test_bad_model_directories_fail_with_the_file_named(tmp_path, breakage, message):
    d = write_model_dir(tmp_path / "m")
    breakage(d)
    with pytest.raises(ModelDirError, match=message):
        load_model_dir(d)


def brute_force_ranking(model_dir: Path, user_id: int, features: dict[str, float] | None) -> np.ndarray:
    """The contract's top-K score with a ranking tower, written out independently of the predictor."""
    t = np.load(model_dir / "towers.npz")
    meta = json.loads((model_dir / "metadata.json").read_text())
    r = t["rank_movie_vectors"].shape[1]
    uvec = np.zeros(r)
    if features is not None:
        x = np.array([features[n] for n in meta["user_feature_names"]])
        uvec = ((x - t["feature_mean"]) / t["feature_std"]) @ t["rank_user_feature_weights"]
    rows = np.flatnonzero(t["user_ids"] == user_id)
    if len(rows):
        uvec = uvec + t["rank_user_id_vectors"][rows[0]]
    return t["rank_movie_bias"] + t["rank_movie_vectors"] @ uvec


@pytest.fixture(scope="module")
def ranked_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_ranking_tower(write_model_dir(tmp_path_factory.mktemp("ranked")))


@pytest.mark.parametrize(("user_id", "features"), [(5, None), (5, FEATS), (99_999, FEATS), (99_999, None)])
def test_top_k_ranks_by_the_ranking_tower_when_present(ranked_dir, user_id, features):
    p = Predictor(load_model_dir(ranked_dir))
    assert p.model.has_ranking_tower
    user = p.user_vector(user_id, features, None)
    recs = p.top_k(user_id, user, 10)
    expected = brute_force_ranking(ranked_dir, user_id, features)
    rated_rows = {4, 5, 6} if user_id == 5 else set()
    order = [i for i in np.argsort(-expected) if i not in rated_rows][:10]
    assert [r.movie_id for r in recs] == p.model.movie_ids[order].tolist()
    np.testing.assert_allclose([r.score for r in recs], expected[order], rtol=1e-5, atol=1e-5)
    # The ranking tower's order is not the rating score's (else this test could not tell them apart).
    rating_order = np.argsort(-brute_force(ranked_dir, user_id, features))
    assert [i for i in rating_order if i not in rated_rows][:10] != order


def test_ratings_stay_on_the_rating_tower_when_a_ranking_tower_is_present(ranked_dir):
    p = Predictor(load_model_dir(ranked_dir))
    user = p.user_vector(7, FEATS, None)
    raw = brute_force(ranked_dir, 7, FEATS)
    np.testing.assert_allclose(p.predict(user, [500, 10, 250]), np.clip(raw[[49, 0, 24]], 1, 5), rtol=1e-5)


@pytest.mark.parametrize(
    ("drop", "reshape", "message"),
    [
        ("rank_movie_bias", None, r"lacks \['rank_movie_bias'\]"),
        (None, ("rank_user_id_vectors", (3, 6)), "rank_user_id_vectors has shape"),
        (None, ("rank_movie_vectors", (50,)), "rank_movie_vectors has shape"),
    ],
)
def test_a_broken_ranking_tower_fails_with_the_array_named(tmp_path, drop, reshape, message):
    d = add_ranking_tower(write_model_dir(tmp_path / "m"))
    t = dict(np.load(d / "towers.npz"))
    if drop:
        del t[drop]
    if reshape:
        key, shape = reshape
        t[key] = np.zeros(shape, np.float32)
    np.savez(d / "towers.npz", **t)
    with pytest.raises(ModelDirError, match=message):
        load_model_dir(d)


def test_a_non_finite_ranking_tower_is_refused(tmp_path):
    d = add_ranking_tower(write_model_dir(tmp_path / "m"))
    t = dict(np.load(d / "towers.npz"))
    t["rank_movie_bias"][3] = np.nan
    np.savez(d / "towers.npz", **t)
    with pytest.raises(ModelDirError, match="rank_movie_bias holds NaN"):
        load_model_dir(d)
