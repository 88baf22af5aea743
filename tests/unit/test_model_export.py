"""The saved model directory: layout, dtypes, and NumPy scoring equal to the Keras model (cold start too)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import modeldir
from features.compute import user_features
from modeldir import ReferenceScorer
from training.export import export_model_dir
from training.fit import FitResult, TrainingData, fit
from training.hyperparameters import Hyperparameters

GENRES = ["Action", "Comedy", "Drama", "Sci-Fi", "Romance"]


def synthetic_tables(seed: int = 0, n_users: int = 40, n_movies: int = 60, n_ratings: int = 1200):
    rng = np.random.default_rng(seed)
    movies = pd.DataFrame(
        {
            "movie_id": np.arange(1, n_movies + 1, dtype=np.int32) * 3,  # sparse ids: rows != ids
            "title": [f"Movie {i}" for i in range(n_movies)],
            "year": pd.array(rng.integers(1950, 2000, n_movies), dtype="Int16"),
            "genres": [
                "|".join(sorted(rng.choice(GENRES, size=rng.integers(1, 3), replace=False)))
                for _ in range(n_movies)
            ],
        }
    )
    movies.loc[3, "year"] = pd.NA
    taste = rng.normal(size=(n_users, 3))
    traits = rng.normal(size=(n_movies, 3))
    u = rng.integers(0, n_users, n_ratings)
    m = rng.integers(0, n_movies, n_ratings)
    raw = 3.5 + (taste[u] * traits[m]).sum(axis=1) * 0.5 + rng.normal(scale=0.3, size=n_ratings)
    ratings = pd.DataFrame(
        {
            "user_id": (u + 100).astype(np.int32),
            "movie_id": movies["movie_id"].to_numpy()[m],
            "rating": np.clip(np.round(raw), 1, 5).astype(np.float32),
            "timestamp": (880_000_000 + rng.integers(0, 10_000_000, n_ratings)).astype(np.int64),
        }
    ).drop_duplicates(["user_id", "movie_id"], ignore_index=True)
    return ratings, movies


@pytest.fixture(scope="module")
def trained() -> tuple[FitResult, pd.DataFrame, pd.DataFrame]:
    ratings, movies = synthetic_tables()
    hp = Hyperparameters(epochs=3, batch_size=128, embedding_dim=8, seed=7, dataset="synthetic")
    # The last movie is in the catalog but never rated in training: its id part must stay zero.
    unrated = movies["movie_id"].iloc[-1]
    train = ratings[ratings["movie_id"] != unrated]
    return fit(TrainingData(ratings=train, movies=movies), hp), train, movies


@pytest.fixture(scope="module")
def model_dir(trained, tmp_path_factory) -> Path:
    result, _, _ = trained
    out = tmp_path_factory.mktemp("model")
    return export_model_dir(result, out, metadata={"git_commit": "abc123", "mlflow_run_id": "run-1"})


def numpy_scores(towers, meta, user_ids, movie_ids, feats):
    """Contract section 3, written independently of training/: what serving computes."""
    z = (feats - towers["feature_mean"]) / towers["feature_std"]
    rows = {int(u): i for i, u in enumerate(towers["user_ids"])}
    mrows = {int(m): i for i, m in enumerate(towers["movie_ids"])}
    out = []
    for uid, mid, zi in zip(user_ids, movie_ids, z, strict=True):
        r = rows.get(int(uid))
        uv = (towers["user_id_vectors"][r] if r is not None else 0.0) + zi @ towers["user_feature_weights"]
        ub = (towers["user_id_bias"][r] if r is not None else 0.0) + zi @ towers["user_feature_bias_weights"]
        j = mrows[int(mid)]
        s = towers["global_bias"] + ub + towers["movie_bias"][j] + uv @ towers["movie_vectors"][j]
        out.append(s)
    lo, hi = meta["rating_range"]
    return np.clip(np.array(out, dtype=np.float64), lo, hi)


def test_layout_is_exactly_the_contract(model_dir: Path):
    files = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())
    assert files == ["catalog.parquet", "keras/model.keras", "metadata.json", "rated.npz", "towers.npz"]


def test_metadata_names_lineage_and_model_shape(model_dir: Path, trained):
    result, _, _ = trained
    meta = json.loads((model_dir / "metadata.json").read_text())
    for key in (
        "model_name",
        "model_version",
        "dataset",
        "dataset_version",
        "feature_definition_version",
        "hyperparameters",
        "metrics",
        "git_commit",
        "mlflow_run_id",
        "created_at",
        "user_feature_names",
        "embedding_dim",
        "rating_range",
    ):
        assert key in meta, key
    assert meta["git_commit"] == "abc123" and meta["mlflow_run_id"] == "run-1"
    assert meta["dataset"] == "synthetic"
    assert meta["embedding_dim"] == 8
    assert meta["rating_range"] == [1.0, 5.0]
    assert meta["user_feature_names"] == result.user_feature_names
    assert "user_rating_mean" in meta["user_feature_names"]
    assert meta["hyperparameters"]["seed"] == 7


def test_towers_keys_dtypes_and_shapes(model_dir: Path, trained):
    _, train, movies = trained
    t = np.load(model_dir / "towers.npz")
    n, u = len(movies), train["user_id"].nunique()
    meta = json.loads((model_dir / "metadata.json").read_text())
    f, d = len(meta["user_feature_names"]), meta["embedding_dim"]
    expect = {
        "movie_ids": ("int64", (n,)),
        "movie_vectors": ("float32", (n, d)),
        "movie_bias": ("float32", (n,)),
        "global_bias": ("float32", ()),
        "user_ids": ("int64", (u,)),
        "user_id_vectors": ("float32", (u, d)),
        "user_id_bias": ("float32", (u,)),
        "user_feature_weights": ("float32", (f, d)),
        "user_feature_bias_weights": ("float32", (f,)),
        "feature_mean": ("float32", (f,)),
        "feature_std": ("float32", (f,)),
        # The ranking tower (on by default).
        "rank_movie_vectors": ("float32", (n, meta["ranking_dim"])),
        "rank_movie_bias": ("float32", (n,)),
        "rank_user_id_vectors": ("float32", (u, meta["ranking_dim"])),
        "rank_user_feature_weights": ("float32", (f, meta["ranking_dim"])),
    }
    assert sorted(t.files) == sorted(expect)
    for key, (dtype, shape) in expect.items():
        assert str(t[key].dtype) == dtype, key
        assert t[key].shape == shape, key
    assert (t["feature_std"] > 0).all()


def test_catalog_and_rated(model_dir: Path, trained):
    _, train, movies = trained
    cat = pd.read_parquet(model_dir / "catalog.parquet")
    assert list(cat.columns) == ["movie_id", "title", "year", "genres", "popularity_rank"]
    t = np.load(model_dir / "towers.npz")
    assert (cat["movie_id"].to_numpy() == t["movie_ids"]).all()
    assert sorted(cat["popularity_rank"]) == list(range(1, len(movies) + 1))
    counts = train["movie_id"].value_counts()
    top = cat.loc[cat["popularity_rank"] == 1, "movie_id"].item()
    assert counts[top] == counts.max()
    rated = np.load(model_dir / "rated.npz")
    assert (np.diff(rated["user_ids"]) > 0).all()
    assert rated["indptr"][0] == 0 and rated["indptr"][-1] == rated["movie_idx"].size
    for i, uid in enumerate(rated["user_ids"]):
        got = set(t["movie_ids"][rated["movie_idx"][rated["indptr"][i] : rated["indptr"][i + 1]]].tolist())
        assert got == set(train.loc[train["user_id"] == uid, "movie_id"].tolist())


def test_numpy_scores_equal_keras_including_cold_start(model_dir: Path, trained):
    _, train, movies = trained
    t = {k: v for k, v in np.load(model_dir / "towers.npz").items()}
    meta = json.loads((model_dir / "metadata.json").read_text())
    names = meta["user_feature_names"]
    feats = user_features(train, movies).set_index("user_id")[names]
    known = feats.index.to_numpy()[:10]
    # Cold-start users: ids never seen in training, with the features of real users and of a new one.
    cold = np.array([9_001, 9_002, 9_003])
    cold_feats = np.vstack([feats.iloc[0].to_numpy(), feats.iloc[5].to_numpy(), feats.mean().to_numpy()])
    rng = np.random.default_rng(1)
    users = np.concatenate([np.repeat(known, 6), np.repeat(cold, 6)])
    mids = rng.choice(t["movie_ids"], size=users.size)
    mids[:3] = movies["movie_id"].iloc[-1]  # the catalog movie nobody rated in training
    x = np.vstack([np.repeat(feats.loc[known].to_numpy(), 6, axis=0), np.repeat(cold_feats, 6, axis=0)])
    want = numpy_scores(t, meta, users, mids, x)
    model = keras.saving.load_model(model_dir / "keras" / "model.keras")
    got = model.predict(
        {
            "user_id": users.astype("int64"),
            "movie_id": mids.astype("int64"),
            "user_features": x.astype("float32"),
        },
        verbose=0,
    )["rating"]
    np.testing.assert_allclose(got.ravel(), want, atol=1e-4)
    # The reference scorer (Evaluate's, the benchmark's, serving's yardstick) gives Keras's ratings too.
    reference = ReferenceScorer(modeldir.load(model_dir)).predict(users, mids, x)
    np.testing.assert_allclose(reference, got.ravel(), atol=1e-4)
    # The scores vary with the user: a cold user's answer comes from its features, not a constant.
    assert np.std(want[-18:]) > 1e-3


def test_cold_start_without_features_is_bias_only(model_dir: Path):
    t = {k: v for k, v in np.load(model_dir / "towers.npz").items()}
    meta = json.loads((model_dir / "metadata.json").read_text())
    model = keras.saving.load_model(model_dir / "keras" / "model.keras")
    f = len(meta["user_feature_names"])
    mids = t["movie_ids"][:5]
    # Features at their mean standardize to z = 0: only the global and movie biases remain.
    got = model.predict(
        {
            "user_id": np.full(5, 123_456, "int64"),
            "movie_id": mids,
            "user_features": np.tile(t["feature_mean"], (5, 1)),
        },
        verbose=0,
    )["rating"].ravel()
    np.testing.assert_allclose(got, np.clip(t["global_bias"] + t["movie_bias"][:5], 1, 5), atol=1e-4)
    assert f > 0


def test_unknown_movie_in_a_request_gets_global_bias_not_an_error(model_dir: Path):
    t = {k: v for k, v in np.load(model_dir / "towers.npz").items()}
    model = keras.saving.load_model(model_dir / "keras" / "model.keras")
    got = model.predict(
        {
            "user_id": np.array([9_999], "int64"),
            "movie_id": np.array([777_777], "int64"),
            "user_features": t["feature_mean"][None, :],
        },
        verbose=0,
    )["rating"].ravel()
    np.testing.assert_allclose(got, np.clip(t["global_bias"], 1, 5), atol=1e-5)


def test_catalog_movie_unseen_in_training_has_features_part_only(trained):
    result, _, movies = trained
    core = result.training_model.get_layer("recommender")
    row = len(movies)  # the last catalog movie: row n (row 0 is 'unknown')
    t = result.towers
    x = core.tables.movie_x[row]
    np.testing.assert_allclose(t["movie_vectors"][-1], x @ core.movie_feat_w.numpy(), atol=1e-6)
    assert core.tables.movie_seen[row] == 0


def test_towers_match_the_training_model(trained):
    """Folding the implicit term into user vectors at export changes no score of a known pair."""
    result, train, _ = trained
    sample = train.sample(50, random_state=0)
    from training.fit import predict_ratings

    feats = user_features(train, trained[2]).set_index("user_id")
    towers_pred = predict_ratings(result, sample, feats)
    users = pd.Index(result.towers["user_ids"]).get_indexer(sample["user_id"]) + 1
    movies = pd.Index(result.towers["movie_ids"]).get_indexer(sample["movie_id"]) + 1
    core = result.training_model.get_layer("recommender")
    rating = core(np.asarray(users, "int32"), np.asarray(movies, "int32"))
    np.testing.assert_allclose(towers_pred, np.clip(np.asarray(rating), 1, 5), atol=1e-4)


def test_export_refuses_metadata_that_contradicts_the_model(trained, tmp_path: Path):
    result, _, _ = trained
    with pytest.raises(ValueError, match="embedding_dim"):
        export_model_dir(result, tmp_path, metadata={"embedding_dim": 999})


def numpy_ranking_scores(towers, user_ids, feats):
    """Contract section 3's top-K score, written independently of training/: what serving ranks by."""
    z = (feats - towers["feature_mean"]) / towers["feature_std"]
    rows = {int(u): i for i, u in enumerate(towers["user_ids"])}
    out = []
    for uid, zi in zip(user_ids, z, strict=True):
        r = rows.get(int(uid))
        uv = (towers["rank_user_id_vectors"][r] if r is not None else 0.0) + zi @ towers[
            "rank_user_feature_weights"
        ]
        out.append(towers["rank_movie_bias"] + towers["rank_movie_vectors"] @ uv)
    return np.array(out)


def test_numpy_ranking_scores_equal_the_trained_logits(model_dir: Path, trained):
    """The exported ranking tower (history folded in, temperature folded into the movie side) gives the
    logits the softmax was trained on, for known users and for a cold user without features."""
    result, train, movies = trained
    t = {k: v for k, v in np.load(model_dir / "towers.npz").items()}
    core = result.training_model.get_layer("recommender")
    users = t["user_ids"][:12]
    user_rows = pd.Index(t["user_ids"]).get_indexer(users) + 1
    rows = np.concatenate([user_rows, [0]]).astype("int32")  # row 0: the unknown user
    _, logits = core(rows, np.ones_like(rows), with_ranking=True)
    got = np.asarray(logits)[:, 1:]  # column 0 is the unknown movie row
    names = json.loads((model_dir / "metadata.json").read_text())["user_feature_names"]
    raw = np.vstack(
        [
            user_features(train, movies).set_index("user_id").loc[users, names].to_numpy(),
            t["feature_mean"][None, :],  # a cold user at the mean: z = 0
        ]
    )
    want = numpy_ranking_scores(t, np.concatenate([users, [123_456]]), raw)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    reference = ReferenceScorer(modeldir.load(model_dir)).ranking_scores(
        np.concatenate([users, [123_456]]), raw
    )
    np.testing.assert_allclose(reference, got, rtol=1e-4, atol=1e-4)
    # A cold user without features ranks by the ranking tower's movie bias (popularity-like), not 0s.
    assert np.std(want[-1]) > 1e-3


def test_ranking_tower_does_not_move_the_rating_tower(trained):
    """The two towers share no parameter: the same seed with and without the ranking loss gives the
    same rating tower (a ranking loss that reached the rating embeddings would change them)."""
    result, train, movies = trained
    hp = result.hyperparameters.model_copy(update={"ranking_weight": 0.0})
    without = fit(TrainingData(ratings=train, movies=movies), hp)
    assert "rank_movie_vectors" not in without.towers
    for key in ("movie_vectors", "movie_bias", "user_id_vectors", "user_id_bias", "user_feature_weights"):
        np.testing.assert_allclose(result.towers[key], without.towers[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_model_without_ranking_tower_exports_the_rating_towers_only(trained, tmp_path: Path):
    result, train, movies = trained
    hp = result.hyperparameters.model_copy(update={"ranking_weight": 0.0, "epochs": 1})
    plain = fit(TrainingData(ratings=train, movies=movies), hp)
    out = export_model_dir(plain, tmp_path, metadata={})
    t = np.load(out / "towers.npz")
    assert not any(k.startswith("rank_") for k in t.files)
    assert json.loads((out / "metadata.json").read_text())["ranking_dim"] is None


def test_export_refuses_a_partial_ranking_tower(trained, tmp_path: Path):
    result, _, _ = trained
    towers = {k: v for k, v in result.towers.items() if k != "rank_movie_bias"}
    broken = FitResult(**{**result.__dict__, "towers": towers})
    with pytest.raises(ValueError, match="rank_movie_bias"):
        export_model_dir(broken, tmp_path, metadata={})


def test_export_refuses_a_catalog_without_a_contract_column(trained, tmp_path: Path):
    result, _, _ = trained
    broken = FitResult(**{**result.__dict__, "catalog": result.catalog.drop(columns="popularity_rank")})
    with pytest.raises(ValueError, match="popularity_rank"):
        export_model_dir(broken, tmp_path, metadata={})


def test_export_refuses_non_finite_towers_through_modeldir(trained, tmp_path: Path):
    result, _, _ = trained
    bias = result.towers["movie_bias"].copy()
    bias[0] = np.nan
    broken = FitResult(**{**result.__dict__, "towers": {**result.towers, "movie_bias": bias}})
    with pytest.raises(ValueError, match="movie_bias holds NaN"):
        export_model_dir(broken, tmp_path, metadata={})
    assert not (tmp_path / "towers.npz").exists()
