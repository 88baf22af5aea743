"""Per-epoch checkpoints in `/opt/ml/checkpoints`, so a restarted (spot) job resumes where it stopped."""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

_NAME = re.compile(r"^epoch-(\d{5})$")
_STATE = "state.json"
_WEIGHTS = "model.weights.h5"
_OPTIMIZER = "optimizer.npz"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be restored into this model; the message names the checkpoint."""


@dataclass(frozen=True)
class Checkpoint:
    """One complete checkpoint: after `epoch` finished epochs, with the history up to then."""

    path: Path
    epoch: int
    history: dict[str, list[float]] = field(default_factory=dict)


class CheckpointStore:
    """Checkpoints as `epoch-NNNNN/` directories, each written whole then renamed into place."""

    def __init__(self, directory: Path, keep: int = 2) -> None:
        """Keep the newest `keep` checkpoints in `directory`."""
        if keep < 1:
            raise ValueError(f"keep={keep}: at least one checkpoint must be kept")
        self.directory = Path(directory)
        self.keep = keep

    def all(self) -> list[Checkpoint]:
        """Every complete checkpoint, oldest first; half-written ones (no state file) are ignored."""
        if not self.directory.is_dir():
            return []
        found = []
        for child in self.directory.iterdir():
            match = _NAME.match(child.name)
            if match and (child / _STATE).is_file():
                state = json.loads((child / _STATE).read_text())
                found.append(Checkpoint(child, int(state["epoch"]), state.get("history", {})))
        return sorted(found, key=lambda c: c.epoch)

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint, or None for a fresh start."""
        every = self.all()
        return every[-1] if every else None

    def save(self, model: keras.Model, epoch: int, history: dict[str, list[float]]) -> Checkpoint:
        """Write weights, optimizer state and history after `epoch` finished epochs, atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"epoch-{epoch:05d}"
        tmp = self.directory / f".tmp-epoch-{epoch:05d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model.save_weights(tmp / _WEIGHTS)
        optimizer = model.optimizer
        arrays = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
        np.savez(tmp / _OPTIMIZER, **arrays)  # type: ignore[arg-type]
        # The state file goes last: its presence marks the checkpoint complete.
        (tmp / _STATE).write_text(json.dumps({"epoch": epoch, "history": history}))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in self.all()[: -self.keep]:
            shutil.rmtree(old.path, ignore_errors=True)
        return Checkpoint(final, epoch, history)

    def restore(self, model: keras.Model, checkpoint: Checkpoint) -> None:
        """Load a checkpoint's weights and optimizer state into a built model."""
        try:
            model.load_weights(checkpoint.path / _WEIGHTS)
        except (ValueError, OSError) as err:
            raise CheckpointError(
                f"checkpoint {checkpoint.path} does not fit this model ({err}). It was written by a "
                "different model or hyperparameters: delete it, or give the job a fresh checkpoint prefix."
            ) from err
        optimizer = model.optimizer
        with _scope(model):
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
        with np.load(checkpoint.path / _OPTIMIZER) as saved:
            values = [saved[k] for k in sorted(saved.files)]
        variables = list(optimizer.variables)
        if len(values) != len(variables):
            raise CheckpointError(
                f"checkpoint {checkpoint.path} holds {len(values)} optimizer variables, this model's "
                f"optimizer has {len(variables)}: delete the checkpoint or use a fresh checkpoint prefix."
            )
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)


def _scope(model: keras.Model) -> AbstractContextManager[Any]:
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else nullcontext()


class CheckpointCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Restores `resume_from` when training begins and checkpoints after every epoch."""

    def __init__(self, store: CheckpointStore, resume_from: Checkpoint | None = None) -> None:
        """Checkpoint into `store`; continue from `resume_from` when given."""
        super().__init__()
        self.store = store
        self.resume_from = resume_from
        self.history: dict[str, list[float]] = dict(resume_from.history) if resume_from else {}

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Load the checkpoint the job resumes from, before the first step."""
        if self.resume_from is not None:
            self.store.restore(self.model, self.resume_from)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Record the epoch's metrics and write its checkpoint (`epoch` is 0-based)."""
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.store.save(self.model, epoch + 1, self.history)
