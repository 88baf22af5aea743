"""The normalized MovieLens tables other rooms read (docs/contracts.md section 1)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dataset import paths
from dataset.schema import TABLE_SCHEMAS, dataset_spec
from dataset.versioning import dir_md5

TABLE_NAMES = ("ratings", "movies", "users")


@dataclass(frozen=True)
class Tables:
    """One dataset's validated tables, with the contract's column types."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    users: pd.DataFrame


def raw_dir(dataset: str, data_dir: Path | None = None) -> Path:
    """Where a dataset's raw files live: `<data dir>/raw/<dataset>/`."""
    return (data_dir or paths.data_dir()) / "raw" / dataset


def tables_dir(dataset: str, data_dir: Path | None = None) -> Path:
    """Where a dataset's Parquet tables live: `<data dir>/<dataset>/`."""
    return (data_dir or paths.data_dir()) / dataset


def _fetch_hint(dataset: str, data_dir: Path | None) -> str:
    """The command that makes a dataset appear, for error messages."""
    where = "" if data_dir is None else f" (with MLOPS_DATA_DIR={data_dir})"
    return f"run `mlops data fetch --dataset {dataset}`{where}"


def write_table(table: str, frame: pd.DataFrame, path: Path) -> None:
    """Write one table as Parquet with exactly the contract's schema, atomically."""
    schema = TABLE_SCHEMAS[table]
    arrow = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pq.write_table(arrow, tmp)
    tmp.replace(path)


def _read(table: str, path: Path) -> pd.DataFrame:
    """Read one table back with the contract's pandas dtypes."""
    frame: pd.DataFrame = pq.read_table(path, schema=TABLE_SCHEMAS[table]).to_pandas()
    if table == "movies":
        frame["year"] = frame["year"].astype("Int16")
    return frame


def load_tables(dataset: str, data_dir: Path | None = None) -> Tables:
    """Load a fetched dataset's tables; a FileNotFoundError says how to fetch it."""
    dataset_spec(dataset)
    directory = tables_dir(dataset, data_dir)
    frames: dict[str, pd.DataFrame] = {}
    for table in TABLE_NAMES:
        path = directory / f"{table}.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: {_fetch_hint(dataset, data_dir)}")
        frames[table] = _read(table, path)
    return Tables(**frames)


def dataset_version(dataset: str, data_dir: Path | None = None) -> str:
    """The dataset's version: DVC's content hash (md5 ... '.dir') of its raw directory."""
    dataset_spec(dataset)
    directory = raw_dir(dataset, data_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} does not exist: {_fetch_hint(dataset, data_dir)}")
    return dir_md5(directory)
