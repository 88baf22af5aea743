"""Where the platform keeps its local state: data, models, runs, the local stand-ins."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The data directory (`MLOPS_DATA_DIR`, default `data/` in the project)."""
    return Path(os.environ.get("MLOPS_DATA_DIR", ROOT / "data")).resolve()


def state_dir() -> Path:
    """Where local runs keep state: models, MLflow store, logs (`MLOPS_STATE_DIR`, default `.mlops/`)."""
    return Path(os.environ.get("MLOPS_STATE_DIR", ROOT / ".mlops")).resolve()
