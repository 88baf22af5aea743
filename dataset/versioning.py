"""Dataset versions and DVC: the content hash DVC gives a directory, commit, push and pull.

`dir_md5` needs only the standard library (the CDK environment has no DVC); the DVC operations
import DVC lazily and run only in the ML environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from dataset import paths

_CHUNK = 1 << 20


class VersioningError(Exception):
    """A DVC operation failed; the message carries DVC's own explanation."""


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes, as DVC 3 hashes outputs (no line-ending normalization)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dir_md5(directory: Path) -> str:
    """The md5 DVC 3 records for a directory output: md5 of its sorted JSON manifest, plus '.dir'."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    entries = [
        {"md5": file_md5(p), "relpath": p.relative_to(directory).as_posix()}
        for p in directory.rglob("*")
        if p.is_file()
    ]
    entries.sort(key=lambda e: e["relpath"])
    manifest = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(manifest, usedforsecurity=False).hexdigest() + ".dir"


def dvc_root() -> Path:
    """The DVC repository holding dvc.yaml (`MLOPS_DVC_ROOT`, default the project)."""
    return Path(os.environ.get("MLOPS_DVC_ROOT", paths.ROOT)).resolve()


def is_tracked(data_dir: Path) -> bool:
    """True when `data_dir` is the `data/` directory that the DVC repository's dvc.yaml tracks."""
    root = dvc_root()
    return (root / "dvc.yaml").is_file() and (root / ".dvc").is_dir() and data_dir.resolve() == root / "data"


def stage_names(dataset: str) -> list[str]:
    """The dvc.yaml stages of one dataset (foreach stages are addressed `name@item`)."""
    return [f"fetch@{dataset}", f"validate@{dataset}"]


@contextlib.contextmanager
def _repo() -> Iterator[Any]:
    """The DVC repository, with the working directory at its root for the duration.

    DVC resolves stage names and stage paths against the working directory, not the repository
    it was opened on. DVC is imported lazily: it is heavy and absent on the CDK side.
    """
    from dvc.exceptions import DvcException  # noqa: PLC0415  heavy: loads dvc only when called
    from dvc.repo import Repo  # noqa: PLC0415  heavy: loads dvc only when called

    # DVC logs progress ("Updating lock file") through a handler bound to stdout, which our --json
    # output owns: keep its info messages quiet and anything it prints directly on stderr.
    root = dvc_root()
    if not (root / ".dvc").is_dir():
        raise VersioningError(
            f"{root} is not a DVC repository (no .dvc/): set MLOPS_DVC_ROOT to the project, or run `dvc init`"
        )
    dvc_logger = logging.getLogger("dvc")
    level = dvc_logger.level
    dvc_logger.setLevel(logging.WARNING)
    try:
        with (
            contextlib.redirect_stdout(sys.stderr),
            contextlib.chdir(dvc_root()),
            Repo(str(dvc_root())) as repo,
        ):
            yield repo
    except DvcException as e:
        raise VersioningError(f"DVC failed in {dvc_root()}: {e}") from e
    finally:
        dvc_logger.setLevel(level)


def commit(dataset: str) -> None:
    """Record the dataset's current raw and table directories in dvc.lock and the DVC cache."""
    with _repo() as repo:
        for stage in stage_names(dataset):
            repo.commit(stage, force=True)


def status(dataset: str | None = None) -> dict[str, Any]:
    """`dvc status` of one dataset's stages (or all of them): empty when clean."""
    with _repo() as repo:
        targets = stage_names(dataset) if dataset else None
        result: dict[str, Any] = repo.status(targets=targets)
        return result


def push(datasets: list[str], remote: str | None) -> int:
    """Push the datasets' tracked outputs to a DVC remote; return how many files were transferred."""
    with _repo() as repo:
        targets = [s for d in datasets for s in stage_names(d)]
        return int(repo.push(targets=targets, remote=remote))


def pull(datasets: list[str], remote: str | None) -> int:
    """Pull the datasets' tracked outputs from a DVC remote into the workspace; return files fetched."""
    with _repo() as repo:
        targets = [s for d in datasets for s in stage_names(d)]
        result = repo.pull(targets=targets, remote=remote, force=True)
        return int(result["stats"]["fetched"])


def set_remote(name: str, url: str, *, endpoint_url: str | None, default: bool) -> Path:
    """Add or update a DVC remote in `.dvc/config.local` (kept out of git); return that file."""
    with _repo() as repo, repo.config.edit("local") as conf:
        section = conf["remote"].setdefault(name, {})
        section["url"] = url
        if endpoint_url:
            section["endpointurl"] = endpoint_url
        if default:
            conf["core"]["remote"] = name
    return dvc_root() / ".dvc" / "config.local"


def lock_version(dataset: str) -> str | None:
    """The raw directory's md5 recorded in dvc.lock for `dataset`, if any."""
    lock = dvc_root() / "dvc.lock"
    if not lock.is_file():
        return None

    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    for out in stages.get(f"fetch@{dataset}", {}).get("outs", []):
        if out.get("path") == f"data/raw/{dataset}":
            value = out.get("md5")
            return str(value) if value else None
    return None
