"""Docker helpers the stand-ins share: an engine that answers, the bridge address, container clean-up."""

from __future__ import annotations

import subprocess

from dataset.paths import ROOT
from standins import StandInError


def ensure_docker() -> None:
    """Make sure a Docker engine answers (scripts/docker-up.sh installs and starts one as root)."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0:
        return
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "docker-up.sh")], check=False)
    if proc.returncode != 0:
        raise StandInError(
            "no Docker engine answers and scripts/docker-up.sh could not start one; "
            "start Docker and run again."
        )


def docker_bridge_ip() -> str:
    """The host's address on Docker's default bridge: local-mode containers reach the host there."""
    done = subprocess.run(
        ["docker", "network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    address = done.stdout.strip()
    if done.returncode == 0 and address and address != "<no value>":
        return address
    # The engine leaves Gateway out of IPAM when it picked it itself; docker0 carries it then.
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True, check=False
    )
    for word in shown.stdout.split():
        if "/" in word and word.count(".") == 3:
            return word.split("/")[0]
    raise StandInError(
        f"cannot find the host's address on Docker's bridge (inspect: {done.stderr.strip() or address!r}, "
        f"ip: {shown.stderr.strip() or shown.stdout.strip()!r}); containers reach the host there. "
        "Is the Docker engine running (`make docker`)?"
    )


def remove_containers(labels: dict[str, str]) -> int:
    """Remove every container (running or exited) carrying all these labels; return how many."""
    if not labels:
        raise ValueError("remove_containers needs at least one label: it never removes unlabelled containers")
    filters = [arg for key, value in labels.items() for arg in ("--filter", f"label={key}={value}")]
    done = subprocess.run(["docker", "ps", "-aq", *filters], capture_output=True, text=True, check=False)
    ids = done.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
    return len(ids)


def remove_exited(image: str) -> int:
    """Remove the exited containers of `image` (local mode leaves its own behind); return how many."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "status=exited", "--filter", f"ancestor={image}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", *ids], capture_output=True, check=False)
    return len(ids)
