"""The saved model directory (docs/contracts.md section 3): keys, dtypes, shapes, load, write, validate
and the reference scorer. NumPy only, and nothing of ours, so both images can carry it."""

from modeldir.contract import (
    CATALOG_COLUMNS,
    CATALOG_FILE,
    KERAS_FILE,
    METADATA_FILE,
    RANK_TOWER_DTYPES,
    RATED_DTYPES,
    RATED_FILE,
    TOWER_DTYPES,
    TOWERS_FILE,
    ModelDirError,
    catalog_order,
    check_metadata,
    check_rated,
    check_towers,
)
from modeldir.files import RatedMovies, SavedModel, load, read_metadata, write
from modeldir.score import ReferenceScorer, rows_of

__all__ = [
    "CATALOG_COLUMNS",
    "CATALOG_FILE",
    "KERAS_FILE",
    "METADATA_FILE",
    "RANK_TOWER_DTYPES",
    "RATED_DTYPES",
    "RATED_FILE",
    "TOWERS_FILE",
    "TOWER_DTYPES",
    "ModelDirError",
    "RatedMovies",
    "ReferenceScorer",
    "SavedModel",
    "catalog_order",
    "check_metadata",
    "check_rated",
    "check_towers",
    "load",
    "read_metadata",
    "rows_of",
    "write",
]
