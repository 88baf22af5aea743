"""Read and write the saved model directory's NumPy and JSON files (metadata.json, towers.npz, rated.npz).

catalog.parquet and keras/model.keras need pandas, pyarrow or Keras: the writer (training.export) and
the reader (inference.model) handle those two, with CATALOG_COLUMNS and catalog_order from here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldir.contract import (
    METADATA_FILE,
    RANK_TOWER_DTYPES,
    RATED_DTYPES,
    RATED_FILE,
    TOWER_DTYPES,
    TOWERS_FILE,
    Arrays,
    ModelDirError,
    check_metadata,
    check_rated,
    check_towers,
)

log = logging.getLogger("modeldir")


@dataclass(frozen=True)
class RatedMovies:
    """User -> catalog rows the user rated, as CSR arrays (contract section 3, `rated.npz`)."""

    user_ids: npt.NDArray[np.int64]
    indptr: npt.NDArray[np.int64]
    movie_idx: npt.NDArray[np.int32]

    @classmethod
    def empty(cls) -> RatedMovies:
        """No user has rated anything (used when the model directory has no `rated.npz`)."""
        return cls(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int32))

    def rows_of(self, user_id: int) -> npt.NDArray[np.int32]:
        """Catalog rows the user rated (empty for a user the model never saw)."""
        i = int(np.searchsorted(self.user_ids, user_id))
        if i >= len(self.user_ids) or self.user_ids[i] != user_id:
            return self.movie_idx[:0]
        return self.movie_idx[self.indptr[i] : self.indptr[i + 1]]


@dataclass(frozen=True)
class SavedModel:
    """A model's metadata, towers and rated movies, checked against the contract."""

    metadata: dict[str, Any]
    towers: Arrays
    rated: RatedMovies
    warnings: list[str] = field(default_factory=list)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The user features, in the order the towers' feature rows follow."""
        return tuple(self.metadata["user_feature_names"])

    @property
    def rating_range(self) -> tuple[float, float]:
        """Predicted ratings are clipped to [low, high]."""
        low, high = self.metadata["rating_range"]
        return float(low), float(high)

    @property
    def has_ranking_tower(self) -> bool:
        """Whether top-K ranks with the ranking tower (else with the rating score)."""
        return "rank_movie_vectors" in self.towers

    @classmethod
    def from_arrays(
        cls,
        towers: dict[str, Any],
        feature_names: list[str],
        rating_range: tuple[float, float],
        where: str = "the towers",
    ) -> SavedModel:
        """A model held in memory (a fit not yet exported), checked as a loaded one would be."""
        meta = check_metadata(
            {"user_feature_names": list(feature_names), "rating_range": list(rating_range)}, where
        )
        return cls(meta, check_towers(towers, len(feature_names), where), RatedMovies.empty())


def read_metadata(path: Path) -> dict[str, Any]:
    """metadata.json of the directory, checked for the keys scoring needs."""
    file = Path(path) / METADATA_FILE
    if not file.is_file():
        raise ModelDirError(f"{file} is missing; point at a model directory written by training.export")
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ModelDirError(f"{file} is not valid JSON ({e}); re-export the model") from None
    return check_metadata(meta, str(file))


def read_towers(path: Path, n_features: int) -> Arrays:
    """towers.npz of the directory, checked against `n_features` user features."""
    file = Path(path) / TOWERS_FILE
    if not file.is_file():
        raise ModelDirError(f"{file} is missing; re-export the model with training.export")
    with np.load(file, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in (*TOWER_DTYPES, *RANK_TOWER_DTYPES) if k in npz.files}
    return check_towers(arrays, n_features, str(file))


def read_rated(path: Path, n_movies: int, warnings: list[str]) -> RatedMovies:
    """rated.npz of the directory; without it every user counts as having rated nothing (a warning)."""
    file = Path(path) / RATED_FILE
    if not file.is_file():
        msg = f"{file} is missing: every user counts as having rated nothing (top-K may hold rated movies)"
        log.warning(msg)
        warnings.append(msg)
        return RatedMovies.empty()
    with np.load(file, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in RATED_DTYPES if k in npz.files}
    r = check_rated(arrays, n_movies, str(file))
    return RatedMovies(r["user_ids"], r["indptr"], r["movie_idx"])


def load(path: Path) -> SavedModel:
    """Read and check metadata.json, towers.npz and rated.npz; raises ModelDirError naming the bad file."""
    path = Path(path)
    if not path.is_dir():
        raise ModelDirError(f"model directory {path} does not exist; train and export a model first")
    meta = read_metadata(path)
    towers = read_towers(path, len(meta["user_feature_names"]))
    warnings: list[str] = []
    rated = read_rated(path, towers["movie_ids"].size, warnings)
    return SavedModel(meta, towers, rated, warnings)


def _json_default(value: object) -> object:
    # NumPy scalars in metrics or lineage values from the caller.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"metadata value {value!r} of type {type(value).__name__} is not JSON serializable")


def write(out_dir: Path, metadata: dict[str, Any], towers: dict[str, Any], rated: dict[str, Any]) -> Path:
    """Check and write metadata.json, towers.npz and rated.npz into `out_dir` (created if needed)."""
    out = Path(out_dir)
    meta = check_metadata(metadata, "the model's metadata")
    t = check_towers(towers, len(meta["user_feature_names"]), "the model's towers")
    r = check_rated(rated, t["movie_ids"].size, "the model's rated movies")
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / TOWERS_FILE, **t)  # type: ignore[arg-type]
    np.savez(out / RATED_FILE, **r)  # type: ignore[arg-type]
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + "\n")
    return out
