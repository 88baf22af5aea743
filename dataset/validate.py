"""Validation of a raw MovieLens dataset: every input row is accepted or rejected with one reason.

Pure functions over bytes: no file system, no network. The I/O side (`dataset.store`) reads the
raw files, calls `validate_dataset`, and writes the tables, the report and the quarantine.

Why one module over 400 lines: every rule a raw row is held to (docs/data.md), for the three
MovieLens files and both formats, kept together so the rules read as one list; each is a function.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dataset.schema import (
    GENRES,
    ML1M_AGE_BUCKETS,
    ML1M_OCCUPATIONS,
    TABLE_SCHEMAS,
    DatasetSpec,
    RawFile,
)

# Stable reason identifiers: tests, the JSON report and quarantine files use these strings.
REASONS: dict[str, str] = {
    "not_utf8": "the line is not valid UTF-8",
    "blank_line": "the line is empty",
    "truncated_line": "the file ends in the middle of this line (too few fields, no final newline)",
    "wrong_column_count": "the line has the wrong number of fields",
    "not_an_integer": "a field that must be an integer is not one",
    "id_out_of_range": "an id is not between 1 and 2**31-1",
    "not_a_number": "the rating is not a number",
    "rating_out_of_range": "the rating is outside 1.0 to 5.0",
    "bad_timestamp": "the timestamp is not an integer number of Unix seconds between 1970 and now",
    "missing_value": "a required text field is empty",
    "bad_date": "the release date is not empty and not like 01-Jan-1995",
    "bad_genre_flag": "a genre flag is not 0 or 1",
    "unknown_genre": "a genre name is not in dataset.schema.GENRES",
    "age_out_of_range": "the age is outside the range the dataset allows",
    "bad_gender": "the gender is not M or F",
    "bad_occupation": "the occupation code is not one of ml-1m's 0 to 20",
    "duplicate_id": "a movie or user id already appeared on an earlier line",
    "unknown_user_id": "the rating's user id is not in the accepted users",
    "unknown_movie_id": "the rating's movie id is not in the accepted movies",
    "duplicate_rating": "the same (user, movie, timestamp) already appeared on an earlier line",
}

SAMPLES_PER_REASON = 5
_INT32_MAX = 2**31 - 1
_INT_PATTERN = r"^-?[0-9]{1,18}$"
_NUMBER_PATTERN = r"^-?[0-9]{1,18}(\.[0-9]+)?$"
_DATE_PATTERN = re.compile(r"^\d{2}-[A-Z][a-z]{2}-(\d{4})$")
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


@dataclass(frozen=True)
class Rejection:
    """One rejected input row: where it was, why, and what it said."""

    file: str
    line: int
    reason: str
    field: str
    raw: str

    def as_dict(self) -> dict[str, Any]:
        """The rejection as a JSON-ready dict."""
        return {
            "file": self.file,
            "line": self.line,
            "reason": self.reason,
            "field": self.field,
            "raw": self.raw,
        }


@dataclass
class TableReport:
    """Row accounting for one table: rows_in == accepted + rejected, per reason."""

    table: str
    file: str
    rows_in: int = 0
    accepted: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    samples: list[Rejection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return {
            "file": self.file,
            "rows_in": self.rows_in,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "reasons": dict(sorted(self.reasons.items())),
            "samples": [s.as_dict() for s in self.samples],
        }


@dataclass(frozen=True)
class FileError:
    """A problem with a whole file (missing, empty): no row of it can be accounted for."""

    file: str
    reason: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The error as a JSON-ready dict."""
        return {"file": self.file, "reason": self.reason, "message": self.message}


@dataclass
class Validation:
    """The outcome of validating one dataset: tables of accepted rows, reports and rejections."""

    dataset: str
    tables: dict[str, pd.DataFrame]
    reports: dict[str, TableReport]
    rejections: list[Rejection]
    file_errors: list[FileError]

    @property
    def rejected_total(self) -> int:
        """Rejected rows over every table."""
        return sum(r.rejected for r in self.reports.values())

    @property
    def ok(self) -> bool:
        """True when every row of every file was accepted."""
        return not self.file_errors and self.rejected_total == 0


class _Rows:
    """The lines of one raw file and, per line, the first reason it failed (None while accepted)."""

    def __init__(self, spec: RawFile, data: bytes) -> None:
        self.spec = spec
        chunks = data.split(b"\n") if data else []
        # A file ending in "\n" has no row after it; without it, the last line is unterminated.
        self.unterminated = bool(data) and not data.endswith(b"\n")
        if data and not self.unterminated:
            chunks.pop()
        try:
            lines: list[str | None] = list(data.decode("utf-8").split("\n")) if data else []
            if data and not self.unterminated:
                lines.pop()
        except UnicodeDecodeError:
            lines = []
            for chunk in chunks:
                try:
                    lines.append(chunk.decode("utf-8"))
                except UnicodeDecodeError:
                    lines.append(None)
        self._chunks = chunks
        self.n = len(lines)
        # Windows line ends are tolerated: a trailing "\r" is not part of the last field.
        self.text = [s[:-1] if s is not None and s.endswith("\r") else s for s in lines]
        self.reason: npt.NDArray[np.object_] = np.full(self.n, None, dtype=object)
        self.field: npt.NDArray[np.object_] = np.full(self.n, "", dtype=object)
        bad_utf8 = np.array([s is None for s in self.text], dtype=bool)
        self.reject(bad_utf8, "not_utf8", "line")

    def pending(self) -> npt.NDArray[np.bool_]:
        """Rows not rejected yet."""
        return np.asarray(pd.isna(self.reason), dtype=bool)

    def reject(self, mask: npt.NDArray[np.bool_], reason: str, field_name: str) -> None:
        """Reject the rows in `mask` that are still pending, with `reason`."""
        hit = mask & self.pending()
        self.reason[hit] = reason
        self.field[hit] = field_name

    def raw(self, i: int) -> str:
        """Line i as text, with undecodable bytes escaped."""
        return self._chunks[i].decode("utf-8", errors="backslashreplace").rstrip("\r")

    def split(self) -> tuple[npt.NDArray[np.intp], list[pa.Array]]:
        """Check field counts; return the indices of well-formed rows and their fields as columns."""
        arr = pa.array(self.text, type=pa.string())
        empty = np.asarray(pc.equal(pc.utf8_length(arr), 0).fill_null(False), dtype=bool)
        self.reject(empty, "blank_line", "line")
        parts = pc.split_pattern(arr, self.spec.separator)
        counts = np.asarray(pc.list_value_length(parts).fill_null(0), dtype=np.int64)
        wrong = counts != self.spec.columns
        if self.unterminated and self.n and counts[-1] < self.spec.columns:
            last = np.zeros(self.n, dtype=bool)
            last[-1] = True
            self.reject(wrong & last, "truncated_line", "line")
        self.reject(wrong, "wrong_column_count", "line")
        idx = np.nonzero(self.pending())[0]
        good = parts.take(pa.array(idx, type=pa.int64()))
        columns = [pc.list_element(good, i) for i in range(self.spec.columns)] if len(idx) else []
        if not len(idx):
            columns = [pa.array([], type=pa.string()) for _ in range(self.spec.columns)]
        return idx, columns


def _full(n: int, idx: npt.NDArray[np.intp], values: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Scatter a mask over a subset of rows into a mask over all n rows."""
    out = np.zeros(n, dtype=bool)
    out[idx] = values
    return out


def _parse_numbers(
    col: pa.Array, pattern: str, to: pa.DataType
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[Any]]:
    """Vectorized: which strings match `pattern`, and their values cast to `to` (0 where not)."""
    ok = np.asarray(pc.match_substring_regex(col, pattern).fill_null(False), dtype=bool)
    values = np.zeros(len(col), dtype=to.to_pandas_dtype())
    if ok.any():
        values[ok] = pc.cast(col.filter(pa.array(ok)), to).to_numpy(zero_copy_only=False)
    return ok, values


def _check_id(rows: _Rows, idx: npt.NDArray[np.intp], col: pa.Array, name: str) -> npt.NDArray[np.int64]:
    """Reject non-integer and out-of-range ids in `col`; return the parsed values."""
    ok, values = _parse_numbers(col, _INT_PATTERN, pa.int64())
    rows.reject(_full(rows.n, idx, ~ok), "not_an_integer", name)
    rows.reject(_full(rows.n, idx, (values < 1) | (values > _INT32_MAX)), "id_out_of_range", name)
    return values


def _accepted_positions(rows: _Rows, idx: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
    """Which of the rows in `idx` are still accepted."""
    return rows.pending()[idx]


def _dedupe(rows: _Rows, idx: npt.NDArray[np.intp], keys: pd.DataFrame, reason: str, name: str) -> None:
    """Reject every accepted row whose key repeats an earlier accepted row's key."""
    alive = _accepted_positions(rows, idx)
    dup = np.zeros(len(idx), dtype=bool)
    dup[alive] = keys[alive].duplicated(keep="first").to_numpy()
    rows.reject(_full(rows.n, idx, dup), reason, name)


def _ratings(rows: _Rows, user_ids: set[int], movie_ids: set[int], now: int) -> pd.DataFrame:
    """Validate the ratings file (vectorized: ml-1m has a million lines)."""
    idx, cols = rows.split()
    user = _check_id(rows, idx, cols[0], "user_id")
    movie = _check_id(rows, idx, cols[1], "movie_id")
    is_num, rating = _parse_numbers(cols[2], _NUMBER_PATTERN, pa.float64())
    rows.reject(_full(rows.n, idx, ~is_num), "not_a_number", "rating")
    rows.reject(_full(rows.n, idx, (rating < 1.0) | (rating > 5.0)), "rating_out_of_range", "rating")
    is_int, ts = _parse_numbers(cols[3], _INT_PATTERN, pa.int64())
    rows.reject(_full(rows.n, idx, ~is_int | (ts < 0) | (ts > now)), "bad_timestamp", "timestamp")
    known_users = np.isin(user, np.fromiter(user_ids, dtype=np.int64, count=len(user_ids)))
    rows.reject(_full(rows.n, idx, ~known_users), "unknown_user_id", "user_id")
    known_movies = np.isin(movie, np.fromiter(movie_ids, dtype=np.int64, count=len(movie_ids)))
    rows.reject(_full(rows.n, idx, ~known_movies), "unknown_movie_id", "movie_id")
    keys = pd.DataFrame({"u": user, "m": movie, "t": ts})
    _dedupe(rows, idx, keys, "duplicate_rating", "user_id,movie_id,timestamp")
    keep = _accepted_positions(rows, idx)
    return pd.DataFrame(
        {
            "user_id": user[keep].astype(np.int32),
            "movie_id": movie[keep].astype(np.int32),
            "rating": rating[keep].astype(np.float32),
            "timestamp": ts[keep].astype(np.int64),
        }
    )


# A row checker gets the row's fields and returns either (reason, field) or the parsed record.
_RowResult = tuple[str, str] | dict[str, Any]


def _small_table(rows: _Rows, check: Callable[[list[str]], _RowResult], key: str) -> pd.DataFrame:
    """Validate a small table (movies, users) row by row, then reject repeated ids."""
    idx, cols = rows.split()
    columns = [c.to_pylist() for c in cols]
    records: list[dict[str, Any] | None] = []
    for j, i in enumerate(idx):
        result = check([c[j] for c in columns])
        if isinstance(result, tuple):
            rows.reject(_full(rows.n, np.array([i]), np.array([True])), *result)
            records.append(None)
        else:
            records.append(result)
    frame = pd.DataFrame([r if r is not None else {key: -1} for r in records])
    if len(idx):
        _dedupe(rows, idx, frame[[key]], "duplicate_id", key)
    keep = _accepted_positions(rows, idx)
    return frame[keep].reset_index(drop=True) if len(idx) else frame


def _int(text: str) -> int | None:
    """The integer `text` spells, or None."""
    return int(text) if re.fullmatch(_INT_PATTERN, text) else None


def _split_title(title: str) -> tuple[str, int | None]:
    """Split "Toy Story (1995)" into ("Toy Story", 1995); a title without a year keeps None."""
    m = _TITLE_YEAR.match(title)
    return (m.group(1), int(m.group(2))) if m else (title.strip(), None)


def _id_problem(text: str, name: str) -> tuple[str, str] | int:
    """The parsed id, or the (reason, field) that rejects it."""
    value = _int(text)
    if value is None:
        return ("not_an_integer", name)
    if not 1 <= value <= _INT32_MAX:
        return ("id_out_of_range", name)
    return value


def _movie_100k(f: list[str]) -> _RowResult:
    """One u.item row: id|title|release date|video release date|URL|19 genre flags."""
    movie_id = _id_problem(f[0], "movie_id")
    if isinstance(movie_id, tuple):
        return movie_id
    if not f[1].strip():
        return ("missing_value", "title")
    date = _DATE_PATTERN.match(f[2])
    if f[2] and not date:
        return ("bad_date", "release_date")
    flags = f[5:]
    for name, flag in zip(GENRES, flags, strict=True):
        if flag not in ("0", "1"):
            return ("bad_genre_flag", name)
    title, title_year = _split_title(f[1])
    year = int(date.group(1)) if date else title_year
    genres = "|".join(name for name, flag in zip(GENRES, flags, strict=True) if flag == "1")
    return {"movie_id": movie_id, "title": title, "year": year, "genres": genres}


def _movie_1m(f: list[str]) -> _RowResult:
    """One movies.dat row: id::title (year)::genre|genre."""
    movie_id = _id_problem(f[0], "movie_id")
    if isinstance(movie_id, tuple):
        return movie_id
    if not f[1].strip():
        return ("missing_value", "title")
    names = f[2].split("|") if f[2] else []
    if not names:
        return ("missing_value", "genres")
    if any(n not in GENRES for n in names):
        return ("unknown_genre", "genres")
    title, year = _split_title(f[1])
    genres = "|".join(g for g in GENRES if g in names)
    return {"movie_id": movie_id, "title": title, "year": year, "genres": genres}


def _user(user_id: str, age: str, gender: str, occupation: str, zip_code: str, ml1m: bool) -> _RowResult:
    """One user row, in either dataset's field order already unpacked."""
    uid = _id_problem(user_id, "user_id")
    if isinstance(uid, tuple):
        return uid
    age_value = _int(age)
    if age_value is None:
        return ("not_an_integer", "age")
    if (ml1m and age_value not in ML1M_AGE_BUCKETS) or not 1 <= age_value <= 120:
        return ("age_out_of_range", "age")
    if gender not in ("M", "F"):
        return ("bad_gender", "gender")
    if ml1m:
        code = _int(occupation)
        if code is None or not 0 <= code < len(ML1M_OCCUPATIONS):
            return ("bad_occupation", "occupation")
        occupation = ML1M_OCCUPATIONS[code]
    if not occupation.strip():
        return ("missing_value", "occupation")
    if not zip_code.strip():
        return ("missing_value", "zip")
    return {"user_id": uid, "age": age_value, "gender": gender, "occupation": occupation, "zip": zip_code}


def _user_100k(f: list[str]) -> _RowResult:
    """One u.user row: id|age|gender|occupation|zip."""
    return _user(f[0], f[1], f[2], f[3], f[4], ml1m=False)


def _user_1m(f: list[str]) -> _RowResult:
    """One users.dat row: id::gender::age::occupation code::zip."""
    return _user(f[0], f[2], f[1], f[3], f[4], ml1m=True)


def _typed(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Give a table exactly the contract's column order and dtypes."""
    schema = TABLE_SCHEMAS[table]
    if frame.empty:
        frame = pd.DataFrame({name: pd.Series([], dtype=object) for name in schema.names})
    out = pd.DataFrame(index=range(len(frame)))
    for name in schema.names:
        col = frame[name].reset_index(drop=True)
        out[name] = (
            col.astype("Int16") if name == "year" else col.astype(schema.field(name).type.to_pandas_dtype())
        )
    return out


def _report(rows: _Rows) -> tuple[TableReport, list[Rejection]]:
    """Count accepted and rejected rows per reason, and list the rejections in line order."""
    report = TableReport(table=rows.spec.table, file=rows.spec.name, rows_in=rows.n)
    rejected_idx = np.nonzero(~rows.pending())[0]
    rejections = [
        Rejection(rows.spec.name, int(i) + 1, str(rows.reason[i]), str(rows.field[i]), rows.raw(int(i)))
        for i in rejected_idx
    ]
    report.rejected = len(rejections)
    report.accepted = rows.n - report.rejected
    per_reason: dict[str, int] = {}
    for r in rejections:
        per_reason[r.reason] = per_reason.get(r.reason, 0) + 1
        if per_reason[r.reason] <= SAMPLES_PER_REASON:
            report.samples.append(r)
    report.reasons = per_reason
    return report, rejections


def validate_dataset(spec: DatasetSpec, files: Mapping[str, bytes], *, now: int | None = None) -> Validation:
    """Validate a dataset's raw files (name -> bytes); accepted rows become the normalized tables."""
    now = int(time.time()) + 86_400 if now is None else now
    file_errors: list[FileError] = []
    rows: dict[str, _Rows] = {}
    for raw in spec.files:
        data = files.get(raw.name)
        if data is None:
            file_errors.append(
                FileError(raw.name, "missing_file", f"{raw.name} is missing from the raw {spec.name} data")
            )
            data = b""
        elif not data:
            file_errors.append(
                FileError(raw.name, "empty_file", f"{raw.name} of {spec.name} is empty (0 bytes)")
            )
        rows[raw.table] = _Rows(raw, data)
    ml1m = spec.name == "ml-1m"
    movies = _small_table(rows["movies"], _movie_1m if ml1m else _movie_100k, "movie_id")
    users = _small_table(rows["users"], _user_1m if ml1m else _user_100k, "user_id")
    movie_ids = set(movies["movie_id"].tolist()) if len(movies) else set()
    user_ids = set(users["user_id"].tolist()) if len(users) else set()
    ratings = _ratings(rows["ratings"], user_ids, movie_ids, now)
    reports: dict[str, TableReport] = {}
    rejections: list[Rejection] = []
    for table in ("ratings", "movies", "users"):
        report, rejected = _report(rows[table])
        reports[table] = report
        rejections.extend(rejected)
    tables = {
        "ratings": _typed("ratings", ratings),
        "movies": _typed("movies", movies),
        "users": _typed("users", users),
    }
    return Validation(spec.name, tables, reports, rejections, file_errors)
