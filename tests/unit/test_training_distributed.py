"""Multi-worker pieces that need no second process: TF_CONFIG, the chief, the weights digest, the loop.

The loop is checked against `model.fit` itself: under a one-worker MultiWorkerMirroredStrategy (one
replica, no peers) both must take the very same steps, so the weights must come out identical and
the History must hold the same keys and values. The two-worker run is
tests/integration/test_training_multiworker.py.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.contract import ResourceConfig
from training.distributed import strategy_for, tf_config, wait_for_all_workers, weights_digest
from training.loop import MultiWorkerFit, is_multi_worker


@pytest.fixture(scope="module")
def strategy() -> tf.distribute.Strategy:
    # No TF_CONFIG: a one-worker cluster of this process' CPU, the multi-worker code path without peers.
    return tf.distribute.MultiWorkerMirroredStrategy()


def test_three_hosts_in_hosts_order_with_the_first_as_chief():
    hosts = ("algo-1", "algo-2", "algo-3")
    configs = [tf_config(ResourceConfig(h, hosts), 2222) for h in hosts]
    assert {json.dumps(c["cluster"]) for c in configs} == {
        json.dumps({"worker": ["algo-1:2222", "algo-2:2222", "algo-3:2222"]})
    }
    assert [c["task"]["index"] for c in configs] == [0, 1, 2]
    assert [ResourceConfig(h, hosts).is_chief for h in hosts] == [True, False, False]


def test_one_host_leaves_tf_config_alone(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert strategy_for(ResourceConfig("algo-1", ("algo-1",)), {"MLOPS_TF_WORKERS": "x"}) is None
    assert "TF_CONFIG" not in __import__("os").environ


def test_weights_digest_sees_one_ulp_and_ignores_key_order():
    a = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)}
    same = {"b": np.zeros(3, np.float32), "w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    assert weights_digest(a) == weights_digest(same)
    nudged = {**a, "w": a["w"].copy()}
    nudged["w"][1, 2] = np.nextafter(nudged["w"][1, 2], np.float32(10))
    assert weights_digest(nudged) != weights_digest(a)
    assert weights_digest({**a, "w": a["w"].reshape(3, 2)}) != weights_digest(a)
    assert weights_digest({**a, "w": a["w"].astype(np.float64)}) != weights_digest(a)


def test_only_a_multi_worker_strategy_takes_the_loop(strategy):
    assert is_multi_worker(strategy)
    assert not is_multi_worker(None)
    assert not is_multi_worker(tf.distribute.get_strategy())


def _model(seed: int) -> keras.Model:
    """Dict inputs, two weighted outputs, an add_loss term and a metric: what the loop must follow."""
    keras.utils.set_random_seed(seed)
    a = keras.Input(shape=(3,), name="a")
    b = keras.Input(shape=(2,), name="b")
    hidden = keras.layers.Dense(
        4, activation="relu", name="hidden", activity_regularizer=keras.regularizers.L2(0.01)
    )(keras.layers.Concatenate()([a, b]))
    model = keras.Model(
        {"a": a, "b": b},
        {
            "value": keras.layers.Dense(1, name="value")(hidden),
            "kind": keras.layers.Dense(3, name="kind")(hidden),
        },
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss={"value": "mse", "kind": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        loss_weights={"value": 1.0, "kind": 0.3},
        metrics={"value": [keras.metrics.RootMeanSquaredError(name="rmse")]},
    )
    return model


def _data(n: int, batch: int, seed: int) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 3)).astype(np.float32)
    b = rng.normal(size=(n, 2)).astype(np.float32)
    value = (a @ [1.0, -2.0, 0.5] + b @ [0.3, 0.7]).astype(np.float32)[:, None]
    kind = (a[:, 0] > 0).astype(np.int32) + (b[:, 1] > 0.5).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices(({"a": a, "b": b}, {"value": value, "kind": kind})).batch(batch)


class _Record(keras.callbacks.Callback):
    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.events: list[str] = []
        self.stop_after = stop_after

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(f"epoch_end {epoch} {sorted(logs)}")
        if self.stop_after is not None and epoch + 1 >= self.stop_after:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.events.append("train_end")


def test_loop_takes_the_same_steps_as_model_fit(strategy):
    # 50 examples in batches of 16: the last batch of each epoch is short, as in real runs.
    train, val = _data(50, 16, seed=1), _data(20, 16, seed=2)
    steps, epochs = 4, 3
    reference = _model(seed=7)
    expected = reference.fit(
        train.repeat(), epochs=epochs, steps_per_epoch=steps, validation_data=val, verbose=0, shuffle=False
    ).history
    with strategy.scope():
        model = _model(seed=7)
    fitter = MultiWorkerFit(model, strategy)
    record = _Record()
    got = fitter.fit(
        train.repeat(), epochs=epochs, steps_per_epoch=steps, validation_data=val, callbacks=[record]
    ).history

    assert sorted(got) == sorted(expected)
    assert {"loss", "value_loss", "kind_loss", "value_rmse", "val_loss", "val_value_rmse"} <= set(got)
    for key, values in expected.items():
        np.testing.assert_allclose(got[key], values, rtol=1e-5, err_msg=key)
    assert got["loss"][-1] < got["loss"][0]
    for mine, theirs in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-7)
    assert fitter.local_examples == fitter.global_examples == [50, 50, 50]
    assert record.events[0] == "train_begin" and record.events[-1] == "train_end"
    assert record.events[1:3] == ["epoch_begin 0", f"epoch_end 0 {sorted(expected)}"]


def test_loop_resumes_at_initial_epoch_and_honours_stop_training(strategy):
    with strategy.scope():
        model = _model(seed=3)
    record = _Record(stop_after=3)
    history = MultiWorkerFit(model, strategy).fit(
        _data(40, 8, seed=4).repeat(), epochs=6, initial_epoch=1, steps_per_epoch=5, callbacks=[record]
    )
    assert [e for e in record.events if e.startswith("epoch_begin")] == ["epoch_begin 1", "epoch_begin 2"]
    assert len(history.history["loss"]) == 2
    assert "val_loss" not in history.history


def test_loop_refuses_what_it_cannot_do(strategy):
    with strategy.scope():
        model = _model(seed=0)
        bare = keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="not compiled"):
        MultiWorkerFit(bare, strategy)
    fitter = MultiWorkerFit(model, strategy)
    with pytest.raises(ValueError, match="shuffle=True"):
        fitter.fit(_data(8, 4, 0), epochs=1, steps_per_epoch=2, shuffle=True)
    with pytest.raises(TypeError, match="ndarray"):
        fitter.fit(np.zeros((4, 2)), epochs=1, steps_per_epoch=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="initial_epoch=2"):
        fitter.fit(_data(8, 4, 0), epochs=2, initial_epoch=2, steps_per_epoch=2)


def test_a_dataset_that_runs_out_is_named(strategy):
    with strategy.scope():
        model = _model(seed=0)
    with pytest.raises(ValueError, match=r"ran out at step 3 of epoch 2: .* 4 x 2"):
        MultiWorkerFit(model, strategy).fit(_data(24, 4, 0), epochs=2, steps_per_epoch=4)


def test_the_end_of_training_counts_every_worker(strategy):
    wait_for_all_workers(strategy, 1)
    with pytest.raises(RuntimeError, match=r"1 worker.*expected 2"):
        wait_for_all_workers(strategy, 2)
