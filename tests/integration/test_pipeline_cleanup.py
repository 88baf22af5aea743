"""`make demo-down` removes the containers the demo started and leaves everyone else's alone (real Docker)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops import demo

IMAGE = "mlops-training:latest"


def _start(labels: dict[str, str]) -> str:
    flags = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    done = subprocess.run(
        ["docker", "run", "-d", *flags, "--entrypoint", "sleep", IMAGE, "600"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, (
        f"cannot start a container from {IMAGE} (build it: mlops images build): {done.stderr}"
    )
    return done.stdout.strip()


def _exists(container: str) -> bool:
    done = subprocess.run(["docker", "inspect", container], capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def containers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    # A state dir of its own: down() must not stop the stand-ins another demo recorded.
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path / "state"))
    started = {
        "ours": _start(demo.demo_labels()),
        # Same image, a local-mode job of someone else (compose label, another demo's label).
        "local_mode_job": _start({"com.docker.compose.project": "someone-else"}),
        "other_demo": _start({demo.DEMO_LABEL: "another-checkout"}),
    }
    try:
        yield started
    finally:
        subprocess.run(["docker", "rm", "-f", *started.values()], capture_output=True, check=False)


def test_down_removes_only_the_demo_containers(containers: dict[str, str]) -> None:
    stopped = demo.down()
    assert stopped == ["1 container(s)"]
    assert not _exists(containers["ours"])
    assert _exists(containers["local_mode_job"])
    assert _exists(containers["other_demo"])
