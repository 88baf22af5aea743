"""Checkpoints: atomic per-epoch saves, restore of weights and optimizer state, resume of a real fit."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from dataset.schema import GENRES
from training.checkpoints import CheckpointCallback, CheckpointError, CheckpointStore
from training.fit import TrainingData, fit
from training.hyperparameters import Hyperparameters


class _SpotInterruptionError(Exception):
    """Stands in for a spot interruption: the process stops right after a checkpoint is written."""


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise _SpotInterruptionError(f"stopped after epoch {epoch + 1}")


class _FirstEpoch(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.first: int | None = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first is None:
            self.first = epoch


def synthetic_data(seed: int = 0, users: int = 40, movies: int = 30) -> TrainingData:
    """Small rating tables in the contract's shape, with real structure (user taste x movie genre)."""
    rng = np.random.default_rng(seed)
    movie_genres = [GENRES[1 + i % (len(GENRES) - 1)] for i in range(movies)]
    movie_table = pd.DataFrame(
        {
            "movie_id": np.arange(1, movies + 1, dtype=np.int32),
            "title": [f"Movie {i}" for i in range(1, movies + 1)],
            "year": pd.array([1980 + i % 20 for i in range(movies)], dtype="Int16"),
            "genres": movie_genres,
        }
    )
    taste = rng.normal(size=(users, 3))
    kind = rng.normal(size=(movies, 3))
    rows = []
    for u in range(users):
        for m in rng.choice(movies, size=12, replace=False):
            score = 3.5 + taste[u] @ kind[m] * 0.6 + rng.normal(scale=0.3)
            rows.append((u + 1, m + 1, float(np.clip(np.round(score), 1, 5)), 880_000_000 + len(rows) * 60))
    ratings = pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"]).astype(
        {"user_id": "int32", "movie_id": "int32", "rating": "float32", "timestamp": "int64"}
    )
    last = ratings.groupby("user_id")["timestamp"].transform("max") == ratings["timestamp"]
    return TrainingData(
        ratings=ratings[~last].reset_index(drop=True),
        movies=movie_table,
        validation=ratings[last].reset_index(drop=True),
    )


HP = {"epochs": "4", "batch_size": "64", "embedding_dim": "8", "seed": "3", "early_stopping_patience": "0"}


def _tiny_model() -> keras.Model:
    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(4, activation="relu")(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def _xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    return x, (x @ np.array([1.0, -2.0, 0.5], dtype="float32"))[:, None]


def test_save_then_restore_gives_back_weights_and_optimizer_state(tmp_path):
    x, y = _xy()
    model = _tiny_model()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    checkpoint = CheckpointStore(tmp_path).save(model, 2, {"loss": [1.0, 0.5]})
    assert checkpoint.epoch == 2 and checkpoint.path.name == "epoch-00002"

    fresh = _tiny_model()
    fresh.fit(x[:16], y[:16], epochs=1, batch_size=16, verbose=0)  # builds the optimizer with other state
    CheckpointStore(tmp_path).restore(fresh, CheckpointStore(tmp_path).latest())
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.optimizer.variables, fresh.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(fresh.optimizer.iterations.numpy()) == 8


def test_latest_ignores_half_written_and_keeps_newest(tmp_path):
    x, y = _xy()
    model = _tiny_model()
    model.fit(x, y, epochs=1, verbose=0)
    store = CheckpointStore(tmp_path, keep=2)
    for epoch in (1, 2, 3):
        store.save(model, epoch, {"loss": [0.0] * epoch})
    assert [c.epoch for c in store.all()] == [2, 3]
    # A crash in the middle of writing epoch 4 leaves a directory without its state file.
    (tmp_path / "epoch-00004").mkdir()
    (tmp_path / "epoch-00004" / "model.weights.h5").write_bytes(b"partial")
    latest = store.latest()
    assert latest is not None and latest.epoch == 3 and latest.history == {"loss": [0.0, 0.0, 0.0]}
    assert json.loads((latest.path / "state.json").read_text())["epoch"] == 3


def test_restore_into_a_different_model_is_refused(tmp_path):
    x, y = _xy()
    model = _tiny_model()
    model.fit(x, y, epochs=1, verbose=0)
    checkpoint = CheckpointStore(tmp_path).save(model, 1, {})
    other = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(7), keras.layers.Dense(1)])
    other.compile(optimizer="adam", loss="mse")
    with pytest.raises(CheckpointError, match="epoch-00001"):
        CheckpointStore(tmp_path).restore(other, checkpoint)


def test_keep_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="keep=0"):
        CheckpointStore(tmp_path, keep=0)


def test_interrupted_fit_resumes_at_epoch_3_and_ends_like_an_uninterrupted_run(tmp_path):
    data = synthetic_data()
    hp = Hyperparameters.from_sagemaker(HP)

    straight = fit(data, hp, callbacks=[CheckpointCallback(CheckpointStore(tmp_path / "straight"))])

    store = CheckpointStore(tmp_path / "spot")
    with pytest.raises(_SpotInterruptionError):
        fit(data, hp, callbacks=[CheckpointCallback(store), _StopAfter(2)])
    resume = store.latest()
    assert resume is not None and resume.epoch == 2

    first = _FirstEpoch()
    resumed = fit(data, hp, callbacks=[CheckpointCallback(store, resume), first], initial_epoch=resume.epoch)
    assert first.first == 2  # 0-based: the third epoch is the first one run after the restart
    assert store.latest().epoch == 4
    # The history kept in the checkpoints covers all four epochs, like the uninterrupted run's.
    assert len(store.latest().history["loss"]) == 4
    np.testing.assert_allclose(store.latest().history["loss"], straight.history["loss"], rtol=1e-5)
    for key in ("movie_vectors", "movie_bias", "user_id_vectors", "user_feature_weights", "global_bias"):
        np.testing.assert_allclose(resumed.towers[key], straight.towers[key], rtol=1e-5, atol=1e-6)
