"""The MovieLens datasets we support: their raw GroupLens layout and the normalized table schema."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

# Re-exported: the data layer's callers read the vocabulary and the names from here (docs/contracts.md).
from dataset.dataset_names import DatasetName as DatasetName
from dataset.genres import GENRES as GENRES

# ml-1m's users.dat stores occupations as codes; these are the names its README gives them.
ML1M_OCCUPATIONS: tuple[str, ...] = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)

# ml-1m's users.dat stores an age bucket as its lower bound (1 means "under 18").
ML1M_AGE_BUCKETS: frozenset[int] = frozenset({1, 18, 25, 35, 45, 50, 56})

RATINGS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int32()),
        ("movie_id", pa.int32()),
        ("rating", pa.float32()),
        ("timestamp", pa.int64()),
    ]
)
MOVIES_SCHEMA = pa.schema(
    [
        ("movie_id", pa.int32()),
        ("title", pa.string()),
        ("year", pa.int16()),
        ("genres", pa.string()),
    ]
)
USERS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int32()),
        ("age", pa.int16()),
        ("gender", pa.string()),
        ("occupation", pa.string()),
        ("zip", pa.string()),
    ]
)
TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "ratings": RATINGS_SCHEMA,
    "movies": MOVIES_SCHEMA,
    "users": USERS_SCHEMA,
}


@dataclass(frozen=True)
class RawFile:
    """One file of a dataset's raw GroupLens layout and the table it feeds."""

    name: str
    table: str
    separator: str
    columns: int


@dataclass(frozen=True)
class DatasetSpec:
    """A MovieLens dataset: its raw files and the counts GroupLens publishes for it."""

    name: str
    ratings: RawFile
    movies: RawFile
    users: RawFile
    expected_ratings: int
    expected_users: int
    expected_rated_movies: int
    expected_movies: int

    @property
    def files(self) -> tuple[RawFile, RawFile, RawFile]:
        """The raw files, in the order validation reads them (dimensions before facts)."""
        return (self.movies, self.users, self.ratings)

    def file_for(self, table: str) -> RawFile:
        """The raw file that feeds `table`."""
        return {"ratings": self.ratings, "movies": self.movies, "users": self.users}[table]


DATASETS: dict[DatasetName, DatasetSpec] = {
    DatasetName.ML_100K: DatasetSpec(
        name=DatasetName.ML_100K,
        ratings=RawFile("u.data", "ratings", "\t", 4),
        # id | title | release date | video release date | IMDb URL | 19 genre flags
        movies=RawFile("u.item", "movies", "|", 5 + len(GENRES)),
        users=RawFile("u.user", "users", "|", 5),
        expected_ratings=100_000,
        expected_users=943,
        expected_rated_movies=1_682,
        expected_movies=1_682,
    ),
    DatasetName.ML_1M: DatasetSpec(
        name=DatasetName.ML_1M,
        ratings=RawFile("ratings.dat", "ratings", "::", 4),
        movies=RawFile("movies.dat", "movies", "::", 3),
        users=RawFile("users.dat", "users", "::", 5),
        expected_ratings=1_000_209,
        expected_users=6_040,
        expected_rated_movies=3_706,
        expected_movies=3_883,
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset `name`, or a ValueError listing the known ones."""
    try:
        return DATASETS[DatasetName(name)]
    except ValueError:
        known = ", ".join(DatasetName.values())
        raise ValueError(f"unknown dataset {name!r}: choose one of {known}") from None
