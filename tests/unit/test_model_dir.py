"""modeldir, the one home of the saved-model contract: NumPy only, and what it writes it loads back."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import modeldir
from tests.serving_model import FEATURES, add_ranking_tower, write_model_dir

PACKAGE = Path(modeldir.__file__).parent


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_modeldir_imports_numpy_and_the_standard_library_only():
    """Both images carry it: no TensorFlow, no pandas, nothing else of ours."""
    files = sorted(PACKAGE.glob("*.py"))
    assert files
    for file in files:
        foreign = imported_roots(file) - set(sys.stdlib_module_names) - {"__future__", "numpy", "modeldir"}
        assert not foreign, f"{file.name} imports {sorted(foreign)}"


def test_what_write_writes_load_reads_back(tmp_path: Path):
    src = modeldir.load(add_ranking_tower(write_model_dir(tmp_path / "src")))
    rated = {"user_ids": src.rated.user_ids, "indptr": src.rated.indptr, "movie_idx": src.rated.movie_idx}
    out = modeldir.write(tmp_path / "out", src.metadata, src.towers, rated)
    back = modeldir.load(out)
    assert back.metadata == src.metadata and back.feature_names == FEATURES
    assert set(back.towers) == set(modeldir.TOWER_DTYPES) | set(modeldir.RANK_TOWER_DTYPES)
    for key, arr in back.towers.items():
        assert arr.dtype == src.towers[key].dtype and np.array_equal(arr, src.towers[key]), key
    assert np.array_equal(back.rated.movie_idx, src.rated.movie_idx)


def test_write_refuses_towers_that_break_the_contract(tmp_path: Path):
    src = modeldir.load(write_model_dir(tmp_path / "src"))
    towers = {**src.towers, "feature_std": np.zeros(len(FEATURES), np.float32)}
    rated = {"user_ids": src.rated.user_ids, "indptr": src.rated.indptr, "movie_idx": src.rated.movie_idx}
    with pytest.raises(modeldir.ModelDirError, match="feature_std must be positive"):
        modeldir.write(tmp_path / "out", src.metadata, towers, rated)
    assert not (tmp_path / "out").exists()
