"""A training loop for MultiWorkerMirroredStrategy, standing in for `model.fit` where Keras 3's fails.

Keras 3's `model.fit` cannot run under `tf.distribute.MultiWorkerMirroredStrategy` (keras-team/keras#20585):
before the first step it reduces a per-replica batch with `strategy.reduce`, which a multi-worker
strategy refuses for a nested (dict or tuple) batch. This loop does what `fit` does, step for step,
with public Keras and tf.distribute calls:

- the dataset is split between the workers by `strategy.experimental_distribute_dataset` (each
  global batch is cut into one piece per replica; every worker takes the same number of steps);
- each step runs `strategy.run` in a `tf.function`: the loss is the compiled model's own
  (`model.compute_loss`: the compiled losses and loss weights plus the model's `add_loss` terms,
  already scaled by 1 / replicas), and `optimizer.apply_gradients` sums the gradients of every
  replica of every worker (an all-reduce) before the update, so all workers keep the same weights;
- the compiled metrics and per-output losses are the model's (`model.compute_metrics`), read once
  per epoch across all workers, so the epoch logs carry the same keys and the same meaning as
  `fit`'s History (`loss`, `rmse`, `val_loss`, `val_rmse`, ...) and every worker sees the same
  figures (callbacks such as early stopping take the same decision everywhere);
- the callbacks' hooks run as in `fit` (`keras.callbacks.CallbackList`), so checkpoints, MLflow
  logging and early stopping work unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf


def is_multi_worker(strategy: tf.distribute.Strategy | None) -> bool:
    """True for a MultiWorkerMirroredStrategy, the one strategy `model.fit` cannot train under."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


class MultiWorkerFit:
    """`fit(...)` with `model.fit`'s arguments and History, for a model compiled in `strategy.scope()`."""

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy) -> None:
        """Train `model` (built and compiled inside `strategy.scope()`) under `strategy`."""
        if getattr(model, "optimizer", None) is None:
            raise ValueError(
                f"model {model.name!r} is not compiled: compile it (optimizer, loss, metrics) inside "
                "strategy.scope() before training it with MultiWorkerFit."
            )
        self.model = model
        self.strategy = strategy
        # Examples this worker trained on, and all workers together, per epoch run (for the logs and
        # for tests that check the data was split, not copied).
        self.local_examples: list[int] = []
        self.global_examples: list[int] = []
        with strategy.scope():
            self._loss = keras.metrics.Mean(name="loss")
        self._train_step: Callable[[Any], Any] | None = None
        self._test_step: Callable[[Any], Any] | None = None
        self._results: Callable[[], Any] | None = None

    def fit(
        self,
        x: tf.data.Dataset,
        *,
        epochs: int,
        steps_per_epoch: int,
        initial_epoch: int = 0,
        validation_data: tf.data.Dataset | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        verbose: int = 0,
        shuffle: bool = False,
    ) -> keras.callbacks.History:
        """Train for epochs `initial_epoch`..`epochs - 1`, `steps_per_epoch` global batches each."""
        if not isinstance(x, tf.data.Dataset):
            raise TypeError(
                f"MultiWorkerFit trains from a tf.data.Dataset of (inputs, targets) batches, got "
                f"{type(x).__name__}; wrap the arrays in tf.data.Dataset.from_tensor_slices(...).batch(n)."
            )
        if shuffle:
            raise ValueError(
                "shuffle=True: MultiWorkerFit does not reshuffle a dataset; shuffle it in the dataset "
                "itself (seeded, so every worker draws the same order before it is split)."
            )
        if steps_per_epoch < 1 or not 0 <= initial_epoch < epochs:
            raise ValueError(
                f"steps_per_epoch={steps_per_epoch}, initial_epoch={initial_epoch}, epochs={epochs}: "
                "need steps_per_epoch >= 1 and 0 <= initial_epoch < epochs."
            )
        model, strategy = self.model, self.strategy
        self._build(x)
        train_iter = iter(strategy.experimental_distribute_dataset(_shard_by_data(x)))
        val_dist = (
            strategy.experimental_distribute_dataset(_shard_by_data(validation_data))
            if validation_data is not None
            else None
        )
        history = keras.callbacks.History()
        cbs = keras.callbacks.CallbackList(
            [*callbacks, history],
            add_history=True,
            add_progbar=verbose != 0,
            model=model,
            verbose=verbose,
            epochs=epochs,
            steps=steps_per_epoch,
        )
        model.stop_training = False
        cbs.on_train_begin()
        logs: dict[str, float] = {}
        for epoch in range(initial_epoch, epochs):
            model.reset_metrics()
            self._loss.reset_state()
            cbs.on_epoch_begin(epoch)
            counts = []
            for step in range(steps_per_epoch):
                cbs.on_train_batch_begin(step)
                assert self._train_step is not None
                try:
                    counts.append(self._train_step(train_iter))
                except tf.errors.OutOfRangeError as err:
                    raise ValueError(
                        f"the training dataset ran out at step {step + 1} of epoch {epoch + 1}: it must "
                        f"yield steps_per_epoch x epochs = {steps_per_epoch} x {epochs - initial_epoch} "
                        "batches (repeat it, or lower steps_per_epoch)."
                    ) from err
                cbs.on_train_batch_end(step)
            logs = self._epoch_results()
            local = int(sum(int(c) for c in counts))
            total = int(self.strategy.reduce(tf.distribute.ReduceOp.SUM, tf.constant(local), axis=None))
            self.local_examples.append(local)
            self.global_examples.append(total)
            if val_dist is not None:
                model.reset_metrics()
                self._loss.reset_state()
                val_iter = iter(val_dist)
                assert self._test_step is not None
                # Until no worker has a batch left (a worker that runs out first gets empty ones).
                while bool(self._test_step(val_iter)):
                    pass
                logs.update({f"val_{k}": v for k, v in self._epoch_results().items()})
            _log(
                f"epoch {epoch + 1}/{epochs}: this worker trained on {local} examples, all "
                f"{strategy.num_replicas_in_sync} replicas on {total}"
            )
            cbs.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        cbs.on_train_end(logs)
        return history

    def _build(self, dataset: tf.data.Dataset) -> None:
        """Create every variable (metrics, per-output losses, optimizer) before the first traced step."""
        if self._train_step is not None:
            return
        model, strategy = self.model, self.strategy
        self._build_variables(dataset)
        replicas = strategy.num_replicas_in_sync

        def track(loss: tf.Tensor, x: Any, y: Any, y_pred: Any, sample_weight: Any) -> tf.Tensor:
            n = tf.shape(tf.nest.flatten(x)[0])[0]
            # A replica can get an empty piece of an epoch's last, short batch: its mean is NaN (a
            # mean over nothing) and it must weigh nothing, not poison the epoch's loss.
            value = tf.where(n > 0, loss * replicas, tf.zeros_like(loss))
            self._loss.update_state(value, sample_weight=tf.cast(n, loss.dtype))
            model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
            return n

        def train_replica(data: Any) -> tf.Tensor:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            with tf.GradientTape() as tape:
                y_pred = model(x, training=True)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
                scaled = model.optimizer.scale_loss(loss)
            variables = model.trainable_variables
            grads = tape.gradient(scaled, variables)
            # In a replica context the optimizer all-reduces (sums) the gradients over every replica.
            model.optimizer.apply_gradients(zip(grads, variables, strict=True))
            return track(loss, x, y, y_pred, sample_weight)

        def test_replica(data: Any) -> tf.Tensor:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)

            def evaluate() -> tf.Tensor:
                y_pred = model(x, training=False)
                loss = model.compute_loss(
                    x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
                )
                return track(loss, x, y, y_pred, sample_weight)

            # Keras' per-output loss trackers count every call, even on no data: an empty piece must
            # not run. (No collective op in here, so workers may branch differently.)
            n = tf.shape(tf.nest.flatten(x)[0])[0]
            return tf.cond(n > 0, evaluate, lambda: n)

        def train_step(iterator: Any) -> tf.Tensor:
            per_replica = strategy.run(train_replica, args=(next(iterator),))
            return tf.add_n(strategy.experimental_local_results(per_replica))

        # Both steps take the iterator, not a batch, so they are traced once for the dataset's spec
        # (batch size unknown), as `fit` traces them; a traced concrete batch size would weigh the
        # per-output loss trackers differently from `fit`.
        def test_step(iterator: Any) -> tf.Tensor:
            # Not next(iterator): past the end it raises, but ops of the step that do not wait for the
            # data (a tracker's count += 1) would already have run.
            batch = iterator.get_next_as_optional()
            if batch.has_value():
                strategy.run(test_replica, args=(batch.get_value(),))
            return batch.has_value()

        def results() -> dict[str, tf.Tensor]:
            # Read in cross-replica context: each metric's variables are summed over all workers.
            out = dict(model.get_metrics_result())
            out["loss"] = self._loss.result()
            return out

        # Compiled once here, so every epoch reuses the same graphs.
        self._train_step = tf.function(train_step)
        self._test_step = tf.function(test_step)
        self._results = tf.function(results)

    def _build_variables(self, dataset: tf.data.Dataset) -> None:
        """Create the model's and the optimizer's variables from one local batch, as `fit` would."""
        # Variables must not be born inside a replica's step. `fit` builds them from one symbolic batch
        # (its `_symbolic_build`); the upstream bug is only in how it gets that batch, so the same call
        # with a local, undistributed batch builds exactly what `fit` would.
        batch = next(iter(dataset.take(1)))
        with self.strategy.scope():
            self.model._symbolic_build(data_batch=batch)
            if not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)

    def _epoch_results(self) -> dict[str, float]:
        assert self._results is not None
        return {k: float(v) for k, v in self._results().items()}


def _shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    # The datasets are built from in-memory tensors, not files: split by element, and say so, instead
    # of letting tf.data try file-based sharding first and warn.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _log(message: str) -> None:
    print(f"training: {message}", file=sys.stderr, flush=True)
