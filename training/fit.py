"""Fit the recommender on contract tables: `TrainingData` in, `FitResult` (model, history, towers) out.

Why one module over 400 lines: the checks of the contract tables, the index and feature matrices
built from them and the fit that consumes them change together (the model's inputs); the Keras model
itself is `training.model`, the multi-worker loop `training.loop`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import pandas as pd
import tensorflow as tf

from features.compute import genre_matrix, movie_features, user_features
from features.definition import feature_view
from modeldir import ReferenceScorer, SavedModel
from training.hyperparameters import Hyperparameters
from training.loop import MultiWorkerFit, is_multi_worker
from training.metrics import mae, rmse
from training.model import (
    RATING_RANGE,
    ModelTables,
    build_serving_model,
    build_training_model,
    implicit_weights,
)

_RATING_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")
_MOVIE_COLUMNS = ("movie_id", "title", "year", "genres")


class TrainingDataError(ValueError):
    """The training tables break the contract; the message names the table, the value and the fix."""


def user_feature_names() -> list[str]:
    """The numeric user features the model reads, in definition order (string features cannot be scaled)."""
    view = feature_view("user_features")
    return [f.name for f in view.features if f.dtype in ("int64", "float64")]


@dataclass(frozen=True)
class TrainingData:
    """The tables of one training run (docs/contracts.md sections 1, 2 and 5)."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    validation: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    user_features: pd.DataFrame | None = None
    movie_features: pd.DataFrame | None = None

    @classmethod
    def from_channels(cls, root: Path) -> TrainingData:
        """Read the SageMaker channels under `root` (/opt/ml/input/data), laid out as contract section 5."""

        def read(rel: str, required: bool) -> pd.DataFrame | None:
            path = root / rel
            if path.is_file():
                return pd.read_parquet(path)
            if required:
                present = (
                    sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet")) if root.is_dir() else []
                )
                raise TrainingDataError(
                    f"missing training input {path}; the pipeline's Prepare step must write {rel} "
                    f"(docs/contracts.md section 5). Found: {present or 'nothing'}"
                )
            return None

        ratings = read("train/ratings.parquet", True)
        movies = read("catalog/movies.parquet", True)
        assert ratings is not None and movies is not None
        return cls(
            ratings=ratings,
            movies=movies,
            validation=read("validation/ratings.parquet", False),
            users=read("catalog/users.parquet", False),
            user_features=read("features/user_features.parquet", False),
            movie_features=read("features/movie_features.parquet", False),
        )


@dataclass
class FitResult:
    """A trained model: the serving-form Keras model, the training history and the contract's towers."""

    model: keras.Model
    history: dict[str, list[float]]
    towers: dict[str, npt.NDArray[Any]]
    training_model: keras.Model
    hyperparameters: Hyperparameters
    user_feature_names: list[str]
    catalog: pd.DataFrame  # movie_id, title, year, genres, popularity_rank
    rated: dict[str, npt.NDArray[Any]]  # contract section 3 rated.npz arrays
    metrics: dict[str, float] = field(default_factory=dict)
    epochs_run: int = 0


def fit(
    data: TrainingData,
    hp: Hyperparameters,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    initial_epoch: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    verbose: int = 0,
) -> FitResult:
    """Train on `data.ratings`, validate on `data.validation` (if any), and fold the result into towers.

    Deterministic for a given `hp.seed`: weights start from `keras.utils.set_random_seed(hp.seed)` and
    epoch e's shuffle and id dropout come from seed (hp.seed, e), so a run resumed at
    `initial_epoch=e` (with epoch e's weights and optimizer restored, e.g. by a callback's
    `on_train_begin`) ends where an uninterrupted run does.
    """
    if not 0 <= initial_epoch < hp.epochs:
        raise ValueError(
            f"initial_epoch={initial_epoch} must be in 0..{hp.epochs - 1} (hp.epochs={hp.epochs})"
        )
    prepared = _prepare(data)
    keras.utils.set_random_seed(hp.seed)
    scope = strategy.scope() if strategy is not None else _NullScope()
    with scope:
        model, core = build_training_model(prepared.tables, hp)
        steps = math.ceil(len(prepared.train_users) / hp.batch_size)
        lr: float | keras.optimizers.schedules.LearningRateSchedule = hp.learning_rate
        if hp.lr_decay:
            lr = keras.optimizers.schedules.CosineDecay(hp.learning_rate, hp.epochs * steps, alpha=0.05)
        losses: dict[str, Any] = {"rating": keras.losses.MeanSquaredError()}
        weights = {"rating": 1.0}
        if hp.ranking_weight > 0:
            losses["ranking"] = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            weights["ranking"] = hp.ranking_weight
        model.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss=losses,
            loss_weights=weights,
            metrics={"rating": [keras.metrics.RootMeanSquaredError(name="rmse")]},
            jit_compile=False,
        )
    train_ds = _train_dataset(prepared, hp, initial_epoch)
    all_callbacks = list(callbacks)
    val_ds = None
    if prepared.val_users is not None:
        val_ds = _eval_dataset(prepared, hp)
        if hp.early_stopping_patience > 0:
            all_callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=_val_rmse_key(hp),
                    patience=hp.early_stopping_patience,
                    restore_best_weights=True,
                    mode="min",
                )
            )
    run_fit: Any = model.fit
    if is_multi_worker(strategy):
        # Keras 3's model.fit fails under MultiWorkerMirroredStrategy (keras#20585): same call, own loop.
        run_fit = MultiWorkerFit(model, strategy).fit
    keras_history = run_fit(
        train_ds,
        epochs=hp.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps,
        validation_data=val_ds,
        callbacks=all_callbacks,
        verbose=verbose,
        shuffle=False,  # the dataset shuffles itself, seeded per epoch
    )
    history = {metric_name(k): [float(x) for x in v] for k, v in keras_history.history.items()}
    towers: dict[str, npt.NDArray[Any]] = dict(core.towers())
    towers.update(
        movie_ids=prepared.movie_ids,
        user_ids=prepared.user_ids,
        feature_mean=prepared.feature_mean,
        feature_std=prepared.feature_std,
    )
    serving = build_serving_model(towers)
    result = FitResult(
        model=serving,
        history=history,
        towers=towers,
        training_model=model,
        hyperparameters=hp,
        user_feature_names=prepared.feature_names,
        catalog=prepared.catalog,
        rated=prepared.rated,
        epochs_run=len(next(iter(history.values()), [])),
    )
    if data.validation is not None and len(data.validation):
        pred = predict_ratings(result, data.validation, prepared.features_by_user)
        truth = data.validation["rating"].to_numpy()
        result.metrics = {"val_rmse": rmse(truth, pred), "val_mae": mae(truth, pred)}
    return result


def _val_rmse_key(hp: Hyperparameters) -> str:
    # Keras prefixes a metric with its output's name only when the model has several outputs.
    return "val_rating_rmse" if hp.ranking_weight > 0 else "val_rmse"


def metric_name(key: str) -> str:
    """The stable name of a Keras log key, the same with or without the ranking head ("rmse", "val_rmse")."""
    return key.replace("rating_rmse", "rmse")


class _NullScope:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass(frozen=True)
class _Prepared:
    tables: ModelTables
    user_ids: npt.NDArray[np.int64]
    movie_ids: npt.NDArray[np.int64]
    feature_names: list[str]
    feature_mean: npt.NDArray[np.float32]
    feature_std: npt.NDArray[np.float32]
    features_by_user: pd.DataFrame  # raw user features of the training users, indexed by user_id
    train_users: npt.NDArray[np.int32]
    train_movies: npt.NDArray[np.int32]
    train_ratings: npt.NDArray[np.float32]
    train_pairs: npt.NDArray[np.int64]  # per training rating: its entry in the rated CSR arrays
    val_users: npt.NDArray[np.int32] | None
    val_movies: npt.NDArray[np.int32] | None
    val_ratings: npt.NDArray[np.float32] | None
    val_pairs: npt.NDArray[np.int64] | None  # -1 where the pair is not in the training history
    catalog: pd.DataFrame
    rated: dict[str, npt.NDArray[Any]]

    def history_weights(self, hp: Hyperparameters, pairs: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Each pair's weight in its user's ranking history (0 for a pair not in it)."""
        t = self.tables
        w = implicit_weights(t.rated_splits, t.rated_recency, hp.ranking_half_life)
        out: npt.NDArray[np.float32] = np.where(pairs >= 0, w[np.maximum(pairs, 0)], 0.0).astype(np.float32)
        return out


def _require(frame: pd.DataFrame, columns: Sequence[str], table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TrainingDataError(
            f"{table} lacks column(s) {missing} (has {list(frame.columns)}); see docs/contracts.md section 1"
        )


def _check_ratings(frame: pd.DataFrame, table: str, catalog: pd.Index) -> None:
    _require(frame, _RATING_COLUMNS, table)
    lo, hi = RATING_RANGE
    bad = ~frame["rating"].between(lo, hi)
    if bad.any():
        row = frame.loc[bad].iloc[0].to_dict()
        raise TrainingDataError(
            f"{table}: {int(bad.sum())} rating(s) outside {lo}-{hi}, e.g. {row}; validate the data first"
        )
    unknown = ~frame["movie_id"].isin(catalog)
    if unknown.any():
        ids = sorted(set(frame.loc[unknown, "movie_id"].tolist()))[:5]
        raise TrainingDataError(
            f"{table}: {int(unknown.sum())} rating(s) of movie ids missing from the movies table, "
            f"e.g. {ids}; train and catalog must come from the same dataset"
        )


def _standardize_stats(x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    mean = np.nanmean(x, axis=0)
    std = np.nanstd(x, axis=0)
    # A constant feature (std 0) carries no information; scale 1 keeps z finite and zero.
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    return mean.astype(np.float32), std.astype(np.float32)


def standardize(
    raw: npt.NDArray[np.float64], mean: npt.NDArray[np.float32], std: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """z = (x - mean) / std, with a missing value (NaN) standing for the mean (z = 0)."""
    z = (np.asarray(raw, dtype=np.float64) - mean) / std
    return np.nan_to_num(z, nan=0.0).astype(np.float32)


def _user_matrix(
    data: TrainingData, movies: pd.DataFrame, user_ids: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32], pd.DataFrame]:
    """Standardized user features (row 0: the unknown user at the mean), their mean, std and raw rows."""
    names = user_feature_names()
    ufeat = data.user_features
    if ufeat is None:
        ufeat = user_features(data.ratings, movies)
    _require(ufeat, ["user_id", *names], "user features")
    by_user = ufeat.drop_duplicates("user_id", keep="last").set_index("user_id")[names]
    missing_users = ~np.isin(user_ids, by_user.index.to_numpy())
    if missing_users.any():
        raise TrainingDataError(
            f"user features lack {int(missing_users.sum())} training user(s), e.g. "
            f"{user_ids[missing_users][:5].tolist()}; compute them from the same ratings (features.compute)"
        )
    raw = by_user.reindex(user_ids).to_numpy(dtype=np.float64)
    mean, std = _standardize_stats(raw)
    user_z = np.vstack([np.zeros((1, len(names)), np.float32), standardize(raw, mean, std)])
    return user_z, mean, std, by_user.reindex(user_ids)


def _prepare(data: TrainingData) -> _Prepared:
    _require(data.movies, _MOVIE_COLUMNS, "movies table")
    if data.movies["movie_id"].duplicated().any():
        dups = data.movies.loc[data.movies["movie_id"].duplicated(), "movie_id"].head(5).tolist()
        raise TrainingDataError(f"movies table has duplicate movie_id values, e.g. {dups}")
    movies = data.movies.sort_values("movie_id", ignore_index=True)
    movie_ids = movies["movie_id"].to_numpy(dtype=np.int64)
    catalog_index = pd.Index(movie_ids)
    ratings = data.ratings
    if ratings.empty:
        raise TrainingDataError("the training ratings table is empty: nothing to fit")
    _check_ratings(ratings, "training ratings", catalog_index)
    if data.validation is not None:
        _check_ratings(data.validation, "validation ratings", catalog_index)

    user_ids = np.unique(ratings["user_id"].to_numpy(dtype=np.int64))
    user_index = pd.Index(user_ids)
    u_rows = (user_index.get_indexer(ratings["user_id"].to_numpy(dtype=np.int64)) + 1).astype(np.int32)
    m_rows = (catalog_index.get_indexer(ratings["movie_id"].to_numpy(dtype=np.int64)) + 1).astype(np.int32)

    names = user_feature_names()
    user_z, mean, std, features_by_user = _user_matrix(data, movies, user_ids)

    mfeat = data.movie_features if data.movie_features is not None else movie_features(ratings, movies)
    movie_x = _movie_matrix(movies, mfeat)

    seen = np.zeros(movie_ids.size + 1, np.float32)
    seen[np.unique(m_rows)] = 1.0
    # CSR of user row -> rated movie rows (row 0, the unknown user, is empty), ordered by movie row;
    # recency counts back from the user's latest rating (a repeated pair keeps its latest time).
    pair_frame = (
        pd.DataFrame({"u": u_rows, "m": m_rows, "t": ratings["timestamp"].to_numpy(dtype=np.int64)})
        .groupby(["u", "m"], sort=True, as_index=False)["t"]
        .max()
    )
    pair_frame["recency"] = pair_frame.groupby("u")["t"].rank(method="first", ascending=False) - 1
    pairs = pair_frame[["u", "m"]].to_numpy(dtype=np.int64)
    counts = np.bincount(pairs[:, 0], minlength=user_ids.size + 1)
    splits = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    tables = ModelTables(
        n_users=int(user_ids.size),
        n_movies=int(movie_ids.size),
        user_z=user_z,
        movie_x=movie_x,
        movie_seen=seen,
        rated_splits=splits,
        rated_rows=pairs[:, 1].astype(np.int32),
        rated_recency=pair_frame["recency"].to_numpy(dtype=np.int32),
        global_mean=float(ratings["rating"].mean()),
    )
    pair_pos = pd.Series(
        np.arange(len(pairs), dtype=np.int64),
        index=pd.MultiIndex.from_arrays([pairs[:, 0], pairs[:, 1]]),
    )

    def pair_positions(u: npt.NDArray[np.int32], m: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
        found = pair_pos.reindex(pd.MultiIndex.from_arrays([u.astype(np.int64), m.astype(np.int64)]))
        return found.fillna(-1).to_numpy(dtype=np.int64)

    rated = {
        "user_ids": user_ids.astype(np.int64),
        "indptr": splits[1:].astype(np.int64) - splits[1],
        "movie_idx": (pairs[:, 1] - 1).astype(np.int32),
    }
    counts_by_movie = np.bincount(m_rows, minlength=movie_ids.size + 1)[1:]
    order_pop = np.lexsort((movie_ids, -counts_by_movie))
    pop_rank = np.empty(movie_ids.size, np.int64)
    pop_rank[order_pop] = np.arange(1, movie_ids.size + 1)
    catalog = pd.DataFrame(
        {
            "movie_id": movie_ids,
            "title": movies["title"].astype("string").to_numpy(),
            "year": movies["year"].astype("Int16").to_numpy(),
            "genres": movies["genres"].fillna("").astype("string").to_numpy(),
            "popularity_rank": pop_rank,
        }
    )

    val_u = val_m = val_r = val_p = None
    if data.validation is not None and len(data.validation):
        v = data.validation
        val_u = (user_index.get_indexer(v["user_id"].to_numpy(dtype=np.int64)) + 1).astype(np.int32)
        val_m = (catalog_index.get_indexer(v["movie_id"].to_numpy(dtype=np.int64)) + 1).astype(np.int32)
        val_r = v["rating"].to_numpy(dtype=np.float32)
        val_p = pair_positions(val_u, val_m)
    return _Prepared(
        tables=tables,
        user_ids=user_ids,
        movie_ids=movie_ids,
        feature_names=names,
        feature_mean=mean,
        feature_std=std,
        features_by_user=features_by_user,
        train_users=u_rows,
        train_movies=m_rows,
        train_ratings=ratings["rating"].to_numpy(dtype=np.float32),
        train_pairs=pair_positions(u_rows, m_rows),
        val_users=val_u,
        val_movies=val_m,
        val_ratings=val_r,
        val_pairs=val_p,
        catalog=catalog,
        rated=rated,
    )


def _movie_matrix(movies: pd.DataFrame, mfeat: pd.DataFrame) -> npt.NDArray[np.float32]:
    """Movie side information, one row per catalog movie plus a zero row 0 for unknown movies."""
    _require(
        mfeat,
        ["movie_id", "movie_rating_count", "movie_bayesian_rating", "movie_release_year"],
        "movie features",
    )
    ids = movies["movie_id"].to_numpy(dtype=np.int64)
    m = mfeat.drop_duplicates("movie_id", keep="last").set_index("movie_id").reindex(ids)
    genres = genre_matrix(movies).reindex(ids).to_numpy(dtype=np.float64)
    numeric = np.stack(
        [
            np.log1p(m["movie_rating_count"].astype("float64").fillna(0.0).to_numpy()),
            m["movie_bayesian_rating"].astype("float64").to_numpy(),
            m["movie_release_year"].astype("float64").to_numpy(),
        ],
        axis=1,
    )
    mean, std = _standardize_stats(numeric)
    x = np.hstack([standardize(numeric, mean, std), genres.astype(np.float32)])
    return np.vstack([np.zeros((1, x.shape[1]), np.float32), x]).astype(np.float32)


def _train_dataset(p: _Prepared, hp: Hyperparameters, initial_epoch: int) -> tf.data.Dataset:
    users = tf.constant(p.train_users)
    movies = tf.constant(p.train_movies)
    ratings = tf.constant(p.train_ratings)
    history = tf.constant(p.history_weights(hp, p.train_pairs))
    n = int(p.train_users.size)
    seed = hp.seed

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        e32 = tf.cast(e, tf.int32)
        order = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([seed, e32])))
        keep = tf.cast(
            tf.random.stateless_uniform([n], seed=tf.stack([seed + 2, e32])) >= hp.id_dropout, tf.float32
        )
        x = {
            "user_index": tf.gather(users, order),
            "movie_index": tf.gather(movies, order),
            "id_keep": keep,
        }
        y = {"rating": tf.gather(ratings, order)}
        if hp.ranking_weight > 0:
            x["history_weight"] = tf.gather(history, order)
            y["ranking"] = tf.gather(movies, order)
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(hp.batch_size)

    return tf.data.Dataset.range(initial_epoch, hp.epochs).flat_map(epoch).prefetch(tf.data.AUTOTUNE)


def _eval_dataset(p: _Prepared, hp: Hyperparameters) -> tf.data.Dataset:
    assert p.val_users is not None and p.val_movies is not None and p.val_ratings is not None
    n = int(p.val_users.size)
    x: dict[str, npt.NDArray[Any]] = {
        "user_index": p.val_users,
        "movie_index": p.val_movies,
        "id_keep": np.ones(n, np.float32),
    }
    y: dict[str, npt.NDArray[Any]] = {"rating": p.val_ratings}
    if hp.ranking_weight > 0:
        assert p.val_pairs is not None
        x["history_weight"] = p.history_weights(hp, p.val_pairs)
        y["ranking"] = p.val_movies
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(max(hp.batch_size, 4096))


def predict_ratings(
    result: FitResult, pairs: pd.DataFrame, features_by_user: pd.DataFrame | None
) -> npt.NDArray[np.float32]:
    """Clipped predicted ratings of `pairs` (user_id, movie_id) by modeldir's reference scorer."""
    uid = pairs["user_id"].to_numpy(dtype=np.int64)
    feats = None
    if features_by_user is not None:
        feats = features_by_user.reindex(uid)[result.user_feature_names].to_numpy(dtype=np.float64)
    scorer = ReferenceScorer(SavedModel.from_arrays(result.towers, result.user_feature_names, RATING_RANGE))
    return scorer.predict(uid, pairs["movie_id"].to_numpy(dtype=np.int64), feats).astype(np.float32)
