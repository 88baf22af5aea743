"""The dataset version is exactly the hash DVC computes for the raw directory."""

from __future__ import annotations

import pytest
from dvc_data.hashfile.build import build
from dvc_data.hashfile.db.local import LocalHashFileDB
from dvc_objects.fs import LocalFileSystem

from dataset.tables import dataset_version
from dataset.versioning import dir_md5


def _dvc_hash(path) -> str:
    """DVC's own computation of a directory output's md5 (dvc_data, as `dvc add`/`commit` use)."""
    fs = LocalFileSystem()
    odb = LocalHashFileDB(fs, str(path.parent / ".dvc-cache"))
    _, _, obj = build(odb, str(path), fs, "md5", ignore=None, dry_run=True)
    return obj.hash_info.value


def test_dir_md5_matches_dvc(tmp_path):
    d = tmp_path / "raw" / "ml-100k"
    (d / "sub").mkdir(parents=True)
    (d / "u.data").write_bytes(b"1\t1\t5\t881250949\r\n")
    (d / "u.item").write_text("1|Toy Story (1995)|\n", encoding="utf-8")
    (d / "sub" / "z.txt").write_bytes(b"\x00\xff")
    assert dir_md5(d) == _dvc_hash(d)
    assert dir_md5(d).endswith(".dir")
    assert dataset_version("ml-100k", tmp_path) == dir_md5(d)


def test_version_changes_with_content(tmp_path):
    d = tmp_path / "raw" / "ml-100k"
    d.mkdir(parents=True)
    (d / "u.data").write_bytes(b"a\n")
    first = dir_md5(d)
    (d / "u.data").write_bytes(b"b\n")
    assert dir_md5(d) != first
    assert dir_md5(d) == _dvc_hash(d)


def test_missing_dataset_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="mlops data fetch --dataset ml-1m"):
        dataset_version("ml-1m", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'ml-20m'"):
        dataset_version("ml-20m", tmp_path)
